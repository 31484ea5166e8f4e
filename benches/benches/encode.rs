//! Exposition cost, ms per scrape, on registries of the same shape in four libraries, in three
//! formats. Prometheus text 0.0.4 (groups `encode_<shape>`):
//!
//! - mmo: `mmo_metrics_exporter::encode_text(&manager)`;
//! - metrics-exporter-prometheus 0.18: `PrometheusHandle::render()`;
//! - prometheus 0.14 (tikv): `TextEncoder::encode_to_string(&registry.gather())`;
//! - prometheus-client 0.25: `encoding::text::encode(&mut String, &registry)` (OpenMetrics text,
//!   the only text it writes).
//!
//! OpenMetrics 1.0 text (groups `openmetrics_<shape>`), against the one peer that writes it:
//!
//! - mmo: `mmo_metrics_exporter::encode_openmetrics_with(&manager, &[], &mut String)`;
//! - prometheus-client 0.25: `encoding::text::encode(&mut String, &registry)`.
//!
//! Prometheus protobuf, length-delimited `io.prometheus.client.MetricFamily` messages (groups
//! `protobuf_<shape>`), against the one peer that writes it:
//!
//! - mmo: `mmo_metrics_exporter::encode_protobuf_with(&manager, &[], &mut Vec<u8>)`;
//! - prometheus-client 0.25: `encoding::prometheus_protobuf::encode_to_vec(&registry)` (features
//!   `prometheus_protobuf` and `protobuf-protox`, enabled for the benches only).
//!
//! Every scrape writes into a new buffer, in every library.
//!
//! Shapes:
//!
//! - `10k_counters_1k_histograms`: 1,000 counter names × 10 values of one label (10,000 series)
//!   and 100 histogram names × 10 values of one label (1,000 series, default buckets), every
//!   series with values recorded.
//! - `100k_counters`: 1,000 counter names × 100 values of one label (100,000 series).
//!
//! Every library holds the same names, label values, counts and observations (prometheus-client
//! appends `_total` to counter names itself, so its counters are registered without it); one
//! registry per library and shape serves all three formats. Before timing, the OpenMetrics
//! outputs are checked to have the same number of lines and the protobuf outputs, decoded, the
//! same families and series. metrics-exporter-prometheus is built with the default buckets
//! configured, so it renders histograms (not summaries), as the others do; its histograms keep
//! raw samples until a render drains them, so one render runs before timing and the figure is a
//! steady-state scrape.
//!
//! **Allocations per scrape**: the binary's global allocator is a switchable counting allocator
//! (`mmo_metrics_benches::CountingAlloc`, one relaxed load per call while off, so it does not
//! slow the timed scrapes); before timing, one scrape per library and format runs with counting
//! on, and a line `bench-alloc: <group> <library> allocations=… bytes=… output_bytes=… lines=…`
//! (text formats) or `… output_bytes=… families=… series=…` (protobuf) goes to stderr
//! (`scripts/bench.sh` puts those lines in BENCHMARKS.md).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use mmo_metrics::{MetricsManager, DEFAULT_BUCKETS};
use mmo_metrics_benches::{count_allocations, CountingAlloc, MEP, MMO, PCLIENT, TIKV};
use mmo_metrics_exporter::proto::MetricFamily;
use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram as PcHistogram;
use prost::Message;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

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

fn counter_value(n: usize, v: usize) -> u64 {
    (n * 31 + v) as u64 + 1
}

fn observation(n: usize, v: usize, k: usize) -> f64 {
    // Spread over the default buckets (0.005 … 10 and +Inf).
    0.001 * (1 + (n * 7 + v * 13 + k * 31) % 15_000) as f64
}

const COUNTER_HELP: &str = "A bench counter.";
const HISTOGRAM_HELP: &str = "A bench histogram.";

