//! The text exposition checked by the reference parsers: `promtool check metrics` (Prometheus' own
//! parser and linter) and Python's `prometheus_client` parser, on a registry that uses every
//! feature (all four types, escaping, UTF-8, special floats, overflow, the `metrics` facade), and
//! the exact text of a small registry.
//!
//! The external tools are installed by `scripts/test.sh`. Without them these tests print a notice
//! and pass, unless `MMO_REQUIRE_TOOLS` is set (as `scripts/test.sh` does): then they fail.

mod tools;

use std::collections::BTreeMap;
use std::process::Command;

use mmo_metrics::{MetricsManager, DEFAULT_BUCKETS, DEFAULT_QUANTILES, OVERFLOW_LABEL_VALUE};
use mmo_metrics_exporter::encode_text;
use tools::{run_with_stdin, tool_missing, within, Tol};

type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug)]
struct Sample {
    name: String,
    labels: Labels,
    value: f64,
    tol: Tol,
}

/// What the rich registry must expose, built alongside the recording.
#[derive(Default)]
struct Expected {
    samples: Vec<Sample>,
    /// Family name as the Python parser reports it → type.
    types: BTreeMap<String, &'static str>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// `le` and `quantile` values compared as numbers (`1` and `1.0` are the same bound).
fn normalize(mut labels: Labels) -> Labels {
    for key in ["le", "quantile"] {
        if let Some(v) = labels.get_mut(key) {
            let f: f64 = v.parse().unwrap_or_else(|_| panic!("label {key}={v:?} is not a float"));
            *v = format!("{f:?}");
        }
    }
    labels
}

impl Expected {
    fn push(&mut self, name: &str, labels: Labels, value: f64, tol: Tol) {
        self.samples.push(Sample {
            name: name.to_owned(),
            labels: normalize(labels),
            value,
            tol,
        });
    }

    fn counter(&mut self, family: &str, l: &[(&str, &str)], value: u64) {
        self.types.insert(family.to_owned(), "counter");
        self.push(&format!("{family}_total"), labels(l), value as f64, Tol::Exact);
    }

    fn gauge(&mut self, name: &str, l: &[(&str, &str)], value: f64) {
        self.types.insert(name.to_owned(), "gauge");
        self.push(name, labels(l), value, Tol::Exact);
    }

    fn histogram(&mut self, name: &str, l: &[(&str, &str)], bounds: &[f64], observed: &[f64]) {
        self.types.insert(name.to_owned(), "histogram");
        for (n, ls, v, tol) in tools::histogram_samples(name, &labels(l), bounds, observed) {
            self.push(&n, ls, v, tol);
        }
    }

