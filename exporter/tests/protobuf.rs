//! The protobuf exposition decoded with the generated `io.prometheus.client` types says what the
//! text exposition of the same registry says: the same families in the same order, with the same
//! names, types and help, and the same samples (names as Prometheus derives them from each
//! message, labels in the same order, equal values).

use std::collections::BTreeMap;

use mmo_metrics::MetricsManager;
use mmo_metrics_exporter::proto::{MetricFamily, MetricType};
use mmo_metrics_exporter::{encode_protobuf_with, encode_text_with, PROTOBUF_CONTENT_TYPE};
use prost::Message;

/// A sample: its name, its label pairs in order, its value.
type Sample = (String, Vec<(String, String)>, f64);

/// A family as an exposition presents it: name, type, help, and its samples in order, each a
/// sample name, its label pairs in order and its value.
#[derive(Debug)]
struct Family {
    name: String,
    kind: String,
    help: Option<String>,
    samples: Vec<Sample>,
}

/// Values compare equal when both are NaN too.
fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// A number of the text format as Rust reads it (`+Inf`, `-Inf`, `NaN` included).
fn number(s: &str) -> f64 {
    s.parse()
        .unwrap_or_else(|e| panic!("text value {s:?} is not a number: {e}"))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(c @ ('\\' | '"')) => out.push(c),
            other => panic!("bad escape \\{other:?} in {s:?}"),
        }
    }
    out
}

/// Parses `a="x",b="y\"z"` (without braces).
fn parse_labels(mut s: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    while !s.is_empty() {
        let (name, rest) = s
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\" in {s:?}"));
        // The value ends at the first quote not escaped by a backslash.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label value in {rest:?}"));
        labels.push((name.to_owned(), unescape(&rest[..end])));
        s = rest[end + 1..].strip_prefix(',').unwrap_or(&rest[end + 1..]);
    }
    labels
}

/// The families of a text exposition 0.0.4 as [`encode_text_with`] writes it.
fn parse_text(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    let mut help: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').expect("# HELP name text");
            help = Some((name.to_owned(), unescape(text)));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            let help = help.take().map(|(n, h)| {
                assert_eq!(n, name, "# HELP of {n} followed by # TYPE of {name}");
                h
            });
            families.push(Family {
                name: name.to_owned(),
                kind: kind.to_owned(),
                help,
                samples: Vec::new(),
            });
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample line: series value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').expect("labels end in }"))),
                None => (series, Vec::new()),
            };
            let family = families.last_mut().expect("a sample after # TYPE");
            family.samples.push((name.to_owned(), labels, number(value)));
        }
    }
    families
}

/// `le` and `quantile` values as the text format writes them.
fn text_float(v: f64) -> String {
    let mut text = String::new();
    if v.is_infinite() {
        text.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Parsing the text's value back gives the same f64; compare through it.
        text = format!("{v:?}");
    }
    text
}

/// Reads every length-delimited `MetricFamily` of `bytes`.
fn decode_all(mut bytes: &[u8]) -> Vec<MetricFamily> {
    let mut families = Vec::new();
    while !bytes.is_empty() {
        let family = MetricFamily::decode_length_delimited(&mut bytes)
            .unwrap_or_else(|e| panic!("MetricFamily {} does not decode: {e}", families.len()));
        families.push(family);
    }
    families
}

