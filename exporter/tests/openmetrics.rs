//! OpenMetrics 1.0 over HTTP: the format and Content-Type each Prometheus `Accept` header gets,
//! gzip of it, concurrent scrapes of different formats, Python `prometheus_client`'s strict
//! OpenMetrics parser reading back what was recorded, and a real Prometheus negotiating
//! OpenMetrics (it stores the `# UNIT` only OpenMetrics carries, and `le="1.0"` bucket labels).
//!
//! The external tools are installed by `scripts/test.sh`. Without them those checks print a
//! notice and pass, unless `MMO_REQUIRE_TOOLS` is set (as `scripts/test.sh` does): then they fail.

mod support;
mod tools;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use metrics::Unit;
use mmo_metrics::{MetricsManager, DEFAULT_BUCKETS, DEFAULT_QUANTILES};
use mmo_metrics_exporter::{
    encode_openmetrics_with, Exporter, ExporterBuilder, OPENMETRICS_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
};
use support::{agent, first_value, query, tool, Prometheus};
use tools::{within, Tol};

type Labels = BTreeMap<String, String>;

/// The global label every sample gets from the exporter (a value that needs escaping).
const SERVICE: (&str, &str) = ("service", "gate\"way");

// The Accept headers Prometheus sends (see src/encode/negotiate.rs for each one's source).
const PROM_2_42: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const PROM_2_42_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const PROM_2_49: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
const PROM_3_0_UTF8: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;q=0.2";
const PROM_3_UNDERSCORES: &str = "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=underscores;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
const PROM_3_UTF8_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
const PROM_3_TEXT_1_ONLY: &str = "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,*/*;q=0.5";

/// What the registry must expose.
#[derive(Default)]
struct Expected {
    /// (sample name, labels with `le`/`quantile` as parsed floats) → value.
    samples: BTreeMap<(String, Labels), (f64, Tol)>,
    /// Family name → (type, unit, help).
    families: BTreeMap<String, (&'static str, &'static str, String)>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .chain([SERVICE].iter())
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `le` and `quantile` compared as numbers; the exact text is checked separately.
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
    fn family(&mut self, name: &str, ty: &'static str, unit: &'static str, help: &str) {
        self.families.insert(name.to_owned(), (ty, unit, help.to_owned()));
    }

    fn sample(&mut self, name: &str, labels: Labels, value: f64, tol: Tol) {
        self.samples.insert((name.to_owned(), normalize(labels)), (value, tol));
    }

    fn counter(&mut self, family: &str, l: &[(&str, &str)], value: f64) {
        self.sample(&format!("{family}_total"), labels(l), value, Tol::Exact);
    }

    fn histogram(&mut self, name: &str, l: &[(&str, &str)], bounds: &[f64], observed: &[f64]) {
        for (n, ls, v, tol) in tools::histogram_samples(name, &labels(l), bounds, observed) {
            self.sample(&n, ls, v, tol);
        }
    }

    /// `observed` must make every quantile unambiguous.
    fn summary(&mut self, name: &str, l: &[(&str, &str)], quantiles: &[f64], observed: &[f64]) {
        for (n, ls, v, tol) in tools::summary_samples(name, &labels(l), quantiles, observed) {
            self.sample(&n, ls, v, tol);
        }
    }
}

