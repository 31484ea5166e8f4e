//! Prometheus remote write 1.0.

pub mod proto;