/// The families of a protobuf exposition, with the samples Prometheus derives from each message
/// (`_bucket` with `le` per bucket and `+Inf` from the count, `_sum`, `_count`, quantiles).
fn from_protobuf(families: &[MetricFamily]) -> Vec<Family> {
    families
        .iter()
        .map(|f| {
            let name = f.name().to_owned();
            let kind = match f.r#type() {
                MetricType::Counter => "counter",
                MetricType::Gauge => "gauge",
                MetricType::Histogram => "histogram",
                MetricType::Summary => "summary",
                other => panic!("family {name}: unexpected type {other:?}"),
            };
            let mut samples = Vec::new();
            for m in &f.metric {
                let labels: Vec<(String, String)> = m
                    .label
                    .iter()
                    .map(|l| (l.name().to_owned(), l.value().to_owned()))
                    .collect();
                let with = |extra: (&str, String)| {
                    let mut l = labels.clone();
                    l.push((extra.0.to_owned(), extra.1));
                    l
                };
                let set = [
                    m.counter.is_some(),
                    m.gauge.is_some(),
                    m.histogram.is_some(),
                    m.summary.is_some(),
                ];
                assert_eq!(
                    set.iter().filter(|s| **s).count(),
                    1,
                    "{name}: one value per metric: {m:?}"
                );
                assert!(m.untyped.is_none() && m.timestamp_ms.is_none(), "{name}: {m:?}");
                match kind {
                    "counter" => samples.push((name.clone(), labels, m.counter.as_ref().expect("counter").value())),
                    "gauge" => samples.push((name.clone(), labels, m.gauge.as_ref().expect("gauge").value())),
                    "histogram" => {
                        let h = m.histogram.as_ref().expect("histogram");
                        for b in &h.bucket {
                            assert!(
                                b.upper_bound().is_finite(),
                                "{name}: the +Inf bucket is implicit: {h:?}"
                            );
                            samples.push((
                                format!("{name}_bucket"),
                                with(("le", text_float(b.upper_bound()))),
                                b.cumulative_count() as f64,
                            ));
                        }
                        samples.push((
                            format!("{name}_bucket"),
                            with(("le", "+Inf".into())),
                            h.sample_count() as f64,
                        ));
                        samples.push((format!("{name}_sum"), labels.clone(), h.sample_sum()));
                        samples.push((format!("{name}_count"), labels, h.sample_count() as f64));
                    }
                    _ => {
                        let s = m.summary.as_ref().expect("summary");
                        for q in &s.quantile {
                            samples.push((name.clone(), with(("quantile", text_float(q.quantile()))), q.value()));
                        }
                        samples.push((format!("{name}_sum"), labels.clone(), s.sample_sum()));
                        samples.push((format!("{name}_count"), labels, s.sample_count() as f64));
                    }
                }
            }
            Family {
                name,
                kind: kind.to_owned(),
                help: f.help.clone(),
                samples,
            }
        })
        .collect()
}

/// `le` and `quantile` values of text samples in the form [`text_float`] gives.
fn canonical_floats(families: &mut [Family]) {
    for f in families {
        for (_, labels, _) in &mut f.samples {
            for (k, v) in labels.iter_mut() {
                if k == "le" || k == "quantile" {
                    *v = text_float(number(v));
                }
            }
        }
    }
}

fn assert_same(text: &str, protobuf: &[u8]) {
    let mut want = parse_text(text);
    canonical_floats(&mut want);
    let decoded = decode_all(protobuf);
    // The bytes are prost's own encoding of the messages they decode to.
    let mut reencoded = Vec::new();
    for family in &decoded {
        family.encode_length_delimited(&mut reencoded).unwrap();
    }
    assert!(
        reencoded == protobuf,
        "the exposition is not prost's encoding of its messages"
    );
    let got = from_protobuf(&decoded);
    let names = |fs: &[Family]| fs.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&got), names(&want), "families in protobuf vs text");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.kind, &g.help), (&w.kind, &w.help), "type and help of {}", w.name);
        assert_eq!(
            g.samples.len(),
            w.samples.len(),
            "samples of {}: {:#?} vs {:#?}",
            w.name,
            g.samples,
            w.samples
        );
        for (gs, ws) in g.samples.iter().zip(&w.samples) {
            assert!(
                gs.0 == ws.0 && gs.1 == ws.1 && same_value(gs.2, ws.2),
                "family {}: protobuf sample {gs:?}, text sample {ws:?}",
                w.name
            );
        }
    }
}

fn encode_both(m: &MetricsManager, global: &[(String, String)]) -> (String, Vec<u8>) {
    let mut text = String::new();
    encode_text_with(m, global, &mut text);
    let mut protobuf = Vec::new();
    encode_protobuf_with(m, global, &mut protobuf);
    (text, protobuf)
}