/// A registry with every kind of metric, and what its OpenMetrics exposition must contain.
fn registry() -> (MetricsManager, Expected) {
    let m = MetricsManager::builder().with_recommended_naming(true).build();
    let mut e = Expected::default();

    // Counters: with labels (UTF-8 and escaped values), without labels, registered with `_total`.
    m.register_counter("logins", "Logins per zone.", &["zone"]).unwrap();
    m.increment_counter("logins", 3, &["north"]).unwrap();
    m.increment_counter("logins", 5, &["süd ✓ 区域"]).unwrap();
    e.family("logins", "counter", "", "Logins per zone.");
    e.counter("logins", &[("zone", "north")], 3.0);
    e.counter("logins", &[("zone", "süd ✓ 区域")], 5.0);

    let help = "Requests from C:\\game\\bin, \"quoted\",\nover two lines.";
    m.register_counter("requests_total", help, &["path", "note"]).unwrap();
    m.increment_counter("requests_total", 2, &["/a\"b", "x"]).unwrap();
    m.increment_counter("requests_total", 4, &["back\\slash", "line\nbreak"])
        .unwrap();
    m.increment_counter("requests_total", 1, &["", "all \\ \" \n of them"])
        .unwrap();
    e.family("requests", "counter", "", help);
    e.counter("requests", &[("path", "/a\"b"), ("note", "x")], 2.0);
    e.counter("requests", &[("path", "back\\slash"), ("note", "line\nbreak")], 4.0);
    e.counter("requests", &[("path", ""), ("note", "all \\ \" \n of them")], 1.0);

    m.register_counter("zero_label_events", "Events without labels.", &[])
        .unwrap();
    m.increment_counter("zero_label_events", 7, &[]).unwrap();
    e.family("zero_label_events", "counter", "", "Events without labels.");
    e.counter("zero_label_events", &[], 7.0);

    m.register_float_counter("work_seconds_total", "Work done, in seconds.", &[])
        .unwrap();
    m.set_float_counter("work_seconds_total", 12.75, &[]).unwrap();
    e.family("work_seconds", "counter", "", "Work done, in seconds.");
    e.counter("work_seconds", &[], 12.75);

    // Gauges, special floats included.
    m.register_gauge("temperature", "Temperatures, some of them odd.", &["kind"])
        .unwrap();
    e.family("temperature", "gauge", "", "Temperatures, some of them odd.");
    for (kind, v) in [
        ("nan", f64::NAN),
        ("pos_inf", f64::INFINITY),
        ("neg_inf", f64::NEG_INFINITY),
        ("negative", -12.5),
        ("tiny", 1e-7),
        ("huge", 1.5e300),
        ("integer", 42.0),
        ("zero", 0.0),
    ] {
        m.set_gauge("temperature", v, &[kind]).unwrap();
        e.sample("temperature", labels(&[("kind", kind)]), v, Tol::Exact);
    }

    // Histograms: default buckets (1.0, 2.5, 10.0 …) with a value on a bound; custom buckets.
    m.register_histogram("latency_seconds", "Latency of operations.", &["op"], &[])
        .unwrap();
    let obs = [0.005, 0.3, 20.0, 0.1, 1.0];
    for v in obs {
        m.observe_histogram("latency_seconds", v, &["move"]).unwrap();
    }
    e.family("latency_seconds", "histogram", "", "Latency of operations.");
    e.histogram("latency_seconds", &[("op", "move")], &DEFAULT_BUCKETS, &obs);

    let size_bounds = [64.0, 256.0, 1024.0, 4096.0];
    m.register_histogram("message_size_bytes", "Message sizes.", &["direction"], &size_bounds)
        .unwrap();
    for v in [256.0, 1.0, 5000.0] {
        m.observe_histogram("message_size_bytes", v, &["in"]).unwrap();
    }
    e.family("message_size_bytes", "histogram", "", "Message sizes.");
    e.histogram(
        "message_size_bytes",
        &[("direction", "in")],
        &size_bounds,
        &[256.0, 1.0, 5000.0],
    );

    // Summaries: default quantiles with labels, custom ones without.
    m.register_summary("db_query_seconds", "Database query time.", &["table"], &[])
        .unwrap();
    let queries: Vec<f64> = std::iter::repeat_n(0.25, 80)
        .chain(std::iter::repeat_n(4.0, 20))
        .collect();
    for &v in &queries {
        m.observe_summary("db_query_seconds", v, &["players"]).unwrap();
    }
    e.family("db_query_seconds", "summary", "", "Database query time.");
    e.summary(
        "db_query_seconds",
        &[("table", "players")],
        &DEFAULT_QUANTILES,
        &queries,
    );
    m.register_summary("tick_seconds", "Tick duration.", &[], &[0.25, 0.75])
        .unwrap();
    for _ in 0..4 {
        m.observe_summary("tick_seconds", 0.5, &[]).unwrap();
    }
    e.family("tick_seconds", "summary", "", "Tick duration.");
    e.summary("tick_seconds", &[], &[0.25, 0.75], &[0.5; 4]);

    // The facade with units and recommended naming: `rpc_latency` → `rpc_latency_seconds` with
    // `# UNIT rpc_latency_seconds seconds`; a counter with a unit; a percent gauge becomes
    // `load_ratio`, whose name does not end with its unit (`percent`): no `# UNIT`.
    metrics::with_local_recorder(&m.recorder(), || {
        metrics::describe_histogram!("rpc_latency", Unit::Seconds, "RPC latency through the facade.");
        metrics::histogram!("rpc_latency", "method" => "login").record(0.02);
        metrics::histogram!("rpc_latency", "method" => "login").record(0.25);
        metrics::describe_counter!("sent", Unit::Bytes, "Bytes sent.");
        metrics::counter!("sent").increment(1500);
        metrics::describe_gauge!("load", Unit::Percent, "Load.");
        metrics::gauge!("load").set(75.0);
        metrics::counter!("facade_hits", "zone" => "north").increment(3);
    });
    e.family(
        "rpc_latency_seconds",
        "histogram",
        "seconds",
        "RPC latency through the facade.",
    );
    e.histogram(
        "rpc_latency_seconds",
        &[("method", "login")],
        &DEFAULT_BUCKETS,
        &[0.02, 0.25],
    );
    e.family("sent_bytes", "counter", "bytes", "Bytes sent.");
    e.counter("sent_bytes", &[], 1500.0);
    e.family("load_ratio", "gauge", "", "Load.");
    e.sample("load_ratio", labels(&[]), 75.0, Tol::Exact);
    e.counter("facade_hits", &[("zone", "north")], 3.0);

    (m, e)
}

