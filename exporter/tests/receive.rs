//! The remote write 1.0 receiver (`ExporterBuilder::receive`) of a real exporter on loopback:
//! requests built here with prost and snap and POSTed with ureq, the exposition read back in the
//! three formats (text through Python's `prometheus_client` parser and `promtool check metrics`,
//! OpenMetrics through the strict Python parser, protobuf decoded with prost); the bounds and
//! hostile bodies; and a real Prometheus 2.42 remote-writing what it scrapes into the receiver.
//! Every wait is bounded.

mod support;
mod tools;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mmo_metrics::MetricsManager;
use mmo_metrics_exporter::proto::{MetricFamily, MetricType};
use mmo_metrics_exporter::remote_write_proto::metric_metadata::MetricType as RwType;
use mmo_metrics_exporter::remote_write_proto::{
    histogram, BucketSpan, Histogram, Label, MetricMetadata, Sample, TimeSeries, WriteRequest,
};
use mmo_metrics_exporter::{
    Exporter, ExporterBuilder, ReceiveConfig, PROTOBUF_CONTENT_TYPE, RECEIVE_REQUESTS_REFUSED_METRIC,
    RECEIVE_SERIES_REFUSED_METRIC, RECEIVE_SERIES_REMOVED_METRIC,
};
use prost::Message;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A series named `name` with `labels` (sorted here) and one sample.
fn series(name: &str, labels: &[(&str, &str)], value: f64, timestamp: i64) -> TimeSeries {
    let mut l: Vec<Label> = labels
        .iter()
        .chain([("__name__", name)].iter())
        .map(|(n, v)| Label {
            name: (*n).into(),
            value: (*v).into(),
        })
        .collect();
    l.sort_by(|a, b| a.name.cmp(&b.name));
    TimeSeries {
        labels: l,
        samples: vec![Sample { value, timestamp }],
        ..Default::default()
    }
}

fn metadata(family: &str, t: RwType, help: &str) -> MetricMetadata {
    MetricMetadata {
        r#type: t as i32,
        metric_family_name: family.into(),
        help: help.into(),
        unit: String::new(),
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn body(series: Vec<TimeSeries>, metadata: Vec<MetricMetadata>) -> Vec<u8> {
    snappy(
        &WriteRequest {
            timeseries: series,
            metadata,
        }
        .encode_to_vec(),
    )
}

/// POSTs `body` to `/api/v1/write` with these headers; the status and the response body.
fn post_with(addr: SocketAddr, content_type: Option<&str>, encoding: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut req = support::agent().post(format!("http://{addr}/api/v1/write"));
    if let Some(c) = content_type {
        req = req.header("Content-Type", c);
    }
    if let Some(e) = encoding {
        req = req.header("Content-Encoding", e);
    }
    let mut r = req
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .send(body)
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
}

fn post(addr: SocketAddr, body: &[u8]) -> (u16, String) {
    post_with(addr, Some("application/x-protobuf"), Some("snappy"), body)
}

fn push(addr: SocketAddr, series: Vec<TimeSeries>, metadata: Vec<MetricMetadata>) {
    let (code, text) = post(addr, &body(series, metadata));
    assert_eq!(code, 204, "{text}");
}

fn scrape(addr: SocketAddr, accept: &str) -> Vec<u8> {
    let mut r = support::agent()
        .get(format!("http://{addr}/metrics"))
        .header("Accept", accept)
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap()
}

fn text(addr: SocketAddr) -> String {
    String::from_utf8(scrape(addr, "text/plain;version=0.0.4")).unwrap()
}

fn families(addr: SocketAddr) -> Vec<MetricFamily> {
    let bytes = scrape(
        addr,
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
    );
    let mut rest = &bytes[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        out.push(MetricFamily::decode_length_delimited(&mut rest).unwrap());
    }
    out
}

fn serve(m: &MetricsManager, config: ReceiveConfig) -> Exporter {
    ExporterBuilder::new(m.clone())
        .address("127.0.0.1:0".parse().unwrap())
        .receive(config)
        .serve()
        .unwrap()
}

/// The text exposition's samples as Python's `prometheus_client` parser reads them:
/// `name{labels}` → value.
fn python_text_samples(text: &str) -> Option<BTreeMap<String, f64>> {
    let py = tools::python_with("prometheus_client.parser")?;
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        key = s.name + "{" + ",".join(k + "=" + v for k, v in sorted(s.labels.items())) + "}"
        out[key] = [f.type, float(s.value)]
print(json.dumps(out))
"#;
    let out = tools::run_python(&py, SCRIPT, text);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    Some(
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v[1].as_f64().unwrap_or(f64::NAN)))
            .collect(),
    )
}

