//! The remote write sender: one tokio task per endpoint on the exporter's runtime, which every
//! interval encodes a snapshot of the registry on the runtime's blocking pool and sends it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::Method;
use mmo_metrics::{CounterHandle, GaugeHandle, HistogramHandle, MetricsManager};
use tokio::sync::watch;
use tokio::time::Instant;

use super::encode::{Encoder, Snapshot};
use crate::push::client::{HttpClient, Outcome, PushEndpoint};
use crate::push::SeriesSource;

/// Self-metric: samples of remote write pushes by endpoint and result: `sent` (the receiver
/// accepted them), `failed` (refused with a 4xx other than 429: not retried), `dropped` (not
/// delivered: retries ran out, or a newer snapshot or the shutdown deadline came first).
pub const REMOTE_WRITE_SAMPLES_METRIC: &str = "mmo_metrics_remote_write_samples_total";
/// Self-metric: remote write requests by endpoint and answer (`code`: the HTTP status, or
/// `error` when no answer came: connection refused, TLS, timeout).
pub const REMOTE_WRITE_REQUESTS_METRIC: &str = "mmo_metrics_remote_write_requests_total";
/// Self-metric: remote write requests sent again after a 5xx, a 429 or no answer.
pub const REMOTE_WRITE_RETRIES_METRIC: &str = "mmo_metrics_remote_write_retries_total";
/// Self-metric: compressed bytes of the remote write requests the receiver accepted.
pub const REMOTE_WRITE_BYTES_METRIC: &str = "mmo_metrics_remote_write_bytes_total";
/// Self-metric: time of one push, from the start of its encode until its last request is
/// settled, in seconds.
pub const REMOTE_WRITE_DURATION_METRIC: &str = "mmo_metrics_remote_write_push_duration_seconds";
/// Self-metric: when a push was last delivered in full, seconds since the Unix epoch.
pub const REMOTE_WRITE_LAST_SUCCESS_METRIC: &str = "mmo_metrics_remote_write_last_success_timestamp_seconds";
/// Self-metric: samples of the snapshot being sent that are not settled yet (0 between pushes).
/// At most one snapshot is held per endpoint, so this never exceeds one push's samples.
pub const REMOTE_WRITE_PENDING_METRIC: &str = "mmo_metrics_remote_write_pending_samples";

