//! tokio runtimes as the system family's goroutines (`system_goroutines`): alive tasks, plus the
//! stable runtime metrics.

use std::sync::{Mutex, OnceLock};

use tokio::runtime::Handle;

use crate::MetricsManager;

fn runtimes() -> &'static Mutex<Vec<(String, Handle)>> {
    static RUNTIMES: OnceLock<Mutex<Vec<(String, Handle)>>> = OnceLock::new();
    RUNTIMES.get_or_init(Default::default)
}

/// Adds a tokio runtime to `system_goroutines` (the sum of alive tasks over registered runtimes)
/// and to `tokio_alive_tasks`, `tokio_workers` and `tokio_global_queue_depth`, labelled
/// `runtime="name"`. A name registered again replaces the old handle.
pub fn register_tokio_runtime(name: impl Into<String>, handle: Handle) {
    let name = name.into();
    let mut r = crate::registry::lock(runtimes());
    r.retain(|(n, _)| *n != name);
    r.push((name, handle));
}

pub(super) fn collect(m: &MetricsManager) {
    let r = crate::registry::lock(runtimes());
    let mut alive = 0usize;
    if !r.is_empty() {
        let _ = m.register_gauge("tokio_alive_tasks", "Alive tasks of a tokio runtime.", &["runtime"]);
        let _ = m.register_gauge("tokio_workers", "Worker threads of a tokio runtime.", &["runtime"]);
        let _ = m.register_gauge(
            "tokio_global_queue_depth",
            "Tasks waiting in a tokio runtime's global queue.",
            &["runtime"],
        );
    }
    for (name, h) in r.iter() {
        let metrics = h.metrics();
        alive += metrics.num_alive_tasks();
        let _ = m.set_gauge("tokio_alive_tasks", metrics.num_alive_tasks() as f64, &[name]);
        let _ = m.set_gauge("tokio_workers", metrics.num_workers() as f64, &[name]);
        let _ = m.set_gauge("tokio_global_queue_depth", metrics.global_queue_depth() as f64, &[name]);
    }
    let _ = m.set_gauge("system_goroutines", alive as f64, &[]);
}