/// Every kind, label sets of several sizes per kind (the encoder reuses metrics across families),
/// values that need escaping in text, special floats, manager and exporter global labels, and a
/// facade family with several label sets.
fn rich_registry() -> MetricsManager {
    let m = MetricsManager::builder()
        .add_global_label("region", "eu-west")
        .unwrap()
        .add_global_label("service", "overridden by the exporter's")
        .unwrap()
        .build();
    m.register_counter("logins", "Logins per zone.", &["zone", "service"])
        .unwrap();
    m.increment_counter("logins", 3, &["north", "own service label"])
        .unwrap();
    m.increment_counter("logins", 5, &["süd-Zone ✓ 区域", "x"]).unwrap();
    m.register_counter("requests_total", "Requests from C:\\game\nbin, \"quoted\".", &["path"])
        .unwrap();
    m.increment_counter("requests_total", 2, &["/a\"b\\c\nd"]).unwrap();
    m.register_counter("zero_label_events", "", &[]).unwrap();
    m.increment_counter("zero_label_events", u64::MAX - 1, &[]).unwrap();
    let _idle = m.counter("zero_label_events", &[]).unwrap();
    m.register_float_counter("cpu_seconds", "CPU seconds.", &["mode"])
        .unwrap();
    m.set_float_counter("cpu_seconds", 12.625, &["user"]).unwrap();
    m.set_float_counter("cpu_seconds", 0.1, &["system"]).unwrap();

    m.register_gauge("temperature", "Temperatures.", &["kind"]).unwrap();
    for (kind, v) in [
        ("nan", f64::NAN),
        ("pos_inf", f64::INFINITY),
        ("neg_inf", f64::NEG_INFINITY),
        ("negative", -12.5),
        ("tiny", 1e-7),
        ("huge", 1.5e300),
        ("subnormal", 5e-324),
    ] {
        m.set_gauge("temperature", v, &[kind]).unwrap();
    }
    m.register_gauge("players_online", "Players online.", &[]).unwrap();
    m.set_gauge("players_online", 96.5, &[]).unwrap();

    m.register_histogram("latency_seconds", "Latency.", &["op", "zone"], &[])
        .unwrap();
    for v in [0.005, 0.3, 20.0, 0.1] {
        m.observe_histogram("latency_seconds", v, &["move", "north"]).unwrap();
    }
    m.register_histogram(
        "message_size_bytes",
        "Message sizes.",
        &["direction"],
        &[64.0, 256.0, 1e300],
    )
    .unwrap();
    for v in [256.0, 1.0, 5000.0, f64::INFINITY] {
        m.observe_histogram("message_size_bytes", v, &["in"]).unwrap();
    }
    m.observe_histogram("message_size_bytes", -3.0, &["out"]).unwrap();
    m.register_histogram("tick_work_units", "Work per tick.", &[], &[1.0, 2.5])
        .unwrap();
    let _never_observed = m.histogram("tick_work_units", &[]).unwrap();

    m.register_summary("db_query_seconds", "Query time.", &["table"], &[])
        .unwrap();
    for i in 0..100 {
        m.observe_summary("db_query_seconds", if i < 80 { 0.25 } else { 4.0 }, &["players"])
            .unwrap();
    }
    m.register_summary("tick_seconds", "Tick duration.", &[], &[0.25, 0.75])
        .unwrap();
    let _empty_window = m.summary("tick_seconds", &[]).unwrap();

    metrics::with_local_recorder(&m.recorder(), || {
        metrics::describe_counter!("facade_hits", "Hits through the facade.");
        metrics::counter!("facade_hits", "zone" => "north").increment(3);
        metrics::counter!("facade_hits", "zone" => "süd", "shard" => "7").increment(2);
        metrics::counter!("facade_hits").increment(1);
        metrics::histogram!("facade_latency_seconds", "op" => "tick").record(0.02);
        metrics::histogram!("facade_latency_seconds").record(0.25);
        metrics::gauge!("facade_load", "region" => "own region").set(0.5);
    });
    m
}

fn exporter_labels() -> Vec<(String, String)> {
    vec![
        ("service".into(), "game \"1\"".into()),
        ("instance".into(), "127.0.0.1:9100".into()),
    ]
}