/// Prometheus remote write 1.0 to one receiver: what an exporter pushes, how often, and how it
/// retries. Add it with [`ExporterBuilder::remote_write`](crate::ExporterBuilder::remote_write)
/// (once per receiver).
///
/// Every [`interval`](Self::interval) the exporter thread takes a snapshot of the registry (its
/// encode runs on the exporter runtime's blocking thread, never on a recording thread) and
/// sends it as protobuf `WriteRequest`s of at most
/// [`max_samples_per_request`](Self::max_samples_per_request) samples, compressed with snappy's
/// block format, with the headers of the remote write 1.0 spec (`Content-Encoding: snappy`,
/// `Content-Type: application/x-protobuf`, `X-Prometheus-Remote-Write-Version: 0.1.0`,
/// `User-Agent: mmo-metrics/<version>`). Series are those of the text exposition (labels sorted
/// by name, global labels added as there, every sample of a push at the time of its snapshot);
/// native histograms go as remote-write histograms, which need a receiver that takes them
/// (Prometheus with `--enable-feature=native-histograms`).
///
/// **Failures.** A request answered 5xx or 429, or not answered (connection refused, TLS, the
/// endpoint's [timeout](PushEndpoint::timeout)), is sent again after a capped exponential
/// backoff with jitter (from [`min_backoff`](Self::min_backoff), doubling, at most
/// [`max_backoff`](Self::max_backoff)), up to [`max_retries`](Self::max_retries) times and
/// never past the time the next push is due. Any other 4xx is not retried: its samples are
/// counted `failed` and the status is logged once per endpoint. Retry-After headers are not read.
///
/// **Memory while a receiver is down.** Snapshots are never queued: each endpoint holds at most
/// the one being sent, and a push that could not be delivered is dropped when the next one is
/// due (its samples counted `dropped`). Counters, histograms and summaries are cumulative, so the
/// next delivered push carries every total: nothing is lost but the resolution of the gap.
///
/// **Stale markers.** A series sent in the last delivered push and gone since (removed, expired by
/// the engine's idle expiry) gets one sample with Prometheus' stale NaN, so queries stop showing
/// it at once instead of after the 5-minute lookback. When the exporter stops
/// ([`Exporter::stop`](crate::Exporter::stop) or drop), it pushes the current values once more,
/// then a stale marker for every series, all within [`shutdown_timeout`](Self::shutdown_timeout)
/// so that a dead receiver cannot hold the shutdown.
///
/// Self-metrics, labelled `url` (the endpoint's URL without credentials or query):
/// [`REMOTE_WRITE_SAMPLES_METRIC`] (`result`), [`REMOTE_WRITE_REQUESTS_METRIC`] (`code`),
/// [`REMOTE_WRITE_RETRIES_METRIC`], [`REMOTE_WRITE_BYTES_METRIC`],
/// [`REMOTE_WRITE_DURATION_METRIC`], [`REMOTE_WRITE_LAST_SUCCESS_METRIC`],
/// [`REMOTE_WRITE_PENDING_METRIC`].
///
/// ```no_run
/// use std::time::Duration;
/// use mmo_metrics::MetricsManager;
/// use mmo_metrics_exporter::{ExporterBuilder, PushEndpoint, RemoteWrite};
///
/// let manager = MetricsManager::new();
/// // A game server pushing to the host's collection service, listening on no port itself.
/// let exporter = ExporterBuilder::new(manager.clone())
///     .without_listener()
///     .remote_write(RemoteWrite::new(PushEndpoint::new("http://127.0.0.1:9100/api/v1/write")?))
///     .serve()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RemoteWrite {
    pub(crate) endpoint: PushEndpoint,
    interval: Duration,
    max_samples_per_request: usize,
    max_retries: u32,
    min_backoff: Duration,
    max_backoff: Duration,
    shutdown_timeout: Duration,
    external_labels: Vec<(String, String)>,
}

impl RemoteWrite {
    /// Pushes to `endpoint` every 15 s (Prometheus' default scrape interval), in requests of at
    /// most 2,000 samples (Prometheus' `max_samples_per_send`), retrying up to 10 times with a
    /// backoff from 30 ms to 5 s (Prometheus' `min_backoff` and `max_backoff`), and taking at
    /// most 5 s for the last push and stale markers at shutdown.
    pub fn new(endpoint: PushEndpoint) -> Self {
        Self {
            endpoint,
            interval: Duration::from_secs(15),
            max_samples_per_request: 2_000,
            max_retries: 10,
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            external_labels: Vec::new(),
        }
    }

    /// A label added to every series this endpoint gets, unless the series has it already (its
    /// own label or an exporter-wide [global label](crate::ExporterBuilder::global_label)), as
    /// Prometheus' `external_labels` are. A process pushing to the host's collection service
    /// names itself this way: `job` and `instance` are what the service tells senders apart by,
    /// and two processes pushing the same series without them would overwrite each other's.
    /// `le`, `quantile` and invalid names are refused by [`ExporterBuilder::serve`](crate::ExporterBuilder::serve).
    pub fn external_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.external_labels.push((name.into(), value.into()));
        self
    }

    /// Time between pushes (default 15 s, at least 1 ms). The first push is one interval after
    /// the exporter starts; a push that takes longer than the interval is followed by the next
    /// one at once.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Most samples (float samples and native histograms, stale markers included) in one request
    /// (default 2,000, at least 1).
    pub fn max_samples_per_request(mut self, n: usize) -> Self {
        self.max_samples_per_request = n.max(1);
        self
    }

    /// Most times one request is sent again after a 5xx, a 429 or no answer (default 10).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Wait before the first retry (default 30 ms); each further retry waits twice as long, up
    /// to [`Self::max_backoff`], less a random part of up to half of it (jitter).
    pub fn min_backoff(mut self, d: Duration) -> Self {
        self.min_backoff = d;
        self
    }

    /// Longest wait between retries (default 5 s).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Time the last push and the stale markers may take when the exporter stops (default 5 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }
}

