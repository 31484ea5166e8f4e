//! Limits on what callers put in: label values have a maximum length, the facade creates a
//! bounded number of families and logs a bounded number of lines.

mod common;

use common::{capture_logs, text, value};
use mmo_metrics::{MetricsError, MetricsManager, FACADE_OVERFLOW_COUNTER_METRIC, MAX_LABEL_VALUE_LEN};
use tracing::Level;

// ---- label value length ----

#[test]
fn manager_refuses_label_values_over_the_limit() {
    let m = MetricsManager::new();
    m.register_counter("logins", "", &["zone", "player"]).unwrap();
    m.register_gauge("g", "", &["player"]).unwrap();
    m.register_histogram("h", "", &["player"], &[]).unwrap();
    m.register_summary("s", "", &["player"], &[]).unwrap();
    let at_limit = "p".repeat(MAX_LABEL_VALUE_LEN);
    let huge = "p".repeat(10 << 20);
    m.increment_counter("logins", 1, &["z", &at_limit]).unwrap();
    let want = |metric: &str| MetricsError::LabelValueTooLong {
        metric: metric.into(),
        label: "player".into(),
        limit: MAX_LABEL_VALUE_LEN,
        found: 10 << 20,
    };
    assert_eq!(m.increment_counter("logins", 1, &["z", &huge]), Err(want("logins")));
    assert_eq!(m.counter("logins", &["z", &huge]).err(), Some(want("logins")));
    assert_eq!(m.set_gauge("g", 1.0, &[&huge]), Err(want("g")));
    assert_eq!(m.gauge("g", &[&huge]).err(), Some(want("g")));
    assert_eq!(m.observe_histogram("h", 1.0, &[&huge]), Err(want("h")));
    assert_eq!(m.observe_summary("s", 1.0, &[&huge]), Err(want("s")));
    assert_eq!(
        want("logins").to_string(),
        format!(
            "metric `logins`: value of label `player` is {} bytes long, over the limit of {MAX_LABEL_VALUE_LEN} bytes",
            10 << 20
        )
    );
    let one_over = "é".repeat(MAX_LABEL_VALUE_LEN / 2) + "x";
    assert!(matches!(
        m.set_gauge("g", 1.0, &[&one_over]),
        Err(MetricsError::LabelValueTooLong { found, .. }) if found == MAX_LABEL_VALUE_LEN + 1
    ));
    // Nothing of the refused values reached the registry.
    assert!(text(&m).len() < 100_000);
}

#[test]
fn facade_truncates_long_label_values_at_a_char_boundary() {
    let m = MetricsManager::new();
    // 'é' is two bytes: the limit falls inside the last one that would fit.
    let long = format!("x{}", "é".repeat(MAX_LABEL_VALUE_LEN));
    let (_, logs) = capture_logs(|| {
        metrics::with_local_recorder(&m.recorder(), || {
            for _ in 0..3 {
                metrics::counter!("chat_messages", "player" => long.clone()).increment(1);
            }
        })
    });
    let kept = format!("x{}", "é".repeat((MAX_LABEL_VALUE_LEN - 1) / 2));
    assert!(kept.len() <= MAX_LABEL_VALUE_LEN && kept.len() > MAX_LABEL_VALUE_LEN - 2);
    assert_eq!(
        m.counter("chat_messages", &[&kept]).unwrap().get(),
        3,
        "recorded, truncated"
    );
    assert_eq!(
        value(&m, "mmo_metrics_label_value_truncated_total{metric=\"chat_messages\"}"),
        Some(1.0)
    );
    assert_eq!(logs.count(Level::WARN, &["chat_messages", "truncated"]), 1, "{logs:?}");
}