#[test]
fn protobuf_says_what_text_says() {
    let m = rich_registry();
    let (text, protobuf) = encode_both(&m, &exporter_labels());
    assert_same(&text, &protobuf);

    let families = decode_all(&protobuf);
    let family = |name: &str| {
        families
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("no family {name}"))
    };
    // Counter families carry `_total`, as their text samples do; no family twice.
    for name in [
        "logins_total",
        "requests_total",
        "zero_label_events_total",
        "cpu_seconds_total",
        "facade_hits_total",
    ] {
        assert_eq!(family(name).r#type(), MetricType::Counter);
    }
    let mut names: Vec<_> = families.iter().map(|f| f.name()).collect();
    names.dedup();
    assert_eq!(names.len(), families.len(), "one message per family: {names:?}");
    // A series' own label wins over a global label of that name; the others follow its own.
    let logins = &family("logins_total").metric[0];
    let labels: Vec<_> = logins.label.iter().map(|l| (l.name(), l.value())).collect();
    assert_eq!(
        labels,
        [
            ("zone", "north"),
            ("service", "own service label"),
            ("instance", "127.0.0.1:9100"),
            ("region", "eu-west")
        ]
    );
    // The facade family's three label sets are one family.
    assert_eq!(family("facade_hits_total").metric.len(), 3);
    // Values past 2^53 are the nearest f64, as Prometheus reads the text.
    assert_eq!(
        family("zero_label_events_total").metric[0]
            .counter
            .as_ref()
            .unwrap()
            .value(),
        (u64::MAX - 1) as f64
    );
}

#[test]
fn without_global_labels_and_repeated() {
    let m = rich_registry();
    let (text, protobuf) = encode_both(&m, &[]);
    assert_same(&text, &protobuf);
    // Nothing is left over from one encode in the next: the same registry gives the same bytes.
    let (_, again) = encode_both(&m, &[]);
    assert_eq!(protobuf, again);
}

#[test]
fn appends_and_writes_nothing_for_an_empty_registry() {
    let m = MetricsManager::new();
    m.register_counter("registered_only", "No series yet.", &["zone"])
        .unwrap();
    let mut out = b"before".to_vec();
    encode_protobuf_with(&m, &exporter_labels(), &mut out);
    assert_eq!(out, b"before");

    m.increment_counter("registered_only", 1, &["a"]).unwrap();
    encode_protobuf_with(&m, &[], &mut out);
    assert_eq!(&out[..6], b"before");
    let families = decode_all(&out[6..]);
    assert_eq!(families.len(), 1);
    assert_eq!(families[0].name(), "registered_only_total");
}

#[test]
fn content_type_is_prometheus_delimited_metric_family() {
    assert_eq!(
        PROTOBUF_CONTENT_TYPE,
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
    );
}

/// Many series in one family and across families of every kind: every sample is still the text's.
#[test]
fn many_series() {
    let m = MetricsManager::builder().series_limit(100_000).build();
    let mut expected = BTreeMap::new();
    for f in 0..20 {
        let name = format!("family_{f:02}");
        match f % 4 {
            0 => m.register_counter(&name, "c", &["a", "b"]).unwrap(),
            1 => m.register_gauge(&name, "g", &["a"]).unwrap(),
            2 => m.register_histogram(&name, "h", &["a", "b", "c"], &[0.5, 1.0]).unwrap(),
            _ => m.register_summary(&name, "s", &[], &[0.5]).unwrap(),
        }
        for s in 0..(f * 37 % 200 + 1) {
            let (a, b) = (format!("a{s}"), format!("b{}", s % 3));
            match f % 4 {
                0 => m.increment_counter(&name, s as u64, &[&a, &b]).unwrap(),
                1 => m.set_gauge(&name, s as f64 / 3.0, &[&a]).unwrap(),
                2 => m.observe_histogram(&name, s as f64 / 100.0, &[&a, &b, "c"]).unwrap(),
                _ => m.observe_summary(&name, s as f64, &[]).unwrap(),
            }
        }
        expected.insert(name, ());
    }
    let (text, protobuf) = encode_both(&m, &exporter_labels());
    assert_same(&text, &protobuf);
    assert_eq!(decode_all(&protobuf).len(), expected.len());
}
