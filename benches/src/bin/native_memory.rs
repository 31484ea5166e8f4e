//! Heap per native histogram series at the default bucket limit, ours against the Rust peers
//! that have native histograms.
//!
//! ```text
//! cargo run --release -p mmo-metrics-benches --bin native_memory -- [series]
//! ```
//!
//! Each library gets `series` (default 1,000) native histogram series at bucket factor 1.1
//! (schema 3), each filled with one observation in each of 160 buckets (`0.001 · 2^(k/8)`, `k` in
//! `0..160`: 20 powers of two, the default limit of ours and metrics-exporter-prometheus'
//! configuration here), recorded from one thread. Prints one line per library:
//!
//! ```text
//! bench-native-memory: lib=mmo series=1000 buckets=160 heap_per_series=…
//! ```
//!
//! `heap_per_series` is the growth of live heap bytes (counted by the binary's global allocator)
//! divided by the series: what the library keeps per series, registry entry included.
//! metrics-exporter-prometheus keeps raw samples until upkeep folds them into its native
//! histogram, so its figure is taken after `run_upkeep`.

use mmo_metrics::{MetricsManager, NativeConfig};
use mmo_metrics_benches::{counted, start_counting, CountingAlloc, MEP, MMO, PCLIENT};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram as PcHistogram, NativeHistogramConfig as PcNative};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const BUCKETS: u32 = 160;

fn values() -> impl Iterator<Item = f64> {
    (0..BUCKETS).map(|k| 0.001 * 2f64.powf(f64::from(k) / 8.0))
}

fn report(lib: &str, series: usize, live: i64) {
    println!(
        "bench-native-memory: lib={lib} series={series} buckets={BUCKETS} heap_per_series={:.0}",
        live.max(0) as f64 / series as f64
    );
}

fn ours(series: usize) {
    start_counting();
    let m = MetricsManager::builder().series_limit(series + 1).build();
    m.register_native_histogram("rtt_seconds", "Round trips.", &["player"], NativeConfig::default())
        .expect("register");
    for i in 0..series {
        let h = m.histogram("rtt_seconds", &[&format!("player{i}")]).expect("series");
        values().for_each(|v| h.record(v));
    }
    let live = counted().live_bytes;
    report(MMO, series, live);
    drop(m);
}

fn pclient(series: usize) {
    type Labels = [(&'static str, String); 1];
    fn native() -> PcHistogram {
        PcHistogram::new_native(PcNative::new(1.1).max_buckets(BUCKETS as usize))
    }
    start_counting();
    let family = Family::<Labels, PcHistogram, fn() -> PcHistogram>::new_with_constructor(native);
    for i in 0..series {
        let h = family.get_or_create_owned(&[("player", format!("player{i}"))]);
        values().for_each(|v| h.observe(v));
    }
    let live = counted().live_bytes;
    report(PCLIENT, series, live);
    drop(family);
}

fn mep(series: usize) {
    start_counting();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_native_histogram_for_metric(
            metrics_exporter_prometheus::Matcher::Full("rtt_seconds".into()),
            metrics_exporter_prometheus::NativeHistogramConfig::new(1.1, BUCKETS, 2f64.powi(-128)).expect("valid"),
        )
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        for i in 0..series {
            let h = metrics::histogram!("rtt_seconds", "player" => format!("player{i}"));
            values().for_each(|v| h.record(v));
        }
    });
    handle.run_upkeep();
    let live = counted().live_bytes;
    report(MEP, series, live);
    drop(recorder);
}

fn main() {
    let series = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("series: a number"))
        .unwrap_or(1_000);
    ours(series);
    pclient(series);
    mep(series);
}
