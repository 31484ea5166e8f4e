//! # mmo-metrics-exporter
//!
//! Exposition of an [`mmo_metrics::MetricsManager`] for Prometheus: [`encode_text`] renders the
//! text format 0.0.4, [`serve`] answers `GET /metrics` and `GET /health` from one exporter thread.
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
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod demo;
mod http;
mod text;

pub use http::{
    serve, Exporter, ExporterBuilder, ExporterError, SCRAPES_METRIC, SCRAPE_DURATION_METRIC, SERIES_METRIC,
};
pub use text::{encode_text, encode_text_into, encode_text_with, TEXT_CONTENT_TYPE};
