//! The MMO server's metric families, typed for game code: connection, message, Redis and database.
//!
//! Each family registers its metrics (the names, types and labels the
//! MMO dashboards in `config/grafana/` query) on
//! `register`, and hands out handles resolved once for known label values, so the hot path
//! records without a lookup or an allocation. [`Timer`] records a duration into a histogram when
//! it is dropped.
//!
//! ```
//! use mmo_metrics::{families::*, MetricsManager};
//!
//! let m = MetricsManager::new();
//! let conns = ConnectionMetrics::register(&m)?;
//! conns.opened();
//! let msgs = MessageMetrics::register(&m)?;
//! let login_in = msgs.handles(Direction::In, "login")?;
//! login_in.received(128);
//! {
//!     let _t = login_in.process_timer(); // records into message_process_time{msg_type="login"}
//! }
//! let db = DatabaseMetrics::register(&m)?;
//! let select_players = db.handles("select", "players")?;
//! let t = select_players.timer();
//! t.finish(); // or let it drop
//! # Ok::<(), mmo_metrics::MetricsError>(())
//! ```

mod connection;
mod database;
mod message;
mod redis;

use std::time::Instant;

pub use connection::ConnectionMetrics;
pub use database::{DatabaseMetrics, DatabaseOp};
pub use message::{Direction, MessageHandles, MessageMetrics};
pub use redis::{RedisCommand, RedisMetrics};

use crate::{HistogramHandle, MetricsError};

/// Buckets for message sizes: 64 B … 1 MiB, powers of 4.
pub const SIZE_BUCKETS: [f64; 8] = [64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0];

/// Buckets for durations in seconds: 100 µs … 10 s.
pub const SECONDS_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 10.0,
];

/// Records the time from its creation into a histogram (in seconds) when dropped or finished.
#[must_use = "a timer records when it is dropped; dropping it at once records ~0"]
#[derive(Debug)]
pub struct Timer {
    histogram: HistogramHandle,
    started: Instant,
    done: bool,
}

impl Timer {
    /// Starts timing into `histogram`.
    pub fn new(histogram: HistogramHandle) -> Self {
        Self {
            histogram,
            started: Instant::now(),
            done: false,
        }
    }

    /// Records now and returns the elapsed seconds.
    pub fn finish(mut self) -> f64 {
        self.record()
    }

    /// Records now with an exemplar (e.g. `[("trace_id", id)]`, see
    /// [`HistogramHandle::record_with_exemplar`]) and returns the elapsed seconds. Refused
    /// exemplar labels are an error, and then nothing is recorded.
    pub fn finish_with_exemplar(mut self, labels: &[(&str, &str)]) -> Result<f64, MetricsError> {
        let s = self.started.elapsed().as_secs_f64();
        self.done = true;
        self.histogram.record_with_exemplar(s, labels)?;
        Ok(s)
    }

    /// Drops the timer without recording.
    pub fn cancel(mut self) {
        self.done = true;
    }

    fn record(&mut self) -> f64 {
        let s = self.started.elapsed().as_secs_f64();
        if !self.done {
            self.histogram.record(s);
            self.done = true;
        }
        s
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.record();
    }
}
