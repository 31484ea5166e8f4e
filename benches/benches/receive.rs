//! Remote write receiver ingest rate on one core: one request of 2,000 series (six labels each,
//! `__name__` among them, as a game server's process would send them), snappy-compressed protobuf
//! as Prometheus sends it, decoded (snappy + prost), validated and stored, every series already in
//! the store (the steady state: a sender pushing the same series every interval). Reported as
//! samples per second (`Throughput::Elements`); the target is 1 million per second.
//!
//! - `receive/ingest/steady`: the whole path of one request past its headers and body read, as
//!   `POST /api/v1/write` runs it on the blocking pool (self-metrics included);
//! - `receive/ingest/prost_decode`: snappy and prost's decoding of the same request into owned
//!   messages alone, for scale (the receiver reads it in place instead).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mmo_metrics::MetricsManager;
use mmo_metrics_exporter::remote_write_proto::{Label, Sample, TimeSeries, WriteRequest};
use mmo_metrics_exporter::{ReceiveConfig, ReceiverHarness};
use prost::Message;

const SERIES: usize = 2_000;

/// A request of [`SERIES`] series: 20 families of 100 series, labels `__name__`, `instance`,
/// `job`, `op`, `table`, `zone` (sorted), values and timestamps from `round`.
fn request(round: i64) -> Vec<u8> {
    let timeseries = (0..SERIES)
        .map(|i| {
            let label = |name: &str, value: String| Label {
                name: name.into(),
                value,
            };
            TimeSeries {
                labels: vec![
                    label("__name__", format!("game_database_operations_{}_total", i % 20)),
                    label("instance", "zone-server-17.eu-west.example:9100".into()),
                    label("job", "zone_server".into()),
                    label("op", ["select", "insert", "update", "delete"][i % 4].into()),
                    label("table", format!("player_inventory_{}", i / 20 % 5)),
                    label("zone", format!("zone-{}", i / 100)),
                ],
                samples: vec![Sample {
                    value: (round * 10 + i as i64) as f64,
                    timestamp: 1_700_000_000_000 + round * 10_000,
                }],
                ..Default::default()
            }
        })
        .collect();
    let raw = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
    .encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

fn receive(c: &mut Criterion) {
    let mut g = c.benchmark_group("receive/ingest");
    g.throughput(Throughput::Elements(SERIES as u64));
    let manager = MetricsManager::new();
    let harness = ReceiverHarness::new(&manager, ReceiveConfig::new());
    let bodies: Vec<Vec<u8>> = (1..=8).map(request).collect();
    assert_eq!(
        harness.post(Some("application/x-protobuf"), Some("snappy"), &bodies[0]),
        (204, String::new())
    );
    assert_eq!(harness.series(), SERIES);
    let mut round = 0;
    g.bench_function("steady", |b| {
        b.iter(|| {
            // Each body newer than the last would be; the store ignores older points, which
            // does the same work (a probe and a timestamp comparison) but for the replacement.
            round = (round + 1) % bodies.len();
            let r = harness.post(
                Some("application/x-protobuf"),
                Some("snappy"),
                black_box(&bodies[round]),
            );
            debug_assert_eq!(r.0, 204);
        })
    });
    assert_eq!(harness.series(), SERIES);
    g.bench_function("prost_decode", |b| {
        b.iter(|| {
            let raw = snap::raw::Decoder::new().decompress_vec(black_box(&bodies[0])).unwrap();
            black_box(WriteRequest::decode(&raw[..]).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, receive);
criterion_main!(benches);
