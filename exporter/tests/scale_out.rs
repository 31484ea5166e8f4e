//! The scale-out topology with real processes: a game server (`metrics --demo`) remote-writes to
//! the host's collection service (`metrics --receive`), which remote-writes to a real Prometheus
//! 2.42. Every message the demo counted arrives; a sender killed without notice leaves the
//! service after the TTL; a sender that stops cleanly leaves after the stale grace.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{first_value, get, query, start, stop_with, tool, wait_until, Prometheus};

fn metrics_text(addr: SocketAddr) -> String {
    let (status, body) = get(&format!("http://{addr}/metrics"));
    assert_eq!(status, 200, "{body}");
    body
}

/// The demo's `messages_total` series the service exposes for `instance`.
fn received_messages(service: SocketAddr, instance: &str) -> usize {
    metrics_text(service)
        .lines()
        .filter(|l| l.starts_with("messages_total{") && l.contains(&format!("instance=\"{instance}\"")))
        .count()
}

#[test]
fn every_message_of_the_demo_reaches_prometheus_through_the_service() {
    let Some(prometheus) = tool("prometheus") else { return };
    let prom = Prometheus::receiver(&prometheus, &["--enable-feature=native-histograms"]);
    let (_service, service) = start(&[
        "--receive",
        "--remote-write-url",
        &format!("http://{}/api/v1/write", prom.addr),
        "--instance",
        "collector",
    ]);
    let (mut demo, _) = start(&[
        "--demo",
        "--demo-players",
        "5",
        "--remote-write-url",
        &format!("http://{service}/api/v1/write"),
        "--instance",
        "zone-1",
    ]);
    wait_until("the demo's messages in Prometheus", Duration::from_secs(60), || {
        first_value(&query(
            prom.addr,
            r#"sum(messages_total{instance="zone-1",job="mmo_server"})"#,
        ))
        .is_some_and(|v| v > 0.0)
    });
    // The service's own series arrive too, under its own instance.
    assert!(
        first_value(&query(
            prom.addr,
            r#"count(process_cpu_seconds_total{instance="collector"})"#
        )) == Some(1.0),
        "{}",
        prom.log()
    );

    // SIGTERM: the players stop, the demo logs its totals, pushes them, then its stale markers.
    let log = stop_with(&mut demo.0, "-TERM", Duration::from_secs(20));
    let total: f64 = log
        .lines()
        .find_map(|l| l.split("demo stopped: messages_total ").nth(1))
        .unwrap_or_else(|| panic!("the demo logged no final total:\n{log}"))
        .trim()
        .parse()
        .unwrap();
    assert!(total > 0.0);
    // Prometheus keeps the last real sample of each series before its stale marker.
    let last = r#"sum(last_over_time(messages_total{instance="zone-1",job="mmo_server"}[10m]))"#;
    let mut seen = None;
    let arrived = support::poll_until(Duration::from_secs(30), || {
        seen = first_value(&query(prom.addr, last));
        seen == Some(total)
    });
    assert!(
        arrived,
        "the demo counted {total} messages; Prometheus has {seen:?}\n{}",
        prom.log()
    );
    // The service let the demo's series go after the stale grace; Prometheus marks them stale.
    wait_until("the demo's series leave the service", Duration::from_secs(40), || {
        received_messages(service, "zone-1") == 0
    });
    wait_until("the demo's series stale in Prometheus", Duration::from_secs(40), || {
        query(prom.addr, r#"messages_total{instance="zone-1"}"#)["data"]["result"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
}

#[test]
fn a_sender_killed_without_notice_leaves_after_the_ttl() {
    let (_service, service) = start(&["--receive", "--receive-ttl", "2s"]);
    let (mut demo, _) = start(&[
        "--demo",
        "--demo-players",
        "3",
        "--remote-write-url",
        &format!("http://{service}/api/v1/write"),
        "--instance",
        "zone-9",
    ]);
    wait_until("the demo's series in the service", Duration::from_secs(30), || {
        received_messages(service, "zone-9") > 0
    });
    demo.0.kill().unwrap();
    demo.0.wait().unwrap();
    // No stale markers came: the series stay until the TTL, then leave.
    assert!(received_messages(service, "zone-9") > 0);
    wait_until("the killed sender's series leave", Duration::from_secs(15), || {
        received_messages(service, "zone-9") == 0
    });
    let text = metrics_text(service);
    assert!(
        text.lines()
            .any(|l| l.starts_with("mmo_metrics_receive_series_removed_total{cause=\"ttl\"}") && !l.ends_with(" 0")),
        "{text}"
    );
}
