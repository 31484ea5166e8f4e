//! System collectors: the standard `process_*` family and the MMO server's `system_*` family.
//!
//! ```no_run
//! use std::time::Duration;
//! use mmo_metrics::{system, MetricsCollector, MetricsManager};
//!
//! #[global_allocator]
//! static ALLOC: system::CountingAllocator = system::CountingAllocator::system();
//!
//! let manager = MetricsManager::new();
//! let mut collector = MetricsCollector::new(manager.clone(), Duration::from_secs(10));
//! collector.add_named_collector("process", system::process_collector());
//! collector.add_named_collector("system", system::system_collector());
//! let _running = collector.start();
//! ```
//!
//! Rust has no garbage collector, so the `system_gc_next_bytes` and `system_gc_pause_total_ns`
//! gauges a Go server would export have no honest counterpart and are not exported.

mod alloc;
mod process;
#[cfg(all(feature = "tokio", not(loom)))]
mod runtime;

pub use alloc::{alloc_stats, AllocStats, CountingAllocator};
pub use process::{process_collector, process_stats, ProcessStats};
#[cfg(all(feature = "tokio", not(loom)))]
pub use runtime::register_tokio_runtime;

use crate::MetricsManager;

/// Logs a collector problem once per process and message.
fn log_once(message: String) {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if crate::registry::lock(seen).insert(message.clone()) {
        tracing::warn!("mmo-metrics: {message}");
    }
}

/// The system family, read each run: `system_memory_alloc_bytes` (live heap bytes),
/// `system_memory_total_alloc_bytes` (cumulative heap bytes), `system_memory_heap_objects`
/// (live allocations) from the [`CountingAllocator`] when it is the global allocator;
/// `system_memory_sys_bytes` (resident memory) and `system_cpu_threads` (OS threads) from the
/// OS; with the `tokio` feature, `system_goroutines` (alive tokio tasks of the runtimes given to
/// `register_tokio_runtime`).
/// Without the counting allocator the three heap gauges are not exported, and that is logged once.
pub fn system_collector() -> impl FnMut(&MetricsManager) + Send + 'static {
    let mut registered = false;
    move |m: &MetricsManager| {
        if !registered {
            let gauges = [
                (
                    "system_memory_alloc_bytes",
                    "Bytes of heap allocated and not yet freed.",
                ),
                (
                    "system_memory_total_alloc_bytes",
                    "Bytes of heap allocated since start (cumulative).",
                ),
                ("system_memory_sys_bytes", "Resident memory of the process, in bytes."),
                ("system_memory_heap_objects", "Heap allocations not yet freed."),
                ("system_cpu_threads", "OS threads of the process."),
                #[cfg(all(feature = "tokio", not(loom)))]
                (
                    "system_goroutines",
                    "Alive tokio tasks of the registered runtimes (Rust's goroutines).",
                ),
            ];
            for (name, help) in gauges {
                if let Err(e) = m.register_gauge(name, help, &[]) {
                    log_once(format!("system collector: {e}"));
                }
            }
            registered = true;
        }
        match alloc_stats() {
            Some(a) => {
                let _ = m.set_gauge("system_memory_alloc_bytes", a.live_bytes as f64, &[]);
                let _ = m.set_gauge("system_memory_total_alloc_bytes", a.total_allocated_bytes as f64, &[]);
                let _ = m.set_gauge("system_memory_heap_objects", a.live_objects as f64, &[]);
            }
            None => log_once(
                "system collector: the counting allocator is not the global allocator, so \
                 system_memory_alloc_bytes, system_memory_total_alloc_bytes and system_memory_heap_objects \
                 stay at 0 (add `#[global_allocator] static A: mmo_metrics::system::CountingAllocator = \
                 mmo_metrics::system::CountingAllocator::system();`)"
                    .into(),
            ),
        }
        match process_stats() {
            Ok(p) => {
                let _ = m.set_gauge("system_memory_sys_bytes", p.resident_memory_bytes, &[]);
                let _ = m.set_gauge("system_cpu_threads", p.threads, &[]);
            }
            Err(e) => log_once(format!("system collector: {e}")),
        }
        #[cfg(all(feature = "tokio", not(loom)))]
        runtime::collect(m);
    }
}
