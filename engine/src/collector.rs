//! [`MetricsCollector`]: runs collectors on an interval.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::MetricsManager;

/// Self-metric: time each collector run took, by collector.
pub const COLLECTOR_DURATION_METRIC: &str = "mmo_metrics_collector_duration_seconds";

type CollectFn = Box<dyn FnMut(&MetricsManager) + Send>;

/// Runs functions that set metrics (gauges of system state, usually) every interval, on a thread
/// of its own.
///
/// Each run's duration is recorded in `mmo_metrics_collector_duration_seconds{collector="…"}`.
/// A collector that panics is caught: the panic is logged, counted in
/// `mmo_metrics_collector_panics_total{collector="…"}`, and the loop goes on.
pub struct MetricsCollector {
    manager: MetricsManager,
    interval: Duration,
    collectors: Vec<(String, CollectFn)>,
}

impl std::fmt::Debug for MetricsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsCollector")
            .field("interval", &self.interval)
            .field("collectors", &self.collectors.iter().map(|c| &c.0).collect::<Vec<_>>())
            .finish()
    }
}

/// A running [`MetricsCollector`]; dropping it stops the loop and waits for the current run.
pub struct RunningCollector {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<MetricsCollector>>,
}

impl std::fmt::Debug for RunningCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningCollector").finish_non_exhaustive()
    }
}

impl MetricsCollector {
    /// A collector for `manager` that runs every `interval` (the seed's default is 10 s).
    pub fn new(manager: MetricsManager, interval: Duration) -> Self {
        let _ = manager.register_histogram(
            COLLECTOR_DURATION_METRIC,
            "Time a collector run took, in seconds.",
            &["collector"],
            &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
        );
        Self {
            manager,
            interval: interval.max(Duration::from_millis(1)),
            collectors: Vec::new(),
        }
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Adds a collector, named `collector_N` (N counts from 1) in logs and self-metrics.
    pub fn add_collector(&mut self, f: impl FnMut(&MetricsManager) + Send + 'static) {
        let name = format!("collector_{}", self.collectors.len() + 1);
        self.add_named_collector(name, f);
    }

    /// Adds a collector with a name for logs and self-metrics.
    pub fn add_named_collector(&mut self, name: impl Into<String>, f: impl FnMut(&MetricsManager) + Send + 'static) {
        self.collectors.push((name.into(), Box::new(f)));
    }

    /// Runs every collector once, now, on this thread; returns how many panicked.
    pub fn collect_once(&mut self) -> usize {
        let mut panics = 0;
        for (name, f) in &mut self.collectors {
            let started = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| f(&self.manager)));
            let _ = self
                .manager
                .observe_histogram(COLLECTOR_DURATION_METRIC, started.elapsed().as_secs_f64(), &[name]);
            if let Err(p) = result {
                panics += 1;
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                tracing::error!(collector = %name, "mmo-metrics: collector `{name}` panicked: {msg}");
                let r = &self.manager.registry;
                r.count_self(&r.self_metrics().collector_panics, name);
            }
        }
        panics
    }

    /// Starts the loop on its own thread: runs every collector now, then every interval, until
    /// the returned guard is dropped.
    pub fn start(self) -> RunningCollector {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mmo-metrics-collector".into())
            .spawn(move || {
                let mut me = self;
                let mut next = Instant::now();
                loop {
                    me.collect_once();
                    next += me.interval;
                    let now = Instant::now();
                    if next < now {
                        // A run took longer than the interval: skip the missed ticks.
                        next = now + me.interval;
                    }
                    match rx.recv_timeout(next - now) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return me,
                    }
                }
            })
            .expect("spawn the collector thread");
        RunningCollector {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl RunningCollector {
    /// Stops the loop and gives the collector back.
    pub fn stop(mut self) -> Option<MetricsCollector> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Option<MetricsCollector> {
        drop(self.stop.take());
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for RunningCollector {
    fn drop(&mut self) {
        self.shutdown();
    }
}
