//! Routes: `GET /metrics` (the exposition in the format the `Accept` header negotiates, gzip when
//! asked), `GET /health`, the live view at `GET /`, `POST /api/v1/write` when the remote write
//! receiver is on, 404 and 405 for the rest; with a web configuration, basic auth in front of
//! them all (`/health` aside unless asked) and its extra headers on every response; with an
//! address allowlist, 403 for every other client in front of everything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::auth::{add_headers, authenticate, BasicAuth};
use super::limits::Slots;
use super::scrape::{ExpositionBody, Scraper};
use super::self_metrics::SelfMetrics;
use crate::encode::{negotiate, ExpositionFormat};
use crate::push::receive::{Receiver, Refusal};

/// The live view at `GET /`: one self-contained page that polls `/metrics` and draws charts.
const LIVE_VIEW: &str = include_str!("../assets/live.html");

/// What the `/metrics` handler needs.
pub(crate) struct App {
    pub(crate) scraper: Arc<Scraper>,
    pub(crate) slots: Arc<Slots>,
    pub(crate) metrics: Arc<SelfMetrics>,
    pub(crate) request_timeout: Duration,
    /// The formats the scraper can encode ([`super::scrape::offered`]).
    pub(crate) offered: Vec<ExpositionFormat>,
    /// The remote write receiver, when on.
    pub(crate) receiver: Option<Arc<Receiver>>,
    /// Basic auth, when the web configuration has users.
    pub(crate) auth: Option<Arc<BasicAuth>>,
    /// Headers added to every response (the web configuration's `http_server_config.headers`).
    pub(crate) headers: Arc<Vec<(axum::http::HeaderName, HeaderValue)>>,
    /// The addresses served, when limited ([`super::ExporterBuilder::add_allowed_address`]).
    pub(crate) allowed: Option<Arc<super::allow::Allowlist>>,
}

pub(crate) fn router(app: Arc<App>) -> Router {
    let mut router = Router::new();
    if app.receiver.is_some() {
        router = router.route("/api/v1/write", post(write));
    }
    let auth = app.auth.clone();
    let headers = Arc::clone(&app.headers);
    let allowed = app.allowed.clone();
    let mut router = router
        .route("/metrics", get(metrics))
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], LIVE_VIEW) }),
        )
        .route(
            "/health",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n") }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /health or / (live view)\n",
            )
        })
        .with_state(app);
    if let Some(auth) = auth {
        router = router.layer(axum::middleware::from_fn_with_state(auth, authenticate));
    }
    if let Some(allowed) = allowed {
        // Outside the auth layer: a client from elsewhere is refused before any password check.
        router = router.layer(axum::middleware::from_fn_with_state(allowed, super::allow::allow));
    }
    if !headers.is_empty() {
        // Outside the auth and allowlist layers, so that a 401 or 403 carries the headers too.
        router = router.layer(axum::middleware::map_response_with_state(headers, add_headers));
    }
    router
}

async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let Some(slot) = app.slots.try_take() else {
        app.metrics.scrape("503");
        return (StatusCode::SERVICE_UNAVAILABLE, "too many scrapes in flight\n").into_response();
    };
    let gzip = accepts_gzip(&headers);
    let format = negotiate_format(&headers, &app.offered);
    let body = tokio::time::timeout(app.request_timeout, async {
        let exposition = app.scraper.exposition(format).await?;
        if gzip {
            if let Some(z) = exposition.gzip().await {
                return Some((z, true));
            }
        }
        Some((exposition.body.clone(), false))
    })
    .await;
    if let Some(h) = &app.metrics.scrape_duration {
        h.record(started.elapsed().as_secs_f64());
    }
    match body {
        Ok(Some((data, gzipped))) => {
            app.metrics.scrape("200");
            let mut response = Response::new(Body::new(ExpositionBody::new(data, slot)));
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            h.insert(header::VARY, HeaderValue::from_static("accept, accept-encoding"));
            if gzipped {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response
        }
        Ok(None) => {
            app.metrics.scrape("500");
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response()
        }
        Err(_) => {
            app.metrics.scrape("408");
            app.metrics.timeout("request");
            (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the exposition took longer than the request timeout of {:?}\n",
                    app.request_timeout
                ),
            )
                .into_response()
        }
    }
}