    /// `observed` must make every quantile unambiguous (no quantile on a boundary between values).
    fn summary(&mut self, name: &str, l: &[(&str, &str)], quantiles: &[f64], observed: &[f64]) {
        self.types.insert(name.to_owned(), "summary");
        for (n, ls, v, tol) in tools::summary_samples(name, &labels(l), quantiles, observed) {
            self.push(&n, ls, v, tol);
        }
    }
}

const SERIES_LIMIT: usize = 8;

/// A registry using every feature, and what its exposition must contain.
fn rich_registry() -> (MetricsManager, Expected) {
    let m = MetricsManager::builder().series_limit(SERIES_LIMIT).build();
    let mut e = Expected::default();

    // Counters: without `_total` (exposed with it), with `_total` (kept), zero labels, a series
    // created by a handle and never incremented, UTF-8 and escaped label values.
    m.register_counter("logins", "Logins per zone.", &["zone"]).unwrap();
    m.increment_counter("logins", 3, &["north"]).unwrap();
    m.increment_counter("logins", 5, &["süd-Zone ✓ 区域"]).unwrap();
    m.increment_counter("logins", 1, &["süd-Zone ✓ 区域"]).unwrap();
    e.counter("logins", &[("zone", "north")], 3);
    e.counter("logins", &[("zone", "süd-Zone ✓ 区域")], 6);

    m.register_counter(
        "requests_total",
        "Requests served\nfrom C:\\game\\bin, \"quoted\".",
        &["path", "note"],
    )
    .unwrap();
    m.increment_counter("requests_total", 2, &["/a\"b", "x"]).unwrap();
    m.increment_counter("requests_total", 4, &["back\\slash", "line\nbreak"])
        .unwrap();
    m.increment_counter("requests_total", 1, &["", "all \\ \" \n of them"])
        .unwrap();
    e.counter("requests", &[("path", "/a\"b"), ("note", "x")], 2);
    e.counter("requests", &[("path", "back\\slash"), ("note", "line\nbreak")], 4);
    e.counter("requests", &[("path", ""), ("note", "all \\ \" \n of them")], 1);

    m.register_counter("zero_label_events", "Events without labels.", &[])
        .unwrap();
    m.increment_counter("zero_label_events", 7, &[]).unwrap();
    e.counter("zero_label_events", &[], 7);

    m.register_counter(
        "never_incremented",
        "A series that exists but counted nothing.",
        &["kind"],
    )
    .unwrap();
    let handle = m.counter("never_incremented", &["idle"]).unwrap();
    assert_eq!(handle.get(), 0);
    e.counter("never_incremented", &[("kind", "idle")], 0);

    // Overflow: past the series limit, label sets fold into one series, counted in a self-metric.
    m.register_counter(
        "player_actions",
        "Actions per player (a bad label: bounded by the limit).",
        &["player"],
    )
    .unwrap();
    for p in 0..SERIES_LIMIT + 2 {
        m.increment_counter("player_actions", 1, &[&format!("p{p}")]).unwrap();
    }
    for p in 0..SERIES_LIMIT {
        e.counter("player_actions", &[("player", &format!("p{p}"))], 1);
    }
    e.counter("player_actions", &[("player", OVERFLOW_LABEL_VALUE)], 2);
    e.counter("mmo_metrics_series_overflow", &[("metric", "player_actions")], 2);

    // Gauges: special floats, negative, tiny, huge, add.
    m.register_gauge("temperature", "Temperatures, some of them odd.", &["kind"])
        .unwrap();
    for (kind, v) in [
        ("nan", f64::NAN),
        ("pos_inf", f64::INFINITY),
        ("neg_inf", f64::NEG_INFINITY),
        ("negative", -12.5),
        ("tiny", 1e-7),
        ("huge", 1.5e300),
        ("zero", 0.0),
    ] {
        m.set_gauge("temperature", v, &[kind]).unwrap();
        e.gauge("temperature", &[("kind", kind)], v);
    }
    m.register_gauge("players_online", "Players online.", &[]).unwrap();
    m.set_gauge("players_online", 100.0, &[]).unwrap();
    m.add_gauge("players_online", -3.5, &[]).unwrap();
    e.gauge("players_online", &[], 96.5);

    // Histograms: default buckets with a value equal to a bound, custom buckets, a trailing +Inf
    // bound (implicit anyway), zero labels.
    m.register_histogram("latency_seconds", "Latency of operations.", &["op"], &[])
        .unwrap();
    let obs = [0.005, 0.3, 20.0, 0.1];
    for v in obs {
        m.observe_histogram("latency_seconds", v, &["move"]).unwrap();
    }
    e.histogram("latency_seconds", &[("op", "move")], &DEFAULT_BUCKETS, &obs);

    let size_bounds = [64.0, 256.0, 1024.0, 4096.0];
    m.register_histogram("message_size_bytes", "Message sizes.", &["direction"], &size_bounds)
        .unwrap();
    let (inbound, outbound) = ([256.0, 1.0, 5000.0], [64.0]);
    for v in inbound {
        m.observe_histogram("message_size_bytes", v, &["in"]).unwrap();
    }
    for v in outbound {
        m.observe_histogram("message_size_bytes", v, &["out"]).unwrap();
    }
    e.histogram("message_size_bytes", &[("direction", "in")], &size_bounds, &inbound);
    e.histogram("message_size_bytes", &[("direction", "out")], &size_bounds, &outbound);

    m.register_histogram("tick_work_units", "Work per tick.", &[], &[1.0, 2.5, f64::INFINITY])
        .unwrap();
    let ticks = [0.5, 2.5, 2.5, 3.0];
    for v in ticks {
        m.observe_histogram("tick_work_units", v, &[]).unwrap();
    }
    e.histogram("tick_work_units", &[], &[1.0, 2.5], &ticks);

    // Summaries: default quantiles with labels, custom quantiles without.
    m.register_summary("db_query_seconds", "Database query time.", &["table"], &[])
        .unwrap();
    let queries: Vec<f64> = std::iter::repeat_n(0.25, 80)
        .chain(std::iter::repeat_n(4.0, 20))
        .collect();
    for &v in &queries {
        m.observe_summary("db_query_seconds", v, &["players"]).unwrap();
    }
    e.summary(
        "db_query_seconds",
        &[("table", "players")],
        &DEFAULT_QUANTILES,
        &queries,
    );

    m.register_summary("tick_seconds", "Tick duration.", &[], &[0.25, 0.75])
        .unwrap();
    let tick = [0.5; 4];
    for v in tick {
        m.observe_summary("tick_seconds", v, &[]).unwrap();
    }
    e.summary("tick_seconds", &[], &[0.25, 0.75], &tick);

    // The `metrics` facade lands in the same registry.
    metrics::with_local_recorder(&m.recorder(), || {
        metrics::describe_counter!("facade_hits", "Hits recorded through the metrics facade.");
        metrics::describe_counter!("facade_requests_total", "Requests through the facade.");
        metrics::describe_gauge!("facade_load", "Load through the facade.");
        metrics::describe_histogram!("facade_latency_seconds", "Latency through the facade.");
        metrics::counter!("facade_hits", "zone" => "north").increment(3);
        metrics::counter!("facade_hits", "zone" => "north").increment(1);
        metrics::counter!("facade_hits", "zone" => "süd").increment(2);
        metrics::counter!("facade_requests_total").increment(2);
        metrics::gauge!("facade_load").set(0.75);
        metrics::gauge!("facade_load").decrement(0.25);
        metrics::histogram!("facade_latency_seconds", "op" => "tick").record(0.02);
        metrics::histogram!("facade_latency_seconds", "op" => "tick").record(0.25);
        // An invalid name is sanitised, counted once in a self-metric.
        metrics::counter!("bad-name").increment(1);
        // Cannot be recorded (`le` is the exposition's): counted in a self-metric, never a panic.
        metrics::histogram!("bad_histogram", "le" => "1").record(1.0);
    });
    e.counter("facade_hits", &[("zone", "north")], 4);
    e.counter("facade_hits", &[("zone", "süd")], 2);
    e.counter("facade_requests", &[], 2);
    e.gauge("facade_load", &[], 0.5);
    e.histogram(
        "facade_latency_seconds",
        &[("op", "tick")],
        &DEFAULT_BUCKETS,
        &[0.02, 0.25],
    );
    e.counter("bad_name", &[], 1);
    e.counter("mmo_metrics_facade_renamed", &[("metric", "bad-name")], 1);
    e.counter("mmo_metrics_facade_errors", &[("metric", "bad_histogram")], 1);

    (m, e)
}

/// Prints each sample the Python parser finds as JSON: family, type, name, labels, value (as text,
/// so NaN and infinities survive JSON).
const PARSE_SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.buffer.read().decode("utf-8")
out = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name,
                    "labels": dict(s.labels), "value": repr(float(s.value))})
