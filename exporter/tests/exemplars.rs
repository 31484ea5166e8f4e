//! Exemplars and creation times in the expositions: OpenMetrics writes them where the format
//! allows them (after a counter's `_total` sample and a histogram's `_bucket` samples, `_created`
//! when asked for) and Python `prometheus_client`'s strict parser reads back the same exemplars;
//! protobuf carries them in its fields; text 0.0.4 has none; and a real Prometheus with
//! `--enable-feature=exemplar-storage` scraping `metrics --demo` returns the demo's trace ids from
//! `/api/v1/query_exemplars`.
//!
//! Python and Prometheus are installed by `scripts/test.sh`; without them those checks print a
//! notice and pass, unless `MMO_REQUIRE_TOOLS` is set (then they fail).

mod support;
mod tools;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mmo_metrics::{MetricsManager, NativeConfig};
use mmo_metrics_exporter::proto::MetricFamily;
use mmo_metrics_exporter::{encode_openmetrics_with_options, encode_protobuf_with, encode_text, OpenMetricsOptions};
use prost::Message;
use support::{agent, start, tool, Prometheus};

fn unix_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A registry with exemplars on a counter, a classic histogram's buckets, a native-only
/// histogram (its one classic bucket, `+Inf`), a counter without one and a gauge.
fn registry() -> MetricsManager {
    let m = MetricsManager::new();
    m.register_counter("logins", "Logins.", &["zone"]).unwrap();
    m.increment_counter_with_exemplar("logins", 2, &["north"], &[("trace_id", "aa11")])
        .unwrap();
    m.increment_counter("logins", 1, &["south"]).unwrap();
    m.register_histogram("tick_seconds", "Ticks.", &[], &[0.01, 0.1])
        .unwrap();
    let tick = m.histogram("tick_seconds", &[]).unwrap();
    tick.record_with_exemplar(0.005, &[("trace_id", "bb22"), ("zone", "süd \"x\"")])
        .unwrap();
    tick.record_with_exemplar(0.05, &[("trace_id", "cc33")]).unwrap();
    tick.record(0.5);
    m.register_native_histogram("rtt_seconds", "Round trips.", &[], NativeConfig::default())
        .unwrap();
    m.observe_histogram_with_exemplar("rtt_seconds", 0.2, &[], &[("trace_id", "dd44")])
        .unwrap();
    m.register_gauge("players", "Players.", &[]).unwrap();
    m.set_gauge("players", 3.0, &[]).unwrap();
    m
}

fn openmetrics(m: &MetricsManager, created: bool) -> String {
    let mut out = String::new();
    encode_openmetrics_with_options(m, &[], OpenMetricsOptions { created }, &mut out);
    out
}

/// `# {labels} value timestamp` of the line starting with `sample`, timestamp as a number.
fn exemplar_of<'a>(text: &'a str, sample: &str) -> Option<(&'a str, f64)> {
    let line = text.lines().find(|l| l.starts_with(sample))?;
    let (_, exemplar) = line.split_once(" # ")?;
    let (rest, ts) = exemplar.rsplit_once(' ')?;
    Some((rest, ts.parse().unwrap()))
}

#[test]
fn openmetrics_writes_exemplars_where_the_format_allows_them() {
    let before = unix_seconds();
    let m = registry();
    let text = openmetrics(&m, false);
    let after = unix_seconds();
    let expect = [
        ("logins_total{zone=\"north\"} 2", "{trace_id=\"aa11\"} 2"),
        (
            "tick_seconds_bucket{le=\"0.01\"} 1",
            "{trace_id=\"bb22\",zone=\"süd \\\"x\\\"\"} 0.005",
        ),
        ("tick_seconds_bucket{le=\"0.1\"} 2", "{trace_id=\"cc33\"} 0.05"),
        ("rtt_seconds_bucket{le=\"+Inf\"} 1", "{trace_id=\"dd44\"} 0.2"),
    ];
    for (sample, exemplar) in expect {
        let (got, ts) = exemplar_of(&text, sample).unwrap_or_else(|| panic!("no exemplar on {sample}:\n{text}"));
        assert_eq!(got, exemplar, "{sample}");
        assert!(
            (before - 0.002..=after + 0.002).contains(&ts),
            "{sample}: timestamp {ts} outside [{before}, {after}]"
        );
    }
    for sample in [
        "logins_total{zone=\"south\"}",
        "tick_seconds_bucket{le=\"+Inf\"}",
        "players ",
    ] {
        assert!(
            exemplar_of(&text, sample).is_none(),
            "{sample} has no exemplar:\n{text}"
        );
    }
    assert!(!text.contains("_created"), "off by default:\n{text}");
    // Text 0.0.4 has no exemplars.
    assert!(!encode_text(&m).contains(" # "), "{}", encode_text(&m));

    // `_created` after each counter, histogram and summary series, never for gauges.
    let text = openmetrics(&m, true);
    for created in [
        "logins_created{zone=\"north\"} ",
        "logins_created{zone=\"south\"} ",
        "tick_seconds_created ",
        "rtt_seconds_created ",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(created))
            .unwrap_or_else(|| panic!("no {created}:\n{text}"));
        let v: f64 = line[created.len()..].parse().unwrap();
        assert!((before - 0.002..=after + 0.002).contains(&v), "{line}");
    }
    assert!(!text.contains("players_created"), "{text}");
}