/// `POST /api/v1/write`: a remote write 1.0 request (see [`crate::ReceiveConfig`]). Its body is
/// read at most [`crate::ReceiveConfig::max_body_bytes`] far, within the request timeout, and
/// decoded on the blocking pool.
async fn write(State(app): State<Arc<App>>, request: axum::extract::Request) -> Response {
    let receiver = app.receiver.as_ref().expect("routed only when the receiver is on");
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let (parts, body) = request.into_parts();
    let header = |name| parts.headers.get(name).map(|v| v.to_str().unwrap_or("(not text)"));
    if let Err(refusal) = Receiver::check_headers(header(header::CONTENT_TYPE), header(header::CONTENT_ENCODING)) {
        return refuse(receiver, refusal);
    }
    let max = receiver.config.max_body_bytes;
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = length.filter(|n| *n > max as u64) {
        return refuse(
            receiver,
            Refusal::BodyTooLarge(format!(
                "body: Content-Length {n} bytes is above the limit of {max} bytes"
            )),
        );
    }
    let work = async {
        let _reading = receiver.reading.acquire().await.ok()?;
        let read = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, max)).await;
        let bytes = match read {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Some(Err(Refusal::BodyTooLarge(format!(
                    "body: more than the limit of {max} bytes"
                ))))
            }
            // The client went away or broke the stream: nobody to answer.
            Err(_) => return None,
        };
        let decoding = Arc::clone(&receiver.decoding).acquire_owned().await.ok()?;
        let r = Arc::clone(receiver);
        tokio::task::spawn_blocking(move || {
            let _decoding = decoding;
            r.ingest(&bytes, peer).map(|_| ())
        })
        .await
        .ok()
    };
    match tokio::time::timeout(app.request_timeout, work).await {
        Ok(Some(Ok(()))) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some(Err(refusal))) => refuse(receiver, refusal),
        Ok(None) => {
            receiver.refused_other(500, "failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request could not be read or decoded\n",
            )
                .into_response()
        }
        Err(_) => {
            receiver.refused_other(503, "timeout");
            app.metrics.timeout("request");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the request was not read and stored within the request timeout of {:?}; retry later\n",
                    app.request_timeout
                ),
            )
                .into_response()
        }
    }
}

fn refuse(receiver: &Receiver, refusal: Refusal) -> Response {
    receiver.refused(&refusal);
    let code = StatusCode::from_u16(refusal.code()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut message = refusal.message().to_owned();
    message.push('\n');
    (code, message).into_response()
}

/// The format to answer in, from every `Accept` header of the request (several are one list).
fn negotiate_format(headers: &HeaderMap, offered: &[ExpositionFormat]) -> ExpositionFormat {
    let mut values = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok());
    match (values.next(), values.next()) {
        (None, _) => negotiate("", offered),
        (Some(one), None) => negotiate(one, offered),
        (Some(first), Some(second)) => {
            let mut joined = format!("{first},{second}");
            for v in values {
                joined.push(',');
                joined.push_str(v);
            }
            negotiate(&joined, offered)
        }
    }
}

/// Whether `Accept-Encoding` lists gzip with a weight above zero.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            coding.eq_ignore_ascii_case("gzip")
                && parts.all(|p| match p.trim().strip_prefix("q=") {
                    Some(q) => q.trim().parse::<f32>().is_ok_and(|q| q > 0.0),
                    None => true,
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip"));
        assert!(h("deflate, GZIP;q=0.5"));
        assert!(!h("gzip;q=0"));
        assert!(!h("br, identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn accept_headers_are_one_list() {
        let offered = [ExpositionFormat::OpenMetrics, ExpositionFormat::Text];
        let mut m = HeaderMap::new();
        assert_eq!(negotiate_format(&m, &offered), ExpositionFormat::Text);
        m.append(header::ACCEPT, HeaderValue::from_static("text/plain;q=0.5"));
        assert_eq!(negotiate_format(&m, &offered), ExpositionFormat::Text);
        m.append(header::ACCEPT, HeaderValue::from_static("image/png"));
        m.append(
            header::ACCEPT,
            HeaderValue::from_static("application/openmetrics-text;q=0.9"),
        );
        assert_eq!(negotiate_format(&m, &offered), ExpositionFormat::OpenMetrics);
    }
}