sys.stdout.write(json.dumps(out))
"#;

#[test]
fn promtool_accepts_the_rich_exposition() {
    let (m, _) = rich_registry();
    let text = encode_text(&m);
    let out = match run_with_stdin(Command::new("promtool").args(["check", "metrics"]), &text) {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return tool_missing("promtool"),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !report.to_lowercase().contains("error"),
        "promtool check metrics failed ({}):\n{report}\n--- exposition ---\n{text}",
        out.status
    );
}

#[test]
fn python_parser_reads_back_what_was_recorded() {
    let (m, expected) = rich_registry();
    let text = encode_text(&m);
    let Some(py) = tools::python_with("prometheus_client.parser") else {
        return;
    };
    let stdout = tools::run_python(&py, PARSE_SCRIPT, &text);
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&stdout).expect("parser output is JSON");

    let mut got: BTreeMap<(String, Labels), f64> = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for s in &parsed {
        let name = s["name"].as_str().expect("name").to_owned();
        let ls: Labels = s["labels"]
            .as_object()
            .expect("labels")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_owned()))
            .collect();
        let value: f64 = s["value"].as_str().expect("value").parse().expect("value is a float");
        types.insert(
            s["family"].as_str().expect("family").to_owned(),
            s["type"].as_str().expect("type").to_owned(),
        );
        let key = (name, normalize(ls));
        assert!(
            got.insert(key.clone(), value).is_none(),
            "sample {key:?} appears twice\n{text}"
        );
    }

    let mut problems = Vec::new();
    for want in &expected.samples {
        match got.remove(&(want.name.clone(), want.labels.clone())) {
            None => problems.push(format!("missing: {} {:?} = {}", want.name, want.labels, want.value)),
            Some(v) if !within(v, want.value, want.tol) => problems.push(format!(
                "wrong value: {} {:?} = {v}, expected {} ({:?})",
                want.name, want.labels, want.value, want.tol
            )),
            Some(_) => {}
        }
    }
    for ((name, ls), v) in &got {
        problems.push(format!("unexpected: {name} {ls:?} = {v}"));
    }
    for (family, ty) in &expected.types {
        match types.get(family) {
            Some(t) if t == ty => {}
            other => problems.push(format!("family {family}: type {other:?}, expected {ty}")),
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n--- exposition ---\n{text}",
        problems.join("\n")
    );
}

