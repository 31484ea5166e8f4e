//! The HTTP endpoint: `GET /metrics`, `GET /health`, the live view at `GET /`, 404 and 405 for
//! the rest.
//!
//! One exporter thread runs a single-threaded tokio runtime with hyper; encoding and gzip run on
//! that runtime's blocking pool (one thread, started on demand), so `/health` answers in
//! milliseconds whatever a scrape costs. Every resource a client can hold is bounded and given
//! back when the client goes away:
//!
//! | resource | bound | at the bound | self-metric |
//! |---|---|---|---|
//! | open connections | [`ExporterBuilder::max_connections`] | the oldest idle connection is closed to make room; if every one is busy the new one is closed | `mmo_metrics_http_connection_limit_total{action}` |
//! | scrapes in flight (encoding or sending) | [`ExporterBuilder::max_in_flight`] | 503 | `mmo_metrics_scrapes_total{code="503"}` |
//! | time to send request headers, and idle keep-alive time; with TLS, the handshake and the first request's headers together | [`ExporterBuilder::header_read_timeout`] | connection closed | `mmo_metrics_http_timeouts_total{timeout="header_read"}` |
//! | TLS handshakes (with a [`WebConfig`] that has a certificate) | — | a failed one closes its connection | `mmo_metrics_http_tls_handshake_errors_total{error}` |
//! | bcrypt runs for basic auth (with a [`WebConfig`] that has users) | one at a time | wait; 503 past the request timeout | — |
//! | time to answer | [`ExporterBuilder::request_timeout`] | 408 | `mmo_metrics_http_timeouts_total{timeout="request"}` |
//! | time the client may stop reading a response | [`ExporterBuilder::write_timeout`] | connection closed | `mmo_metrics_http_timeouts_total{timeout="write"}` |
//! | remote write bodies read at once (with [`ExporterBuilder::receive`]) | 4, and one decode at a time | wait; 503 past the request timeout | `mmo_metrics_receive_requests_refused_total{reason="timeout"}` |
//! | remote write body, decompressed size, series | [`ReceiveConfig`](crate::ReceiveConfig) | 413, or new series refused | `mmo_metrics_receive_requests_refused_total`, `mmo_metrics_receive_series_refused_total` |
//!
//! A scrape's in-flight slot is held by a guard that lives in its response body, so whatever
//! ends the scrape (the body sent, the client gone, a timeout) gives it back. Scrapes that arrive
//! while an encode of their format runs share it (the format is negotiated from `Accept`, see
//! [`crate::negotiate`]), and all their responses share its bytes: a client that stops reading
//! pins no copy of its own.
//!
//! With a [`WebConfig`] ([`ExporterBuilder::web_config_file`]) the endpoint serves TLS, asks for
//! client certificates, checks basic-auth credentials on every path but `/health`, and adds the
//! configured response headers; see the README's "Securing the endpoint". With
//! [`ExporterBuilder::add_allowed_address`], clients from other addresses get 403 before that.

mod allow;
mod auth;
mod limits;
mod routes;
mod scrape;
pub(crate) mod self_metrics;
mod server;
mod tls;
mod web_config;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mmo_metrics::{MetricsError, MetricsManager};
use tokio::sync::oneshot;

pub use self_metrics::{
    ACCEPT_ERRORS_METRIC, CONNECTIONS_METRIC, CONNECTION_LIMIT_METRIC, RECEIVE_BYTES_METRIC, RECEIVE_REQUESTS_METRIC,
    RECEIVE_REQUESTS_REFUSED_METRIC, RECEIVE_SAMPLES_METRIC, RECEIVE_SENDERS_METRIC, RECEIVE_SERIES_METRIC,
    RECEIVE_SERIES_REFUSED_METRIC, RECEIVE_SERIES_REMOVED_METRIC, SCRAPES_IN_FLIGHT_METRIC, SCRAPES_METRIC,
    SCRAPE_DURATION_METRIC, SERIES_METRIC, TIMEOUTS_METRIC, TLS_HANDSHAKE_ERRORS_METRIC,
};

pub use web_config::{WebConfig, WebConfigError};

