//! The `metrics` facade as a drop-in for metrics-exporter-prometheus (0.18): one program,
//! instrumented with a real crate (`metrics-process`), metrics-util layers (`PrefixLayer`,
//! `FilterLayer`) and the calls crates commonly make (names and label keys that are not valid
//! Prometheus names, one name with several label sets, units), runs under that exporter and under
//! ours; both expositions are parsed and must hold the same families, types and label sets:
//!
//! - with `PrometheusBuilder::new().with_recommended_naming(true).set_quantiles(..)` against
//!   `MetricsManager::builder().with_recommended_naming(true).histograms_as_summaries(true)
//!   .set_quantiles(..)` (the migration of the README): exactly;
//! - with both builders' defaults: up to the documented differences, counters always end in
//!   `_total` here and a bucketless histogram is a histogram here, a summary there.
//!
//! Our output must also pass `promtool check metrics` (its lint included) and Python's
//! `prometheus_client` parser; without them (installed by `scripts/test.sh`) those checks print
//! a notice, unless `MMO_REQUIRE_TOOLS` is set.

mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;

use metrics::{counter, describe_counter, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::PrometheusBuilder;
use metrics_util::layers::{FilterLayer, Layer, PrefixLayer};
use mmo_metrics::MetricsManager;
use mmo_metrics_exporter::encode_text;
use tools::{run_with_stdin, tool_missing};

type LabelSet = BTreeMap<String, String>;

/// One family of a parsed exposition.
#[derive(Debug, Default, PartialEq)]
struct Family {
    kind: String,
    /// Label sets of its series (`le` and `quantile` left out).
    series: BTreeSet<LabelSet>,
    /// `# TYPE` lines naming it (one in a valid exposition).
    type_lines: usize,
    /// Whether it has a `# HELP` line.
    help: bool,
    /// Counter and gauge values, and histogram and summary `_count`s, by label set.
    values: BTreeMap<LabelSet, f64>,
}

/// Parses the text format 0.0.4: families by name (as on their `# TYPE` line).
fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            let f = fams.entry(name.to_owned()).or_default();
            f.kind = kind.to_owned();
            f.type_lines += 1;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            fams.entry(name.to_owned()).or_default().help = true;
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected line {line:?}");
        let (sample, labels, value) = parse_sample(line);
        // The family is the longest TYPE name the sample name starts with, suffix allowed.
        let family = fams
            .iter()
            .filter(|(n, f)| {
                sample == **n
                    || (["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| sample == format!("{n}{s}"))
                        && (f.kind == "histogram" || f.kind == "summary"))
            })
            .map(|(n, _)| n.clone())
            .max_by_key(String::len)
            .unwrap_or_else(|| panic!("sample {line:?} before its TYPE line"));
        let f = fams.get_mut(&family).unwrap();
        let mut set = labels.clone();
        set.remove("le");
        set.remove("quantile");
        f.series.insert(set.clone());
        if sample == family && !labels.contains_key("quantile") || sample.ends_with("_count") {
            f.values.insert(set, value);
        }
    }
    fams
}

/// `name{k="v",...} value` → name, labels, value.
fn parse_sample(line: &str) -> (String, LabelSet, f64) {
    let mut labels = LabelSet::new();
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => panic!("sample line {line:?}"),
    };
    let mut rest = rest;
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let end;
        loop {
            let (i, c) = chars.next().expect("unterminated labels");
            match c {
                '}' => {
                    end = i;
                    break;
                }
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("unterminated value").1 {
                            '\\' => match chars.next().unwrap().1 {
                                'n' => value.push('\n'),
                                c => value.push(c),
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    assert!(
                        labels.insert(std::mem::take(&mut key), value).is_none(),
                        "label twice in {line:?}"
                    );
                }
                c => key.push(c),
            }
        }
        rest = &inner[end + 1..];
    }
    let value = rest.trim().split(' ').next().unwrap();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
    };
    (name.to_owned(), labels, value)
}

/// The program: what a game server and the crates it uses record.
fn program<R: metrics::Recorder + Clone + 'static>(recorder: R) {
    let process = metrics_process::Collector::default();
    metrics::with_local_recorder(&recorder, || {
        process.describe();
        process.collect();
        // Names and label keys that are not valid Prometheus names.
        counter!("http.requests", "http.method" => "GET").increment(1);
        counter!("my-service-errors").increment(2);
        gauge!("cache-hit-ratio").set(0.75);
        counter!("5xx_responses", "service-name" => "gateway").increment(3);
        // One name, several label sets (and a label set written in another order).
        counter!("x", "method" => "GET").increment(1);
        counter!("x", "method" => "POST", "status" => "200").increment(2);
        counter!("x").increment(3);
        counter!("x", "status" => "500", "method" => "PUT").increment(4);
        // A unit, and a histogram of mixed label sets.
        describe_histogram!("rpc.latency", Unit::Seconds, "RPC latency.");
        histogram!("rpc.latency", "method" => "get").record(0.02);
        histogram!("rpc.latency", "method" => "get").record(0.3);
        histogram!("rpc.latency").record(1.5);
        describe_counter!("bytes.sent", Unit::Bytes, "Bytes sent.");
        counter!("bytes.sent", "zone" => "north").increment(512);
    });
    // Crates that prefix their names, and a filter.
    let layered = PrefixLayer::new("game").layer(FilterLayer::from_patterns(["secret"]).layer(recorder));
    metrics::with_local_recorder(&layered, || {
        counter!("zone.entered", "zone.id" => "z1").increment(1);
        counter!("zone.entered", "zone.id" => "z2").increment(1);
        gauge!("players-online").set(42.0);
        histogram!("tick.duration").record(0.016);
        counter!("secret.sauce").increment(1);
    });
}

