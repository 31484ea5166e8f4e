//! The exporter's own metrics, registered in the manager it serves.

use mmo_metrics::{CounterHandle, GaugeHandle, HistogramHandle, MetricsManager};

/// Self-metric: scrape durations.
pub const SCRAPE_DURATION_METRIC: &str = "mmo_metrics_scrape_duration_seconds";
/// Self-metric: scrapes answered, by status code.
pub const SCRAPES_METRIC: &str = "mmo_metrics_scrapes_total";
/// Self-metric: series by type at the last scrape.
pub const SERIES_METRIC: &str = "mmo_metrics_series";
/// Self-metric: scrapes in flight (encoding, waiting for an encode, or sending their body).
pub const SCRAPES_IN_FLIGHT_METRIC: &str = "mmo_metrics_scrapes_in_flight";
/// Self-metric: open HTTP connections.
pub const CONNECTIONS_METRIC: &str = "mmo_metrics_http_connections";
/// Self-metric: connections that arrived at the connection limit, by what happened
/// (`evicted`: an idle connection was closed to make room; `refused`: the new one was closed).
pub const CONNECTION_LIMIT_METRIC: &str = "mmo_metrics_http_connection_limit_total";
/// Self-metric: connections cut by a timeout, by timeout (`header_read`, `write`) and requests
/// answered 408 (`request`).
pub const TIMEOUTS_METRIC: &str = "mmo_metrics_http_timeouts_total";
/// Self-metric: failed `accept` calls (out of file descriptors and the like).
pub const ACCEPT_ERRORS_METRIC: &str = "mmo_metrics_http_accept_errors_total";
/// Self-metric: TLS handshakes that failed, by error: `not_tls` (the first bytes were not a TLS
/// record, such as plain HTTP on the TLS port), `client_certificate` (none given where one is
/// required, or one that does not verify), `peer_alert` (the client gave up, typically on our
/// certificate), `incompatible` (no common version, cipher suite or group), `closed` (the
/// connection ended mid-handshake), `other`. A handshake cut by the header-read timeout counts in
/// [`TIMEOUTS_METRIC`] instead.
pub const TLS_HANDSHAKE_ERRORS_METRIC: &str = "mmo_metrics_http_tls_handshake_errors_total";

/// Handles to the exporter's self-metrics. A handle is `None` when the name is already taken in
/// the manager by a metric of another definition; that metric is then left alone.
pub(crate) struct SelfMetrics {
    pub(crate) manager: MetricsManager,
    pub(crate) scrape_duration: Option<HistogramHandle>,
    pub(crate) in_flight: Gauge,
    pub(crate) connections: Gauge,
    accept_errors: Option<CounterHandle>,
}

/// A gauge handle that may be missing (see [`SelfMetrics`]).
#[derive(Clone)]
pub(crate) struct Gauge(Option<GaugeHandle>);

impl Gauge {
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        Self(None)
    }

    pub(crate) fn set(&self, v: f64) {
        if let Some(g) = &self.0 {
            g.set(v);
        }
    }
}