fn serve(m: &MetricsManager) -> Exporter {
    builder(m).serve().unwrap()
}

fn builder(m: &MetricsManager) -> ExporterBuilder {
    ExporterBuilder::new(m.clone())
        .address("127.0.0.1:0".parse().unwrap())
        .global_label(SERVICE.0, SERVICE.1)
}

/// GET /metrics with `accept` (and gzip when asked): (Content-Type, Content-Encoding, body).
fn scrape(addr: SocketAddr, accept: Option<&str>, gzip: bool) -> (String, Option<String>, Vec<u8>) {
    let mut req = agent().get(&format!("http://{addr}/metrics"));
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    if gzip {
        req = req.header("Accept-Encoding", "gzip");
    }
    let mut r = req.call().unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["vary"], "accept, accept-encoding");
    let ct = h["content-type"].to_str().unwrap().to_owned();
    let ce = h.get("content-encoding").map(|v| v.to_str().unwrap().to_owned());
    let mut body = Vec::new();
    r.body_mut().as_reader().read_to_end(&mut body).unwrap();
    (ct, ce, body)
}

/// The family names of a protobuf exposition, in order, but the exporter's own (which may appear
/// between scrapes).
fn protobuf_families(mut body: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while !body.is_empty() {
        let family = <mmo_metrics_exporter::proto::MetricFamily as prost::Message>::decode_length_delimited(&mut body)
            .expect("a length-delimited MetricFamily");
        names.extend(family.name.filter(|n| !n.starts_with("mmo_metrics_")));
    }
    names
}

/// The lines of an exposition that are not the exporter's own metrics (which change per scrape).
fn without_self_metrics(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.contains("mmo_metrics_")).collect()
}

#[test]
fn content_type_per_accept_header_and_gzip() {
    let (m, _) = registry();
    let server = serve(&m);
    let addr = server.local_addr();
    for (accept, want) in [
        (Some(PROM_2_42), OPENMETRICS_CONTENT_TYPE),
        (Some(PROM_2_42_NATIVE), PROTOBUF_CONTENT_TYPE),
        (Some(PROM_2_49), OPENMETRICS_CONTENT_TYPE),
        (Some(PROM_3_0_UTF8), OPENMETRICS_CONTENT_TYPE),
        (Some(PROM_3_UNDERSCORES), OPENMETRICS_CONTENT_TYPE),
        (Some(PROM_3_UTF8_NATIVE), PROTOBUF_CONTENT_TYPE),
        (Some("application/openmetrics-text"), OPENMETRICS_CONTENT_TYPE),
        (Some(PROM_3_TEXT_1_ONLY), TEXT_CONTENT_TYPE),
        (Some("text/plain;version=0.0.4"), TEXT_CONTENT_TYPE),
        (Some("*/*"), TEXT_CONTENT_TYPE),
        (Some("application/json"), TEXT_CONTENT_TYPE),
        (
            Some("application/openmetrics-text;q=0,text/plain;q=0.1"),
            TEXT_CONTENT_TYPE,
        ),
        (None, TEXT_CONTENT_TYPE),
    ] {
        let (ct, ce, body) = scrape(addr, accept, false);
        assert_eq!(ct, want, "Accept: {accept:?}");
        assert_eq!(ce, None);
        if want == PROTOBUF_CONTENT_TYPE {
            let names = protobuf_families(&body);
            assert!(names.iter().any(|n| n == "logins_total"), "{names:?}");
            let (zct, zce, zbody) = scrape(addr, accept, true);
            assert_eq!((zct.as_str(), zce.as_deref()), (want, Some("gzip")));
            let mut unzipped = Vec::new();
            flate2::read::GzDecoder::new(&zbody[..])
                .read_to_end(&mut unzipped)
                .unwrap();
            assert_eq!(protobuf_families(&unzipped), names, "Accept: {accept:?}");
            continue;
        }
        let text = String::from_utf8(body).unwrap();
        if want == OPENMETRICS_CONTENT_TYPE {
            assert!(text.ends_with("# EOF\n"), "Accept: {accept:?}\n{text}");
            assert!(text.contains("# TYPE logins counter\n"), "{text}");
            assert!(
                text.contains("latency_seconds_bucket{op=\"move\",service=\"gate\\\"way\",le=\"1.0\"} 4\n"),
                "{text}"
            );
        } else {
            assert!(!text.contains("# EOF"), "Accept: {accept:?}\n{text}");
            assert!(text.contains("# TYPE logins_total counter\n"), "{text}");
            assert!(
                text.contains("latency_seconds_bucket{op=\"move\",service=\"gate\\\"way\",le=\"1\"} 4\n"),
                "{text}"
            );
        }

        // gzip of the same format decodes to the same exposition.
        let (zct, zce, zbody) = scrape(addr, accept, true);
        assert_eq!(zct, want, "gzip, Accept: {accept:?}");
        assert_eq!(zce.as_deref(), Some("gzip"));
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(&zbody[..])
            .read_to_string(&mut unzipped)
            .expect("a gzip body");
        assert_eq!(
            without_self_metrics(&unzipped),
            without_self_metrics(&text),
            "Accept: {accept:?}"
        );
    }
}

