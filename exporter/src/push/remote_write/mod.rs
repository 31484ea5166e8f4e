//! Prometheus remote write 1.0: the sender ([`RemoteWrite`](crate::RemoteWrite)), its messages
//! ([`proto`]) and their encoding from the engine's read API.

pub(crate) mod encode;
pub mod proto;

mod sender;

pub use encode::RemoteWriteEncoder;
pub(crate) use sender::Pusher;
pub use sender::{
    RemoteWrite, REMOTE_WRITE_BYTES_METRIC, REMOTE_WRITE_DURATION_METRIC, REMOTE_WRITE_LAST_SUCCESS_METRIC,
    REMOTE_WRITE_PENDING_METRIC, REMOTE_WRITE_REQUESTS_METRIC, REMOTE_WRITE_RETRIES_METRIC,
    REMOTE_WRITE_SAMPLES_METRIC,
};