fn mep(recommended: bool) -> String {
    let b = PrometheusBuilder::new().with_recommended_naming(recommended);
    let recorder = Arc::new(b.set_quantiles(&[0.5, 0.9, 0.99]).unwrap().build_recorder());
    program(Arc::clone(&recorder));
    recorder.handle().render()
}

fn ours(manager: &MetricsManager) -> String {
    program(manager.recorder());
    let text = encode_text(manager);
    // Our self-metrics are not the program's.
    let mut out = String::new();
    let mut skip = false;
    for line in text.lines() {
        if line.starts_with("# HELP ") {
            skip = line.starts_with("# HELP mmo_metrics_");
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Families of `text` as `name → (type, label sets)`, checked to have one TYPE line each.
fn shape(text: &str) -> BTreeMap<String, (String, BTreeSet<LabelSet>)> {
    parse(text)
        .into_iter()
        .map(|(name, f)| {
            assert_eq!(f.type_lines, 1, "{name}: one TYPE line expected\n{text}");
            (name, (f.kind, f.series))
        })
        .collect()
}

fn values_without_process(text: &str) -> BTreeMap<(String, LabelSet), f64> {
    parse(text)
        .into_iter()
        .filter(|(n, _)| !n.starts_with("process_"))
        .flat_map(|(n, f)| f.values.into_iter().map(move |(l, v)| ((n.clone(), l), v)))
        .collect()
}

#[test]
fn migration_builder_exposes_what_metrics_exporter_prometheus_does() {
    let theirs = mep(true);
    let m = MetricsManager::builder()
        .with_recommended_naming(true)
        .histograms_as_summaries(true)
        .set_quantiles(&[0.5, 0.9, 0.99])
        .unwrap()
        .build();
    let ours = ours(&m);
    let (a, b) = (shape(&theirs), shape(&ours));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "family names\n--- theirs ---\n{theirs}\n--- ours ---\n{ours}"
    );
    for (name, want) in &a {
        // metrics-exporter-prometheus keeps `x{method,status}` and `x{status,method}` apart
        // (the same labels twice, an invalid exposition); as label maps they compare equal.
        assert_eq!(
            Some(want),
            b.get(name),
            "family {name}\n--- theirs ---\n{theirs}\n--- ours ---\n{ours}"
        );
    }
    assert_eq!(values_without_process(&theirs), values_without_process(&ours));
    // The names the issue lists, sanitised, with every label set.
    for name in [
        "http_requests_total",
        "my_service_errors_total",
        "cache_hit_ratio",
        "_xx_responses_total",
        "rpc_latency_seconds",
        "bytes_sent_bytes_total",
        "game_zone_entered_total",
        "game_players_online",
        "game_tick_duration",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(b.contains_key(name), "{name} missing\n{ours}");
    }
    let x = &b["x_total"].1;
    assert_eq!(x.len(), 4, "{x:?}");
    assert!(x.contains(&LabelSet::new()));
    assert!(b["_xx_responses_total"]
        .1
        .iter()
        .all(|l| l.contains_key("service_name")));
    assert!(!b.keys().any(|n| n.contains("secret")));
    assert_eq!(ours.matches("# TYPE x_total counter").count(), 1, "{ours}");
}

#[test]
fn defaults_differ_only_by_the_documented_rules() {
    let theirs = mep(false);
    let ours_text = ours(&MetricsManager::new());
    let a = shape(&theirs);
    let b = shape(&ours_text);
    // Counters end in `_total` here always; there only with recommended naming. A bucketless
    // histogram is a histogram here, a summary there.
    let expected: BTreeMap<String, (String, BTreeSet<LabelSet>)> = a
        .into_iter()
        .map(|(name, (kind, series))| match kind.as_str() {
            "counter" if !name.ends_with("_total") => (format!("{name}_total"), (kind, series)),
            "summary" => (name, ("histogram".to_owned(), series)),
            _ => (name, (kind, series)),
        })
        .collect();
    assert_eq!(expected, b, "\n--- theirs ---\n{theirs}\n--- ours ---\n{ours_text}");
}

#[test]
fn facade_output_passes_promtool_lint_and_the_python_parser() {
    let m = MetricsManager::builder().with_recommended_naming(true).build();
    program(m.recorder());
    let text = encode_text(&m);
    for family in parse(&text).iter() {
        assert!(family.1.help, "{} has no HELP line\n{text}", family.0);
    }
    match run_with_stdin(Command::new("promtool").args(["check", "metrics"]), &text) {
        Ok(out) => {
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => tool_missing("promtool"),
        Err(e) => panic!("cannot run promtool: {e}"),
    }
    let py = tools::python();
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families\n\
                  names = [f.name for f in text_string_to_metric_families(sys.stdin.read())]\n\
                  assert len(names) == len(set(names)), names\nprint(len(names))\n";
    match run_with_stdin(Command::new(&py).args(["-c", script]), &text) {
        Ok(out) if out.status.success() => {
            let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            assert_eq!(n, parse(&text).len());
        }
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("ModuleNotFoundError") => {
            tool_missing("python3 with prometheus_client")
        }
        Ok(out) => panic!(
            "prometheus_client rejects the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => tool_missing("python3"),
        Err(e) => panic!("cannot run {py}: {e}"),
    }
}
