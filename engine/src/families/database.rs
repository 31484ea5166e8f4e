//! `database_operations_total{operation,table}`, `database_query_time{operation,table}`,
//! `database_errors_total{operation}`.

use super::{Timer, SECONDS_BUCKETS};
use crate::{CounterHandle, HistogramHandle, MetricsError, MetricsManager, NativeConfig};

/// Database metrics.
#[derive(Clone, Debug)]
pub struct DatabaseMetrics {
    manager: MetricsManager,
}

/// Handles for one (operation, table).
#[derive(Clone)]
pub struct DatabaseOp {
    ops: CounterHandle,
    time: HistogramHandle,
    errors: CounterHandle,
}

impl std::fmt::Debug for DatabaseOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseOp").finish_non_exhaustive()
    }
}

impl DatabaseMetrics {
    /// Registers the family.
    pub fn register(m: &MetricsManager) -> Result<Self, MetricsError> {
        Self::register_with(m, None)
    }

    /// Registers the family with `database_query_time` as a classic and a native histogram (see
    /// [`MetricsManager::register_histogram_with_native`]): Prometheus with native histograms
    /// enabled stores the native part, others the classic buckets. Recording into both costs
    /// about twice a classic record.
    pub fn register_with_native(m: &MetricsManager, native: NativeConfig) -> Result<Self, MetricsError> {
        Self::register_with(m, Some(native))
    }

    fn register_with(m: &MetricsManager, native: Option<NativeConfig>) -> Result<Self, MetricsError> {
        m.register_counter(
            "database_operations_total",
            "Database operations by operation and table.",
            &["operation", "table"],
        )?;
        match native {
            Some(native) => m.register_histogram_with_native(
                "database_query_time",
                "Database query time in seconds.",
                &["operation", "table"],
                &SECONDS_BUCKETS,
                native,
            )?,
            None => m.register_histogram(
                "database_query_time",
                "Database query time in seconds.",
                &["operation", "table"],
                &SECONDS_BUCKETS,
            )?,
        }
        m.register_counter("database_errors_total", "Database errors by operation.", &["operation"])?;
        Ok(Self { manager: m.clone() })
    }

    /// Handles for `operation` (e.g. `select`) on `table`.
    pub fn handles(&self, operation: &str, table: &str) -> Result<DatabaseOp, MetricsError> {
        Ok(DatabaseOp {
            ops: self.manager.counter("database_operations_total", &[operation, table])?,
            time: self.manager.histogram("database_query_time", &[operation, table])?,
            errors: self.manager.counter("database_errors_total", &[operation])?,
        })
    }
}

impl DatabaseOp {
    /// Counts one operation that took `seconds`, and an error when `ok` is false.
    #[inline]
    pub fn done(&self, seconds: f64, ok: bool) {
        self.ops.increment(1);
        self.time.record(seconds);
        if !ok {
            self.errors.increment(1);
        }
    }

    /// Counts one operation now and times it until the timer drops (errors: [`Self::error`]).
    pub fn timer(&self) -> Timer {
        self.ops.increment(1);
        Timer::new(self.time.clone())
    }

    /// Counts one error.
    pub fn error(&self) {
        self.errors.increment(1);
    }
}
