//! The standard `process_*` metrics.

use crate::MetricsManager;

/// One reading of the process' resources.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessStats {
    /// User + system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_memory_bytes: f64,
    /// Virtual memory, in bytes.
    pub virtual_memory_bytes: f64,
    /// Open file descriptors.
    pub open_fds: f64,
    /// The soft limit of file descriptors; `None` when unlimited.
    pub max_fds: Option<f64>,
    /// Start time since the Unix epoch, in seconds.
    pub start_time_seconds: f64,
    /// OS threads.
    pub threads: f64,
}

/// Reads the process' resources from `/proc` (Linux only; elsewhere an error naming the OS).
#[cfg(target_os = "linux")]
pub fn process_stats() -> Result<ProcessStats, String> {
    use procfs::process::{LimitValue, Process};
    let err = |what: &str, e: procfs::ProcError| format!("cannot read {what} of this process from /proc: {e}");
    let me = Process::myself().map_err(|e| err("the process", e))?;
    let stat = me.stat().map_err(|e| err("stat", e))?;
    let tps = procfs::ticks_per_second() as f64;
    let boot = procfs::boot_time_secs().map_err(|e| err("the boot time", e))? as f64;
    let open_fds = me.fd_count().map_err(|e| err("open fds", e))? as f64;
    let max_fds = match me.limits().map_err(|e| err("limits", e))?.max_open_files.soft_limit {
        LimitValue::Value(v) => Some(v as f64),
        LimitValue::Unlimited => None,
    };
    Ok(ProcessStats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / tps,
        resident_memory_bytes: (stat.rss * procfs::page_size()) as f64,
        virtual_memory_bytes: stat.vsize as f64,
        open_fds,
        max_fds,
        start_time_seconds: boot + stat.starttime as f64 / tps,
        threads: stat.num_threads as f64,
    })
}

/// Reads the process' resources (Linux only; elsewhere an error naming the OS).
#[cfg(not(target_os = "linux"))]
pub fn process_stats() -> Result<ProcessStats, String> {
    Err(format!(
        "process metrics are read from /proc, which {} does not have",
        std::env::consts::OS
    ))
}

/// A collector for `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
/// `process_start_time_seconds` and `process_threads`. Where they cannot be read it logs why,
/// once, and exports nothing rather than zeros.
pub fn process_collector() -> impl FnMut(&MetricsManager) + Send + 'static {
    let mut registered = false;
    move |m: &MetricsManager| {
        let p = match process_stats() {
            Ok(p) => p,
            Err(e) => return super::log_once(format!("process collector: {e}")),
        };
        if !registered {
            let _ = m.register_float_counter(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                &[],
            );
            let gauges = [
                ("process_resident_memory_bytes", "Resident memory size in bytes."),
                ("process_virtual_memory_bytes", "Virtual memory size in bytes."),
                ("process_open_fds", "Number of open file descriptors."),
                ("process_max_fds", "Maximum number of open file descriptors."),
                (
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                ),
                ("process_threads", "Number of OS threads in the process."),
            ];
            for (name, help) in gauges {
                if name == "process_max_fds" && p.max_fds.is_none() {
                    continue;
                }
                if let Err(e) = m.register_gauge(name, help, &[]) {
                    super::log_once(format!("process collector: {e}"));
                }
            }
            registered = true;
        }
        let _ = m.set_float_counter("process_cpu_seconds_total", p.cpu_seconds, &[]);
        let _ = m.set_gauge("process_resident_memory_bytes", p.resident_memory_bytes, &[]);
        let _ = m.set_gauge("process_virtual_memory_bytes", p.virtual_memory_bytes, &[]);
        let _ = m.set_gauge("process_open_fds", p.open_fds, &[]);
        if let Some(max) = p.max_fds {
            let _ = m.set_gauge("process_max_fds", max, &[]);
        }
        let _ = m.set_gauge("process_start_time_seconds", p.start_time_seconds, &[]);
        let _ = m.set_gauge("process_threads", p.threads, &[]);
    }
}
