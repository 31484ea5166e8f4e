//! Series leaving the process by push, and arriving from other processes:
//!
//! - `remote_write/`: the Prometheus remote write 1.0 sender, its messages (`proto`) and their
//!   encoding from the engine's read API;
//! - `receive/`: the remote write 1.0 receiver (`POST /api/v1/write`) of the `metrics` collection
//!   service, and the store of the latest point of every series it received;
//! - `client.rs`: the HTTP client both senders use (TLS with rustls, credentials, extra headers).
//!
//! The store of received series is exposed on `/metrics` beside the manager's own series and
//! forwarded by the exporter's own pushes; [`SeriesSource`] is what both read it through.

pub(crate) mod client;
pub(crate) mod pushgateway;
pub(crate) mod receive;
pub mod remote_write;

use remote_write::proto;

/// Series an exporter exposes and pushes besides its manager's: the receiver's store.
///
/// Every series is a [`proto::TimeSeries`] with its labels sorted by name (`__name__` among them)
/// and exactly one point: one sample, or one native histogram. A source's families (the series
/// that share a metric family name) come with their metadata when their sender sent it.
pub(crate) trait SeriesSource: Send + Sync + 'static {
    /// Calls `f` with every series, in no particular order.
    fn for_each_series(&self, f: &mut dyn FnMut(&proto::TimeSeries));

    /// Calls `f` with the metadata of every family that has series, in no particular order.
    fn for_each_metadata(&self, f: &mut dyn FnMut(&proto::MetricMetadata));
}
