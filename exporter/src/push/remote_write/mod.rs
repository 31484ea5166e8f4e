//! Prometheus remote write 1.0: the sender ([`RemoteWrite`](crate::RemoteWrite)), its messages
//! ([`proto`]) and their encoding from the engine's read API.

pub(crate) mod encode;
pub mod proto;

pub use encode::RemoteWriteEncoder;
