//! `redis_operations_total{command}`, `redis_errors_total{command}`, `redis_connection_pool{state}`.

use crate::{CounterHandle, GaugeHandle, MetricsError, MetricsManager};

/// Redis metrics.
#[derive(Clone)]
pub struct RedisMetrics {
    manager: MetricsManager,
    pool: [GaugeHandle; 3],
}

impl std::fmt::Debug for RedisMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMetrics").finish_non_exhaustive()
    }
}

/// Handles for one Redis command.
#[derive(Clone)]
pub struct RedisCommand {
    ops: CounterHandle,
    errors: CounterHandle,
}

impl std::fmt::Debug for RedisCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCommand").finish_non_exhaustive()
    }
}

impl RedisMetrics {
    /// Registers the family.
    pub fn register(m: &MetricsManager) -> Result<Self, MetricsError> {
        m.register_counter("redis_operations_total", "Redis operations by command.", &["command"])?;
        m.register_counter("redis_errors_total", "Redis errors by command.", &["command"])?;
        m.register_gauge(
            "redis_connection_pool",
            "Redis connection pool: active, idle and max connections.",
            &["state"],
        )?;
        Ok(Self {
            manager: m.clone(),
            pool: [
                m.gauge("redis_connection_pool", &["active"])?,
                m.gauge("redis_connection_pool", &["idle"])?,
                m.gauge("redis_connection_pool", &["max"])?,
            ],
        })
    }

    /// Handles for `command` (e.g. `GET`).
    pub fn command(&self, command: &str) -> Result<RedisCommand, MetricsError> {
        Ok(RedisCommand {
            ops: self.manager.counter("redis_operations_total", &[command])?,
            errors: self.manager.counter("redis_errors_total", &[command])?,
        })
    }

    /// Sets the pool gauges.
    pub fn set_pool(&self, active: u32, idle: u32, max: u32) {
        self.pool[0].set(f64::from(active));
        self.pool[1].set(f64::from(idle));
        self.pool[2].set(f64::from(max));
    }
}

impl RedisCommand {
    /// Counts one operation, and one error when `ok` is false.
    #[inline]
    pub fn done(&self, ok: bool) {
        self.ops.increment(1);
        if !ok {
            self.errors.increment(1);
        }
    }
}