/// The self-metric handles of one endpoint.
struct Metrics {
    manager: MetricsManager,
    url: String,
    sent: Option<CounterHandle>,
    failed: Option<CounterHandle>,
    dropped: Option<CounterHandle>,
    retries: Option<CounterHandle>,
    bytes: Option<CounterHandle>,
    duration: Option<HistogramHandle>,
    last_success: Option<GaugeHandle>,
    pending: Option<GaugeHandle>,
}

fn add(c: &Option<CounterHandle>, n: usize) {
    if let Some(c) = c {
        c.increment(n as u64);
    }
}

impl Metrics {
    fn register(m: &MetricsManager, url: &str) -> Self {
        let _ = m.register_counter(
            REMOTE_WRITE_SAMPLES_METRIC,
            "Samples of remote write pushes: `sent` (accepted), `failed` (refused with a 4xx other than 429, not \
             retried), `dropped` (not delivered before retries ran out or a newer snapshot was due).",
            &["url", "result"],
        );
        let _ = m.register_counter(
            REMOTE_WRITE_REQUESTS_METRIC,
            "Remote write requests by HTTP status of the answer (`error`: no answer).",
            &["url", "code"],
        );
        let _ = m.register_counter(
            REMOTE_WRITE_RETRIES_METRIC,
            "Remote write requests sent again after a 5xx, a 429 or no answer.",
            &["url"],
        );
        let _ = m.register_counter(
            REMOTE_WRITE_BYTES_METRIC,
            "Compressed bytes of the remote write requests the receiver accepted.",
            &["url"],
        );
        let _ = m.register_histogram(
            REMOTE_WRITE_DURATION_METRIC,
            "Time of one remote write push, from its snapshot until its last request is settled, in seconds.",
            &["url"],
            &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
        );
        let _ = m.register_gauge(
            REMOTE_WRITE_LAST_SUCCESS_METRIC,
            "When a remote write push was last delivered in full, in seconds since the Unix epoch.",
            &["url"],
        );
        let _ = m.register_gauge(
            REMOTE_WRITE_PENDING_METRIC,
            "Samples of the remote write snapshot being sent that are not settled yet (at most one snapshot).",
            &["url"],
        );
        Self {
            manager: m.clone(),
            url: url.to_owned(),
            sent: m.counter(REMOTE_WRITE_SAMPLES_METRIC, &[url, "sent"]).ok(),
            failed: m.counter(REMOTE_WRITE_SAMPLES_METRIC, &[url, "failed"]).ok(),
            dropped: m.counter(REMOTE_WRITE_SAMPLES_METRIC, &[url, "dropped"]).ok(),
            retries: m.counter(REMOTE_WRITE_RETRIES_METRIC, &[url]).ok(),
            bytes: m.counter(REMOTE_WRITE_BYTES_METRIC, &[url]).ok(),
            duration: m.histogram(REMOTE_WRITE_DURATION_METRIC, &[url]).ok(),
            last_success: m.gauge(REMOTE_WRITE_LAST_SUCCESS_METRIC, &[url]).ok(),
            pending: m.gauge(REMOTE_WRITE_PENDING_METRIC, &[url]).ok(),
        }
    }

    fn request(&self, code: &str) {
        let _ = self
            .manager
            .increment_counter(REMOTE_WRITE_REQUESTS_METRIC, 1, &[&self.url, code]);
    }

    fn pending(&self, n: usize) {
        if let Some(g) = &self.pending {
            g.set(n as f64);
        }
    }
}

/// What sending one request came to.
enum Sent {
    /// 2xx.
    Delivered,
    /// A 4xx other than 429: the receiver will not take it.
    Refused,
    /// Retries ran out, or the deadline came.
    GaveUp,
}

