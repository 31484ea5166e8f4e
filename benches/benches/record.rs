//! Recording cost, ns per operation per thread: mmo-metrics against metrics-exporter-prometheus
//! 0.18, in one run.
//!
//! Cases (each on 1 thread and on 2 threads writing the same series):
//!
//! - `counter_handle`: a counter handle resolved once, then `increment(1)`.
//! - `counter_macro`: `counter!("…").increment(1)` per call (static name), through the recorder as
//!   a local recorder (`metrics::with_local_recorder`, entered by each worker thread).
//! - `counter_macro_labels`: the same with two static labels.
//! - `histogram`: a histogram handle, `record(v)` (ours: default buckets; peer: buckets configured,
//!   so it renders a histogram — its recording path is the same either way).
//! - `summary`: ours `SummaryHandle::observe`; the peer's summary is its histogram without buckets
//!   (rendered as a summary), so its `Histogram::record` is its summary observe.
//!
//! Histogram and summary values cycle through [`VALUES`], spread over the default buckets, so the
//! bucket search is not always answered by the first bound and its exit branch is not predictable
//! (the realistic case). `histogram_fixed` and `summary_fixed` record one constant value (0.042)
//! instead: the best case, for comparison.
//!
//! Two-thread cases use `iter_custom`: two scoped threads meet at a barrier, each does `iters`
//! operations, and the slower thread's time is the sample, so the figure is time per operation
//! per thread. Each worker does a few untimed operations before the barrier (first-use costs:
//! shard slot, per-thread caches).
//!
//! The peer's histograms buffer every raw sample until upkeep drains them; the bench drains them
//! outside the timed region after every sample (`PrometheusHandle::run_upkeep`) so memory stays
//! bounded. That drain is not timed.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use mmo_metrics::{MetricsManager, DEFAULT_BUCKETS};

const MMO: &str = "mmo";
const PEER: &str = "metrics-exporter-prometheus";
/// Untimed operations per worker before the timed region.
const WARM_OPS: u64 = 1_000;

/// Observation values: 64 values spread (log-uniformly) from 0.001 to 20, i.e. over every default
/// bucket and `+Inf`.
static VALUES: [f64; 64] = values();

const fn values() -> [f64; 64] {
    // 0.001 * 1.17^k for k = 0..64 (≈ 0.001 … 19.7); const fn cannot call powf, so multiply.
    let mut out = [0.0; 64];
    let mut v = 0.001;
    let mut i = 0;
    while i < 64 {
        // Scatter the order so consecutive calls land in different buckets.
        out[(i * 37) % 64] = v;
        v *= 1.17;
        i += 1;
    }
    out
}

#[inline(always)]
fn value(i: u64) -> f64 {
    VALUES[(i & 63) as usize]
}

/// Runs `op(i)` for `i in 0..iters` on two scoped threads after a barrier, returning the slower
/// thread's elapsed time. `setup` runs on each worker first (e.g. to enter a local recorder); the
/// workers do [`WARM_OPS`] untimed operations before the barrier.
fn two_threads<F>(iters: u64, op: F) -> Duration
where
    F: Fn(u64) + Sync,
{
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    for i in 0..WARM_OPS {
                        op(i);
                    }
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters {
                        op(i);
                    }
                    start.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("bench worker panicked"))
            .max()
            .expect("two workers")
    })
}

/// As [`two_threads`], but each worker runs inside `metrics::with_local_recorder(recorder, …)`.
fn two_threads_local<R, F>(iters: u64, recorder: &R, op: F) -> Duration
where
    R: metrics::Recorder + Sync,
    F: Fn(u64) + Sync,
{
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    metrics::with_local_recorder(recorder, || {
                        for i in 0..WARM_OPS {
                            op(i);
                        }
                        barrier.wait();
                        let start = Instant::now();
                        for i in 0..iters {
                            op(i);
                        }
                        start.elapsed()
                    })
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("bench worker panicked"))
            .max()
            .expect("two workers")
    })
}