use crate::encode::RESERVED_GLOBAL_LABELS;

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
    /// A global label with a name the exposition gives some samples itself.
    #[error(
        "global label `{label}` is reserved: every {owner} sample has a `{label}` label of its own; \
         expected a name other than {reserved:?}"
    )]
    ReservedLabel {
        /// The label name.
        label: String,
        /// The samples that carry it (`histogram bucket`, `summary quantile`).
        owner: &'static str,
        /// Every reserved name.
        reserved: [&'static str; 2],
    },
    /// The runtime or the thread could not be started.
    #[error("cannot start the exporter thread: {0}")]
    Io(#[from] io::Error),
    /// A remote write endpoint whose settings cannot be used (its CA file, its TLS settings).
    #[error("remote write: {0}")]
    Push(#[from] crate::PushConfigError),
    /// A web configuration file that cannot be read, parsed or used (its certificate, its key).
    #[error("{0}")]
    WebConfig(#[from] WebConfigError),
    /// An [`ExporterBuilder::add_allowed_address`] that is neither an address nor a network.
    #[error("{0}")]
    AllowedAddress(String),
}

/// Checks global label names: valid label names, no duplicates, none of
/// [`RESERVED_GLOBAL_LABELS`].
pub fn validate_global_labels<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), ExporterError> {
    let names: Vec<&str> = names.into_iter().collect();
    mmo_metrics::validate_label_names("global labels", &names, None)?;
    for label in names {
        let owner = match label {
            "le" => "histogram bucket",
            "quantile" => "summary quantile",
            _ => continue,
        };
        return Err(ExporterError::ReservedLabel {
            label: label.to_owned(),
            owner,
            reserved: RESERVED_GLOBAL_LABELS,
        });
    }
    Ok(())
}

/// Settings of an exporter; [`ExporterBuilder::serve`] starts it.
#[derive(Debug, Clone)]
pub struct ExporterBuilder {
    manager: MetricsManager,
    addr: SocketAddr,
    global_labels: Vec<(String, String)>,
    openmetrics: crate::OpenMetricsOptions,
    max_in_flight: usize,
    max_connections: usize,
    header_read_timeout: Duration,
    request_timeout: Duration,
    write_timeout: Duration,
    listen: bool,
    remote_writes: Vec<crate::RemoteWrite>,
    push_source: Option<PushSource>,
    pushgateways: Vec<crate::Pushgateway>,
    receive: Option<crate::ReceiveConfig>,
    web_config: Option<WebConfigSource>,
    health_requires_auth: bool,
    allowed: allow::Allowlist,
}

/// Where the web configuration comes from.
#[derive(Debug, Clone)]
enum WebConfigSource {
    File(std::path::PathBuf),
    Parsed(Box<WebConfig>),
}

/// Time a stopping exporter gives its Pushgateway clients to delete their groups, so that a
/// Pushgateway that does not answer cannot hold the process's shutdown.
const PUSHGATEWAY_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// Series pushed besides the manager's (the receiver's store), in a `Debug` wrapper.
#[derive(Clone)]
struct PushSource(Arc<dyn crate::push::SeriesSource>);

impl std::fmt::Debug for PushSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushSource")
    }
}

impl ExporterBuilder {
    /// An exporter of `manager` on `0.0.0.0:9100`, with 8 scrapes in flight and 256 connections
    /// at most, 5 s to send the request headers (and to keep an idle connection), 30 s to answer,
    /// 10 s for a client to accept more of a response.
    pub fn new(manager: MetricsManager) -> Self {
        Self {
            manager,
            addr: SocketAddr::from(([0, 0, 0, 0], 9100)),
            global_labels: Vec::new(),
            openmetrics: crate::OpenMetricsOptions::default(),
            max_in_flight: 8,
            max_connections: 256,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            listen: true,
            remote_writes: Vec::new(),
            push_source: None,
            pushgateways: Vec::new(),
            receive: None,
            web_config: None,
            health_requires_auth: false,
            allowed: allow::Allowlist::default(),
        }
    }

