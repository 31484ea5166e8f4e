//! # mmo-metrics-exporter
//!
//! Exposition of an [`mmo_metrics::MetricsManager`] for Prometheus: [`encode_text`] renders the
//! text format 0.0.4, [`encode_openmetrics`] OpenMetrics 1.0,
//! [`encode_protobuf_with`] the protobuf format (its messages in [`proto`]), [`serve`] answers `GET /metrics`
//! (in the format the scraper's `Accept` header asks for, see [`negotiate`]) and `GET /health`
//! from one exporter thread. That thread also pushes: to Prometheus remote write receivers
//! ([`RemoteWrite`], with [`ExporterBuilder::remote_write`]; a process that only pushes listens
//! on no port: [`ExporterBuilder::without_listener`]) and to Pushgateway groups
//! ([`Pushgateway`]). With [`ExporterBuilder::receive`] it also accepts remote write 1.0 at
//! `POST /api/v1/write` and exposes (and forwards) the latest point of every series it received.
//!
//! ```
//! use mmo_metrics::MetricsManager;
//!
//! let manager = MetricsManager::new();
//! manager.register_counter("logins", "Logins.", &[])?;
//! manager.increment_counter("logins", 2, &[])?;
//! let server = mmo_metrics_exporter::serve(manager.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
//! assert_ne!(server.local_addr().port(), 0);
//! assert!(mmo_metrics_exporter::encode_text(&manager).contains("logins_total 2\n"));
//! drop(server); // stops the exporter thread
//! # Ok::<(), mmo_metrics::MetricsError>(())
//! ```
//!
//! ## Layout
//!
//! - `encode/`: the exposition formats, each a thin writer over one format-neutral walk of the
//!   engine's read API, sharing the number and escape helpers; and the negotiation of which one
//!   a scrape gets from its `Accept` header.
//! - `http/`: the server: routes, the scrapes (one shared encode per format, gzip), and the
//!   limits that bound every client.
//! - `push/`: remote write out (and, in the `metrics` service, in), the Pushgateway client, and
//!   the HTTP client they share.
//! - `bin/metrics/` (feature `service`): the `metrics` collection service and its demo game
//!   server; its command-line dependencies stay out of the library.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod encode;
mod http;
mod push;

pub use push::client::{PushConfigError, PushEndpoint};
pub use push::pushgateway::{Pushgateway, PUSHGATEWAY_LAST_SUCCESS_METRIC, PUSHGATEWAY_PUSHES_METRIC};
pub use push::receive::ReceiveConfig;
#[doc(hidden)]
pub use push::receive::ReceiverHarness;
pub use push::remote_write::proto as remote_write_proto;
pub use push::remote_write::{
    RemoteWrite, RemoteWriteEncoder, REMOTE_WRITE_BYTES_METRIC, REMOTE_WRITE_DURATION_METRIC,
    REMOTE_WRITE_LAST_SUCCESS_METRIC, REMOTE_WRITE_PENDING_METRIC, REMOTE_WRITE_REQUESTS_METRIC,
    REMOTE_WRITE_RETRIES_METRIC, REMOTE_WRITE_SAMPLES_METRIC,
};

pub use encode::{
    encode_openmetrics, encode_openmetrics_with, encode_openmetrics_with_options, encode_protobuf_with, encode_text,
    encode_text_into, encode_text_with, negotiate, proto, ExpositionFormat, OpenMetricsOptions,
    OPENMETRICS_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE, RESERVED_GLOBAL_LABELS, TEXT_CONTENT_TYPE,
};
pub use http::{
    serve, validate_global_labels, Exporter, ExporterBuilder, ExporterError, WebConfig, WebConfigError,
    ACCEPT_ERRORS_METRIC, CONNECTIONS_METRIC, CONNECTION_LIMIT_METRIC, RECEIVE_BYTES_METRIC, RECEIVE_REQUESTS_METRIC,
    RECEIVE_REQUESTS_REFUSED_METRIC, RECEIVE_SAMPLES_METRIC, RECEIVE_SENDERS_METRIC, RECEIVE_SERIES_METRIC,
    RECEIVE_SERIES_REFUSED_METRIC, RECEIVE_SERIES_REMOVED_METRIC, SCRAPES_IN_FLIGHT_METRIC, SCRAPES_METRIC,
    SCRAPE_DURATION_METRIC, SERIES_METRIC, TIMEOUTS_METRIC, TLS_HANDSHAKE_ERRORS_METRIC,
};
