//! The Pushgateway client: the manager's text exposition put to one group of a Pushgateway every
//! interval, the group deleted on clean shutdown.
//!
//! A group is named by its grouping key, `job` and then the extra labels in the order given:
//! `PUT {url}/metrics/job/{job}/instance/{instance}/...`. PUT replaces every metric of the group,
//! so a series the process no longer has leaves the Pushgateway at the next push. A value that is
//! not plain URL text (a `/`, a space, anything outside `[A-Za-z0-9._~-]`, or empty) is sent in
//! the Pushgateway's `@base64` form.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use axum::http::{Method, Uri};
use base64::Engine as _;
use bytes::Bytes;
use mmo_metrics::{GaugeHandle, MetricsManager};
use tokio::sync::watch;

use super::client::{HttpClient, Outcome, PushConfigError, PushEndpoint};
use crate::encode::{encode_text_with, TEXT_CONTENT_TYPE};

/// Self-metric: pushes to a Pushgateway, by endpoint and result (`ok`, `error`).
pub const PUSHGATEWAY_PUSHES_METRIC: &str = "mmo_metrics_pushgateway_pushes_total";
/// Self-metric: Unix time of the last push a Pushgateway accepted, by endpoint.
pub const PUSHGATEWAY_LAST_SUCCESS_METRIC: &str = "mmo_metrics_pushgateway_last_success_timestamp_seconds";

/// Settings of a push to a Pushgateway group; [`ExporterBuilder::pushgateway`](crate::ExporterBuilder::pushgateway)
/// starts it with the exporter.
///
/// ```
/// use mmo_metrics_exporter::{PushEndpoint, Pushgateway};
///
/// let gateway = Pushgateway::new(PushEndpoint::new("http://127.0.0.1:9091")?, "mmo_server")?
///     .grouping_label("instance", "zone-7")?
///     .interval(std::time::Duration::from_secs(10));
/// assert_eq!(gateway.group_path(), "/metrics/job/mmo_server/instance/zone-7");
/// # Ok::<(), mmo_metrics_exporter::PushConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Pushgateway {
    pub(crate) endpoint: PushEndpoint,
    job: String,
    grouping: Vec<(String, String)>,
    pub(crate) interval: Duration,
}

impl Pushgateway {
    /// Pushes to the group of `job` (no other grouping label yet) on the Pushgateway at
    /// `endpoint` (its base URL, e.g. `http://127.0.0.1:9091`), every 15 s.
    pub fn new(endpoint: PushEndpoint, job: impl Into<String>) -> Result<Self, PushConfigError> {
        let job = job.into();
        if job.is_empty() {
            return Err(PushConfigError::Grouping {
                name: "job".into(),
                problem: "expected a job name, found an empty string".into(),
            });
        }
        Ok(Self {
            endpoint,
            job,
            grouping: Vec::new(),
            interval: Duration::from_secs(15),
        })
    }

    /// Adds a label to the grouping key (typically `instance`). The Pushgateway adds the grouping
    /// labels to every series of the group.
    pub fn grouping_label(mut self, name: &str, value: impl Into<String>) -> Result<Self, PushConfigError> {
        let bad = |problem: String| PushConfigError::Grouping {
            name: name.to_owned(),
            problem,
        };
        mmo_metrics::validate_label_names("Pushgateway grouping labels", &[name], None)
            .map_err(|e| bad(e.to_string()))?;
        if name == "job" || self.grouping.iter().any(|(n, _)| n == name) {
            return Err(bad("expected each grouping label once (`job` is the job name)".into()));
        }
        self.grouping.push((name.to_owned(), value.into()));
        Ok(self)
    }

    /// Time between pushes (default 15 s, at least 100 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(100));
        self
    }

    /// The group's path under the Pushgateway's URL: `/metrics/job/{job}` and then
    /// `/{name}/{value}` per grouping label.
    pub fn group_path(&self) -> String {
        let mut path = String::from("/metrics");
        push_segment(&mut path, "job", &self.job);
        for (name, value) in &self.grouping {
            push_segment(&mut path, name, value);
        }
        path
    }

    /// The group's full URL.
    fn group_uri(&self) -> Result<Uri, String> {
        let base = self.endpoint.url();
        let prefix = base.path().trim_end_matches('/');
        let mut parts = base.clone().into_parts();
        let path = format!("{prefix}{}", self.group_path());
        parts.path_and_query = Some(path.parse().map_err(|e| format!("the group path `{path}`: {e}"))?);
        Uri::from_parts(parts).map_err(|e| format!("the group URL: {e}"))
    }
}

/// Appends `/{name}/{value}`, or `/{name}@base64/{base64url(value)}` when the value is not plain
/// URL text (the Pushgateway's encoding; an empty value is `=`).
fn push_segment(path: &mut String, name: &str, value: &str) {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    path.push('/');
    path.push_str(name);
    if plain {
        path.push('/');
        path.push_str(value);
    } else {
        path.push_str("@base64/");
        if value.is_empty() {
            path.push('=');
        } else {
            base64::engine::general_purpose::URL_SAFE.encode_string(value, path);
        }
    }
}