    /// Adds an address (`192.0.2.7`, `::1`) or a network (`10.0.0.0/8`, `fd00::/8`) to the
    /// addresses served, as metrics-exporter-prometheus' `add_allowed_address`: once any is added,
    /// a client from elsewhere gets 403 on every path, `/health` included, before any basic-auth
    /// check (default: every address is served). An IPv4 client of a listener on `[::]` is matched
    /// by its IPv4 address.
    ///
    /// An allowlist alone is weak access control: a browser on an allowed host can be made to
    /// send requests for another site (DNS rebinding). Basic auth and TLS
    /// ([`Self::web_config_file`]) do not depend on where a request comes from.
    ///
    /// ```
    /// # let manager = mmo_metrics::MetricsManager::new();
    /// let exporter = mmo_metrics_exporter::ExporterBuilder::new(manager)
    ///     .address("127.0.0.1:0".parse().unwrap())
    ///     .add_allowed_address("10.0.0.0/8")?
    ///     .add_allowed_address("127.0.0.1")?
    ///     .serve()?;
    /// # drop(exporter);
    /// # Ok::<(), mmo_metrics_exporter::ExporterError>(())
    /// ```
    pub fn add_allowed_address(mut self, address: impl AsRef<str>) -> Result<Self, ExporterError> {
        self.allowed
            .add(address.as_ref())
            .map_err(ExporterError::AllowedAddress)?;
        Ok(self)
    }