#[test]
fn rich_exposition_is_consistent_per_series() {
    let (m, _) = rich_registry();
    let text = encode_text(&m);
    // Every family has HELP and TYPE, and HELP comes first.
    let mut help_seen = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help_seen = rest.split(' ').next().map(str::to_owned);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert_eq!(help_seen.as_deref(), Some(name), "TYPE without HELP before it: {line}");
        } else {
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            assert!(line.split(' ').count() >= 2, "sample line without value: {line}");
        }
    }
    // Buckets are cumulative, `le` comes last and +Inf equals _count, series by series.
    let samples: Vec<(&str, &str, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            match series.split_once('{') {
                Some((name, labels)) => (name, labels.strip_suffix('}').unwrap(), value),
                None => (series, "", value),
            }
        })
        .collect();
    let mut buckets: BTreeMap<(String, String), Vec<(String, u64)>> = BTreeMap::new();
    for (name, labels, value) in &samples {
        if let Some(base) = name.strip_suffix("_bucket") {
            let le_at = match labels.rfind(",le=\"") {
                Some(i) => i + 1,
                None if labels.starts_with("le=\"") => 0,
                None => panic!("bucket without le: {name}{{{labels}}}"),
            };
            let rest = labels[..le_at].trim_end_matches(',');
            let le = labels[le_at + 4..].strip_suffix('"').expect("le is the last label");
            buckets
                .entry((base.to_owned(), rest.to_owned()))
                .or_default()
                .push((le.to_owned(), value.parse().unwrap()));
        }
    }
    assert_eq!(buckets.len(), 5, "{buckets:?}");
    for ((base, labels), b) in &buckets {
        assert!(
            b.windows(2).all(|w| w[0].1 <= w[1].1),
            "{base}{{{labels}}}: buckets not cumulative: {b:?}"
        );
        let (last_le, inf) = b.last().unwrap();
        assert_eq!(last_le, "+Inf", "{base}{{{labels}}}: last bucket");
        let count_name = format!("{base}_count");
        let count = samples
            .iter()
            .find(|(n, l, _)| *n == count_name && l == labels)
            .expect("_count of the series");
        assert_eq!(
            count.2.parse::<u64>().unwrap(),
            *inf,
            "{base}{{{labels}}}: +Inf bucket != _count"
        );
    }
}

#[test]
fn small_registry_exact_text() {
    let m = MetricsManager::new();
    m.register_counter("x_total", "X events.", &[]).unwrap();
    m.increment_counter("x_total", 2, &[]).unwrap();
    m.register_counter("y", "Y with a \\ backslash\nand a newline, \"quotes\" kept.", &["v"])
        .unwrap();
    m.increment_counter("y", 5, &["a\"b\\c\nd"]).unwrap();
    m.increment_counter("y", 1, &["plain ü"]).unwrap();
    m.register_gauge("g", "G.", &[]).unwrap();
    m.set_gauge("g", -1.5, &[]).unwrap();
    m.register_histogram("h", "H.", &["op"], &[1.0, 2.0]).unwrap();
    for v in [1.0, 1.5, 3.0, 0.25] {
        m.observe_histogram("h", v, &["read"]).unwrap();
    }
    m.register_gauge("special", "Special floats.", &["k"]).unwrap();
    m.set_gauge("special", f64::NAN, &["nan"]).unwrap();
    m.set_gauge("special", f64::INFINITY, &["pos"]).unwrap();
    m.set_gauge("special", f64::NEG_INFINITY, &["neg"]).unwrap();

    let text = encode_text(&m);
    let ours: String = text
        .lines()
        .filter(|l| !l.contains("mmo_metrics_"))
        .map(|l| format!("{l}\n"))
        .collect();
    let want = r#"# HELP g G.
# TYPE g gauge
g -1.5
# HELP h H.
# TYPE h histogram
h_bucket{op="read",le="1"} 2
h_bucket{op="read",le="2"} 3
h_bucket{op="read",le="+Inf"} 4
h_sum{op="read"} 5.75
h_count{op="read"} 4
# HELP special Special floats.
# TYPE special gauge
special{k="nan"} NaN
special{k="pos"} +Inf
special{k="neg"} -Inf
# HELP x_total X events.
# TYPE x_total counter
x_total 2
# HELP y_total Y with a \\ backslash\nand a newline, "quotes" kept.
# TYPE y_total counter
y_total{v="a\"b\\c\nd"} 5
y_total{v="plain ü"} 1
"#;
    assert_eq!(ours, want, "\n--- got ---\n{ours}");
    // Registering `x` again with or without `_total` is the same family.
    m.register_counter("x", "X events.", &[]).unwrap();
    m.increment_counter("x", 1, &[]).unwrap();
    assert!(encode_text(&m).contains("\nx_total 3\n"));
}