/// The OpenMetrics exposition read by the strict Python parser: family → type.
fn python_openmetrics_families(text: &str) -> Option<BTreeMap<String, String>> {
    let py = tools::python_with("prometheus_client.openmetrics.parser")?;
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
print(json.dumps({f.name: f.type for f in text_string_to_metric_families(sys.stdin.read())}))
"#;
    let out = tools::run_python(&py, SCRIPT, text);
    Some(serde_json::from_slice(&out).unwrap())
}

fn promtool_check(text: &str) {
    let out = match tools::run_with_stdin(Command::new("promtool").args(["check", "metrics"]), text) {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return tools::tool_missing("promtool"),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics ({}):\n{report}\n--- exposition ---\n{text}",
        out.status
    );
}

fn counter(m: &MetricsManager, name: &str, label: &str) -> u64 {
    m.counter(name, &[label]).map(|c| c.get()).unwrap_or(0)
}

#[test]
fn received_series_are_exposed_in_every_format_latest_value_winning() {
    let m = MetricsManager::new();
    m.register_counter("own_events", "The exporter's own counter.", &[])
        .unwrap();
    m.increment_counter("own_events", 7, &[]).unwrap();
    let server = serve(&m, ReceiveConfig::new());
    let addr = server.local_addr();
    let t = now_ms();
    let zone = [("instance", "zone-1:9000"), ("job", "zone")];
    let with = |extra: (&'static str, &'static str)| {
        let mut l = zone.to_vec();
        l.push(extra);
        l
    };
    let meta = vec![
        metadata("game_logins", RwType::Counter, "Logins."),
        metadata("zone_players", RwType::Gauge, "Players \"online\".\nNow."),
        metadata("tick_seconds", RwType::Histogram, "Tick time."),
    ];
    let first = vec![
        series("game_logins_total", &with(("realm", "eu")), 10.0, t),
        series("zone_players", &zone, 40.0, t),
        series("no_metadata_value", &with(("k", "a\"b\\c")), 1.5, t),
        series("tick_seconds_bucket", &with(("le", "0.1")), 3.0, t),
        series("tick_seconds_bucket", &with(("le", "+Inf")), 4.0, t),
        series("tick_seconds_sum", &zone, 0.5, t),
        series("tick_seconds_count", &zone, 4.0, t),
    ];
    push(addr, first, meta);
    // Newer points replace the stored ones; an older point (a late retry) is ignored.
    push(
        addr,
        vec![
            series("game_logins_total", &with(("realm", "eu")), 12.0, t + 1000),
            series("zone_players", &zone, 41.0, t + 1000),
        ],
        vec![],
    );
    push(addr, vec![series("zone_players", &zone, 1.0, t - 1000)], vec![]);

    let text = text(addr);
    let inst = "instance=zone-1:9000,job=zone";
    if let Some(samples) = python_text_samples(&text) {
        let want = [
            (format!("game_logins_total{{{inst},realm=eu}}"), 12.0),
            (format!("zone_players{{{inst}}}"), 41.0),
            (format!("no_metadata_value{{{inst},k=a\"b\\c}}"), 1.5),
            (format!("tick_seconds_bucket{{{inst},le=0.1}}"), 3.0),
            (format!("tick_seconds_bucket{{{inst},le=+Inf}}"), 4.0),
            (format!("tick_seconds_sum{{{inst}}}"), 0.5),
            (format!("tick_seconds_count{{{inst}}}"), 4.0),
            ("own_events_total{}".to_owned(), 7.0),
        ];
        for (k, v) in want {
            assert_eq!(samples.get(&k), Some(&v), "{k} in\n{text}");
        }
    }
    assert!(text.contains("# TYPE game_logins_total counter\n"), "{text}");
    assert!(text.contains("# TYPE zone_players gauge\n"), "{text}");
    assert!(
        text.contains("# HELP zone_players Players \"online\".\\nNow.\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE tick_seconds_bucket untyped\n"), "{text}");
    assert!(text.contains("# TYPE no_metadata_value untyped\n"), "{text}");
    promtool_check(&text);

    let om = String::from_utf8(scrape(addr, "application/openmetrics-text;version=1.0.0")).unwrap();
    assert!(om.ends_with("# EOF\n") && om.matches("# EOF").count() == 1, "{om}");
    if let Some(types) = python_openmetrics_families(&om) {
        assert_eq!(types.get("game_logins").map(String::as_str), Some("counter"), "{om}");
        assert_eq!(types.get("zone_players").map(String::as_str), Some("gauge"), "{om}");
        assert_eq!(
            types.get("no_metadata_value").map(String::as_str),
            Some("unknown"),
            "{om}"
        );
        assert_eq!(types.get("own_events").map(String::as_str), Some("counter"), "{om}");
    }

    let fams = families(addr);
    let fam = |name: &str| {
        fams.iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("family {name} in protobuf"))
    };
    let logins = fam("game_logins_total");
    assert_eq!(logins.r#type(), MetricType::Counter);
    assert_eq!(logins.metric[0].counter.as_ref().unwrap().value(), 12.0);
    let labels: Vec<_> = logins.metric[0].label.iter().map(|l| (l.name(), l.value())).collect();
    assert_eq!(labels, [("instance", "zone-1:9000"), ("job", "zone"), ("realm", "eu")]);
    assert_eq!(fam("zone_players").metric[0].gauge.as_ref().unwrap().value(), 41.0);
    assert_eq!(fam("tick_seconds_sum").r#type(), MetricType::Untyped);
    // No received timestamps in the exposition.
    assert!(fams.iter().flat_map(|f| &f.metric).all(|m| m.timestamp_ms.is_none()));
}

#[test]
fn native_histograms_are_exposed_in_protobuf_only() {
    let m = MetricsManager::new();
    let server = serve(&m, ReceiveConfig::new());
    let addr = server.local_addr();
    let mut ts = series("rpc_seconds", &[("job", "api"), ("instance", "a")], 0.0, 0);
    ts.samples.clear();
    ts.histograms.push(Histogram {
        count: Some(histogram::Count::CountInt(5)),
        sum: 2.5,
        schema: 3,
        zero_threshold: 1e-128,
        zero_count: Some(histogram::ZeroCount::ZeroCountInt(1)),
        positive_spans: vec![BucketSpan { offset: 0, length: 2 }],
        positive_deltas: vec![1, 2],
        timestamp: now_ms(),
        ..Default::default()
    });
    push(addr, vec![ts], vec![]);
    let fams = families(addr);
    let f = fams
        .iter()
        .find(|f| f.name() == "rpc_seconds")
        .expect("rpc_seconds in protobuf");
    assert_eq!(f.r#type(), MetricType::Histogram);
    let h = f.metric[0].histogram.as_ref().unwrap();
    assert_eq!(
        (h.sample_count(), h.sample_sum(), h.schema(), h.zero_count()),
        (5, 2.5, 3, 1)
    );
    assert_eq!(h.positive_delta, [1, 2]);
    let text = text(addr);
    assert!(!text.contains("rpc_seconds"), "{text}");
    promtool_check(&text);
}

#[test]
fn stale_markers_remove_series_after_the_grace() {
    let m = MetricsManager::new();
    let server = serve(&m, ReceiveConfig::new().stale_grace(Duration::from_millis(300)));
    let addr = server.local_addr();
    let t = now_ms();
    let a = [("job", "zone"), ("instance", "1"), ("room", "a")];
    let b = [("job", "zone"), ("instance", "1"), ("room", "b")];
    push(
        addr,
        vec![series("rooms_open", &a, 1.0, t), series("rooms_open", &b, 1.0, t)],
        vec![],
    );
    assert!(text(addr).contains("rooms_open{instance=\"1\",job=\"zone\",room=\"a\"} 1\n"));
    push(
        addr,
        vec![series("rooms_open", &a, f64::from_bits(STALE_NAN), t + 1)],
        vec![],
    );
    // Within the grace the last point is still exposed (a scrape after the sender's last push
    // carries it); then the series leaves.
    let during = text(addr);
    assert!(
        during.contains("rooms_open{instance=\"1\",job=\"zone\",room=\"a\"} 1\n"),
        "{during}"
    );
    assert_eq!(counter(&m, RECEIVE_SERIES_REMOVED_METRIC, "stale"), 1);
    let started = std::time::Instant::now();
    let after = loop {
        let t = text(addr);
        if !t.contains("room=\"a\"") || started.elapsed() > Duration::from_secs(10) {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !after.contains("room=\"a\""),
        "still there 10 s after a 300 ms grace: {after}"
    );
    assert!(
        after.contains("rooms_open{instance=\"1\",job=\"zone\",room=\"b\"} 1\n"),
        "{after}"
    );
}

#[test]
fn a_silent_sender_leaves_after_the_ttl() {
    let m = MetricsManager::new();
    let server = serve(&m, ReceiveConfig::new().ttl(Duration::from_millis(600)));
    let addr = server.local_addr();
    let alive = [("job", "zone"), ("instance", "alive")];
    let silent = [("job", "zone"), ("instance", "silent")];
    push(
        addr,
        vec![
            series("up_seconds", &alive, 1.0, now_ms()),
            series("up_seconds", &silent, 1.0, now_ms()),
        ],
        vec![],
    );
    // The live sender keeps pushing; the other is gone within the TTL and one tick.
    let started = std::time::Instant::now();
    let mut gone = false;
    while started.elapsed() < Duration::from_secs(10) {
        push(addr, vec![series("up_seconds", &alive, 2.0, now_ms())], vec![]);
        let text = text(addr);
        assert!(text.contains("instance=\"alive\""), "{text}");
        if !text.contains("instance=\"silent\"") {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gone, "the silent sender's series are still exposed after 10 s");
    assert!(started.elapsed() >= Duration::from_millis(500), "left before its TTL");
    assert_eq!(counter(&m, RECEIVE_SERIES_REMOVED_METRIC, "ttl"), 1);
}

#[test]
fn series_limits_refuse_new_series_and_keep_the_rest() {
    let m = MetricsManager::new();
    let server = serve(&m, ReceiveConfig::new().max_series_per_sender(3).max_series(5));
    let addr = server.local_addr();
    let t = now_ms();
    let of = |sender: &'static str, n: usize, v: f64| -> Vec<TimeSeries> {
        (0..n)
            .map(|i| {
                let id = i.to_string();
                series(
                    "room_load",
                    &[("job", "zone"), ("instance", sender), ("room", &id)],
                    v,
                    t,
                )
            })
            .collect()
    };
    // Sender a: 5 series, 3 stored, 2 refused by the per-sender limit; the answer is 204.
    push(addr, of("a", 5, 1.0), vec![]);
    // Sender b: 3 series, 2 stored (the store is full at 5), 1 refused by the total limit.
    push(addr, of("b", 3, 1.0), vec![]);
    assert_eq!(counter(&m, RECEIVE_SERIES_REFUSED_METRIC, "sender_limit"), 2);
    assert_eq!(counter(&m, RECEIVE_SERIES_REFUSED_METRIC, "total_limit"), 1);
    // Stored series still update at the limits.
    push(addr, of("a", 5, 9.0), vec![]);
    let text = text(addr);
    let stored: Vec<&str> = text.lines().filter(|l| l.starts_with("room_load{")).collect();
    assert_eq!(stored.len(), 5, "{text}");
    assert_eq!(stored.iter().filter(|l| l.ends_with(" 9")).count(), 3, "{text}");
    assert!(text.contains("mmo_metrics_receive_series 5\n"), "{text}");
}

#[test]
fn names_of_the_exporters_own_families_are_refused() {
    let m = MetricsManager::new();
    m.register_gauge("zone_players", "Own gauge.", &[]).unwrap();
    m.set_gauge("zone_players", 3.0, &[]).unwrap();
    let server = serve(&m, ReceiveConfig::new());
    let addr = server.local_addr();
    let s = [("job", "zone"), ("instance", "1")];
    push(
        addr,
        vec![
            series("zone_players", &s, 40.0, now_ms()),
            // OpenMetrics family `zone_players` would be declared twice.
            series("zone_players_total", &s, 1.0, now_ms()),
            series("mmo_metrics_scrapes_total", &s, 1.0, now_ms()),
            series("zone_rooms", &s, 2.0, now_ms()),
        ],
        vec![metadata("zone_players", RwType::Counter, "x")],
    );
    assert_eq!(counter(&m, RECEIVE_SERIES_REFUSED_METRIC, "conflict"), 3);
    let text = text(addr);
    assert!(text.contains("zone_rooms{instance=\"1\",job=\"zone\"} 2\n"), "{text}");
    assert!(text.contains("\nzone_players 3\n"), "{text}");
    assert!(!text.contains("zone_players{"), "{text}");
    promtool_check(&text);
    let om = String::from_utf8(scrape(addr, "application/openmetrics-text;version=1.0.0")).unwrap();
    python_openmetrics_families(&om);
}

/// Sends raw bytes and returns the status code and body of the answer.
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

#[test]
fn hostile_bodies_are_refused_and_nothing_else_is_lost() {
    let m = MetricsManager::new();
    let server = serve(
        &m,
        ReceiveConfig::new()
            .max_body_bytes(1 << 20)
            .max_decompressed_bytes(4 << 20),
    );
    let addr = server.local_addr();
    let kept = [("job", "zone"), ("instance", "1")];
    push(addr, vec![series("kept_value", &kept, 5.0, now_ms())], vec![]);
    let good = body(vec![series("other_value", &kept, 1.0, now_ms())], vec![]);

    let cases: Vec<(&str, (u16, String), u16, &str)> = vec![
        (
            "garbage",
            post(addr, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff garbage"),
            400,
            "snappy",
        ),
        (
            "snappy of garbage",
            post(addr, &snappy(b"\x0a\xff\xff\x03nope")),
            400,
            "protobuf",
        ),
        (
            "wrong content type",
            post_with(addr, Some("application/json"), Some("snappy"), &good),
            415,
            "found `application/json`",
        ),
        (
            "remote write 2.0",
            post_with(
                addr,
                Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
                Some("snappy"),
                &good,
            ),
            415,
            "proto=prometheus.WriteRequest",
        ),
        (
            "missing encoding",
            post_with(addr, Some("application/x-protobuf"), None, &good),
            415,
            "Content-Encoding: expected snappy, found none",
        ),
        (
            "oversized",
            // Answered from the headers, before the body is sent.
            raw(
                addr,
                b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\
                  Content-Encoding: snappy\r\nContent-Length: 1048577\r\n\r\n",
            ),
            413,
            "Content-Length 1048577 bytes is above the limit of 1048576",
        ),
        (
            "oversized, chunked",
            {
                let mut req = b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\
                    Content-Encoding: snappy\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    .to_vec();
                for _ in 0..20 {
                    req.extend_from_slice(b"10000\r\n");
                    req.extend(std::iter::repeat_n(b'x', 0x10000));
                    req.extend_from_slice(b"\r\n");
                }
                req.extend_from_slice(b"0\r\n\r\n");
                raw(addr, &req)
            },
            413,
            "more than the limit of 1048576 bytes",
        ),
        (
            // A snappy header claiming 2 GiB in a body of 6 bytes.
            "snappy bomb header",
            post(addr, &[0x80, 0x80, 0x80, 0x80, 0x08, 0x00]),
            413,
            "announces 2147483648 bytes decompressed",
        ),
        (
            // A real body: 8 MiB of one label value compress to a few hundred KB.
            "highly compressible body",
            post(
                addr,
                &body(
                    vec![series("big", &[("job", "x"), ("v", &"a".repeat(8 << 20))], 1.0, 0)],
                    vec![],
                ),
            ),
            413,
            "above the limit of 4194304 bytes",
        ),
        (
            "unsorted labels",
            post(addr, &{
                let mut s = series("bad_order", &kept, 1.0, 0);
                s.labels.reverse();
                body(vec![series("fine", &kept, 1.0, 0), s], vec![])
            }),
            400,
            "series 1 bad_order{job=\"zone\",instance=\"1\"}: labels not sorted by name",
        ),
        (
            "duplicate label",
            post(
                addr,
                &body(vec![series("dup", &[("job", "a"), ("job", "b")], 1.0, 0)], vec![]),
            ),
            400,
            "duplicate label name `job`",
        ),
        (
            "no name",
            post(addr, &{
                let mut s = series("x", &kept, 1.0, 0);
                s.labels.retain(|l| l.name != "__name__");
                body(vec![s], vec![])
            }),
            400,
            "no `__name__` label",
        ),
        (
            "invalid metric name",
            post(addr, &body(vec![series("9lives", &kept, 1.0, 0)], vec![])),
            400,
            "9lives",
        ),
        (
            "invalid label name",
            post(
                addr,
                &body(vec![series("ok_name", &[("bad-label", "v")], 1.0, 0)], vec![]),
            ),
            400,
            "bad-label",
        ),
        (
            "reserved label name",
            post(
                addr,
                &body(vec![series("ok_name", &[("__meta_x", "v")], 1.0, 0)], vec![]),
            ),
            400,
            "__meta_x",
        ),
    ];
    for (what, (code, text), want, message) in cases {
        assert_eq!(code, want, "{what}: {text}");
        assert!(text.contains(message), "{what}: `{message}` not in {text:?}");
    }
    assert_eq!(support::get(&format!("http://{addr}/health")).0, 200);
    let text = text(addr);
    assert!(text.contains("kept_value{instance=\"1\",job=\"zone\"} 5\n"), "{text}");
    // A request refused whole stores nothing, not even its valid series.
    assert!(!text.contains("\nfine{"), "{text}");
    for (reason, n) in [
        ("snappy", 1),
        ("protobuf", 1),
        ("content_type", 2),
        ("content_encoding", 1),
        ("body_size", 2),
        ("decompressed_size", 2),
        ("invalid_series", 6),
    ] {
        assert_eq!(counter(&m, RECEIVE_REQUESTS_REFUSED_METRIC, reason), n, "{reason}");
    }
    // Still serving: a good request is stored.
    let (code, t) = post(addr, &good);
    assert_eq!(code, 204, "{t}");
}

#[test]
fn a_real_prometheus_remote_writes_into_the_receiver() {
    let Some(prometheus) = support::tool("prometheus") else {
        return;
    };
    // The target Prometheus scrapes: another manager with a counter.
    let target = MetricsManager::new();
    target
        .register_counter("game_events", "Game events.", &["kind"])
        .unwrap();
    target.increment_counter("game_events", 42, &["login"]).unwrap();
    let target_server = ExporterBuilder::new(target.clone())
        .address("127.0.0.1:0".parse().unwrap())
        .serve()
        .unwrap();
    let m = MetricsManager::new();
    let receiver = serve(&m, ReceiveConfig::new());
    let addr = receiver.local_addr();
    let remote_write = format!(
        "remote_write:\n  - url: http://{addr}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n      \
         min_backoff: 100ms\n    metadata_config:\n      send_interval: 1s\n"
    );
    let prom = support::Prometheus::start_with_config(&prometheus, target_server.local_addr(), &remote_write, &[]);
    let instance = target_server.local_addr().to_string();
    let want_up = format!("up{{instance=\"{instance}\",job=\"mmo_server\"}} 1\n");
    let want_events = format!("game_events_total{{instance=\"{instance}\",job=\"mmo_server\",kind=\"login\"}} 42\n");
    let mut last = String::new();
    let started = std::time::Instant::now();
    while !(last.contains(&want_up) && last.contains(&want_events) && last.contains("# TYPE game_events_total counter"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the receiver did not get `up` and `game_events_total` (as a counter, from Prometheus' \
             metadata) within 60 s:\n{last}\n--- Prometheus log ---\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(250));
        last = text(addr);
    }
    promtool_check(&last);
    assert!(counter(&m, mmo_metrics_exporter::RECEIVE_REQUESTS_METRIC, "204") > 0);
    // The target's self-metrics have the receiver's own names: refused, not exposed twice.
    assert!(counter(&m, RECEIVE_SERIES_REFUSED_METRIC, "conflict") > 0);
    let _ = PROTOBUF_CONTENT_TYPE;
}
