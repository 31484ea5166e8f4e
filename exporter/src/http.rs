//! The HTTP endpoint: `GET /metrics`, `GET /health`, the live view at `GET /`, 404 and 405 for
//! the rest.
//!
//! One exporter thread runs a single-threaded tokio runtime with hyper. Encoding runs on that
//! runtime's blocking pool (at most one thread, started on demand), so a long encode of a large
//! registry never stalls `/health`, and concurrent scrapes share one encode (coalescing). Slow
//! clients are bounded by a header-read timeout and a request timeout; scrapes past the in-flight
//! limit get 503.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use mmo_metrics::{MetricKind, MetricsError, MetricsManager};
use tokio::sync::{oneshot, watch};
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;

use crate::text::{encode_text_with, TEXT_CONTENT_TYPE};

/// How long a stopping exporter waits for open connections before it drops them.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// The live view at `GET /`: one self-contained page that polls `/metrics` and draws charts.
const LIVE_VIEW: &str = include_str!("assets/live.html");

/// Self-metric: scrape durations.
pub const SCRAPE_DURATION_METRIC: &str = "mmo_metrics_scrape_duration_seconds";
/// Self-metric: scrapes answered, by status code.
pub const SCRAPES_METRIC: &str = "mmo_metrics_scrapes_total";
/// Self-metric: series by type at the last scrape.
pub const SERIES_METRIC: &str = "mmo_metrics_series";