const PARSE_SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text = sys.stdin.buffer.read().decode("utf-8")
out = []
for f in text_string_to_metric_families(text):
    for s in f.samples:
        e = s.exemplar
        out.append({"name": s.name, "labels": dict(s.labels), "value": float(s.value),
                    "exemplar": None if e is None else
                        {"labels": dict(e.labels), "value": float(e.value), "timestamp": float(e.timestamp)}})
sys.stdout.write(json.dumps(out))
"#;

#[test]
fn python_strict_parser_reads_the_exemplars_back() {
    let Some(py) = tools::python_with("prometheus_client.openmetrics.parser") else {
        return;
    };
    let m = registry();
    let text = openmetrics(&m, true);
    let stdout = tools::run_python(&py, PARSE_SCRIPT, &text);
    let samples: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let exemplars: Vec<(String, String, f64)> = samples
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["exemplar"].is_null())
        .map(|s| {
            let e = &s["exemplar"];
            let labels: Vec<String> = e["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect();
            (
                s["name"].as_str().unwrap().to_owned(),
                labels.join(","),
                e["value"].as_f64().unwrap(),
            )
        })
        .collect();
    // Families in name order.
    let want = [
        ("logins_total", "trace_id=aa11", 2.0),
        ("rtt_seconds_bucket", "trace_id=dd44", 0.2),
        ("tick_seconds_bucket", "trace_id=bb22,zone=süd \"x\"", 0.005),
        ("tick_seconds_bucket", "trace_id=cc33", 0.05),
    ];
    let want: Vec<(String, String, f64)> = want
        .iter()
        .map(|(n, l, v)| (n.to_string(), l.to_string(), *v))
        .collect();
    assert_eq!(exemplars, want, "{text}");
    let created = samples
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().ends_with("_created"))
        .count();
    assert_eq!(created, 4, "{text}");
}

#[test]
fn protobuf_carries_exemplars_and_creation_times() {
    let before = unix_seconds();
    let m = registry();
    let after = unix_seconds();
    let mut out = Vec::new();
    encode_protobuf_with(&m, &[], &mut out);
    let mut body = &out[..];
    let mut families = Vec::new();
    while !body.is_empty() {
        families.push(MetricFamily::decode_length_delimited(&mut body).unwrap());
    }
    let family = |name: &str| families.iter().find(|f| f.name() == name).unwrap();
    let in_window = |t: &prost_types::Timestamp| {
        let s = t.seconds as f64 + f64::from(t.nanos) / 1e9;
        (before - 0.002..=after + 0.002).contains(&s)
    };
    let trace = |e: &mmo_metrics_exporter::proto::Exemplar| {
        e.label
            .iter()
            .map(|l| format!("{}={}", l.name(), l.value()))
            .collect::<Vec<_>>()
            .join(",")
    };

    let logins = family("logins_total");
    let north = &logins.metric[0].counter.as_ref().unwrap();
    let e = north.exemplar.as_ref().expect("north's exemplar");
    assert_eq!((trace(e), e.value()), ("trace_id=aa11".to_owned(), 2.0));
    assert!(in_window(e.timestamp.as_ref().unwrap()) && in_window(north.created_timestamp.as_ref().unwrap()));
    assert!(logins.metric[1].counter.as_ref().unwrap().exemplar.is_none());

    let tick = family("tick_seconds").metric[0].histogram.as_ref().unwrap();
    let bucket: Vec<Option<String>> = tick.bucket.iter().map(|b| b.exemplar.as_ref().map(trace)).collect();
    assert_eq!(
        bucket,
        [
            Some("trace_id=bb22,zone=süd \"x\"".to_owned()),
            Some("trace_id=cc33".to_owned())
        ]
    );
    assert!(
        tick.exemplars.is_empty(),
        "a classic histogram's exemplars are on its buckets"
    );
    assert!(in_window(tick.created_timestamp.as_ref().unwrap()));

    let rtt = family("rtt_seconds").metric[0].histogram.as_ref().unwrap();
    let native: Vec<String> = rtt.exemplars.iter().map(trace).collect();
    assert_eq!(native, ["trace_id=dd44"]);
    assert!(
        rtt.exemplars.iter().all(|e| e.timestamp.is_some()),
        "Prometheus drops native exemplars without one"
    );
}

#[test]
fn prometheus_stores_the_demo_trace_ids() {
    let Some(prometheus) = tool("prometheus") else { return };
    let (_service, addr) = start(&["--demo", "--demo-players", "30", "--interval", "1s"]);
    let prom = Prometheus::start_with(&prometheus, addr, &["--enable-feature=exemplar-storage"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = unix_seconds();
        let url = format!(
            "http://{}/api/v1/query_exemplars?query=message_process_time_bucket&start={}&end={}",
            prom.addr,
            now - 300.0,
            now + 10.0
        );
        let text = agent().get(&url).call().unwrap().body_mut().read_to_string().unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["status"], "success", "{body}");
        let trace_ids: Vec<String> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|series| series["exemplars"].as_array().unwrap())
            .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
            .collect();
        if !trace_ids.is_empty() {
            assert!(
                trace_ids
                    .iter()
                    .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())),
                "{trace_ids:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no exemplar of message_process_time after 60 s: {body}\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