/// What the exporter needs to run the pushes of one endpoint.
pub(crate) struct Pusher {
    config: RemoteWrite,
    client: HttpClient,
    manager: MetricsManager,
    global_labels: Arc<Vec<(String, String)>>,
    source: Option<Arc<dyn SeriesSource>>,
    metrics: Metrics,
    /// Statuses already logged (each is logged once).
    logged: HashSet<u16>,
    /// Whether the last request went unanswered (a network error is logged once per outage).
    failing: bool,
    jitter: u64,
}

/// The headers of every remote write 1.0 request, beside `User-Agent` (set by the client).
fn headers() -> [(HeaderName, HeaderValue); 3] {
    [
        (CONTENT_ENCODING, HeaderValue::from_static("snappy")),
        (CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf")),
        (
            HeaderName::from_static("x-prometheus-remote-write-version"),
            HeaderValue::from_static("0.1.0"),
        ),
    ]
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Pusher {
    /// Reads the endpoint's CA file now, so a bad one is an error when the exporter starts.
    pub(crate) fn new(
        config: RemoteWrite,
        manager: MetricsManager,
        global_labels: Arc<Vec<(String, String)>>,
        source: Option<Arc<dyn SeriesSource>>,
    ) -> Result<Self, crate::PushConfigError> {
        let client = HttpClient::new(config.endpoint.clone())?;
        let global_labels = if config.external_labels.is_empty() {
            global_labels
        } else {
            crate::validate_global_labels(config.external_labels.iter().map(|(n, _)| n.as_str())).map_err(|e| {
                crate::PushConfigError::ExternalLabel {
                    url: config.endpoint.display_url(),
                    problem: e.to_string(),
                }
            })?;
            let mut all = global_labels.as_ref().clone();
            for (name, value) in &config.external_labels {
                if !all.iter().any(|(n, _)| n == name) {
                    all.push((name.clone(), value.clone()));
                }
            }
            Arc::new(all)
        };
        let url = config.endpoint.display_url();
        let metrics = Metrics::register(&manager, &url);
        let jitter = now_ms() as u64 ^ (url.len() as u64).rotate_left(17) | 1;
        Ok(Self {
            config,
            client,
            manager,
            global_labels,
            source,
            metrics,
            logged: HashSet::new(),
            failing: false,
            jitter,
        })
    }

    /// Pushes every interval until `stop` turns true, then pushes once more and sends stale
    /// markers for every series, within the shutdown timeout.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut encoder = Some(Box::new(Encoder::new(self.config.max_samples_per_request)));
        let mut next = Instant::now() + self.config.interval;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let started = Instant::now();
            next = started + self.config.interval;
            tokio::select! {
                done = self.push(&mut encoder, next) => if !done { break },
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        self.metrics.pending(0);
        let deadline = Instant::now() + self.config.shutdown_timeout;
        let finish = async {
            // A push cancelled by the stop left no encoder: start afresh (no stale markers then
            // for series gone before the stop, only for the current ones).
            let mut encoder =
                Some(encoder.unwrap_or_else(|| Box::new(Encoder::new(self.config.max_samples_per_request))));
            self.push(&mut encoder, deadline).await;
            if let Some(mut enc) = encoder {
                // The markers come after the last values (a receiver drops samples that are
                // not newer than the last it has).
                let ts = now_ms().max(enc.last_timestamp_ms + 1);
                let snapshot = enc.all_stale(ts);
                self.send_snapshot(&snapshot, deadline).await;
            }
        };
        if tokio::time::timeout_at(deadline, finish).await.is_err() {
            tracing::warn!(
                "remote write to {}: the last push and stale markers did not finish within {:?}",
                self.metrics.url,
                self.config.shutdown_timeout
            );
        }
        self.metrics.pending(0);
    }

    /// Encodes a snapshot on the blocking pool and sends it, retrying until `deadline`; records
    /// what was delivered. `false` when the encode could not run (the runtime is shutting down).
    async fn push(&mut self, encoder: &mut Option<Box<Encoder>>, deadline: Instant) -> bool {
        let Some(mut enc) = encoder.take() else { return false };
        let started = Instant::now();
        let manager = self.manager.clone();
        let global = Arc::clone(&self.global_labels);
        let source = self.source.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            let snapshot = enc.encode(&manager, &global, source.as_deref(), now_ms());
            (enc, snapshot)
        })
        .await;
        let Ok((mut enc, snapshot)) = encoded else { return false };
        let delivered = self.send_snapshot(&snapshot, deadline).await;
        if delivered {
            enc.delivered();
            if let Some(g) = &self.metrics.last_success {
                g.set(now_ms() as f64 / 1e3);
            }
        }
        *encoder = Some(enc);
        if let Some(h) = &self.metrics.duration {
            h.record(started.elapsed().as_secs_f64());
        }
        true
    }

    /// Sends every request of `snapshot` in order; `true` when each was delivered or refused (the
    /// receiver has settled every sample), `false` when one was given up, and with it the rest.
    async fn send_snapshot(&mut self, snapshot: &Snapshot, deadline: Instant) -> bool {
        let mut pending = snapshot.samples;
        self.metrics.pending(pending);
        for (i, request) in snapshot.requests.iter().enumerate() {
            match self.send(request, deadline).await {
                Sent::Delivered => {
                    add(&self.metrics.sent, request.samples);
                    add(&self.metrics.bytes, request.body.len());
                }
                Sent::Refused => add(&self.metrics.failed, request.samples),
                Sent::GaveUp => {
                    let rest: usize = snapshot.requests[i..].iter().map(|r| r.samples).sum();
                    add(&self.metrics.dropped, rest);
                    self.metrics.pending(0);
                    return false;
                }
            }
            pending -= request.samples;
            self.metrics.pending(pending);
        }
        true
    }

    /// Sends one request, retrying 5xx, 429 and unanswered ones with backoff.
    async fn send(&mut self, request: &super::encode::Request, deadline: Instant) -> Sent {
        let headers = headers();
        let mut attempt = 0u32;
        loop {
            let outcome = self
                .client
                .send(
                    Method::POST,
                    self.client.endpoint().url.clone(),
                    &headers,
                    request.body.clone(),
                )
                .await;
            let retry = match outcome {
                Outcome::Answered(status, body) => {
                    self.metrics.request(status.as_str());
                    if status.is_success() {
                        if self.failing {
                            tracing::info!("remote write to {}: delivered again", self.metrics.url);
                            self.failing = false;
                        }
                        return Sent::Delivered;
                    }
                    if self.logged.insert(status.as_u16()) {
                        tracing::warn!(
                            "remote write to {}: answered {status}{}: {} (logged once per status)",
                            self.metrics.url,
                            if status.is_client_error() && status.as_u16() != 429 {
                                ", not retried"
                            } else {
                                ", retried"
                            },
                            String::from_utf8_lossy(&body).trim()
                        );
                    }
                    status.is_server_error() || status.as_u16() == 429
                }
                Outcome::Failed(problem) => {
                    self.metrics.request("error");
                    if !self.failing {
                        tracing::warn!(
                            "remote write to {}: no answer: {problem} (retried; logged once until a push is delivered)",
                            self.metrics.url
                        );
                        self.failing = true;
                    }
                    true
                }
            };
            if !retry {
                return Sent::Refused;
            }
            if attempt >= self.config.max_retries {
                return Sent::GaveUp;
            }
            let wait = self.backoff(attempt);
            if Instant::now() + wait >= deadline {
                return Sent::GaveUp;
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
            add(&self.metrics.retries, 1);
        }
    }

    /// The wait before retry `attempt + 1`: `min_backoff · 2^attempt`, at most `max_backoff`,
    /// less up to half of it at random.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let full = self
            .config
            .min_backoff
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.config.max_backoff);
        // xorshift64: jitter needs no more than this.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let fraction = (self.jitter >> 11) as f64 / (1u64 << 53) as f64;
        full.mul_f64(1.0 - fraction / 2.0)
    }
}