/// One thread, `iters` operations, timed; the closure runs inside whatever context the caller set.
fn one_thread(iters: u64, mut op: impl FnMut(u64)) -> Duration {
    for i in 0..WARM_OPS {
        op(i);
    }
    let start = Instant::now();
    for i in 0..iters {
        op(i);
    }
    start.elapsed()
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    g
}

fn peer_summary_recorder() -> (PrometheusRecorder, PrometheusHandle) {
    let rec = PrometheusBuilder::new().build_recorder();
    let handle = rec.handle();
    (rec, handle)
}

fn peer_histogram_recorder() -> (PrometheusRecorder, PrometheusHandle) {
    let rec = PrometheusBuilder::new()
        .set_buckets(&DEFAULT_BUCKETS)
        .expect("valid buckets")
        .build_recorder();
    let handle = rec.handle();
    (rec, handle)
}

fn counter_handle(c: &mut Criterion) {
    let manager = MetricsManager::new();
    manager
        .register_counter("bench_counter", "Bench counter.", &[])
        .expect("register");
    let ours = manager.counter("bench_counter", &[]).expect("handle");
    let (peer_rec, _peer_handle) = peer_summary_recorder();
    let peer = metrics::with_local_recorder(&peer_rec, || metrics::counter!("bench_counter"));

    let mut g = configure(c, "counter_handle");
    g.bench_function(format!("1t/{MMO}"), |b| b.iter(|| black_box(&ours).increment(1)));
    g.bench_function(format!("1t/{PEER}"), |b| b.iter(|| black_box(&peer).increment(1)));
    g.bench_function(format!("2t/{MMO}"), |b| {
        b.iter_custom(|iters| two_threads(iters, |_| black_box(&ours).increment(1)))
    });
    g.bench_function(format!("2t/{PEER}"), |b| {
        b.iter_custom(|iters| two_threads(iters, |_| black_box(&peer).increment(1)))
    });
    g.finish();
}

fn counter_macro(c: &mut Criterion) {
    let manager = MetricsManager::new();
    let ours = manager.recorder();
    let (peer, _peer_handle) = peer_summary_recorder();

    let mut g = configure(c, "counter_macro");
    g.bench_function(format!("1t/{MMO}"), |b| {
        metrics::with_local_recorder(&ours, || b.iter(|| metrics::counter!("bench_macro_total").increment(1)))
    });
    g.bench_function(format!("1t/{PEER}"), |b| {
        metrics::with_local_recorder(&peer, || b.iter(|| metrics::counter!("bench_macro_total").increment(1)))
    });
    g.bench_function(format!("2t/{MMO}"), |b| {
        b.iter_custom(|iters| two_threads_local(iters, &ours, |_| metrics::counter!("bench_macro_total").increment(1)))
    });
    g.bench_function(format!("2t/{PEER}"), |b| {
        b.iter_custom(|iters| two_threads_local(iters, &peer, |_| metrics::counter!("bench_macro_total").increment(1)))
    });
    g.finish();
}

fn counter_macro_labels(c: &mut Criterion) {
    let manager = MetricsManager::new();
    let ours = manager.recorder();
    let (peer, _peer_handle) = peer_summary_recorder();

    let mut g = configure(c, "counter_macro_labels");
    g.bench_function(format!("1t/{MMO}"), |b| {
        metrics::with_local_recorder(&ours, || {
            b.iter(|| metrics::counter!("bench_labels_total", "a" => "1", "b" => "2").increment(1))
        })
    });
    g.bench_function(format!("1t/{PEER}"), |b| {
        metrics::with_local_recorder(&peer, || {
            b.iter(|| metrics::counter!("bench_labels_total", "a" => "1", "b" => "2").increment(1))
        })
    });
    g.bench_function(format!("2t/{MMO}"), |b| {
        b.iter_custom(|iters| {
            two_threads_local(iters, &ours, |_| {
                metrics::counter!("bench_labels_total", "a" => "1", "b" => "2").increment(1)
            })
        })
    });
    g.bench_function(format!("2t/{PEER}"), |b| {
        b.iter_custom(|iters| {
            two_threads_local(iters, &peer, |_| {
                metrics::counter!("bench_labels_total", "a" => "1", "b" => "2").increment(1)
            })
        })
    });
    g.finish();
}