/// Pushes `manager`'s exposition (with `global_labels`) to the group every interval until `stop`
/// turns true, then deletes the group. Runs on the exporter's runtime; the encode runs on its
/// blocking pool, never on a recording thread. A failed push is logged when the failure differs
/// from the previous one (not at every interval) and retried at the next interval: a group holds
/// one snapshot, so a missed push loses nothing the next one does not carry.
pub(crate) async fn run(
    gateway: Pushgateway,
    client: HttpClient,
    manager: MetricsManager,
    global_labels: std::sync::Arc<[(String, String)]>,
    mut stop: watch::Receiver<bool>,
) {
    let url = gateway.endpoint.display_url();
    let uri = match gateway.group_uri() {
        Ok(uri) => uri,
        Err(e) => {
            tracing::error!(url, "Pushgateway push not started: {e}");
            return;
        }
    };
    let metrics = SelfMetrics::register(&manager, &url);
    let content_type = [(CONTENT_TYPE, HeaderValue::from_static(TEXT_CONTENT_TYPE))];
    let mut last_error: Option<String> = None;
    let mut ticker = tokio::time::interval(gateway.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let body = {
            let manager = manager.clone();
            let global = std::sync::Arc::clone(&global_labels);
            tokio::task::spawn_blocking(move || {
                let mut text = String::new();
                encode_text_with(&manager, &global, &mut text);
                Bytes::from(text.into_bytes())
            })
            .await
        };
        let Ok(body) = body else { continue };
        let outcome = tokio::select! {
            outcome = client.send(Method::PUT, uri.clone(), &content_type, body) => outcome,
            _ = stop.wait_for(|s| *s) => break,
        };
        let error = match outcome {
            Outcome::Answered(status, _) if status.is_success() => None,
            Outcome::Answered(status, body) => {
                Some(format!("answered {status}: {}", String::from_utf8_lossy(&body).trim()))
            }
            Outcome::Failed(e) => Some(e),
        };
        metrics.pushed(error.is_none());
        match (&error, &last_error) {
            (Some(e), Some(last)) if e == last => {}
            (Some(e), _) => tracing::warn!(url, "Pushgateway push failed (retried every interval): {e}"),
            (None, Some(_)) => tracing::info!(url, "Pushgateway push works again"),
            (None, None) => {}
        }
        last_error = error;
    }
    let started = Instant::now();
    match client
        .send(Method::DELETE, uri, &[] as &[(HeaderName, HeaderValue)], Bytes::new())
        .await
    {
        Outcome::Answered(status, _) if status.is_success() => {
            tracing::debug!(url, "Pushgateway group deleted in {:?}", started.elapsed());
        }
        Outcome::Answered(status, body) => tracing::warn!(
            url,
            "Pushgateway group not deleted at shutdown: answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ),
        Outcome::Failed(e) => tracing::warn!(url, "Pushgateway group not deleted at shutdown: {e}"),
    }
}

/// The push's self-metrics, labelled by the endpoint's URL (without credentials).
struct SelfMetrics {
    manager: MetricsManager,
    url: String,
    last_success: Option<GaugeHandle>,
}

impl SelfMetrics {
    fn register(m: &MetricsManager, url: &str) -> Self {
        let _ = m.register_counter(
            PUSHGATEWAY_PUSHES_METRIC,
            "Pushes of the exposition to a Pushgateway group, by endpoint and result (`ok`, `error`).",
            &["url", "result"],
        );
        let _ = m.register_gauge(
            PUSHGATEWAY_LAST_SUCCESS_METRIC,
            "Unix time of the last push a Pushgateway accepted, by endpoint.",
            &["url"],
        );
        Self {
            manager: m.clone(),
            url: url.to_owned(),
            last_success: m.gauge(PUSHGATEWAY_LAST_SUCCESS_METRIC, &[url]).ok(),
        }
    }

    fn pushed(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        let _ = self
            .manager
            .increment_counter(PUSHGATEWAY_PUSHES_METRIC, 1, &[&self.url, result]);
        if ok {
            if let Some(g) = &self.last_success {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                g.set(now.as_secs_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(url: &str) -> Pushgateway {
        Pushgateway::new(PushEndpoint::new(url).unwrap(), "mmo_server").unwrap()
    }

    #[test]
    fn group_paths_follow_the_pushgateway_encoding() {
        let g = gateway("http://127.0.0.1:9091")
            .grouping_label("instance", "zone-7.eu_1")
            .unwrap()
            .grouping_label("path", "/var/tmp")
            .unwrap()
            .grouping_label("empty", "")
            .unwrap()
            .grouping_label("shard", "a b")
            .unwrap();
        assert_eq!(
            g.group_path(),
            "/metrics/job/mmo_server/instance/zone-7.eu_1/path@base64/L3Zhci90bXA=/empty@base64/=/shard@base64/YSBi"
        );
        let job = Pushgateway::new(PushEndpoint::new("http://h:1").unwrap(), "a/b").unwrap();
        assert_eq!(job.group_path(), "/metrics/job@base64/YS9i");
    }

    #[test]
    fn the_group_goes_under_the_base_path() {
        let g = gateway("https://push.example:8443/gw/")
            .grouping_label("instance", "i")
            .unwrap();
        assert_eq!(
            g.group_uri().unwrap().to_string(),
            "https://push.example:8443/gw/metrics/job/mmo_server/instance/i"
        );
    }

    #[test]
    fn bad_grouping_keys_are_refused_by_name() {
        let err = Pushgateway::new(PushEndpoint::new("http://h:1").unwrap(), "").unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        for name in ["job", "instance", "1bad"] {
            let g = gateway("http://h:1").grouping_label("instance", "x").unwrap();
            let err = g.grouping_label(name, "y").unwrap_err().to_string();
            assert!(err.contains(&format!("`{name}`")), "{name}: {err}");
        }
    }
}
