//! [`MetricsCollector`]: runs collectors on an interval, each on a thread of its own.
//!
//! A scheduler thread ticks every interval and hands each collector its tick; each collector runs
//! on its own thread, so one that is slow or blocked (a database that does not answer) delays no
//! other. A collector still running from an earlier tick is skipped at this one: the skip is
//! counted in `mmo_metrics_collector_skipped_total{collector}`, a warning is logged when it starts
//! being skipped and an info line when it runs again, never one line per tick.
//!
//! The interval is at least [`MIN_COLLECT_INTERVAL`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::MetricsManager;

/// Self-metric: time each collector run took, by collector.
pub const COLLECTOR_DURATION_METRIC: &str = "mmo_metrics_collector_duration_seconds";

/// Self-metric: ticks at which a collector did not run because its previous run had not returned,
/// by collector (exposed as `mmo_metrics_collector_skipped_total{collector="…"}`).
pub const COLLECTOR_SKIPPED_METRIC: &str = "mmo_metrics_collector_skipped";

/// The shortest interval a [`MetricsCollector`] runs at: 100 ms. [`MetricsCollector::new`] raises
/// a shorter one to it, with a warning. System collectors read `/proc` and allocator statistics;
/// at 1 ms they would take a core's tenth for values Prometheus reads every few seconds at most.
pub const MIN_COLLECT_INTERVAL: Duration = Duration::from_millis(100);

/// How long dropping a [`RunningCollector`] waits for runs in progress before it returns anyway.
const DROP_WAIT: Duration = Duration::from_millis(50);

/// How long [`RunningCollector::stop`] waits for runs in progress.
const STOP_WAIT: Duration = Duration::from_secs(1);

type CollectFn = Box<dyn FnMut(&MetricsManager) + Send>;

/// Runs functions that set metrics (gauges of system state, usually) every interval.
///
/// Each collector runs on a thread of its own, driven by one scheduler thread (see the module
/// docs): a collector that blocks is skipped at the ticks it misses, counted in
/// `mmo_metrics_collector_skipped_total{collector="…"}`, and delays no other collector.
/// Each run's duration is recorded in `mmo_metrics_collector_duration_seconds{collector="…"}`.
/// A collector that panics is caught: the panic is logged, counted in
/// `mmo_metrics_collector_panics_total{collector="…"}`, and it runs again at the next tick.
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

/// A collector's thread, as the guard sees it.
struct Worker {
    name: String,
    thread: JoinHandle<CollectFn>,
}

/// A running [`MetricsCollector`]. Dropping it stops scheduling and returns promptly: it waits at
/// most 50 ms for runs in progress; a collector still blocked then keeps its thread until its run
/// returns, and that thread then exits without running again.
pub struct RunningCollector {
    manager: MetricsManager,
    interval: Duration,
    /// Set before the scheduler is told to stop: a collector thread that finds it set when its
    /// tick arrives does not run.
    stopping: Arc<AtomicBool>,
    /// Dropped to wake and stop the scheduler.
    stop: Option<mpsc::Sender<()>>,
    scheduler: Option<JoinHandle<()>>,
    workers: Vec<Worker>,
}

impl std::fmt::Debug for RunningCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningCollector")
            .field("interval", &self.interval)
            .field("collectors", &self.workers.iter().map(|w| &w.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Runs one collector once, timing it and catching a panic; whether it panicked.
fn run_one(manager: &MetricsManager, name: &str, f: &mut CollectFn) -> bool {
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| f(manager)));
    let _ = manager.observe_histogram(COLLECTOR_DURATION_METRIC, started.elapsed().as_secs_f64(), &[name]);
    let Err(p) = result else { return false };
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    tracing::error!(collector = %name, "mmo-metrics: collector `{name}` panicked: {msg}");
    let r = &manager.registry;
    r.count_self(&r.self_metrics().collector_panics, name);
    true
}