impl SelfMetrics {
    pub(crate) fn register(m: &MetricsManager) -> Self {
        let _ = m.register_histogram(
            SCRAPE_DURATION_METRIC,
            "Time to answer a scrape of /metrics (until the response starts), in seconds.",
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
        let _ = m.register_gauge(
            SCRAPES_IN_FLIGHT_METRIC,
            "Scrapes of /metrics in flight: encoding, waiting for an encode, or sending their body.",
            &[],
        );
        let _ = m.register_gauge(CONNECTIONS_METRIC, "Open HTTP connections of the exporter.", &[]);
        let _ = m.register_counter(
            CONNECTION_LIMIT_METRIC,
            "Connections that arrived at the connection limit: `evicted` closed an idle connection to make room, \
             `refused` was closed because every connection was busy.",
            &["action"],
        );
        let _ = m.register_counter(
            TIMEOUTS_METRIC,
            "Connections cut by a timeout (`header_read`, `write`) and requests answered 408 (`request`).",
            &["timeout"],
        );
        let _ = m.register_counter(
            ACCEPT_ERRORS_METRIC,
            "Failed accept calls of the exporter's listener (out of file descriptors and the like).",
            &[],
        );
        let _ = m.register_counter(
            TLS_HANDSHAKE_ERRORS_METRIC,
            "TLS handshakes that failed, by error: not_tls, client_certificate, peer_alert, incompatible, \
             closed, other.",
            &["error"],
        );
        Self {
            manager: m.clone(),
            scrape_duration: m.histogram(SCRAPE_DURATION_METRIC, &[]).ok(),
            in_flight: Gauge(m.gauge(SCRAPES_IN_FLIGHT_METRIC, &[]).ok()),
            connections: Gauge(m.gauge(CONNECTIONS_METRIC, &[]).ok()),
            accept_errors: m.counter(ACCEPT_ERRORS_METRIC, &[]).ok(),
        }
    }

    pub(crate) fn scrape(&self, code: &str) {
        let _ = self.manager.increment_counter(SCRAPES_METRIC, 1, &[code]);
    }

    pub(crate) fn connection_limit(&self, action: &str) {
        let _ = self.manager.increment_counter(CONNECTION_LIMIT_METRIC, 1, &[action]);
    }

    pub(crate) fn timeout(&self, which: &str) {
        let _ = self.manager.increment_counter(TIMEOUTS_METRIC, 1, &[which]);
    }

    pub(crate) fn tls_handshake_error(&self, error: &str) {
        let _ = self.manager.increment_counter(TLS_HANDSHAKE_ERRORS_METRIC, 1, &[error]);
    }

    pub(crate) fn accept_error(&self) {
        if let Some(c) = &self.accept_errors {
            c.increment(1);
        }
    }
}

/// Self-metric: remote write requests answered by the receiver, by status code.
pub const RECEIVE_REQUESTS_METRIC: &str = "mmo_metrics_receive_requests_total";
/// Self-metric: remote write requests refused whole, by reason (`body_size`,
/// `decompressed_size`, `content_type`, `content_encoding`, `snappy`, `protobuf`,
/// `invalid_series`; and `timeout`: not read and stored within the request timeout, 503; `failed`:
/// the body could not be read, 500).
pub const RECEIVE_REQUESTS_REFUSED_METRIC: &str = "mmo_metrics_receive_requests_refused_total";
/// Self-metric: samples and native histograms in the remote write requests the receiver decoded.
pub const RECEIVE_SAMPLES_METRIC: &str = "mmo_metrics_receive_samples_total";
/// Self-metric: remote write body bytes the receiver read (snappy-compressed, as sent).
pub const RECEIVE_BYTES_METRIC: &str = "mmo_metrics_receive_bytes_total";
/// Self-metric: received series stored.
pub const RECEIVE_SERIES_METRIC: &str = "mmo_metrics_receive_series";
/// Self-metric: senders with series stored (see `ReceiveConfig`).
pub const RECEIVE_SENDERS_METRIC: &str = "mmo_metrics_receive_senders";
/// Self-metric: new received series refused, by reason (`sender_limit`, `total_limit`,
/// `conflict`); the rest of their requests was kept.
pub const RECEIVE_SERIES_REFUSED_METRIC: &str = "mmo_metrics_receive_series_refused_total";
/// Self-metric: received series removed, by cause (`stale`: a stale marker; `ttl`: the sender
/// stopped pushing).
pub const RECEIVE_SERIES_REMOVED_METRIC: &str = "mmo_metrics_receive_series_removed_total";

/// Handles to the receiver's self-metrics (see [`SelfMetrics`] for why each may be missing).
pub(crate) struct ReceiveMetrics {
    manager: MetricsManager,
    samples: Option<CounterHandle>,
    bytes: Option<CounterHandle>,
    series: Gauge,
    senders: Gauge,
}

impl ReceiveMetrics {
    pub(crate) fn register(m: &MetricsManager) -> Self {
        let _ = m.register_counter(
            RECEIVE_REQUESTS_METRIC,
            "Remote write requests answered by the receiver (POST /api/v1/write), by HTTP status code.",
            &["code"],
        );
        let _ = m.register_counter(
            RECEIVE_REQUESTS_REFUSED_METRIC,
            "Remote write requests refused whole, by reason.",
            &["reason"],
        );
        let _ = m.register_counter(
            RECEIVE_SAMPLES_METRIC,
            "Samples and native histograms in the remote write requests the receiver decoded.",
            &[],
        );
        let _ = m.register_counter(
            RECEIVE_BYTES_METRIC,
            "Remote write body bytes read by the receiver, snappy-compressed as sent.",
            &[],
        );
        let _ = m.register_gauge(RECEIVE_SERIES_METRIC, "Received series stored.", &[]);
        let _ = m.register_gauge(RECEIVE_SENDERS_METRIC, "Remote write senders with series stored.", &[]);
        let _ = m.register_counter(
            RECEIVE_SERIES_REFUSED_METRIC,
            "New received series refused (the rest of their requests kept), by reason: sender_limit, \
             total_limit, conflict (a name of this exporter's own families).",
            &["reason"],
        );
        let _ = m.register_counter(
            RECEIVE_SERIES_REMOVED_METRIC,
            "Received series removed, by cause: stale (a stale marker), ttl (the sender stopped pushing).",
            &["cause"],
        );
        Self {
            manager: m.clone(),
            samples: m.counter(RECEIVE_SAMPLES_METRIC, &[]).ok(),
            bytes: m.counter(RECEIVE_BYTES_METRIC, &[]).ok(),
            series: Gauge(m.gauge(RECEIVE_SERIES_METRIC, &[]).ok()),
            senders: Gauge(m.gauge(RECEIVE_SENDERS_METRIC, &[]).ok()),
        }
    }

    pub(crate) fn request(&self, code: u16) {
        let code = itoa::Buffer::new().format(code).to_owned();
        let _ = self.manager.increment_counter(RECEIVE_REQUESTS_METRIC, 1, &[&code]);
    }

    pub(crate) fn request_refused(&self, reason: &str) {
        let _ = self
            .manager
            .increment_counter(RECEIVE_REQUESTS_REFUSED_METRIC, 1, &[reason]);
    }

    pub(crate) fn samples(&self, n: usize) {
        if let Some(c) = &self.samples {
            c.increment(n as u64);
        }
    }

    pub(crate) fn bytes(&self, n: usize) {
        if let Some(c) = &self.bytes {
            c.increment(n as u64);
        }
    }

    pub(crate) fn stored(&self, series: usize, senders: usize) {
        self.series.set(series as f64);
        self.senders.set(senders as f64);
    }

    pub(crate) fn series_refused(&self, reason: &str, n: usize) {
        let _ = self
            .manager
            .increment_counter(RECEIVE_SERIES_REFUSED_METRIC, n as u64, &[reason]);
    }

    pub(crate) fn series_removed(&self, cause: &str, n: usize) {
        let _ = self
            .manager
            .increment_counter(RECEIVE_SERIES_REMOVED_METRIC, n as u64, &[cause]);
    }
}
