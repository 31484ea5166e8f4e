//! Exposition cost: `mmo_metrics_exporter::encode_text` against metrics-exporter-prometheus 0.18's
//! `PrometheusHandle::render`, on registries of the same shape.
//!
//! - `encode/10k_counters_1k_histograms`: 1,000 counter names × 10 values of one label (10,000
//!   series) and 100 histogram names × 10 values of one label (1,000 series, default buckets),
//!   every series with values recorded.
//! - `encode/100k_counters`: 1,000 counter names × 100 values of one label (100,000 series).
//!
//! The peer is built with the default buckets configured, so it renders histograms (not
//! summaries), as ours does. Its histograms keep raw samples until a render drains them; the
//! samples are recorded once before the benchmark, so every render after the first drains nothing
//! and the figure is the steady-state cost of a scrape.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use mmo_metrics::{MetricsManager, DEFAULT_BUCKETS};

const MMO: &str = "mmo";
const PEER: &str = "metrics-exporter-prometheus";

/// Counter and histogram names and label values of one registry shape.
struct Shape {
    counter_names: usize,
    counter_values: usize,
    histogram_names: usize,
    histogram_values: usize,
}

fn counter_name(n: usize) -> String {
    format!("bench_counter_{n}_total")
}

fn histogram_name(n: usize) -> String {
    format!("bench_histogram_{n}_seconds")
}

fn observation(n: usize, v: usize, k: usize) -> f64 {
    // Spread over the default buckets (0.005 … 10 and +Inf).
    0.001 * (1 + (n * 7 + v * 13 + k * 31) % 15_000) as f64
}

fn ours(shape: &Shape) -> MetricsManager {
    let limit = shape.counter_values.max(shape.histogram_values) + 1;
    let manager = MetricsManager::builder().series_limit(limit).build();
    for n in 0..shape.counter_names {
        let name = counter_name(n);
        manager
            .register_counter(&name, "A bench counter.", &["zone"])
            .expect("register counter");
        for v in 0..shape.counter_values {
            let zone = format!("zone{v}");
            manager
                .increment_counter(&name, (n * 31 + v) as u64 + 1, &[&zone])
                .expect("increment");
        }
    }
    for n in 0..shape.histogram_names {
        let name = histogram_name(n);
        manager
            .register_histogram(&name, "A bench histogram.", &["zone"], &[])
            .expect("register histogram");
        for v in 0..shape.histogram_values {
            let zone = format!("zone{v}");
            let h = manager.histogram(&name, &[&zone]).expect("histogram handle");
            for k in 0..10 {
                h.record(observation(n, v, k));
            }
        }
    }
    manager
}

fn peer(shape: &Shape) -> PrometheusHandle {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&DEFAULT_BUCKETS)
        .expect("valid buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        for n in 0..shape.counter_names {
            let name = counter_name(n);
            metrics::describe_counter!(name.clone(), "A bench counter.");
            for v in 0..shape.counter_values {
                metrics::counter!(name.clone(), "zone" => format!("zone{v}")).increment((n * 31 + v) as u64 + 1);
            }
        }
        for n in 0..shape.histogram_names {
            let name = histogram_name(n);
            metrics::describe_histogram!(name.clone(), "A bench histogram.");
            for v in 0..shape.histogram_values {
                let h = metrics::histogram!(name.clone(), "zone" => format!("zone{v}"));
                for k in 0..10 {
                    h.record(observation(n, v, k));
                }
            }
        }
    });
    // The first render drains the buffered samples into the histograms.
    drop(handle.render());
    handle
}

fn bench_shape(c: &mut Criterion, group: &str, shape: &Shape) {
    let manager = ours(shape);
    let handle = peer(shape);
    let (a, b) = (mmo_metrics_exporter::encode_text(&manager), handle.render());
    let series = shape.counter_names * shape.counter_values + shape.histogram_names * shape.histogram_values;
    eprintln!(
        "{group}: {series} series; output bytes: {MMO} {}, {PEER} {}; lines: {MMO} {}, {PEER} {}",
        a.len(),
        b.len(),
        a.lines().count(),
        b.lines().count()
    );

    let mut g = c.benchmark_group(group);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(10);
    g.bench_function(MMO, |bch| bch.iter(|| mmo_metrics_exporter::encode_text(&manager)));
    g.bench_function(PEER, |bch| bch.iter(|| handle.render()));
    g.finish();
}

fn encode(c: &mut Criterion) {
    bench_shape(
        c,
        "encode_10k_counters_1k_histograms",
        &Shape {
            counter_names: 1_000,
            counter_values: 10,
            histogram_names: 100,
            histogram_values: 10,
        },
    );
    bench_shape(
        c,
        "encode_100k_counters",
        &Shape {
            counter_names: 1_000,
            counter_values: 100,
            histogram_names: 0,
            histogram_values: 0,
        },
    );
}

criterion_group!(benches, encode);
criterion_main!(benches);
