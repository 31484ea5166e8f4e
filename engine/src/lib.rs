//! # mmo-metrics
//!
//! A lock-free, sharded metrics engine for MMO game servers: counters, gauges, histograms and
//! summaries, recorded from game-loop threads without locks, allocation or shared cache-line
//! writes, and read by an exporter (`mmo-metrics-exporter`) without ever blocking a recording.
//!
//! Record through a [`MetricsManager`] (by name, or through handles resolved once), or through the
//! `metrics` facade (`counter!`, `gauge!`, `histogram!`) once [`MetricsManager::install`] made the
//! manager the global recorder; both land in one registry and one exposition.
//!
//! ```
//! use mmo_metrics::MetricsManager;
//!
//! let manager = MetricsManager::new();
//! manager.register_counter("my_business_events", "业务事件计数", &["event_type"])?;
//! manager.increment_counter("my_business_events", 1, &["login"])?;
//! manager.increment_counter("my_business_events", 2, &["login"])?;
//! manager.register_gauge("connection_count", "Open connections.", &[])?;
//! manager.set_gauge("connection_count", 42.0, &[])?;
//! manager.add_gauge("connection_count", -2.0, &[])?;
//! manager.register_histogram("message_process_time", "Seconds per message.", &["msg_type"], &[0.01, 0.1, 1.0])?;
//! manager.observe_histogram("message_process_time", 0.1, &["move"])?;
//! manager.observe_histogram("message_process_time", 5.0, &["move"])?;
//! manager.register_summary("db_latency", "DB latency.", &[], &[0.5])?;
//! manager.observe_summary("db_latency", 2.0, &[])?;
//!
//! // Errors name the metric, what was expected and what was found.
//! let err = manager.increment_counter("my_business_events", 1, &[]).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "metric `my_business_events` has labels [event_type] (1 values expected), got 0 values []"
//! );
//! let err = manager.set_gauge("my_business_events", 1.0, &["x"]).unwrap_err();
//! assert_eq!(err.to_string(), "metric `my_business_events` registered as counter, now asked for gauge");
//!
//! let text = mmo_metrics_exporter::encode_text(&manager);
//! let ours: String = text.lines().filter(|l| !l.contains("mmo_metrics_")).map(|l| format!("{l}\n")).collect();
//! assert_eq!(ours, r#"# HELP connection_count Open connections.
//! ## TYPE connection_count gauge
//! connection_count 40
//! ## HELP db_latency DB latency.
//! ## TYPE db_latency summary
//! db_latency{quantile="0.5"} 2.015625
//! db_latency_sum 2
//! db_latency_count 1
//! ## HELP message_process_time Seconds per message.
//! ## TYPE message_process_time histogram
//! message_process_time_bucket{msg_type="move",le="0.01"} 0
//! message_process_time_bucket{msg_type="move",le="0.1"} 1
//! message_process_time_bucket{msg_type="move",le="1"} 1
//! message_process_time_bucket{msg_type="move",le="+Inf"} 2
//! message_process_time_sum{msg_type="move"} 5.1
//! message_process_time_count{msg_type="move"} 2
//! ## HELP my_business_events_total 业务事件计数
//! ## TYPE my_business_events_total counter
//! my_business_events_total{event_type="login"} 3
//! "#);
//! # Ok::<(), mmo_metrics::MetricsError>(())
//! ```
//!
//! ## Design
//!
//! - **Shards.** Counter, histogram and summary cells are sharded by thread ([`MetricsManagerBuilder::shards`]).
//!   Most shards belong to one thread each and are written with a plain load and store; the rest are
//!   shared by the remaining threads and written atomically. A scrape sums the shards.
//! - **Packing.** Counter cells of 16 series share a line per shard, and a thread still writes only
//!   lines no other thread writes. The cells are in memory the OS backs on first write, so a series
//!   costs 8 bytes for each shard that writes it, not for each shard that exists.
//! - **Native histograms.** Prometheus' exponential buckets ([`NativeConfig`]), recorded like the
//!   classic ones into a per-shard window of bucket cells; a value outside the window moves the
//!   window or halves the resolution, so memory never grows
//!   ([`MetricsManager::register_native_histogram`], [`SeriesValue::Histogram`]'s `native`).
//! - **Bounded memory.** Histograms are fixed bucket arrays; summaries are mergeable log-linear
//!   sketches (relative error ≤ 0.78 %) over a sliding window; each metric has a series limit past
//!   which label sets fold into one `__overflow__` series, counted in
//!   `mmo_metrics_series_overflow_total`.
//! - **Consistency.** Per series, a scrape never sees a counter go down, and a histogram's `+Inf`
//!   bucket equals its `_count`. A scrape is not one instant across series.
//!
//! ## Limits
//!
//! Every limit has a default, a way to change it and a self-metric that shows it was reached.
//!
//! | limit | default | change with | past it | self-metric |
//! |---|---|---|---|---|
//! | series per metric | 10,000 | [`MetricsManagerBuilder::series_limit`] | new label sets fold into the `__overflow__` series | `mmo_metrics_series_overflow_total{metric}` |
//! | families the facade creates | 10,000 | [`MetricsManagerBuilder::facade_family_limit`] | new facade names land in `mmo_metrics_facade_overflow_{counter_total,gauge,histogram}` | `mmo_metrics_facade_family_overflow_total{kind}` |
//! | label value length | [`MAX_LABEL_VALUE_LEN`] (2,048 bytes) | fixed | by-name API: [`MetricsError::LabelValueTooLong`]; facade: cut at a character boundary and recorded | `mmo_metrics_label_value_truncated_total{metric}` |
//! | exemplar labels | [`MAX_EXEMPLAR_LABELS_CHARS`] (128 UTF-8 characters, names and values) | fixed (OpenMetrics) | refused: [`MetricsError::ExemplarLabelsTooLong`], nothing recorded | — |
//! | counter total | `u64::MAX` | fixed | saturates (never wraps to a "reset"); histogram bucket counts too | — |
//! | label sets per facade name | [`MAX_LABEL_SETS`] (64) | fixed | a further label set is not recorded | `mmo_metrics_facade_errors_total{metric}` |
//! | facade problems logged one by one | 1,000 distinct | fixed | summed in one warning at most once a minute | `mmo_metrics_facade_errors_total{metric}` |
//! | collection interval | at least [`MIN_COLLECT_INTERVAL`] (100 ms) | [`MetricsCollector::new`] | raised to the minimum, with a warning | — |
//! | a collector's run | one at a time per collector | — | a tick that finds the last run still going skips it | `mmo_metrics_collector_skipped_total{collector}` |
#![cfg_attr(not(loom), deny(missing_docs))]
#![warn(clippy::undocumented_unsafe_blocks)]