fn ours(shape: &Shape) -> MetricsManager {
    let limit = shape.counter_values.max(shape.histogram_values) + 1;
    let manager = MetricsManager::builder().series_limit(limit).build();
    for n in 0..shape.counter_names {
        let name = counter_name(n);
        manager
            .register_counter(&name, COUNTER_HELP, &["zone"])
            .expect("register counter");
        for v in 0..shape.counter_values {
            let zone = format!("zone{v}");
            manager
                .increment_counter(&name, counter_value(n, v), &[&zone])
                .expect("increment");
        }
    }
    for n in 0..shape.histogram_names {
        let name = histogram_name(n);
        manager
            .register_histogram(&name, HISTOGRAM_HELP, &["zone"], &[])
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

fn mep(shape: &Shape) -> PrometheusHandle {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&DEFAULT_BUCKETS)
        .expect("valid buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        for n in 0..shape.counter_names {
            let name = counter_name(n);
            metrics::describe_counter!(name.clone(), COUNTER_HELP);
            for v in 0..shape.counter_values {
                metrics::counter!(name.clone(), "zone" => format!("zone{v}")).increment(counter_value(n, v));
            }
        }
        for n in 0..shape.histogram_names {
            let name = histogram_name(n);
            metrics::describe_histogram!(name.clone(), HISTOGRAM_HELP);
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

fn tikv(shape: &Shape) -> prometheus::Registry {
    let registry = prometheus::Registry::new();
    for n in 0..shape.counter_names {
        let vec = prometheus::IntCounterVec::new(prometheus::Opts::new(counter_name(n), COUNTER_HELP), &["zone"])
            .expect("counter vec");
        registry.register(Box::new(vec.clone())).expect("register counter");
        for v in 0..shape.counter_values {
            vec.with_label_values(&[format!("zone{v}")]).inc_by(counter_value(n, v));
        }
    }
    for n in 0..shape.histogram_names {
        let opts = prometheus::HistogramOpts::new(histogram_name(n), HISTOGRAM_HELP).buckets(DEFAULT_BUCKETS.to_vec());
        let vec = prometheus::HistogramVec::new(opts, &["zone"]).expect("histogram vec");
        registry.register(Box::new(vec.clone())).expect("register histogram");
        for v in 0..shape.histogram_values {
            let h = vec.with_label_values(&[format!("zone{v}")]);
            for k in 0..10 {
                h.observe(observation(n, v, k));
            }
        }
    }
    registry
}

fn tikv_encode(registry: &prometheus::Registry) -> String {
    let mut out = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&registry.gather(), &mut out)
        .expect("encode");
    out
}

type PcLabels = [(&'static str, String); 1];

fn pc_histogram() -> PcHistogram {
    PcHistogram::new(DEFAULT_BUCKETS.iter().copied())
}

fn pclient(shape: &Shape) -> prometheus_client::registry::Registry {
    let mut registry = prometheus_client::registry::Registry::default();
    for n in 0..shape.counter_names {
        let family = Family::<PcLabels, PcCounter>::default();
        // prometheus-client appends `_total` to counter samples itself.
        let name = counter_name(n);
        registry.register(name.trim_end_matches("_total"), COUNTER_HELP, family.clone());
        for v in 0..shape.counter_values {
            family
                .get_or_create(&[("zone", format!("zone{v}"))])
                .inc_by(counter_value(n, v));
        }
    }
    for n in 0..shape.histogram_names {
        let family = Family::<PcLabels, PcHistogram, fn() -> PcHistogram>::new_with_constructor(pc_histogram);
        registry.register(histogram_name(n), HISTOGRAM_HELP, family.clone());
        for v in 0..shape.histogram_values {
            let h = family.get_or_create_owned(&[("zone", format!("zone{v}"))]);
            for k in 0..10 {
                h.observe(observation(n, v, k));
            }
        }
    }
    registry
}

fn pclient_encode(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
    out
}

fn pclient_protobuf(registry: &prometheus_client::registry::Registry) -> Vec<u8> {
    prometheus_client::encoding::prometheus_protobuf::encode_to_vec(registry).expect("encode protobuf")
}

fn mmo_openmetrics(manager: &MetricsManager) -> String {
    let mut out = String::new();
    mmo_metrics_exporter::encode_openmetrics_with(manager, &[], &mut out);
    out
}

fn mmo_protobuf(manager: &MetricsManager) -> Vec<u8> {
    let mut out = Vec::new();
    mmo_metrics_exporter::encode_protobuf_with(manager, &[], &mut out);
    out
}

/// `output_bytes=… lines=…` of a text exposition.
fn describe_text(out: &str) -> String {
    format!("output_bytes={} lines={}", out.len(), out.lines().count())
}

/// The families of a length-delimited protobuf exposition.
fn decode_families(mut bytes: &[u8]) -> Vec<MetricFamily> {
    let mut families = Vec::new();
    while !bytes.is_empty() {
        let family = MetricFamily::decode_length_delimited(&mut bytes)
            .unwrap_or_else(|e| panic!("protobuf exposition: a length-delimited MetricFamily expected: {e}"));
        families.push(family);
    }
    families
}

/// `(families, series)` of a protobuf exposition.
fn protobuf_counts(bytes: &[u8]) -> (usize, usize) {
    let families = decode_families(bytes);
    let series = families.iter().map(|f| f.metric.len()).sum();
    (families.len(), series)
}

/// `output_bytes=… families=… series=…` of a protobuf exposition.
fn describe_protobuf(out: &[u8]) -> String {
    let (families, series) = protobuf_counts(out);
    format!("output_bytes={} families={families} series={series}", out.len())
}

/// One criterion group: an allocation-counted scrape per library (a `bench-alloc:` line each),
/// then the timed scrapes.
fn bench_group<T>(c: &mut Criterion, group: &str, encoders: &[(&str, &dyn Fn() -> T)], describe: fn(&T) -> String) {
    for (lib, encode) in encoders {
        // One scrape to warm up (first-use allocations, e.g. buffers kept for the next scrape).
        drop(encode());
        let (out, count) = count_allocations(encode);
        eprintln!(
            "bench-alloc: {group} {lib} allocations={} bytes={} {}",
            count.allocations,
            count.bytes,
            describe(&out)
        );
    }

    let mut g = c.benchmark_group(group);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    for (lib, encode) in encoders {
        g.bench_function(*lib, |b| b.iter(encode));
    }
    g.finish();
}

/// The three formats' groups (`encode_`, `openmetrics_`, `protobuf_` + `shape_id`) of one shape.
fn bench_shape(c: &mut Criterion, shape_id: &str, shape: &Shape) {
    let manager = ours(shape);
    let handle = mep(shape);
    let tikv_registry = tikv(shape);
    let pc_registry = pclient(shape);
    let series = shape.counter_names * shape.counter_values + shape.histogram_names * shape.histogram_values;
    eprintln!("{shape_id}: {series} series");

    let text: [(&str, &dyn Fn() -> String); 4] = [
        (MMO, &|| mmo_metrics_exporter::encode_text(&manager)),
        (MEP, &|| handle.render()),
        (TIKV, &|| tikv_encode(&tikv_registry)),
        (PCLIENT, &|| pclient_encode(&pc_registry)),
    ];
    bench_group(c, &format!("encode_{shape_id}"), &text, |out| describe_text(out));

    // The comparison is fair only if both libraries expose the same samples.
    let (ours_om, theirs_om) = (mmo_openmetrics(&manager), pclient_encode(&pc_registry));
    assert_eq!(
        ours_om.lines().count(),
        theirs_om.lines().count(),
        "{shape_id}: OpenMetrics lines of mmo and prometheus-client (the same samples expected)"
    );
    let openmetrics: [(&str, &dyn Fn() -> String); 2] = [
        (MMO, &|| mmo_openmetrics(&manager)),
        (PCLIENT, &|| pclient_encode(&pc_registry)),
    ];
    bench_group(c, &format!("openmetrics_{shape_id}"), &openmetrics, |out| {
        describe_text(out)
    });

    let (ours_pb, theirs_pb) = (mmo_protobuf(&manager), pclient_protobuf(&pc_registry));
    assert_eq!(
        protobuf_counts(&ours_pb),
        (shape.counter_names + shape.histogram_names, series),
        "{shape_id}: (families, series) of mmo's protobuf exposition"
    );
    assert_eq!(
        protobuf_counts(&theirs_pb),
        protobuf_counts(&ours_pb),
        "{shape_id}: (families, series) of prometheus-client's protobuf exposition against mmo's"
    );
    let protobuf: [(&str, &dyn Fn() -> Vec<u8>); 2] = [
        (MMO, &|| mmo_protobuf(&manager)),
        (PCLIENT, &|| pclient_protobuf(&pc_registry)),
    ];
    bench_group(c, &format!("protobuf_{shape_id}"), &protobuf, |out| {
        describe_protobuf(out)
    });
}

fn encode(c: &mut Criterion) {
    bench_shape(
        c,
        "10k_counters_1k_histograms",
        &Shape {
            counter_names: 1_000,
            counter_values: 10,
            histogram_names: 100,
            histogram_values: 10,
        },
    );
    bench_shape(
        c,
        "100k_counters",
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