#[test]
fn a_long_invalid_facade_name_is_counted_not_a_panic() {
    let m = MetricsManager::new();
    let name = format!("bad-{}", "n".repeat(MAX_LABEL_VALUE_LEN * 2));
    metrics::with_local_recorder(&m.recorder(), || {
        // A reserved label name cannot be recorded: counted as an error.
        metrics::counter!(name.clone(), "__reserved" => "x").increment(1);
        // An invalid character is replaced: recorded, and the rename counted once.
        metrics::counter!(name.clone()).increment(1);
        metrics::counter!(name.clone()).increment(1);
    });
    let sum = |prefix: &str| -> f64 {
        text(&m)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(sum("mmo_metrics_facade_errors_total{"), 1.0);
    assert_eq!(sum("mmo_metrics_facade_renamed_total{"), 1.0);
    assert_eq!(sum("bad_nnn"), 2.0);
}

// ---- facade families ----

fn families(m: &MetricsManager) -> Vec<String> {
    let mut names = Vec::new();
    m.visit(|f| names.push(f.name().to_owned()));
    names
}

#[test]
fn facade_family_limit_folds_new_names_into_overflow_families() {
    let m = MetricsManager::builder().facade_family_limit(3).build();
    // Families registered through the manager do not count.
    for i in 0..5 {
        m.register_counter(&format!("api_{i}"), "", &[]).unwrap();
    }
    let (_, logs) = capture_logs(|| {
        metrics::with_local_recorder(&m.recorder(), || {
            for i in 0..10 {
                metrics::counter!(format!("facade_{i}"), "zone" => "z1").increment(2);
            }
            metrics::counter!("api_1").increment(1); // registered: not new
            metrics::gauge!("late_gauge").set(4.0);
            metrics::histogram!("late_histogram").record(0.2);
        })
    });
    let fams = families(&m);
    for i in 0..3 {
        assert!(fams.contains(&format!("facade_{i}")), "{fams:?}");
    }
    for i in 3..10 {
        assert!(!fams.contains(&format!("facade_{i}")), "{fams:?}");
    }
    assert!(!fams.contains(&"late_gauge".to_owned()));
    assert_eq!(m.counter("api_1", &[]).unwrap().get(), 1);
    assert_eq!(
        value(&m, &format!("{FACADE_OVERFLOW_COUNTER_METRIC}_total")),
        Some(14.0)
    );
    assert_eq!(value(&m, "mmo_metrics_facade_overflow_gauge"), Some(4.0));
    assert_eq!(value(&m, "mmo_metrics_facade_overflow_histogram_count"), Some(1.0));
    assert_eq!(
        value(&m, "mmo_metrics_facade_family_overflow_total{kind=\"counter\"}"),
        Some(7.0)
    );
    assert_eq!(
        value(&m, "mmo_metrics_facade_family_overflow_total{kind=\"gauge\"}"),
        Some(1.0)
    );
    assert_eq!(logs.count(Level::WARN, &["facade family limit"]), 1, "{logs:?}");
    // The manager's API still registers past it.
    m.register_gauge("api_gauge", "", &[]).unwrap();
}

#[test]
fn facade_family_limit_defaults_to_10_000() {
    let m = MetricsManager::new();
    assert_eq!(m.facade_family_limit(), 10_000);
    metrics::with_local_recorder(&m.recorder(), || {
        for i in 0..10_050 {
            metrics::gauge!(format!("g{i}")).set(1.0);
        }
    });
    let fams = families(&m);
    assert!(fams.len() < 10_050, "{}", fams.len());
    assert_eq!(value(&m, "mmo_metrics_facade_overflow_gauge"), Some(1.0));
}

#[test]
fn distinct_invalid_facade_names_log_a_bounded_number_of_lines() {
    let m = MetricsManager::new();
    let n = 100_000;
    let (_, logs) = capture_logs(|| {
        metrics::with_local_recorder(&m.recorder(), || {
            for i in 0..n {
                metrics::counter!(format!("name_{i}"), "__reserved" => "x").increment(1);
            }
        })
    });
    let lines = logs.errors + logs.warns + logs.others;
    assert!(lines <= 1_010, "{lines} log lines for {n} distinct problems");
    assert!(
        logs.count(Level::WARN, &["more facade problems not logged individually"]) >= 1,
        "{:?}",
        &logs.messages[logs.messages.len().saturating_sub(3)..]
    );
    // Every problem is still counted (the `metric` label folds into overflow past the series limit).
    let total: f64 = text(&m)
        .lines()
        .filter(|l| l.starts_with("mmo_metrics_facade_errors_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, n as f64);
}
