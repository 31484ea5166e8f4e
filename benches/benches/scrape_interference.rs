//! Recording while a large registry is scraped in a loop: two threads record (a counter
//! increment and a histogram record per operation) on their own series while a third thread
//! encodes a 100k-series registry over and over; against the same two threads with no scraper.
//! Four libraries, each with the same shape: mmo-metrics (`encode_text`),
//! metrics-exporter-prometheus 0.18 (`render`), prometheus 0.14 (tikv; `gather` + `TextEncoder`)
//! and prometheus-client 0.25 (`encoding::text::encode`).
//!
//! The machine has two cores, so a third busy thread takes CPU time from the recorders whatever
//! the library does. `cpu` cases therefore time each recorder by its own thread CPU time
//! (`getrusage(RUSAGE_THREAD)`): the cost of interference (shared cache lines, locks, memory
//! bandwidth) without the time-slicing. `wall` cases give the plain wall-clock figure for
//! reference. Figures are ns per operation per thread (the slower of the two threads). The number
//! of scrapes completed during each measurement goes to stderr as
//! `bench-scrapes: <clock> <library> <n>`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use metrics_exporter_prometheus::PrometheusBuilder;
use mmo_metrics::MetricsManager;
use mmo_metrics_benches::{hot_series, two_recorders, MEP, MMO, PCLIENT, TIKV};
use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram as PcHistogram;

const SERIES: usize = 100_000;

/// Runs `scrape` in a loop on its own thread while `f` runs.
fn while_scraping<T>(scrape: impl Fn() + Send + Sync + 'static, f: impl FnOnce() -> T) -> (T, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let h = thread::spawn(move || {
        let mut n = 0u64;
        while !s.load(Ordering::Relaxed) {
            scrape();
            n += 1;
        }
        n
    });
    let out = f();
    stop.store(true, Ordering::Relaxed);
    (out, h.join().unwrap())
}

fn measure<F>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    lib: &str,
    op: &F,
    scrape: impl Fn() + Send + Sync + Clone + 'static,
) where
    F: Fn(usize, u64) + Sync,
{
    for cpu in [true, false] {
        let clock = if cpu { "cpu" } else { "wall" };
        g.bench_function(format!("{clock}/quiet/{lib}"), |b| {
            b.iter_custom(|iters| two_recorders(iters, cpu, op))
        });
        let (_, scrapes) = while_scraping(scrape.clone(), || {
            g.bench_function(format!("{clock}/scraping_100k/{lib}"), |b| {
                b.iter_custom(|iters| two_recorders(iters, cpu, op))
            })
        });
        eprintln!("bench-scrapes: {clock} {lib} {scrapes}");
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("scrape_interference");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    let value = |i: u64| black_box((i & 31) as f64 * 0.01);

    // Ours: a 100k-series registry plus the two threads' own series.
    {
        let m = MetricsManager::builder().series_limit(SERIES * 2).build();
        m.register_counter("big", "", &["id"]).unwrap();
        for i in 0..SERIES {
            m.counter("big", &[&i.to_string()]).unwrap().increment(1);
        }
        let hot = hot_series(&m);
        let op = |t: usize, i: u64| {
            hot[t].0.increment(1);
            hot[t].1.record(value(i));
        };
        let m2 = m.clone();
        measure(&mut g, MMO, &op, move || {
            black_box(mmo_metrics_exporter::encode_text(&m2));
        });
    }

    // metrics-exporter-prometheus: the same shape through its recorder's handles.
    {
        let rec = PrometheusBuilder::new()
            .set_buckets(&mmo_metrics::DEFAULT_BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = rec.handle();
        let hot: Vec<_> = metrics::with_local_recorder(&rec, || {
            for i in 0..SERIES {
                metrics::counter!("big", "id" => i.to_string()).increment(1);
            }
            (0..2)
                .map(|t| {
                    (
                        metrics::counter!("hot", "t" => t.to_string()),
                        metrics::histogram!("hot_seconds", "t" => t.to_string()),
                    )
                })
                .collect()
        });
        let op = |t: usize, i: u64| {
            hot[t].0.increment(1);
            hot[t].1.record(value(i));
        };
        measure(&mut g, MEP, &op, move || {
            black_box(handle.render());
        });
    }

    // prometheus (tikv).
    {
        let registry = prometheus::Registry::new();
        let big = prometheus::IntCounterVec::new(prometheus::Opts::new("big", "big"), &["id"]).unwrap();
        registry.register(Box::new(big.clone())).unwrap();
        for i in 0..SERIES {
            big.with_label_values(&[i.to_string()]).inc();
        }
        let hot_c = prometheus::IntCounterVec::new(prometheus::Opts::new("hot", "hot"), &["t"]).unwrap();
        let hot_h = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("hot_seconds", "hot").buckets(mmo_metrics::DEFAULT_BUCKETS.to_vec()),
            &["t"],
        )
        .unwrap();
        registry.register(Box::new(hot_c.clone())).unwrap();
        registry.register(Box::new(hot_h.clone())).unwrap();
        let hot: Vec<_> = (0..2)
            .map(|t| {
                (
                    hot_c.with_label_values(&[t.to_string()]),
                    hot_h.with_label_values(&[t.to_string()]),
                )
            })
            .collect();
        let op = |t: usize, i: u64| {
            hot[t].0.inc();
            hot[t].1.observe(value(i));
        };
        measure(&mut g, TIKV, &op, move || {
            let mut out = String::new();
            prometheus::TextEncoder::new()
                .encode_utf8(&registry.gather(), &mut out)
                .unwrap();
            black_box(out);
        });
    }

    // prometheus-client.
    {
        type Labels = [(&'static str, String); 1];
        let mut registry = prometheus_client::registry::Registry::default();
        let big = Family::<Labels, PcCounter>::default();
        registry.register("big", "big", big.clone());
        for i in 0..SERIES {
            big.get_or_create(&[("id", i.to_string())]).inc();
        }
        let hot_c = Family::<Labels, PcCounter>::default();
        let hot_h = Family::<Labels, PcHistogram, fn() -> PcHistogram>::new_with_constructor(|| {
            PcHistogram::new(mmo_metrics::DEFAULT_BUCKETS.iter().copied())
        });
        registry.register("hot", "hot", hot_c.clone());
        registry.register("hot_seconds", "hot", hot_h.clone());
        let hot: Vec<_> = (0..2)
            .map(|t| {
                (
                    hot_c.get_or_create_owned(&[("t", t.to_string())]),
                    hot_h.get_or_create_owned(&[("t", t.to_string())]),
                )
            })
            .collect();
        let op = |t: usize, i: u64| {
            hot[t].0.inc();
            hot[t].1.observe(value(i));
        };
        let registry = Arc::new(registry);
        measure(&mut g, PCLIENT, &op, move || {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
            black_box(out);
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
