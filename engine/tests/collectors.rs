//! Collectors run independently: one that blocks neither delays the others nor stops the guard
//! from dropping; the interval has a minimum. Bounded in time: blocked collectors wait on
//! channels the tests release.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{capture_logs, global_logs, value};
use mmo_metrics::{MetricsCollector, MetricsManager, RunningCollector, MIN_COLLECT_INTERVAL};
use tracing::Level;

/// A collector that blocks in its first run until `release` receives (or is dropped).
fn blocking(release: mpsc::Receiver<()>, entered: mpsc::Sender<()>) -> impl FnMut(&MetricsManager) + Send {
    let release = Mutex::new(release);
    let mut first = true;
    move |_| {
        if std::mem::take(&mut first) {
            let _ = entered.send(());
            let _ = release.lock().unwrap().recv();
        }
    }
}

fn counting(runs: &Arc<AtomicUsize>) -> impl FnMut(&MetricsManager) + Send {
    let runs = Arc::clone(runs);
    move |_| {
        runs.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits until `cond` holds, up to `limit`.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// Drops `running` on another thread; how long the drop took, or `None` past `limit`.
fn timed_drop(running: RunningCollector, limit: Duration) -> Option<Duration> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let t = Instant::now();
        drop(running);
        let _ = tx.send(t.elapsed());
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn a_blocked_collector_does_not_stall_the_others_and_is_skipped() {
    let logs = global_logs();
    let m = MetricsManager::new();
    let mut c = MetricsCollector::new(m.clone(), MIN_COLLECT_INTERVAL);
    let (release_tx, release_rx) = mpsc::channel();
    let (entered_tx, entered_rx) = mpsc::channel();
    let runs = Arc::new(AtomicUsize::new(0));
    c.add_named_collector("stuck_a", blocking(release_rx, entered_tx));
    c.add_named_collector("steady_a", counting(&runs));
    let started = Instant::now();
    let running = c.start();
    entered_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the blocking collector ran");
    // Ticks at 0, 100, 200, 300, 400 ms: the steady collector runs at each.
    let ok = wait_for(Duration::from_secs(3), || runs.load(Ordering::SeqCst) >= 5);
    let elapsed = started.elapsed();
    if !ok {
        let _ = release_tx.send(());
        panic!(
            "the steady collector ran {} times in {elapsed:?}",
            runs.load(Ordering::SeqCst)
        );
    }
    assert!(
        elapsed < Duration::from_millis(1_500),
        "{elapsed:?} for 5 runs every 100 ms"
    );
    let skipped = value(&m, "mmo_metrics_collector_skipped_total{collector=\"stuck_a\"}").unwrap_or(0.0);
    assert!(skipped >= 3.0, "skipped {skipped}");
    assert_eq!(
        value(&m, "mmo_metrics_collector_skipped_total{collector=\"steady_a\"}"),
        None
    );
    // Released: it runs again at the next ticks, and the recovery is logged once.
    release_tx.send(()).unwrap();
    let before = value(
        &m,
        "mmo_metrics_collector_duration_seconds_count{collector=\"stuck_a\"}",
    )
    .unwrap_or(0.0);
    assert!(wait_for(Duration::from_secs(3), || {
        value(
            &m,
            "mmo_metrics_collector_duration_seconds_count{collector=\"stuck_a\"}",
        )
        .unwrap_or(0.0)
            >= before + 2.0
    }));
    drop(running);
    let l = logs.lock().unwrap();
    assert_eq!(l.count(Level::WARN, &["stuck_a", "skipped"]), 1, "{:?}", l.messages);
    assert_eq!(l.count(Level::INFO, &["stuck_a", "recovered"]), 1, "{:?}", l.messages);
    assert_eq!(l.count(Level::WARN, &["steady_a"]), 0, "{:?}", l.messages);
}

#[test]
fn drop_returns_promptly_while_a_collector_is_blocked() {
    let m = MetricsManager::new();
    let mut c = MetricsCollector::new(m.clone(), MIN_COLLECT_INTERVAL);
    let (release_tx, release_rx) = mpsc::channel();
    let (entered_tx, entered_rx) = mpsc::channel();
    let runs = Arc::new(AtomicUsize::new(0));
    c.add_named_collector("steady_b", counting(&runs));
    c.add_named_collector("stuck_b", blocking(release_rx, entered_tx));
    let running = c.start();
    entered_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the blocking collector ran");
    let took = timed_drop(running, Duration::from_secs(2));
    let _ = release_tx.send(());
    let took = took.expect("drop did not return within 2 s while a collector was blocked");
    assert!(took < Duration::from_millis(150), "drop took {took:?}");
    // Nothing is scheduled after the drop.
    let after = runs.load(Ordering::SeqCst);
    std::thread::sleep(MIN_COLLECT_INTERVAL * 3);
    assert_eq!(runs.load(Ordering::SeqCst), after);
}

#[test]
fn stop_gives_the_collector_back_only_when_every_run_returned() {
    let m = MetricsManager::new();
    let mut c = MetricsCollector::new(m.clone(), MIN_COLLECT_INTERVAL);
    let (release_tx, release_rx) = mpsc::channel();
    let (entered_tx, entered_rx) = mpsc::channel();
    c.add_named_collector("stuck_c", blocking(release_rx, entered_tx));
    let running = c.start();
    entered_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the blocking collector ran");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let t = Instant::now();
        let back = running.stop_timeout(Duration::from_millis(50));
        let _ = tx.send((back.is_some(), t.elapsed()));
    });
    let got = rx.recv_timeout(Duration::from_secs(2));
    let _ = release_tx.send(());
    let (back, took) = got.expect("stop_timeout did not return within 2 s");
    assert!(!back, "a blocked collector cannot be given back");
    assert!(took < Duration::from_millis(500), "{took:?}");

    // All idle: stop gives it back, with its collectors.
    let runs = Arc::new(AtomicUsize::new(0));
    let mut c = MetricsCollector::new(m.clone(), MIN_COLLECT_INTERVAL);
    c.add_named_collector("steady_c", counting(&runs));
    let running = c.start();
    assert!(wait_for(Duration::from_secs(2), || runs.load(Ordering::SeqCst) >= 1));
    let mut back = running.stop().expect("every run returned");
    let n = runs.load(Ordering::SeqCst);
    assert_eq!(back.collect_once(), 0);
    assert_eq!(runs.load(Ordering::SeqCst), n + 1);
}

#[test]
fn collector_interval_is_raised_to_the_minimum_with_a_warning() {
    let m = MetricsManager::new();
    let (c, logs) = capture_logs(|| MetricsCollector::new(m.clone(), Duration::from_nanos(1)));
    assert_eq!(c.interval(), MIN_COLLECT_INTERVAL);
    assert_eq!(logs.count(Level::WARN, &["1ns", "100ms"]), 1, "{logs:?}");
    let (c, logs) = capture_logs(|| MetricsCollector::new(m.clone(), Duration::from_millis(250)));
    assert_eq!(c.interval(), Duration::from_millis(250));
    assert_eq!(logs.warns, 0);
    assert!(MIN_COLLECT_INTERVAL <= Duration::from_millis(100));
}
