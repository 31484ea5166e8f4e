//! `connection_count`, `connection_rate`, `connection_errors_total{error_type}`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::{CounterHandle, GaugeHandle, MetricsError, MetricsManager};

/// Connection metrics. Cheap to clone (handles).
#[derive(Clone)]
pub struct ConnectionMetrics {
    manager: MetricsManager,
    count: GaugeHandle,
    rate: GaugeHandle,
    /// New connections since start: `connection_rate` is its change per second over an interval.
    opened: Arc<AtomicU64>,
    last: Arc<Mutex<(Instant, u64)>>,
}

impl std::fmt::Debug for ConnectionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionMetrics")
            .field("count", &self.count.get())
            .finish_non_exhaustive()
    }
}

impl ConnectionMetrics {
    /// Registers the family.
    pub fn register(m: &MetricsManager) -> Result<Self, MetricsError> {
        m.register_gauge("connection_count", "Open connections.", &[])?;
        m.register_gauge(
            "connection_rate",
            "New connections per second over the last collection interval.",
            &[],
        )?;
        m.register_counter("connection_errors_total", "Connection errors by type.", &["error_type"])?;
        Ok(Self {
            manager: m.clone(),
            count: m.gauge("connection_count", &[])?,
            rate: m.gauge("connection_rate", &[])?,
            opened: Arc::new(AtomicU64::new(0)),
            last: Arc::new(Mutex::new((Instant::now(), 0))),
        })
    }

    /// A connection was opened.
    #[inline]
    pub fn opened(&self) {
        self.count.add(1.0);
        self.opened.fetch_add(1, Relaxed);
    }

    /// A connection was closed.
    #[inline]
    pub fn closed(&self) {
        self.count.add(-1.0);
    }

    /// Open connections now.
    pub fn open(&self) -> f64 {
        self.count.get()
    }

    /// A handle to count errors of one type (resolve once, keep it).
    pub fn errors(&self, error_type: &str) -> Result<CounterHandle, MetricsError> {
        self.manager.counter("connection_errors_total", &[error_type])
    }

    /// Counts one error of `error_type` (by name: resolves through the per-thread cache).
    pub fn error(&self, error_type: &str) {
        let _ = self
            .manager
            .increment_counter("connection_errors_total", 1, &[error_type]);
    }

    /// Sets `connection_rate` to the new connections per second since the last call. Run it each
    /// collection interval: `collector.add_named_collector("connections", move |_| c.update_rate())`.
    pub fn update_rate(&self) -> f64 {
        let now = Instant::now();
        let opened = self.opened.load(Relaxed);
        let mut last = crate::registry::lock(&self.last);
        let secs = now.duration_since(last.0).as_secs_f64();
        let rate = if secs > 0.0 {
            (opened - last.1) as f64 / secs
        } else {
            0.0
        };
        *last = (now, opened);
        self.rate.set(rate);
        rate
    }
}