#[test]
fn concurrent_scrapes_of_both_formats_each_get_their_own() {
    const THREADS: usize = 16;
    let (m, _) = registry();
    // Room for every scrape at once: this checks formats, not the in-flight limit.
    let server = builder(&m).max_in_flight(THREADS).serve().unwrap();
    let addr = server.local_addr();
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            std::thread::spawn(move || {
                let om = i % 2 == 0;
                let accept = if om { PROM_2_42 } else { "text/plain;version=0.0.4" };
                for _ in 0..10 {
                    let (ct, _, body) = scrape(addr, Some(accept), i % 4 < 2);
                    let body = if i % 4 < 2 {
                        let mut s = String::new();
                        flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut s).unwrap();
                        s
                    } else {
                        String::from_utf8(body).unwrap()
                    };
                    if om {
                        assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
                        assert!(body.ends_with("# EOF\n") && body.contains("logins_total"));
                    } else {
                        assert_eq!(ct, TEXT_CONTENT_TYPE);
                        assert!(!body.contains("# EOF") && body.contains("logins_total"));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a scraping thread");
    }
}

/// Prints what the strict OpenMetrics parser reads, as JSON: families (name, type, unit, help)
/// and samples (family, name, labels, value as text so NaN and infinities survive JSON).
const PARSE_SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text = sys.stdin.buffer.read().decode("utf-8")
families, samples = [], []
for f in text_string_to_metric_families(text):
    families.append({"name": f.name, "type": f.type, "unit": f.unit, "help": f.documentation})
    for s in f.samples:
        samples.append({"family": f.name, "name": s.name, "labels": dict(s.labels),
                        "value": repr(float(s.value))})
sys.stdout.write(json.dumps({"families": families, "samples": samples}))
"#;

#[test]
fn python_strict_parser_reads_back_what_was_recorded() {
    let Some(py) = tools::python_with("prometheus_client.openmetrics.parser") else {
        return;
    };
    let (m, expected) = registry();
    let server = serve(&m);
    // Two scrapes, so the self-metrics (scrape durations, scrapes by code) have series too.
    let _ = scrape(server.local_addr(), Some(PROM_2_42), false);
    let (ct, _, body) = scrape(server.local_addr(), Some(PROM_2_42), false);
    assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
    let text = String::from_utf8(body).unwrap();
    // The exact text of the canonical numbers and the unit lines.
    for line in [
        "# TYPE rpc_latency_seconds histogram\n# UNIT rpc_latency_seconds seconds\n",
        "# TYPE sent_bytes counter\n# UNIT sent_bytes bytes\n# HELP sent_bytes Bytes sent.\nsent_bytes_total{service=\"gate\\\"way\"} 1500\n",
        "# TYPE load_ratio gauge\n# HELP load_ratio Load.\n",
        "le=\"0.005\"} 1\n",
        "le=\"10.0\"} 4\n",
        "le=\"+Inf\"} 5\n",
        "db_query_seconds{table=\"players\",service=\"gate\\\"way\",quantile=\"0.95\"} ",
        "# HELP requests Requests from C:\\\\game\\\\bin, \\\"quoted\\\",\\nover two lines.\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }

    let stdout = tools::run_python(&py, PARSE_SCRIPT, &text);
    let parsed: serde_json::Value = serde_json::from_slice(&stdout).expect("parser output is JSON");

    let mut problems = Vec::new();
    let mut families = BTreeMap::new();
    for f in parsed["families"].as_array().expect("families") {
        let name = f["name"].as_str().unwrap().to_owned();
        let got = (
            f["type"].as_str().unwrap().to_owned(),
            f["unit"].as_str().unwrap().to_owned(),
            f["help"].as_str().unwrap().to_owned(),
        );
        families.insert(name, got);
    }
    for (name, (ty, unit, help)) in &expected.families {
        match families.get(name) {
            Some((t, u, h)) if t == ty && u == unit && h == help => {}
            other => problems.push(format!("family {name}: {other:?}, expected ({ty}, {unit:?}, {help:?})")),
        }
    }
    let mut got: BTreeMap<(String, Labels), f64> = BTreeMap::new();
    for s in parsed["samples"].as_array().expect("samples") {
        let family = s["family"].as_str().unwrap();
        if family.starts_with("mmo_metrics_") {
            continue;
        }
        let name = s["name"].as_str().unwrap().to_owned();
        let ls: Labels = s["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let value: f64 = s["value"].as_str().unwrap().parse().unwrap();
        let key = (name, normalize(ls));
        assert!(got.insert(key.clone(), value).is_none(), "{key:?} twice\n{text}");
    }
    for (key, (want, tol)) in &expected.samples {
        match got.remove(key) {
            None => problems.push(format!("missing: {key:?} = {want}")),
            Some(v) if !within(v, *want, *tol) => problems.push(format!("{key:?} = {v}, expected {want} ({tol:?})")),
            Some(_) => {}
        }
    }
    for (key, v) in &got {
        problems.push(format!("unexpected: {key:?} = {v}"));
    }
    assert!(
        problems.is_empty(),
        "{}\n--- exposition ---\n{text}",
        problems.join("\n")
    );

    // The library function gives the same exposition as the server.
    let mut direct = String::new();
    encode_openmetrics_with(&m, &[(SERVICE.0.into(), SERVICE.1.into())], &mut direct);
    assert_eq!(without_self_metrics(&direct), without_self_metrics(&text));
}

/// The unit Prometheus stored for `metric` from the target's metadata ("" when none).
fn stored_unit(prom: SocketAddr, metric: &str) -> Option<String> {
    let mut r = agent()
        .get(&format!("http://{prom}/api/v1/targets/metadata"))
        .query("metric", metric)
        .call()
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
    Some(v["data"].get(0)?["unit"].as_str()?.to_owned())
}

#[test]
fn prometheus_negotiates_openmetrics() {
    let Some(prometheus) = tool("prometheus") else { return };
    let (m, _) = registry();
    let server = serve(&m);
    let prom = Prometheus::start(&prometheus, server.local_addr());
    let deadline = Instant::now() + Duration::from_secs(30);
    // `# UNIT` exists only in OpenMetrics, and `le="1.0"` is how only OpenMetrics writes the
    // bound (Prometheus 2 stores label values as sent): both show the scrapes were OpenMetrics.
    let checks: [(&str, f64); 5] = [
        ("latency_seconds_bucket{job=\"mmo_server\",op=\"move\",le=\"1.0\"}", 4.0),
        ("rpc_latency_seconds_bucket{method=\"login\",le=\"0.25\"}", 2.0),
        ("sent_bytes_total{service=\"gate\\\"way\"}", 1500.0),
        ("logins_total{zone=\"süd ✓ 区域\"}", 5.0),
        ("work_seconds_total", 12.75),
    ];
    loop {
        let values: Vec<Option<f64>> = checks.iter().map(|(q, _)| first_value(&query(prom.addr, q))).collect();
        let unit = stored_unit(prom.addr, "rpc_latency_seconds");
        let counter_unit = stored_unit(prom.addr, "sent_bytes");
        let ok = checks.iter().zip(&values).all(|((_, want), got)| *got == Some(*want))
            && unit.as_deref() == Some("seconds")
            && counter_unit.as_deref() == Some("bytes");
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s: values {values:?} (expected {:?}), units {unit:?} / {counter_unit:?} \
             (expected seconds / bytes)\n{}",
            checks.iter().map(|c| c.1).collect::<Vec<_>>(),
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // And no series was ever scraped as text 0.0.4 (which writes `le="1"`).
    let text_series = query(prom.addr, "latency_seconds_bucket{le=\"1\"}");
    assert_eq!(first_value(&text_series), None, "{text_series}");
}