/// The fixed value of the `*_fixed` groups.
#[inline(always)]
fn fixed(_i: u64) -> f64 {
    0.042
}

fn histogram(c: &mut Criterion) {
    histogram_group(c, "histogram", value);
    histogram_group(c, "histogram_fixed", fixed);
}

fn summary(c: &mut Criterion) {
    summary_group(c, "summary", value);
    summary_group(c, "summary_fixed", fixed);
}

fn histogram_group<V: Fn(u64) -> f64 + Copy + Sync>(c: &mut Criterion, group: &str, value: V) {
    let manager = MetricsManager::new();
    manager
        .register_histogram("bench_histogram", "Bench histogram.", &[], &[])
        .expect("register");
    let ours = manager.histogram("bench_histogram", &[]).expect("handle");
    let (peer_rec, peer_handle) = peer_histogram_recorder();
    let peer = metrics::with_local_recorder(&peer_rec, || metrics::histogram!("bench_histogram"));

    let mut g = configure(c, group);
    g.bench_function(format!("1t/{MMO}"), |b| {
        b.iter_custom(|iters| one_thread(iters, |i| black_box(&ours).record(value(black_box(i)))))
    });
    g.bench_function(format!("1t/{PEER}"), |b| {
        b.iter_custom(|iters| {
            let t = one_thread(iters, |i| black_box(&peer).record(value(black_box(i))));
            peer_handle.run_upkeep();
            t
        })
    });
    g.bench_function(format!("2t/{MMO}"), |b| {
        b.iter_custom(|iters| two_threads(iters, |i| black_box(&ours).record(value(black_box(i)))))
    });
    g.bench_function(format!("2t/{PEER}"), |b| {
        b.iter_custom(|iters| {
            let t = two_threads(iters, |i| black_box(&peer).record(value(black_box(i))));
            peer_handle.run_upkeep();
            t
        })
    });
    g.finish();
}

fn summary_group<V: Fn(u64) -> f64 + Copy + Sync>(c: &mut Criterion, group: &str, value: V) {
    let manager = MetricsManager::new();
    manager
        .register_summary("bench_summary", "Bench summary.", &[], &[])
        .expect("register");
    let ours = manager.summary("bench_summary", &[]).expect("handle");
    let (peer_rec, peer_handle) = peer_summary_recorder();
    let peer = metrics::with_local_recorder(&peer_rec, || metrics::histogram!("bench_summary"));

    let mut g = configure(c, group);
    g.bench_function(format!("1t/{MMO}"), |b| {
        b.iter_custom(|iters| one_thread(iters, |i| black_box(&ours).observe(value(black_box(i)))))
    });
    g.bench_function(format!("1t/{PEER}"), |b| {
        b.iter_custom(|iters| {
            let t = one_thread(iters, |i| black_box(&peer).record(value(black_box(i))));
            peer_handle.run_upkeep();
            t
        })
    });
    g.bench_function(format!("2t/{MMO}"), |b| {
        b.iter_custom(|iters| two_threads(iters, |i| black_box(&ours).observe(value(black_box(i)))))
    });
    g.bench_function(format!("2t/{PEER}"), |b| {
        b.iter_custom(|iters| {
            let t = two_threads(iters, |i| black_box(&peer).record(value(black_box(i))));
            peer_handle.run_upkeep();
            t
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    counter_handle,
    counter_macro,
    counter_macro_labels,
    histogram,
    summary
);
criterion_main!(benches);