    /// Serves TLS, asks for client certificates, and checks basic-auth credentials as the
    /// [web configuration file](WebConfig) at `path` says (the `--web.config.file` of
    /// Prometheus' exporters). [`Self::serve`] reads it and fails with
    /// [`ExporterError::WebConfig`] when it cannot be used; the certificate, key and client CA
    /// files are read again when they change.
    pub fn web_config_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.web_config = Some(WebConfigSource::File(path.into()));
        self
    }

    /// [`Self::web_config_file`] with a configuration already read.
    pub fn web_config(mut self, config: WebConfig) -> Self {
        self.web_config = Some(WebConfigSource::Parsed(Box::new(config)));
        self
    }

    /// Whether `/health` needs basic-auth credentials too, when the web configuration has users
    /// (default off: liveness probes carry none).
    pub fn health_requires_auth(mut self, on: bool) -> Self {
        self.health_requires_auth = on;
        self
    }

    /// Listens on no port: the exporter only pushes ([`Self::remote_write`]). For a game server
    /// that pushes to the host's collection service, which has the port. [`Exporter::local_addr`]
    /// is then `0.0.0.0:0`.
    pub fn without_listener(mut self) -> Self {
        self.listen = false;
        self
    }

    /// Pushes the registry (with the global labels) to a Prometheus remote write 1.0 receiver
    /// from the exporter thread, as [`RemoteWrite`](crate::RemoteWrite) describes. Call it once
    /// per receiver.
    pub fn remote_write(mut self, remote_write: crate::RemoteWrite) -> Self {
        self.remote_writes.push(remote_write);
        self
    }

    /// Series every remote write pushes besides the manager's (the remote-write receiver's
    /// store).
    fn push_series_source(mut self, source: Arc<dyn crate::push::SeriesSource>) -> Self {
        self.push_source = Some(PushSource(source));
        self
    }

    /// Pushes the manager's text exposition (with the global labels) to a Pushgateway group
    /// every interval, from the exporter thread, and deletes the group when the exporter stops
    /// (repeatable: one group per call). See [`Pushgateway`](crate::Pushgateway).
    pub fn pushgateway(mut self, gateway: crate::Pushgateway) -> Self {
        self.pushgateways.push(gateway);
        self
    }

    /// Accepts Prometheus remote write 1.0 at `POST /api/v1/write`, exposes the latest point of
    /// every series received on `/metrics` after the manager's own families, and forwards them
    /// with every [`Self::remote_write`] push (off by default). [`ReceiveConfig`](crate::ReceiveConfig)
    /// has the bounds, what a sender is, and how received series are exposed; received series
    /// whose names the manager's families take are refused (`reason="conflict"`).
    pub fn receive(mut self, config: crate::ReceiveConfig) -> Self {
        self.receive = Some(config);
        self
    }

    /// The address to listen on (port 0: any free port, see [`Exporter::local_addr`]).
    pub fn address(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// A label added to every sample (e.g. `service="gateway"`), unless the series has its own.
    /// `le` and `quantile` are refused by [`ExporterBuilder::serve`] (see
    /// [`RESERVED_GLOBAL_LABELS`]).
    pub fn global_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.global_labels.push((name.into(), value.into()));
        self
    }

    /// Whether OpenMetrics scrapes get a `_created` sample after each counter, histogram and
    /// summary series (default off; see [`OpenMetricsOptions::created`](crate::OpenMetricsOptions)
    /// for why). The protobuf format always carries creation times.
    pub fn openmetrics_created(mut self, on: bool) -> Self {
        self.openmetrics.created = on;
        self
    }

    /// Scrapes served at once, from the request until the last byte of the body is handed to the
    /// connection; more get 503 (default 8, at least 1).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Connections open at once (default 256, at least 1). At the limit a new connection closes
    /// the oldest one that is serving no request; when every one is busy the new one is closed.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Time a client has to send its request headers, counted from the connection's start or
    /// the end of its previous response, so it also closes idle keep-alive connections
    /// (default 5 s).
    pub fn header_read_timeout(mut self, d: Duration) -> Self {
        self.header_read_timeout = d;
        self
    }

    /// Time a scrape may take until its response starts (default 30 s); past it the answer is 408.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Time a client may go without accepting any byte of a response before the connection is
    /// cut (default 10 s). A slow reader that keeps reading is not cut.
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.write_timeout = d;
        self
    }

    /// Binds (unless [`Self::without_listener`]), then serves and pushes from the exporter
    /// thread until the returned [`Exporter`] is dropped.
    pub fn serve(mut self) -> Result<Exporter, ExporterError> {
        validate_global_labels(self.global_labels.iter().map(|(k, _)| k.as_str()))?;
        let web_config = match self.web_config.take() {
            Some(WebConfigSource::File(path)) => Some(WebConfig::from_file(path)?),
            Some(WebConfigSource::Parsed(config)) => Some(*config),
            None => None,
        };
        let tls = match web_config.as_ref().and_then(|c| c.tls.clone().map(|t| (c, t))) {
            Some((config, settings)) => Some(Arc::new(
                tls::Tls::new(settings, config.file().to_owned()).map_err(|e| config.error(e))?,
            )),
            None => None,
        };
        let auth = web_config.as_ref().filter(|c| c.basic_auth()).map(|c| {
            Arc::new(auth::BasicAuth::new(
                c.users.clone(),
                self.health_requires_auth,
                self.request_timeout,
            ))
        });
        let headers = Arc::new(web_config.map(|c| c.headers).unwrap_or_default());
        // Registered before the receiver, which refuses received series named like the manager's
        // families from its first request on: these are among them.
        let metrics = Arc::new(self_metrics::SelfMetrics::register(&self.manager));
        let receiver = self
            .receive
            .take()
            .map(|config| Arc::new(crate::push::receive::Receiver::new(&self.manager, config)));
        if let Some(r) = &receiver {
            let store: Arc<dyn crate::push::SeriesSource> = Arc::clone(r.store()) as _;
            self = self.push_series_source(store);
        }
        let pushgateways = std::mem::take(&mut self.pushgateways)
            .into_iter()
            .map(|g| Ok((crate::push::client::HttpClient::new(g.endpoint.clone())?, g)))
            .collect::<Result<Vec<_>, crate::PushConfigError>>()?;
        let listener = if self.listen {
            let listener = TcpListener::bind(self.addr).map_err(|source| ExporterError::Bind {
                addr: self.addr,
                source,
            })?;
            listener.set_nonblocking(true)?;
            Some(listener)
        } else {
            None
        };
        let addr = match &listener {
            Some(l) => l.local_addr()?,
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let global_labels = Arc::new(self.global_labels);
        let pushers = self
            .remote_writes
            .into_iter()
            .map(|rw| {
                crate::push::remote_write::Pusher::new(
                    rw,
                    self.manager.clone(),
                    Arc::clone(&global_labels),
                    self.push_source.as_ref().map(|s| Arc::clone(&s.0)),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // Encodes and gzip; with the receiver, one more thread for its decodes (one at a
            // time), so a large remote write request never holds up a scrape's encode.
            // With basic auth, one more for bcrypt runs (one at a time), so wrong passwords never
            // hold up an encode.
            .max_blocking_threads(1 + usize::from(receiver.is_some()) + usize::from(auth.is_some()))
            .thread_name("mmo-metrics-encoder")
            .build()?;
        if let Some(r) = &receiver {
            runtime.spawn(crate::push::receive::expiry_loop(Arc::clone(r)));
        }
        let app = routes::router(Arc::new(routes::App {
            scraper: Arc::new(scrape::Scraper::new(
                self.manager.clone(),
                global_labels.to_vec(),
                self.openmetrics,
                receiver.clone(),
            )),
            slots: limits::Slots::new(self.max_in_flight, metrics.in_flight.clone()),
            metrics: Arc::clone(&metrics),
            request_timeout: self.request_timeout,
            offered: scrape::offered(),
            receiver,
            auth,
            headers,
            allowed: (!self.allowed.is_empty()).then(|| Arc::new(std::mem::take(&mut self.allowed))),
        }));
        let conns = limits::Connections::new(self.max_connections, Arc::clone(&metrics), addr);
        let conn_limits = server::ConnLimits {
            header_read: self.header_read_timeout,
            write: self.write_timeout,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let handle = runtime.handle().clone();
        let manager = self.manager.clone();
        let gateway_labels: Arc<[(String, String)]> = global_labels.as_slice().into();
        let thread = std::thread::Builder::new()
            .name("mmo-metrics-exporter".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // The stop reaches the server and the pushers at once; the thread ends when
                    // the server has drained and every pusher has sent its last push.
                    let (stop_pushers, stopped) = tokio::sync::watch::channel(false);
                    let pushing: Vec<_> = pushers
                        .into_iter()
                        .map(|p| tokio::spawn(p.run(stopped.clone())))
                        .collect();
                    let gateways: Vec<_> = pushgateways
                        .into_iter()
                        .map(|(client, gateway)| {
                            tokio::spawn(crate::push::pushgateway::run(
                                gateway,
                                client,
                                manager.clone(),
                                Arc::clone(&gateway_labels),
                                stopped.clone(),
                            ))
                        })
                        .collect();
                    let (stop_server, server_stopped) = oneshot::channel::<()>();
                    let relay = async move {
                        let _ = rx.await;
                        let _ = stop_pushers.send(true);
                        let _ = stop_server.send(());
                    };
                    let serve = async move {
                        if let Some(listener) = listener {
                            server::accept_loop(listener, addr, app, conn_limits, conns, metrics, tls, server_stopped)
                                .await;
                        }
                    };
                    tokio::join!(relay, serve);
                    for p in pushing {
                        let _ = p.await;
                    }
                    let deleting = async {
                        for g in gateways {
                            let _ = g.await;
                        }
                    };
                    if tokio::time::timeout(PUSHGATEWAY_SHUTDOWN_DEADLINE, deleting).await.is_err() {
                        tracing::warn!(
                            "Pushgateway groups not deleted within {PUSHGATEWAY_SHUTDOWN_DEADLINE:?} of the stop; left as they are"
                        );
                    }
                });
            })?;
        Ok(Exporter {
            addr,
            handle,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

/// A running exporter; dropping it stops the server (within about 2 s) and the remote writes
/// (after their last push and stale markers, within their shutdown timeout), and joins its
/// thread.
#[derive(Debug)]
pub struct Exporter {
    addr: SocketAddr,
    handle: tokio::runtime::Handle,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// The address the server listens on (the real port when the address had port 0);
    /// `0.0.0.0:0` for an exporter built [without a listener](ExporterBuilder::without_listener).
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
            e => io::Error::new(io::ErrorKind::InvalidInput, e),
        })
}
