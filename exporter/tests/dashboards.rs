//! The Grafana dashboards: importable structure, and every PromQL expression (variables
//! substituted) returns data from a real Prometheus scraping `metrics --demo`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

const DASHBOARDS: [&str; 3] = [
    "system_dashboard.json",
    "service_dashboard.json",
    "database_dashboard.json",
];

fn load(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/grafana")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `(panel title, expr)` of every target.
fn exprs(d: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_owned(),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn dashboards_are_importable() {
    for name in DASHBOARDS {
        let d = load(name);
        assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "{name}: schemaVersion");
        assert!(d["id"].is_null(), "{name}: an importable dashboard has no id");
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(vars, ["datasource", "job", "instance"], "{name}");
        assert_eq!(d["templating"]["list"][0]["type"], "datasource");
        assert_eq!(d["templating"]["list"][0]["query"], "prometheus");
        for p in d["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
            let title = p["title"].as_str().unwrap();
            assert!(
                p["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|u| !u.is_empty()),
                "{name}/{title}: unit"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}/{title}");
            for t in p["targets"].as_array().unwrap() {
                let e = t["expr"].as_str().unwrap();
                assert!(
                    e.contains("job=~\"$job\"") && e.contains("instance=~\"$instance\""),
                    "{name}/{title}: {e}"
                );
                if e.contains("_total{") {
                    assert!(e.contains("rate("), "{name}/{title}: counters are shown as rates: {e}");
                }
                if e.contains("_bucket{") {
                    assert!(e.contains("histogram_quantile("), "{name}/{title}: {e}");
                }
            }
        }
    }
    // The seed's families all appear somewhere.
    let all: String = DASHBOARDS
        .iter()
        .flat_map(|n| exprs(&load(n)))
        .map(|(_, e)| e)
        .collect();
    for family in SYSTEM_FAMILIES.into_iter().chain(MMO_FAMILIES) {
        assert!(all.contains(family), "no panel shows {family}");
    }
    for q in ["0.5", "0.95", "0.99"] {
        assert!(all.contains(&format!("histogram_quantile({q},")), "p{q}");
    }
}

#[test]
fn every_query_returns_data_from_the_demo() {
    let Some(prometheus) = tool("prometheus") else { return };
    let (_service, addr) = start(&["--demo", "--demo-players", "30", "--interval", "1s"]);
    // A Prometheus with native histograms stores the native part of a histogram that has both
    // and not its classic buckets: the native panels are checked against one, the rest against
    // one without the feature (which scrapes OpenMetrics).
    let classic = Prometheus::start(&prometheus, addr);
    let native = Prometheus::start_with(&prometheus, addr, &["--enable-feature=native-histograms"]);
    let mut pending: Vec<(String, String, String, std::net::SocketAddr)> = Vec::new();
    let mut native_panels = 0;
    for name in DASHBOARDS {
        for (title, e) in exprs(&load(name)) {
            let q = e
                .replace("$job", "mmo_server")
                .replace("$instance", ".*")
                .replace("$__rate_interval", "5s");
            let over_native = q.contains("histogram_quantile(") && !q.contains("_bucket{");
            native_panels += usize::from(over_native);
            let prom = if over_native { native.addr } else { classic.addr };
            pending.push((name.to_owned(), title, q, prom));
        }
    }
    assert!(native_panels > 0, "a panel shows a native histogram");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        pending.retain(|(_, _, q, prom)| {
            let r = query(*prom, q);
            assert_eq!(r["status"], "success", "{q}: {r}");
            r["data"]["result"].as_array().is_none_or(|a| a.is_empty())
        });
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no data after 60 s for:\n{pending:#?}\n{}\n{}",
            classic.log(),
            native.log()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
