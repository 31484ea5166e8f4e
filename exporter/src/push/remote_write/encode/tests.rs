use mmo_metrics::NativeConfig;
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::encode::fmt::push_f64;

const TS: i64 = 1_700_000_000_123;

fn decode(body: &[u8]) -> proto::WriteRequest {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .expect("snappy block format");
    proto::WriteRequest::decode(&raw[..]).expect("a WriteRequest")
}

fn label(name: &str, value: &str) -> proto::Label {
    proto::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn f(v: f64) -> String {
    let mut s = String::new();
    push_f64(&mut s, v);
    s
}

/// The request the encoder must produce, built the plain way: prost structs of owned strings,
/// labels gathered and sorted per series.
fn oracle(m: &MetricsManager, global: &[(String, String)], ts: i64) -> proto::WriteRequest {
    let globals: Vec<(String, String)> = global
        .iter()
        .cloned()
        .chain(
            m.global_labels()
                .iter()
                .filter(|(k, _)| !global.iter().any(|(g, _)| g == k))
                .cloned(),
        )
        .collect();
    let mut req = proto::WriteRequest::default();
    m.visit(|family| {
        if family.series_count() == 0 {
            return;
        }
        let kind = family.kind();
        let base = family.name().to_owned();
        let (t, meta_name) = match kind {
            MetricKind::Counter => (proto::metric_metadata::MetricType::Counter, format!("{base}_total")),
            MetricKind::Gauge => (proto::metric_metadata::MetricType::Gauge, base.clone()),
            MetricKind::Histogram => (proto::metric_metadata::MetricType::Histogram, base.clone()),
            _ => (proto::metric_metadata::MetricType::Summary, base.clone()),
        };
        req.metadata.push(proto::MetricMetadata {
            r#type: t as i32,
            metric_family_name: meta_name,
            help: family.help().as_deref().unwrap_or("").into(),
            unit: family.unit().map(|u| u.as_str()).unwrap_or("").into(),
        });
        let ts_of = &mut req.timeseries;
        family.for_each_sample(|s| {
            let own: Vec<(String, String)> = s.labels().iter().map(|(k, v)| (k.into(), v.into())).collect();
            let mut labels: Vec<(String, String)> = own.clone();
            for (k, v) in &globals {
                if !own.iter().any(|(n, _)| n == k) {
                    labels.push((k.clone(), v.clone()));
                }
            }
            labels.retain(|(_, v)| !v.is_empty());
            let series = |name: String, extra: Option<(&str, String)>| {
                let mut l: Vec<proto::Label> = labels.iter().map(|(k, v)| label(k, v)).collect();
                l.push(label("__name__", &name));
                if let Some((k, v)) = extra {
                    l.push(label(k, &v));
                }
                l.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
                proto::TimeSeries {
                    labels: l,
                    ..Default::default()
                }
            };
            let sample = |mut t: proto::TimeSeries, v: f64| {
                t.samples.push(proto::Sample {
                    value: v,
                    timestamp: ts,
                });
                t
            };
            match s.value() {
                SeriesValue::Counter(v) => {
                    let mut t = sample(series(format!("{base}_total"), None), v as f64);
                    if let Some(e) = s.exemplar() {
                        t.exemplars.push(proto::Exemplar {
                            labels: e.labels().map(|(k, v)| label(k, v)).collect(),
                            value: e.value(),
                            timestamp: e.timestamp_ms() as i64,
                        });
                    }
                    ts_of.push(t);
                }
                SeriesValue::Gauge(v) | SeriesValue::FloatCounter(v) => {
                    ts_of.push(sample(series(base.clone(), None), v))
                }
                SeriesValue::Histogram {
                    bounds,
                    cumulative,
                    sum,
                    count,
                    native,
                } => {
                    if let Some(n) = &native {
                        let mut t = series(base.clone(), None);
                        let deltas = |c: &[u64]| {
                            let mut p = 0i64;
                            c.iter()
                                .map(|&c| {
                                    let d = c as i64 - p;
                                    p = c as i64;
                                    d
                                })
                                .collect()
                        };
                        let spans = |s: &[mmo_metrics::BucketSpan]| {
                            s.iter()
                                .map(|s| proto::BucketSpan {
                                    offset: s.offset,
                                    length: s.length,
                                })
                                .collect()
                        };
                        t.histograms.push(proto::Histogram {
                            count: Some(proto::histogram::Count::CountInt(count)),
                            sum,
                            schema: n.schema,
                            zero_threshold: n.zero_threshold,
                            zero_count: Some(proto::histogram::ZeroCount::ZeroCountInt(n.zero_count)),
                            negative_spans: spans(n.negative_spans),
                            negative_deltas: deltas(n.negative_counts),
                            positive_spans: spans(n.positive_spans),
                            positive_deltas: deltas(n.positive_counts),
                            timestamp: ts,
                            ..Default::default()
                        });
                        ts_of.push(t);
                    }
                    if native.is_none() || !bounds.is_empty() {
                        for (i, c) in cumulative.iter().enumerate() {
                            let le = bounds.get(i).map_or("+Inf".to_owned(), |b| f(*b));
                            let mut t = sample(series(format!("{base}_bucket"), Some(("le", le))), *c as f64);
                            if let Some(e) = s.bucket_exemplar(i) {
                                t.exemplars.push(proto::Exemplar {
                                    labels: e.labels().map(|(k, v)| label(k, v)).collect(),
                                    value: e.value(),
                                    timestamp: e.timestamp_ms() as i64,
                                });
                            }
                            ts_of.push(t);
                        }
                        ts_of.push(sample(series(format!("{base}_sum"), None), sum));
                        ts_of.push(sample(series(format!("{base}_count"), None), count as f64));
                    }
                }
                SeriesValue::Summary {
                    quantiles,
                    values,
                    sum,
                    count,
                } => {
                    for (q, v) in quantiles.iter().zip(values) {
                        ts_of.push(sample(series(base.clone(), Some(("quantile", f(*q)))), *v));
                    }
                    ts_of.push(sample(series(format!("{base}_sum"), None), sum));
                    ts_of.push(sample(series(format!("{base}_count"), None), count as f64));
                }
                _ => {}
            }
        });
    });
    req
}

/// A registry of every kind, with label names that sort before `__name__` and empty values.
fn every_kind() -> MetricsManager {
    let m = MetricsManager::builder()
        .add_global_label("instance", "zone-7")
        .unwrap()
        .build();
    m.register_counter("logins", "Logins.", &["Zone", "result"]).unwrap();
    m.increment_counter("logins", 3, &["north", "ok"]).unwrap();
    m.increment_counter_with_exemplar("logins", 2, &["south", ""], &[("trace_id", "abc")])
        .unwrap();
    m.register_gauge("players", "Players online.", &["instance"]).unwrap();
    m.set_gauge("players", 41.5, &["own"]).unwrap();
    m.set_gauge("players", 0.0, &[""]).unwrap();
    m.register_histogram("tick_seconds", "Tick time.", &["Shard"], &[0.01, 0.1, 1.0])
        .unwrap();
    for v in [0.005, 0.05, 0.5, 5.0] {
        m.observe_histogram("tick_seconds", v, &["a"]).unwrap();
    }
    m.register_summary("rtt_seconds", "Round trips.", &["peer"], &[0.5, 0.99])
        .unwrap();
    for v in 1..=10 {
        m.observe_summary("rtt_seconds", f64::from(v) / 100.0, &["b"]).unwrap();
    }
    m.register_native_histogram("frame_seconds", "Frames.", &[], NativeConfig::default())
        .unwrap();
    m.register_histogram_with_native("queue_seconds", "Queue.", &["q"], &[0.5], NativeConfig::default())
        .unwrap();
    for v in [0.0, 0.3, -2.0, 0.25, 1.0] {
        m.observe_histogram("frame_seconds", v, &[]).unwrap();
        m.observe_histogram("queue_seconds", v, &["x"]).unwrap();
    }
    m
}

fn global() -> Vec<(String, String)> {
    vec![("service".into(), "login".into()), ("Zone".into(), "global".into())]
}

#[test]
fn one_request_is_byte_for_byte_what_prost_writes() {
    let m = every_kind();
    let mut enc = Encoder::new(10_000);
    let snap = enc.encode(&m, &global(), None, TS);
    assert_eq!(snap.requests.len(), 1);
    let expected = oracle(&m, &global(), TS);
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&snap.requests[0].body)
        .unwrap();
    assert_eq!(decode(&snap.requests[0].body), expected);
    assert_eq!(
        raw,
        expected.encode_to_vec(),
        "the bytes prost writes for the same message"
    );
    assert_eq!(
        proto::WriteRequest::decode(&expected.encode_to_vec()[..]).unwrap(),
        expected
    );
    assert_eq!(snap.samples, expected.timeseries.len());
    assert_eq!(snap.series, expected.timeseries.len());
}