mod batch;
mod collector;
mod compat;
mod error;
pub mod exemplar;
#[cfg(feature = "tracing")]
mod exemplar_tracing;
pub mod families;
mod kind;
mod loom;
mod manager;
mod read;
mod recorder;
pub(crate) mod registry;
mod shard;
mod storage;
pub mod system;
mod thread_cache;

pub use batch::{BatchCounter, BatchHistogram, TickBatch, BATCH_HISTOGRAM_BUFFER};
pub use collector::{
    MetricsCollector, RunningCollector, COLLECTOR_DURATION_METRIC, COLLECTOR_SKIPPED_METRIC, MIN_COLLECT_INTERVAL,
};
pub use compat::{Matcher, FACADE_SUMMARY_QUANTILES};
pub use error::MetricsError;
pub use exemplar::{Exemplar, MAX_EXEMPLAR_LABELS_CHARS};
pub use kind::MetricKind;
pub use manager::{CounterHandle, GaugeHandle, HistogramHandle, MetricsManager, MetricsManagerBuilder, SummaryHandle};
pub use read::{BucketSpan, FamilyView, Labels, NativeBuckets, Sample, SeriesValue};
pub use recorder::MetricsRecorder;
pub use registry::names::{
    check_label_names as validate_label_names, check_metric_name as validate_metric_name, sanitize_label_key,
    sanitize_metric_name,
};
pub use registry::{
    COLLECTOR_PANICS_METRIC, DEFAULT_BUCKETS, DEFAULT_QUANTILES, FACADE_ERRORS_METRIC, FACADE_FAMILY_OVERFLOW_METRIC,
    FACADE_OVERFLOW_COUNTER_METRIC, FACADE_OVERFLOW_GAUGE_METRIC, FACADE_OVERFLOW_HISTOGRAM_METRIC,
    FACADE_RENAMED_METRIC, LABEL_VALUE_TRUNCATED_METRIC, MAX_LABEL_SETS, MAX_LABEL_VALUE_LEN, OVERFLOW_LABEL_VALUE,
    SERIES_OVERFLOW_METRIC,
};
pub use storage::native::{NativeConfig, MAX_NATIVE_BUCKETS};
pub use storage::summary::SUMMARY_RELATIVE_ERROR;

/// Internals exposed to the loom models in `tests/loom.rs` only.
#[cfg(loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::registry::SeriesMap;
    pub use crate::shard::{Shard, ShardLayout, SlotPool};
    pub use crate::storage::counter::{CounterCell, CounterChunk};
    pub use crate::storage::gauge::GaugeCell;
    pub use crate::storage::histogram::{Buckets, HistogramCells};
    pub use crate::storage::native::{NativeCells, NativeConfig};
    pub use crate::storage::summary::{SummaryCells, SummarySpec};
}
