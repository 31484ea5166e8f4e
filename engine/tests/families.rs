//! The seed's MMO families: exact names, types and labels, and what the handles record.

use std::time::Duration;

use mmo_metrics::families::*;
use mmo_metrics::MetricsManager;

fn text(m: &MetricsManager) -> String {
    mmo_metrics_exporter::encode_text(m)
}

fn value(m: &MetricsManager, sample: &str) -> f64 {
    let t = text(m);
    t.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {sample} in\n{t}"))
        .parse()
        .unwrap()
}

#[test]
fn families_have_the_seed_names_types_and_labels() {
    let m = MetricsManager::new();
    let conns = ConnectionMetrics::register(&m).unwrap();
    let msgs = MessageMetrics::register(&m).unwrap();
    let redis = RedisMetrics::register(&m).unwrap();
    let db = DatabaseMetrics::register(&m).unwrap();

    for _ in 0..3 {
        conns.opened();
    }
    conns.closed();
    conns.error("timeout");
    conns.errors("reset").unwrap().increment(2);
    let login = msgs.handles(Direction::In, "login").unwrap();
    login.received(100);
    login.processed(0.002);
    msgs.handles(Direction::Out, "state").unwrap().sent(5000);
    let get = redis.command("GET").unwrap();
    get.done(true);
    get.done(false);
    redis.set_pool(3, 7, 10);
    let sel = db.handles("select", "players").unwrap();
    sel.done(0.004, true);
    sel.done(0.5, false);
    {
        let _t = sel.timer();
        std::thread::sleep(Duration::from_millis(2));
    }

    let t = text(&m);
    for line in [
        "# TYPE connection_count gauge",
        "# TYPE connection_rate gauge",
        "# TYPE connection_errors_total counter",
        "# TYPE messages_total counter",
        "# TYPE message_size_bytes histogram",
        "# TYPE message_process_time histogram",
        "# TYPE redis_operations_total counter",
        "# TYPE redis_errors_total counter",
        "# TYPE redis_connection_pool gauge",
        "# TYPE database_operations_total counter",
        "# TYPE database_query_time histogram",
        "# TYPE database_errors_total counter",
    ] {
        assert!(t.contains(&format!("{line}\n")), "missing `{line}` in\n{t}");
    }
    assert_eq!(value(&m, "connection_count"), 2.0);
    assert_eq!(value(&m, "connection_errors_total{error_type=\"timeout\"}"), 1.0);
    assert_eq!(value(&m, "connection_errors_total{error_type=\"reset\"}"), 2.0);
    assert_eq!(value(&m, "messages_total{direction=\"in\",msg_type=\"login\"}"), 1.0);
    assert_eq!(value(&m, "messages_total{direction=\"out\",msg_type=\"state\"}"), 1.0);
    assert_eq!(value(&m, "message_size_bytes_bucket{direction=\"in\",le=\"64\"}"), 0.0);
    assert_eq!(value(&m, "message_size_bytes_bucket{direction=\"in\",le=\"256\"}"), 1.0);
    assert_eq!(
        value(&m, "message_size_bytes_bucket{direction=\"out\",le=\"1048576\"}"),
        1.0
    );
    assert_eq!(
        value(&m, "message_process_time_bucket{msg_type=\"login\",le=\"0.0025\"}"),
        1.0
    );
    assert_eq!(value(&m, "redis_operations_total{command=\"GET\"}"), 2.0);
    assert_eq!(value(&m, "redis_errors_total{command=\"GET\"}"), 1.0);
    assert_eq!(value(&m, "redis_connection_pool{state=\"active\"}"), 3.0);
    assert_eq!(value(&m, "redis_connection_pool{state=\"idle\"}"), 7.0);
    assert_eq!(value(&m, "redis_connection_pool{state=\"max\"}"), 10.0);
    assert_eq!(
        value(&m, "database_operations_total{operation=\"select\",table=\"players\"}"),
        3.0
    );
    assert_eq!(value(&m, "database_errors_total{operation=\"select\"}"), 1.0);
    assert_eq!(
        value(&m, "database_query_time_count{operation=\"select\",table=\"players\"}"),
        3.0
    );
    let sum = value(&m, "database_query_time_sum{operation=\"select\",table=\"players\"}");
    assert!(sum >= 0.504 + 0.002, "the timer recorded at least 2 ms: {sum}");
}

#[test]
fn connection_rate_is_new_connections_per_second() {
    let m = MetricsManager::new();
    let conns = ConnectionMetrics::register(&m).unwrap();
    conns.update_rate();
    for _ in 0..50 {
        conns.opened();
    }
    std::thread::sleep(Duration::from_millis(500));
    let rate = conns.update_rate();
    assert!(rate > 50.0 / 2.0 && rate <= 50.0 / 0.5, "{rate}");
    assert_eq!(value(&m, "connection_rate"), rate);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(conns.update_rate(), 0.0, "no new connections in the last interval");
}

#[test]
fn timers_record_on_drop_and_not_when_cancelled() {
    let m = MetricsManager::new();
    let msgs = MessageMetrics::register(&m).unwrap();
    let h = msgs.handles(Direction::In, "move").unwrap();
    h.process_timer().cancel();
    let secs = h.process_timer().finish();
    assert!(secs >= 0.0);
    assert_eq!(value(&m, "message_process_time_count{msg_type=\"move\"}"), 1.0);
}