/// Why an exporter could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExporterError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error; `io::ErrorKind::AddrInUse` when another process has the port.
        source: io::Error,
    },
    /// A global label with an invalid name.
    #[error("global label: {0}")]
    Label(#[from] MetricsError),
    /// The runtime or the thread could not be started.
    #[error("cannot start the exporter thread: {0}")]
    Io(#[from] io::Error),
}

/// Settings of an exporter; [`ExporterBuilder::serve`] starts it.
#[derive(Debug, Clone)]
pub struct ExporterBuilder {
    manager: MetricsManager,
    addr: SocketAddr,
    global_labels: Vec<(String, String)>,
    max_in_flight: usize,
    header_read_timeout: Duration,
    request_timeout: Duration,
}

impl ExporterBuilder {
    /// An exporter of `manager` on `0.0.0.0:9100` (the seed's `:9100`), 8 scrapes in flight at
    /// most, 5 s to send the request headers, 30 s per request.
    pub fn new(manager: MetricsManager) -> Self {
        Self {
            manager,
            addr: SocketAddr::from(([0, 0, 0, 0], 9100)),
            global_labels: Vec::new(),
            max_in_flight: 8,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// The address to listen on (port 0: any free port, see [`Exporter::local_addr`]).
    pub fn address(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// A label added to every sample (e.g. `service="gateway"`), unless the series has its own.
    pub fn global_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.global_labels.push((name.into(), value.into()));
        self
    }

    /// Scrapes served at once; more get 503 (default 8).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Time a client has to send its request headers (default 5 s).
    pub fn header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// Time a request may take (default 30 s); past it the answer is 408.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Binds, then serves from the exporter thread until the returned [`Exporter`] is dropped.
    pub fn serve(self) -> Result<Exporter, ExporterError> {
        let names: Vec<&str> = self.global_labels.iter().map(|(k, _)| k.as_str()).collect();
        mmo_metrics::validate_label_names("global labels", &names, None)?;
        let listener = TcpListener::bind(self.addr).map_err(|source| ExporterError::Bind {
            addr: self.addr,
            source,
        })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(1)
            .thread_name("mmo-metrics-encoder")
            .build()?;
        let state = Arc::new(Shared::new(&self));
        let app = router(state, self.request_timeout);
        let (tx, rx) = oneshot::channel::<()>();
        let header_read_timeout = self.header_read_timeout;
        let handle = runtime.handle().clone();
        let thread = std::thread::Builder::new()
            .name("mmo-metrics-exporter".into())
            .spawn(move || runtime.block_on(accept_loop(listener, addr, app, header_read_timeout, rx)))?;
        Ok(Exporter {
            addr,
            handle,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

/// A running exporter; dropping it stops the server (within about 2 s) and joins its thread.
#[derive(Debug)]
pub struct Exporter {
    addr: SocketAddr,
    handle: tokio::runtime::Handle,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// The address the server listens on (the real port when the address had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The exporter thread's tokio runtime (e.g. for `mmo_metrics::system::register_tokio_runtime`).
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Serves `manager` on `addr` with the default settings of [`ExporterBuilder`].
///
/// Binding happens before this returns, so an address in use is an error here, not in a log.
pub fn serve(manager: MetricsManager, addr: SocketAddr) -> io::Result<Exporter> {
    ExporterBuilder::new(manager)
        .address(addr)
        .serve()
        .map_err(|e| match e {
            ExporterError::Bind { source, .. } | ExporterError::Io(source) => source,
            ExporterError::Label(e) => io::Error::new(io::ErrorKind::InvalidInput, e),
        })
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    app: Router,
    header_read_timeout: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!("mmo-metrics exporter: cannot use the listener on {addr}: {e}"),
    };
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of fds and the like: say so, back off a little, go on.
                        tracing::warn!("mmo-metrics exporter on {addr}: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("mmo-metrics exporter: connection ended: {e}");
                    }
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("mmo-metrics exporter on {addr}: connections still open after {SHUTDOWN_GRACE:?}; dropped");
        }
    }
}

/// State shared by the handlers.
struct Shared {
    manager: MetricsManager,
    global_labels: Vec<(String, String)>,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    /// The encode in progress, which concurrent scrapes wait for instead of starting their own.
    pending: Mutex<Option<watch::Receiver<Option<Arc<String>>>>>,
}

impl Shared {
    fn new(b: &ExporterBuilder) -> Self {
        let m = &b.manager;
        let _ = m.register_histogram(
            SCRAPE_DURATION_METRIC,
            "Time to answer a scrape of /metrics, in seconds.",
            &[],
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ],
        );
        let _ = m.register_counter(
            SCRAPES_METRIC,
            "Scrapes of /metrics answered, by HTTP status code.",
            &["code"],
        );
        let _ = m.register_gauge(
            SERIES_METRIC,
            "Series in the registry by type, at the last scrape.",
            &["type"],
        );
        Self {
            manager: b.manager.clone(),
            global_labels: b.global_labels.clone(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: b.max_in_flight,
            pending: Mutex::new(None),
        }
    }

    fn encode(&self) -> String {
        let mut counts: std::collections::BTreeMap<MetricKind, usize> = std::collections::BTreeMap::new();
        self.manager
            .visit(|f| *counts.entry(f.kind()).or_default() += f.series_count());
        for (kind, n) in counts {
            let _ = self.manager.set_gauge(SERIES_METRIC, n as f64, &[kind.as_str()]);
        }
        let mut out = String::with_capacity(64 * 1024);
        encode_text_with(&self.manager, &self.global_labels, &mut out);
        out
    }

    /// The exposition, from a new encode or from the one already running.
    async fn scrape(self: &Arc<Self>) -> Option<Arc<String>> {
        let mut rx = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            match &*pending {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    *pending = Some(rx.clone());
                    let me = Arc::clone(self);
                    tokio::task::spawn_blocking(move || {
                        let text = Arc::new(me.encode());
                        *me.pending.lock().unwrap_or_else(PoisonError::into_inner) = None;
                        let _ = tx.send(Some(text));
                    });
                    rx
                }
            }
        };
        let text = rx.wait_for(Option::is_some).await.ok()?.clone();
        text
    }
}

fn router(state: Arc<Shared>, request_timeout: Duration) -> Router {
    Router::new()
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
        .with_state(state)
        .layer(CompressionLayer::new().gzip(true).no_br().no_deflate().no_zstd())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
}

async fn metrics(State(state): State<Arc<Shared>>) -> Response {
    let started = Instant::now();
    let m = &state.manager;
    if state.in_flight.fetch_add(1, Ordering::AcqRel) >= state.max_in_flight {
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
        let _ = m.increment_counter(SCRAPES_METRIC, 1, &["503"]);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many scrapes in flight\n").into_response();
    }
    let text = state.scrape().await;
    state.in_flight.fetch_sub(1, Ordering::AcqRel);
    let _ = m.observe_histogram(SCRAPE_DURATION_METRIC, started.elapsed().as_secs_f64(), &[]);
    match text {
        Some(text) => {
            let _ = m.increment_counter(SCRAPES_METRIC, 1, &["200"]);
            ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], String::clone(&text)).into_response()
        }
        None => {
            let _ = m.increment_counter(SCRAPES_METRIC, 1, &["500"]);
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response()
        }
    }
}
