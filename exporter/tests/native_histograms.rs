//! Native histograms end to end: the protobuf exposition carries the buckets the read API reports
//! (spans, counts as deltas, zero bucket, schema), and a real Prometheus 2.42 with
//! `--enable-feature=native-histograms` (which asks for protobuf) stores them so that
//! `histogram_quantile` over the native series lands within one bucket of the exact quantile of
//! what was recorded.
//!
//! Prometheus is installed by `scripts/test.sh`; without it the Prometheus check prints a notice
//! and passes, unless `MMO_REQUIRE_TOOLS` is set (then it fails).

mod support;

use std::time::{Duration, Instant};

use mmo_metrics::{MetricsManager, NativeConfig, SeriesValue};
use mmo_metrics_exporter::proto::MetricFamily;
use mmo_metrics_exporter::{encode_protobuf_with, ExporterBuilder};
use prost::Message;
use support::{first_value, query, tool, Prometheus};

/// `n` latencies in seconds, log-normal around 5 ms (sigma 0.8), from a fixed seed: a
/// xorshift generator and the Box-Muller transform, so every run records the same values.
fn latencies(n: usize) -> Vec<f64> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // 53 random bits in (0, 1].
        ((state >> 11) + 1) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let z = (-2.0 * uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos();
            0.005 * (0.8 * z).exp()
        })
        .collect()
}

/// The `q` quantile of `sorted` as Prometheus ranks it: the value at rank `q * n`.
fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Per-bucket counts `(index, count)` from spans and deltas as the protobuf carries them.
fn buckets(spans: &[mmo_metrics_exporter::proto::BucketSpan], deltas: &[i64]) -> Vec<(i32, u64)> {
    let mut out = Vec::new();
    let mut index = 0i32;
    let mut count = 0i64;
    let mut deltas = deltas.iter();
    for (i, span) in spans.iter().enumerate() {
        index = if i == 0 { span.offset() } else { index + span.offset() };
        for _ in 0..span.length() {
            count += deltas.next().expect("a delta per bucket");
            out.push((index, count as u64));
            index += 1;
        }
    }
    assert!(deltas.next().is_none(), "more deltas than buckets");
    out
}

#[test]
fn protobuf_carries_the_native_buckets_the_read_api_reports() {
    let m = MetricsManager::new();
    m.register_native_histogram("rtt_seconds", "Round trips.", &["zone"], NativeConfig::default())
        .unwrap();
    m.register_histogram_with_native(
        "tick_seconds",
        "Ticks.",
        &[],
        &[0.01, 0.1],
        NativeConfig {
            zero_threshold: 0.001,
            ..NativeConfig::default()
        },
    )
    .unwrap();
    for (i, v) in latencies(5_000).into_iter().enumerate() {
        let signed = if i % 10 == 0 { -v } else { v };
        m.observe_histogram("rtt_seconds", signed, &["north"]).unwrap();
        m.observe_histogram("tick_seconds", v / 10.0, &[]).unwrap();
    }
    // A series with no observation: still native.
    m.histogram("rtt_seconds", &["south"]).unwrap();

    let mut expected = Vec::new();
    m.visit(|f| {
        let name = f.name().to_owned();
        f.for_each_series(|labels, value| {
            if let SeriesValue::Histogram {
                count,
                sum,
                native: Some(n),
                bounds,
                ..
            } = value
            {
                let mut pos = Vec::new();
                let mut index = 0;
                let mut counts = n.positive_counts.iter();
                for (i, s) in n.positive_spans.iter().enumerate() {
                    index = if i == 0 { s.offset } else { index + s.offset };
                    for _ in 0..s.length {
                        pos.push((index, *counts.next().unwrap()));
                        index += 1;
                    }
                }
                let labels: Vec<String> = labels.iter().map(|(_, v)| v.to_owned()).collect();
                expected.push((
                    name.clone(),
                    labels,
                    count,
                    sum,
                    n.schema,
                    n.zero_count,
                    pos,
                    bounds.len(),
                ));
            }
        });
    });
    assert_eq!(expected.len(), 3, "{expected:?}");

    let mut out = Vec::new();
    encode_protobuf_with(&m, &[], &mut out);
    let mut body = &out[..];
    let mut seen = 0;
    while !body.is_empty() {
        let family = MetricFamily::decode_length_delimited(&mut body).unwrap();
        for metric in &family.metric {
            let Some(h) = &metric.histogram else { continue };
            let labels: Vec<String> = metric.label.iter().map(|l| l.value().to_owned()).collect();
            let (_, _, count, sum, schema, zero, pos, classic) = expected
                .iter()
                .find(|e| e.0 == family.name() && e.1 == labels)
                .unwrap_or_else(|| panic!("{} {labels:?} not in the read API", family.name()));
            assert_eq!(h.sample_count(), *count);
            assert_eq!(h.sample_sum().to_bits(), sum.to_bits());
            assert_eq!(h.schema(), *schema);
            assert_eq!(h.zero_count(), *zero);
            assert_eq!(&buckets(&h.positive_span, &h.positive_delta), pos);
            assert_eq!(h.bucket.len(), *classic, "classic buckets, without +Inf");
            let negative: u64 = buckets(&h.negative_span, &h.negative_delta).iter().map(|b| b.1).sum();
            let positive: u64 = pos.iter().map(|b| b.1).sum();
            assert_eq!(positive + negative + zero, *count, "every observation in one bucket");
            if *count == 0 {
                assert!(
                    !h.positive_span.is_empty() || h.zero_threshold() > 0.0,
                    "an empty native histogram must still read as native"
                );
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 3);
}

#[test]
fn prometheus_quantiles_over_native_buckets_are_within_one_bucket() {
    let Some(prometheus) = tool("prometheus") else { return };
    let m = MetricsManager::new();
    let config = NativeConfig::default();
    assert_eq!(config.schema(), 3);
    m.register_native_histogram("zone_tick_seconds", "Zone tick time.", &[], config)
        .unwrap();
    let h = m.histogram("zone_tick_seconds", &[]).unwrap();
    let server = ExporterBuilder::new(m.clone())
        .address("127.0.0.1:0".parse().unwrap())
        .serve()
        .unwrap();
    let prom = Prometheus::start_with(
        &prometheus,
        server.local_addr(),
        &["--enable-feature=native-histograms"],
    );
    let mut values = latencies(100_000);
    for v in &values {
        h.record(*v);
    }
    values.sort_by(f64::total_cmp);

    // The rate covers the observations once a scrape after them is stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = first_value(&query(prom.addr, "histogram_count(zone_tick_seconds)"));
        if stored == Some(100_000.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the native histogram was never stored with every observation (last {stored:?})\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Schema 3: a bucket spans a factor 2^(1/8); Prometheus' estimate lies in the bucket that
    // holds the exact quantile.
    let width = 2f64.powf(1.0 / 8.0) * (1.0 + 1e-9);
    for q in [0.5, 0.9, 0.99] {
        let got = first_value(&query(
            prom.addr,
            &format!("histogram_quantile({q}, rate(zone_tick_seconds[1m]))"),
        ))
        .unwrap_or_else(|| panic!("no p{q}\n{}", prom.log()));
        let exact = exact_quantile(&values, q);
        let ratio = got / exact;
        assert!(
            (1.0 / width..=width).contains(&ratio),
            "p{q}: Prometheus {got}, exact {exact} (ratio {ratio}, one bucket is {width})"
        );
    }
}
