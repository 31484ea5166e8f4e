//! The remote write receiver (`POST /api/v1/write` past its body read: headers, snappy, the
//! protobuf reading, validation, store) fed with the input: arbitrary headers and bodies, bodies
//! that are arbitrary protobuf under valid snappy, and requests built from the input (fuzzed
//! names, labels in any order, empty values, stale markers, native histograms) sent in a row to a
//! store with small limits. Nothing panics; the answer is 204, 400, 413 or 415, a refusal says
//! why; every body the receiver takes, prost decodes too; the store holds series with sorted,
//! valid labels and one point each; and the received series' exposition is well formed in the
//! text formats and decodes as protobuf.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mmo_metrics::MetricsManager;
use mmo_metrics_exporter::proto::MetricFamily;
use mmo_metrics_exporter::remote_write_proto::{
    histogram, BucketSpan, Histogram, Label, MetricMetadata, Sample, TimeSeries, WriteRequest,
};
use mmo_metrics_exporter::{ExpositionFormat, ReceiveConfig, ReceiverHarness};
use mmo_metrics_fuzz::{float, parse_exposition};
use prost::Message;

const NAMES: [&str; 8] = ["a", "a_total", "a_bucket", "g", "up", "mmo_metrics_receive_series", "9x", ""];
const LABELS: [&str; 7] = ["job", "instance", "le", "zone", "__name__", "__x", "b-c"];
const STALE: u64 = 0x7ff0_0000_0000_0002;

fn series(u: &mut Unstructured<'_>) -> Result<TimeSeries> {
    let mut labels = Vec::new();
    if u.ratio(9u8, 10)? {
        let name = if u.ratio(4u8, 5)? { (*u.choose(&NAMES)?).to_owned() } else { u.arbitrary()? };
        labels.push(Label { name: "__name__".into(), value: name });
    }
    for _ in 0..u.int_in_range(0..=3u8)? {
        let name = if u.ratio(4u8, 5)? { (*u.choose(&LABELS)?).to_owned() } else { u.arbitrary()? };
        let value = if u.ratio(1u8, 8)? { String::new() } else { u.choose(&["1", "2", "x\"\\\n"])?.to_string() };
        labels.push(Label { name, value });
    }
    if u.ratio(7u8, 8)? {
        labels.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut ts = TimeSeries { labels, ..Default::default() };
    for _ in 0..u.int_in_range(0..=2u8)? {
        let value = if u.ratio(1u8, 6)? { f64::from_bits(STALE) } else { float(u)? };
        ts.samples.push(Sample { value, timestamp: u.int_in_range(0..=3)? });
    }
    if u.ratio(1u8, 5)? {
        let n = u.int_in_range(0..=3u32)?;
        ts.histograms.push(Histogram {
            count: Some(histogram::Count::CountInt(u.arbitrary()?)),
            sum: if u.ratio(1u8, 6)? { f64::from_bits(STALE) } else { float(u)? },
            schema: u.int_in_range(-5..=9)?,
            zero_threshold: float(u)?,
            zero_count: Some(histogram::ZeroCount::ZeroCountInt(u.arbitrary()?)),
            positive_spans: vec![BucketSpan { offset: u.arbitrary()?, length: n }],
            positive_deltas: (0..u.int_in_range(0..=3u32)?).map(|_| u.int_in_range(-2..=5)).collect::<Result<_>>()?,
            timestamp: u.int_in_range(0..=3)?,
            ..Default::default()
        });
    }
    Ok(ts)
}

fn request(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut req = WriteRequest::default();
    for _ in 0..u.int_in_range(0..=6u8)? {
        req.timeseries.push(series(u)?);
    }
    if u.ratio(1u8, 3)? {
        req.metadata.push(MetricMetadata {
            r#type: u.int_in_range(0..=8)?,
            metric_family_name: (*u.choose(&NAMES)?).to_owned(),
            help: u.arbitrary()?,
            unit: String::new(),
        });
    }
    Ok(req.encode_to_vec())
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    // One manager for every input (a new one per input costs more than the rest of a run): it
    // only holds the receiver's self-metrics, which no check here reads.
    static MANAGER: OnceLock<MetricsManager> = OnceLock::new();
    let harness = ReceiverHarness::new(
        MANAGER.get_or_init(MetricsManager::new),
        ReceiveConfig::new()
            .max_series(6)
            .max_series_per_sender(4)
            .max_body_bytes(64 << 10)
            .max_decompressed_bytes(256 << 10),
    );
    for _ in 0..u.int_in_range(1..=4u8)? {
        let (raw, body) = match u.int_in_range(0..=2u8)? {
            // Anything as the body.
            0 => (None, u.arbitrary::<Vec<u8>>()?),
            // Any bytes as the protobuf.
            1 => {
                let raw: Vec<u8> = u.arbitrary()?;
                let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
                (Some(raw), body)
            }
            _ => {
                let raw = request(u)?;
                let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
                (Some(raw), body)
            }
        };
        let content_type = *u.choose(&[Some("application/x-protobuf"), Some("application/x-protobuf; proto=x"), None])?;
        let encoding = *u.choose(&[Some("snappy"), Some("gzip"), None])?;
        let (code, message) = harness.post(content_type, encoding, &body);
        assert!(matches!(code, 204 | 400 | 413 | 415), "status {code}: {message}");
        assert_eq!(code == 204, message.is_empty(), "status {code} with message {message:?}");
        if code == 204 {
            if let Some(raw) = raw {
                WriteRequest::decode(&raw[..]).unwrap_or_else(|e| panic!("the receiver took a body prost refuses: {e}"));
            }
        }
        if u.ratio(1u8, 4)? {
            harness.tick();
        }
    }

    let (stored, _) = harness.stored();
    assert!(stored.len() <= 6, "{} series stored, the limit is 6", stored.len());
    for s in &stored {
        assert!(s.labels.windows(2).all(|w| w[0].name < w[1].name), "labels not sorted: {s:?}");
        assert!(s.labels.iter().any(|l| l.name == "__name__"), "no name: {s:?}");
        assert!(s.labels.iter().all(|l| !l.value.is_empty()), "empty value: {s:?}");
        assert_eq!(s.samples.len() + s.histograms.len(), 1, "one point: {s:?}");
        assert!(s.samples.iter().all(|p| p.value.to_bits() != STALE), "stale marker stored: {s:?}");
    }

    for (format, openmetrics) in [(ExpositionFormat::Text, false), (ExpositionFormat::OpenMetrics, true)] {
        let text = String::from_utf8(harness.expose(format)).expect("UTF-8 exposition");
        parse_exposition(&text, openmetrics).unwrap_or_else(|e| panic!("{e}\n--- exposition:\n{text}"));
    }
    let pb = harness.expose(ExpositionFormat::Protobuf);
    let mut rest = &pb[..];
    while !rest.is_empty() {
        MetricFamily::decode_length_delimited(&mut rest).expect("length-delimited MetricFamily messages");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
