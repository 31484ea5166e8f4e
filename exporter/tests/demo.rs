//! `metrics --demo`: every MMO family present and moving within seconds; SIGTERM stops it.

mod support;

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::stop_with;
use support::MMO_FAMILIES;

const FAMILIES: [&str; 12] = MMO_FAMILIES;

fn scrape(url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    agent
        .get(url)
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .unwrap_or_default()
}

/// Sum of the samples of each family (histograms: their `_count`).
fn totals(text: &str) -> HashMap<&'static str, f64> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, v) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        for f in FAMILIES {
            let histogram = f == "message_size_bytes" || f == "message_process_time" || f == "database_query_time";
            if (histogram && name == format!("{f}_count")) || (!histogram && name == f) {
                *out.entry(f).or_insert(0.0) += v.parse::<f64>().unwrap();
            }
        }
    }
    out
}

#[test]
fn demo_feeds_every_family() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_metrics"))
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--interval",
            "500ms",
            "--demo",
            "--demo-players",
            "40",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let t = totals(&scrape(&url));
        let missing: Vec<_> = FAMILIES.iter().filter(|f| !t.contains_key(**f)).collect();
        if missing.is_empty() && t["messages_total"] > 0.0 && t["connection_rate"] > 0.0 {
            break t;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("after 20 s, missing {missing:?}; totals {t:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    std::thread::sleep(Duration::from_secs(2));
    let second = totals(&scrape(&url));
    for f in [
        "messages_total",
        "message_size_bytes",
        "message_process_time",
        "redis_operations_total",
    ] {
        assert!(second[f] > first[f], "{f} did not move: {} -> {}", first[f], second[f]);
    }
    for f in ["database_operations_total", "database_query_time"] {
        assert!(second[f] > first[f], "{f} did not move: {} -> {}", first[f], second[f]);
    }
    assert!(second["connection_count"] > 0.0);
    assert!(second["redis_connection_pool"] >= 16.0, "{second:?}");

    let log = stop_with(&mut child, "-TERM", Duration::from_secs(3));
    assert!(log.contains("demo: 40 simulated players"), "{log}");
}