#[test]
fn labels_are_sorted_in_byte_order_and_empty_values_left_out() {
    let m = every_kind();
    let mut enc = Encoder::new(10_000);
    let req = decode(&enc.encode(&m, &global(), None, TS).requests[0].body);
    let names = |t: &proto::TimeSeries| {
        t.labels
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect::<Vec<_>>()
    };
    let logins: Vec<_> = req
        .timeseries
        .iter()
        .filter(|t| t.labels.iter().any(|l| l.value == "logins_total"))
        .map(names)
        .collect();
    assert_eq!(
        logins,
        [
            vec![
                "Zone=north",
                "__name__=logins_total",
                "instance=zone-7",
                "result=ok",
                "service=login"
            ],
            vec![
                "Zone=south",
                "__name__=logins_total",
                "instance=zone-7",
                "service=login"
            ],
        ]
    );
    let bucket = req
        .timeseries
        .iter()
        .find(|t| t.labels.iter().any(|l| l.value == "tick_seconds_bucket"))
        .unwrap();
    assert_eq!(
        names(bucket),
        [
            "Shard=a",
            "Zone=global",
            "__name__=tick_seconds_bucket",
            "instance=zone-7",
            "le=0.01",
            "service=login"
        ]
    );
    assert_eq!(
        bucket.samples,
        [proto::Sample {
            value: 1.0,
            timestamp: TS
        }]
    );
    // The own `instance` label wins over the manager's global one; an empty own one hides it.
    let players: Vec<_> = req
        .timeseries
        .iter()
        .filter(|t| t.labels.iter().any(|l| l.value == "players"))
        .map(names)
        .collect();
    assert_eq!(
        players,
        [
            vec!["Zone=global", "__name__=players", "instance=own", "service=login"],
            vec!["Zone=global", "__name__=players", "service=login"],
        ]
    );
    let counter = req.timeseries.iter().find(|t| !t.exemplars.is_empty()).unwrap();
    assert_eq!(counter.exemplars[0].labels, [label("trace_id", "abc")]);
    // Both ways for a histogram with classic and native buckets.
    let queue: Vec<_> = req
        .timeseries
        .iter()
        .filter(|t| t.labels.iter().any(|l| l.value.starts_with("queue_seconds")))
        .collect();
    assert_eq!(queue.len(), 1 + 2 + 2);
    assert_eq!(queue[0].histograms.len(), 1);
    let h = &queue[0].histograms[0];
    assert_eq!(h.count, Some(proto::histogram::Count::CountInt(5)));
    assert_eq!(h.zero_count, Some(proto::histogram::ZeroCount::ZeroCountInt(1)));
    assert_eq!(h.timestamp, TS);
    let meta: Vec<_> = req.metadata.iter().map(|m| m.metric_family_name.as_str()).collect();
    assert_eq!(
        meta,
        [
            "frame_seconds",
            "logins_total",
            "players",
            "queue_seconds",
            "rtt_seconds",
            "tick_seconds"
        ]
    );
}