impl MetricsCollector {
    /// A collector for `manager` that runs every `interval` (10 s is the usual choice, and the
    /// `metrics` service's default). An interval shorter than [`MIN_COLLECT_INTERVAL`] is raised
    /// to it, with a warning naming both.
    pub fn new(manager: MetricsManager, interval: Duration) -> Self {
        let _ = manager.register_histogram(
            COLLECTOR_DURATION_METRIC,
            "Time a collector run took, in seconds.",
            &["collector"],
            &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
        );
        let _ = manager.register_counter(
            COLLECTOR_SKIPPED_METRIC,
            "Ticks at which a collector did not run because its previous run had not returned.",
            &["collector"],
        );
        if interval < MIN_COLLECT_INTERVAL {
            tracing::warn!(
                requested = ?interval,
                minimum = ?MIN_COLLECT_INTERVAL,
                "mmo-metrics: collection interval {interval:?} is below the minimum of {MIN_COLLECT_INTERVAL:?}; \
                 collecting every {MIN_COLLECT_INTERVAL:?}"
            );
        }
        Self {
            manager,
            interval: interval.max(MIN_COLLECT_INTERVAL),
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

    /// Runs every collector once, now, one after another on this thread; returns how many
    /// panicked.
    pub fn collect_once(&mut self) -> usize {
        let mut panics = 0;
        for (name, f) in &mut self.collectors {
            panics += usize::from(run_one(&self.manager, name, f));
        }
        panics
    }

    /// Starts collecting: every collector runs now, then every interval, each on its own thread,
    /// until the returned guard is dropped or stopped.
    pub fn start(self) -> RunningCollector {
        let MetricsCollector {
            manager,
            interval,
            collectors,
        } = self;
        let stopping = Arc::new(AtomicBool::new(false));
        let mut ticks = Vec::with_capacity(collectors.len());
        let mut workers = Vec::with_capacity(collectors.len());
        for (name, mut f) in collectors {
            // One pending tick at most: the scheduler only sends to a collector that is idle.
            let (tick, ticked) = mpsc::sync_channel::<()>(1);
            let busy = Arc::new(AtomicBool::new(false));
            let (m, n, b, stop) = (manager.clone(), name.clone(), Arc::clone(&busy), Arc::clone(&stopping));
            let thread = std::thread::Builder::new()
                .name(format!("mmo-collect-{}", name.replace('\0', "")))
                .spawn(move || {
                    // Ends when the scheduler drops the sender (it stopped).
                    while ticked.recv().is_ok() {
                        // Relaxed: a flag read for itself; a run that starts as the guard stops is
                        // waited for like any run in progress.
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        run_one(&m, &n, &mut f);
                        // Release, paired with the scheduler's Acquire load: once it sees the run
                        // ended, the run's writes happen before the next tick it sends.
                        b.store(false, Ordering::Release);
                    }
                    f
                })
                .expect("spawn a collector thread");
            ticks.push(Tick {
                name: name.clone(),
                tick,
                busy,
                skipped: 0,
            });
            workers.push(Worker { name, thread });
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let m = manager.clone();
        let scheduler = std::thread::Builder::new()
            .name("mmo-metrics-collector".into())
            .spawn(move || {
                let mut next = Instant::now();
                loop {
                    for t in &mut ticks {
                        t.fire(&m);
                    }
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        // The scheduler was descheduled past a tick: skip the missed ticks.
                        next = now + interval;
                    }
                    match stopped.recv_timeout(next - now) {
                        Err(RecvTimeoutError::Timeout) => {}
                        // Dropping `ticks` disconnects every collector thread waiting for a tick.
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .expect("spawn the collector scheduler thread");
        RunningCollector {
            manager,
            interval,
            stopping,
            stop: Some(stop),
            scheduler: Some(scheduler),
            workers,
        }
    }
}

/// The scheduler's side of one collector.
struct Tick {
    name: String,
    tick: SyncSender<()>,
    /// Set by the scheduler when it sends a tick, cleared by the collector thread after the run.
    busy: Arc<AtomicBool>,
    /// Ticks skipped in a row.
    skipped: u64,
}

impl Tick {
    /// Hands the collector its tick, or counts the tick skipped if its last run has not returned.
    fn fire(&mut self, manager: &MetricsManager) {
        // Acquire: pairs with the collector thread's Release after its run.
        if self.busy.load(Ordering::Acquire) {
            self.skipped += 1;
            let _ = manager.increment_counter(COLLECTOR_SKIPPED_METRIC, 1, &[&self.name]);
            if self.skipped == 1 {
                tracing::warn!(
                    collector = %self.name,
                    "mmo-metrics: collector `{}` is still running from an earlier tick; skipped until it returns \
                     (counted in `{COLLECTOR_SKIPPED_METRIC}_total`)",
                    self.name
                );
            }
            return;
        }
        if self.skipped > 0 {
            tracing::info!(
                collector = %self.name,
                skipped = self.skipped,
                "mmo-metrics: collector `{}` recovered after {} skipped ticks",
                self.name,
                self.skipped
            );
            self.skipped = 0;
        }
        // Relaxed: only the scheduler sets it, and the channel orders the tick after it.
        self.busy.store(true, Ordering::Relaxed);
        match self.tick.try_send(()) {
            Ok(()) => {}
            // Not busy, so its one-slot buffer is empty; a thread that exited (only as the guard
            // stops) is not sent to again.
            Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

impl RunningCollector {
    /// Stops scheduling and waits up to 1 s for runs in progress; gives the collector back (with
    /// every collector, for [`MetricsCollector::collect_once`] or another `start`) if they all
    /// returned, `None` otherwise. See [`RunningCollector::stop_timeout`].
    pub fn stop(self) -> Option<MetricsCollector> {
        self.stop_timeout(STOP_WAIT)
    }

    /// Stops scheduling and waits up to `timeout` for runs in progress. If every collector's
    /// thread returned, gives the collector back; otherwise returns `None`, and a collector still
    /// running keeps its thread until its run returns (it does not run again).
    pub fn stop_timeout(mut self, timeout: Duration) -> Option<MetricsCollector> {
        self.shutdown(timeout)
    }

    fn shutdown(&mut self, wait: Duration) -> Option<MetricsCollector> {
        self.stopping.store(true, Ordering::Relaxed);
        drop(self.stop.take());
        // The scheduler never runs a collector: it wakes from its wait and returns at once.
        if let Some(s) = self.scheduler.take() {
            let _ = s.join();
        }
        let deadline = Instant::now() + wait;
        while self.workers.iter().any(|w| !w.thread.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let workers = std::mem::take(&mut self.workers);
        if workers.iter().any(|w| !w.thread.is_finished()) {
            // Dropping the handles detaches the threads still running.
            return None;
        }
        let mut collectors = Vec::with_capacity(workers.len());
        for w in workers {
            // A panic in a run is caught there, so the thread returns its collector.
            collectors.push((w.name, w.thread.join().ok()?));
        }
        Some(MetricsCollector {
            manager: self.manager.clone(),
            interval: self.interval,
            collectors,
        })
    }
}

impl Drop for RunningCollector {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.shutdown(DROP_WAIT);
        }
    }
}