#[test]
fn requests_hold_at_most_the_maximum_and_carry_their_families_metadata() {
    let m = every_kind();
    let expected = oracle(&m, &global(), TS);
    for max in [1, 2, 3, 7] {
        let mut enc = Encoder::new(max);
        let snap = enc.encode(&m, &global(), None, TS);
        let mut series = Vec::new();
        for r in &snap.requests {
            let req = decode(&r.body);
            let n = req.timeseries.len();
            assert!(
                n <= max && n == r.samples,
                "max {max}: {n} series, {} counted",
                r.samples
            );
            for t in &req.timeseries {
                let name = &t.labels.iter().find(|l| l.name == "__name__").unwrap().value;
                assert!(
                    req.metadata
                        .iter()
                        .any(|md| name.starts_with(md.metric_family_name.as_str())),
                    "max {max}: {name} without its family's metadata"
                );
            }
            series.extend(req.timeseries);
        }
        assert_eq!(series, expected.timeseries, "max {max}");
    }
}

#[test]
fn gone_series_get_one_stale_marker_and_shutdown_marks_every_series() {
    let m = MetricsManager::new();
    m.register_gauge("g", "", &["k"]).unwrap();
    m.register_native_histogram("h", "", &["k"], NativeConfig::default())
        .unwrap();
    // Handles, dropped at once: a removed series goes at once (by-name calls would keep it in
    // this thread's cache until the next one).
    m.gauge("g", &["a"]).unwrap().set(1.0);
    m.gauge("g", &["b"]).unwrap().set(2.0);
    m.histogram("h", &["a"]).unwrap().record(1.0);
    let mut enc = Encoder::new(100);
    let first = enc.encode(&m, &[], None, TS);
    assert_eq!(first.series, 3);
    // Not delivered: nothing to mark later.
    m.remove_series("g", &["a"]).unwrap();
    let second = enc.encode(&m, &[], None, TS + 1);
    assert_eq!(second.samples, 2);
    enc.delivered();
    m.remove_series("g", &["b"]).unwrap();
    m.remove_series("h", &["a"]).unwrap();
    m.gauge("g", &["c"]).unwrap().set(3.0);
    let third = decode(&enc.encode(&m, &[], None, TS + 2).requests[0].body);
    let stale: Vec<_> = third
        .timeseries
        .iter()
        .filter(|t| {
            t.samples.iter().any(|s| s.value.to_bits() == STALE_NAN)
                || t.histograms.iter().any(|h| h.sum.to_bits() == STALE_NAN)
        })
        .map(|t| t.labels.iter().map(|l| l.value.as_str()).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(stale, ["g,b", "h,a"]);
    assert_eq!(third.timeseries.len(), 3);
    assert!(third
        .timeseries
        .iter()
        .all(|t| t.samples.iter().chain([]).all(|s| s.timestamp == TS + 2)));
    // Not delivered either: the next push marks them again.
    let again = enc.encode(&m, &[], None, TS + 3);
    assert_eq!(again.samples, 3);
    enc.delivered();
    let quiet = enc.encode(&m, &[], None, TS + 4);
    assert_eq!(quiet.samples, 1, "nothing gone: no marker");
    enc.delivered();
    let last = decode(&enc.all_stale(TS + 5).requests[0].body);
    assert_eq!(last.timeseries.len(), 1);
    assert_eq!(last.timeseries[0].samples[0].value.to_bits(), STALE_NAN);
    assert_eq!(last.timeseries[0].samples[0].timestamp, TS + 5);
    assert!(enc.all_stale(TS + 6).requests.is_empty());
}

struct Source(Vec<proto::TimeSeries>, Vec<proto::MetricMetadata>);

impl SeriesSource for Source {
    fn for_each_series(&self, f: &mut dyn FnMut(&proto::TimeSeries)) {
        self.0.iter().for_each(f);
    }
    fn for_each_metadata(&self, f: &mut dyn FnMut(&proto::MetricMetadata)) {
        self.1.iter().for_each(f);
    }
}

#[test]
fn a_sources_series_and_metadata_go_along_with_the_global_labels_they_lack() {
    let m = MetricsManager::new();
    let series = proto::TimeSeries {
        labels: vec![label("__name__", "zone_players"), label("zone", "7")],
        samples: vec![proto::Sample {
            value: 12.0,
            timestamp: 1_000,
        }],
        ..Default::default()
    };
    let hist = proto::TimeSeries {
        labels: vec![label("__name__", "rtt"), label("service", "match")],
        histograms: vec![proto::Histogram {
            count: Some(proto::histogram::Count::CountInt(2)),
            sum: 3.0,
            timestamp: 1_000,
            ..Default::default()
        }],
        ..Default::default()
    };
    let meta = proto::MetricMetadata {
        r#type: 2,
        metric_family_name: "zone_players".into(),
        help: "Players.".into(),
        unit: String::new(),
    };
    let source = Source(vec![series, hist.clone()], vec![meta.clone()]);
    let mut enc = Encoder::new(100);
    let req = decode(
        &enc.encode(&m, &[("service".into(), "host".into())], Some(&source), TS)
            .requests[0]
            .body,
    );
    assert_eq!(req.metadata, [meta]);
    assert_eq!(
        req.timeseries[0].labels,
        [
            label("__name__", "zone_players"),
            label("service", "host"),
            label("zone", "7")
        ]
    );
    assert_eq!(req.timeseries[0].samples[0].timestamp, 1_000);
    assert_eq!(req.timeseries[1], hist, "its own `service` wins");
    enc.delivered();
    let gone = Source(Vec::new(), Vec::new());
    let req = decode(&enc.encode(&m, &[], Some(&gone), TS + 1).requests[0].body);
    assert_eq!(req.timeseries.len(), 2);
    assert_eq!(req.timeseries[1].histograms[0].sum.to_bits(), STALE_NAN);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any label names and values, any values, any global labels, any batch size: the requests
    /// decode to the oracle's series, and one request is prost's bytes.
    #[test]
    fn requests_are_the_oracles(
        names in proptest::collection::btree_set("[a-zA-Z][a-zA-Z0-9_]{0,6}", 0..4),
        rows in proptest::collection::vec((proptest::collection::vec("[a-z\u{e9}\u{4e1a} ]{0,5}", 4), any::<u32>(), -1e9f64..1e9), 1..20),
        globals in proptest::collection::btree_map("[a-zA-Z][a-z_]{0,4}", "[a-z]{0,3}", 0..3),
        max in 1usize..50,
    ) {
        let names: Vec<String> = names.into_iter().collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let global: Vec<(String, String)> = globals
            .into_iter()
            .filter(|(k, _)| !k.starts_with("__") && k != "le" && k != "quantile")
            .collect();
        // `__` names are reserved, and `le` is the histogram's own label.
        let names_ok = !names.iter().any(|n| n.starts_with("__") || n == "le");
        prop_assume!(names_ok);
        let m = MetricsManager::new();
        m.register_counter("c", "C.", &refs).unwrap();
        m.register_gauge("Gauge", "", &refs).unwrap();
        m.register_histogram("h", "H.", &refs, &[0.5, 2.0]).unwrap();
        for (values, c, g) in &rows {
            let v: Vec<&str> = values.iter().take(refs.len()).map(String::as_str).collect();
            m.increment_counter("c", u64::from(*c), &v).unwrap();
            m.set_gauge("Gauge", *g, &v).unwrap();
            m.observe_histogram("h", g.abs() % 3.0, &v).unwrap();
        }
        let expected = oracle(&m, &global, TS);
        let mut enc = Encoder::new(10_000);
        let one = enc.encode(&m, &global, None, TS);
        let raw = snap::raw::Decoder::new().decompress_vec(&one.requests[0].body).unwrap();
        prop_assert_eq!(&raw, &expected.encode_to_vec());
        let mut enc = Encoder::new(max);
        let mut series = Vec::new();
        for r in enc.encode(&m, &global, None, TS).requests {
            let req = decode(&r.body);
            prop_assert!(req.timeseries.len() <= max);
            series.extend(req.timeseries);
        }
        prop_assert_eq!(series, expected.timeseries);
    }
}

#[test]
fn stale_markers_read_labels_back_from_any_request_of_the_delivered_push() {
    let m = MetricsManager::new();
    m.register_gauge("g", "", &["k"]).unwrap();
    for k in ["a", "b", "c", "d", "e"] {
        m.gauge("g", &[k]).unwrap().set(1.0);
    }
    let mut enc = Encoder::new(2);
    assert_eq!(enc.encode(&m, &[], None, TS).requests.len(), 3);
    enc.delivered();
    m.remove_series("g", &["b"]).unwrap();
    m.remove_series("g", &["e"]).unwrap();
    let mut stale = Vec::new();
    for r in enc.encode(&m, &[], None, TS + 1).requests {
        for t in decode(&r.body).timeseries {
            if t.samples[0].value.to_bits() == STALE_NAN {
                stale.push(t.labels);
            }
        }
    }
    assert_eq!(
        stale,
        [
            vec![label("__name__", "g"), label("k", "b")],
            vec![label("__name__", "g"), label("k", "e")]
        ]
    );
}
