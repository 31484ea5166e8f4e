//! The `metrics` facade as a drop-in: names sanitised as metrics-exporter-prometheus does (a
//! property test against a model of the rules), families of mixed label sets under one series
//! limit, generated help, and the migration options of the builder.

mod common;

use std::collections::BTreeMap;

use common::{capture_logs, text, value};
use metrics::{counter, describe_counter, describe_histogram, gauge, histogram, Unit};
use mmo_metrics::{
    sanitize_label_key, sanitize_metric_name, validate_label_names, validate_metric_name, Matcher, MetricKind,
    MetricsManager, MAX_LABEL_SETS,
};
use proptest::prelude::*;
use tracing::Level;

// ---- names ----

/// The rules, written apart from the engine's: each character (not byte) keeps its place when the
/// class of its position allows it, else becomes `_`.
fn model(s: &str, colon: bool) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = matches!(c, 'a'..='z' | 'A'..='Z' | '_') || (colon && c == ':') || (i > 0 && c.is_ascii_digit());
            if ok {
                c
            } else {
                '_'
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sanitisation_follows_the_model(s in "[a-zA-Z0-9_:.\\-/ é€\\u{1F600}]{0,24}") {
        let name = sanitize_metric_name(&s);
        prop_assert_eq!(&*name, model(&s, true));
        prop_assert_eq!(&*sanitize_label_key(&s), model(&s, false));
        prop_assert_eq!(name.chars().count(), s.chars().count());
        // Valid after it, unless empty; and a valid name is left as it is.
        if !s.is_empty() {
            prop_assert!(validate_metric_name(&name).is_ok());
        }
        prop_assert_eq!(&*sanitize_metric_name(&name), &*name);
        prop_assert_eq!(validate_metric_name(&s).is_ok(), *name == *s && !s.is_empty());
    }

    #[test]
    fn the_facade_records_under_the_sanitised_names(
        s in "[a-z0-9.\\-]{1,12}",
        key in "[a-z0-9.\\-]{1,8}",
    ) {
        let m = MetricsManager::new();
        metrics::with_local_recorder(&m.recorder(), || counter!(s.clone(), key.clone() => "v").increment(7));
        let (name, key) = (model(&s, true), model(&key, false));
        // A counter is exposed with one `_total`.
        let exposed = if name.len() > 6 && name.ends_with("_total") { name } else { format!("{name}_total") };
        if validate_label_names("m", &[&key], None).is_ok() {
            prop_assert_eq!(value(&m, &format!("{exposed}{{{key}=\"v\"}}")), Some(7.0), "{}", text(&m));
        } else {
            // `__`-prefixed keys are Prometheus' own: counted as an error, not recorded.
            prop_assert!(key.starts_with("__"));
            prop_assert_eq!(value(&m, &format!("mmo_metrics_facade_errors_total{{metric=\"{s}\"}}")), Some(1.0));
        }
    }
}

#[test]
fn a_rename_is_counted_once_and_logged_once() {
    let m = MetricsManager::new();
    let record = |n: usize| {
        metrics::with_local_recorder(&m.recorder(), || {
            for i in 0..n {
                counter!("svc.requests", "http.method" => format!("m{}", i % 3)).increment(1);
            }
        })
    };
    // Logs are captured on this thread only.
    let (_, logs) = capture_logs(|| record(100));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| record(100));
        }
    });
    assert_eq!(
        value(&m, "mmo_metrics_facade_renamed_total{metric=\"svc.requests\"}"),
        Some(1.0)
    );
    let renamed: f64 = (0..3)
        .map(|i| value(&m, &format!("svc_requests_total{{http_method=\"m{i}\"}}")).unwrap())
        .sum();
    assert_eq!(renamed, 500.0);
    assert_eq!(
        logs.count(
            Level::INFO,
            &["`svc.requests` is recorded as `svc_requests`", "`http.method`"]
        ),
        1,
        "{logs:?}"
    );
}

#[test]
fn the_by_name_api_stays_strict() {
    let m = MetricsManager::new();
    let e = m.register_counter("http.requests", "", &[]).unwrap_err();
    assert!(e.to_string().contains("`http.requests` is invalid"), "{e}");
    let e = m.register_counter("ok", "", &["http.method"]).unwrap_err();
    assert!(e.to_string().contains("label name `http.method` is invalid"), "{e}");
}

// ---- label sets ----

/// Series of family `name` as (labels → value), from the read API.
fn series(m: &MetricsManager, name: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    m.visit(|f| {
        if f.name() == name {
            f.for_each_series(|l, v| {
                out.insert(format!("{l:?}"), format!("{v:?}"));
            });
        }
    });
    out
}

#[test]
fn one_name_keeps_every_label_set_in_one_family() {
    let m = MetricsManager::new();
    metrics::with_local_recorder(&m.recorder(), || {
        counter!("x", "method" => "GET").increment(1);
        counter!("x", "method" => "POST", "status" => "200").increment(2);
        counter!("x").increment(3);
        // The same label set in another order is the same series.
        counter!("x", "status" => "200", "method" => "POST").increment(4);
        gauge!("g", "a" => "1").set(1.0);
        gauge!("g").set(2.0);
        histogram!("h", "op" => "tick").record(0.1);
        histogram!("h").record(0.2);
    });
    let t = text(&m);
    assert_eq!(t.matches("# TYPE x_total counter").count(), 1, "{t}");
    assert_eq!(t.matches("# HELP x_total ").count(), 1, "{t}");
    assert_eq!(value(&m, "x_total{method=\"GET\"}"), Some(1.0));
    assert_eq!(value(&m, "x_total{method=\"POST\",status=\"200\"}"), Some(6.0));
    assert_eq!(value(&m, "x_total"), Some(3.0));
    assert_eq!(value(&m, "g{a=\"1\"}"), Some(1.0));
    assert_eq!(value(&m, "g"), Some(2.0));
    assert_eq!(value(&m, "h_count{op=\"tick\"}"), Some(1.0));
    assert_eq!(value(&m, "h_count"), Some(1.0));
    let mut sets = Vec::new();
    m.visit(|f| {
        if f.name() == "x" {
            assert_eq!(f.series_count(), 3);
            sets = f.label_sets().map(|s| s.collect::<Vec<_>>().join(",")).collect();
        }
    });
    assert_eq!(sets, ["method", "method,status", ""]);
    assert_eq!(series(&m, "x").len(), 3);
}

#[test]
fn threads_creating_one_name_with_other_label_sets_all_succeed() {
    let m = MetricsManager::new();
    for round in 0..20 {
        let name = format!("race{round}");
        std::thread::scope(|s| {
            for t in 0..4 {
                let (m, name) = (&m, name.clone());
                s.spawn(move || {
                    metrics::with_local_recorder(&m.recorder(), || match t % 2 {
                        0 => counter!(name).increment(1),
                        _ => counter!(name, "t" => t.to_string()).increment(1),
                    })
                });
            }
        });
        let total: f64 = text(&m)
            .lines()
            .filter(|l| l.starts_with(&format!("{name}_total")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(total, 4.0, "{}", text(&m));
    }
    assert!(!text(&m).contains("mmo_metrics_facade_errors_total{"), "{}", text(&m));
}

#[test]
fn label_sets_share_one_series_limit() {
    let m = MetricsManager::builder().series_limit(3).build();
    metrics::with_local_recorder(&m.recorder(), || {
        counter!("x", "a" => "1").increment(1);
        counter!("x", "b" => "1").increment(1);
        counter!("x").increment(1);
        // Past the limit, each label set folds into its own overflow series.
        counter!("x", "a" => "2").increment(1);
        counter!("x", "b" => "2").increment(1);
        counter!("x", "c" => "1").increment(1);
    });
    let t = text(&m);
    assert_eq!(value(&m, "x_total{a=\"__overflow__\"}"), Some(1.0), "{t}");
    assert_eq!(value(&m, "x_total{b=\"__overflow__\"}"), Some(1.0), "{t}");
    assert_eq!(value(&m, "x_total{c=\"__overflow__\"}"), Some(1.0), "{t}");
    assert_eq!(value(&m, "x_total"), Some(1.0));
    assert_eq!(value(&m, "mmo_metrics_series_overflow_total{metric=\"x\"}"), Some(3.0));
}

#[test]
fn a_registered_family_keeps_its_label_names() {
    let m = MetricsManager::new();
    m.register_counter("hits", "Hits.", &["zone"]).unwrap();
    metrics::with_local_recorder(&m.recorder(), || {
        counter!("hits", "zone" => "north").increment(1);
        counter!("hits", "player" => "p1").increment(1);
        counter!("hits").increment(1);
    });
    assert_eq!(value(&m, "hits_total{zone=\"north\"}"), Some(1.0));
    assert_eq!(value(&m, "mmo_metrics_facade_errors_total{metric=\"hits\"}"), Some(2.0));
    // The by-name API on a facade family uses its first label set.
    metrics::with_local_recorder(&m.recorder(), || counter!("f", "a" => "1").increment(1));
    m.increment_counter("f", 2, &["1"]).unwrap();
    assert_eq!(value(&m, "f_total{a=\"1\"}"), Some(3.0));
}

#[test]
fn label_sets_per_name_are_bounded() {
    let m = MetricsManager::new();
    metrics::with_local_recorder(&m.recorder(), || {
        for i in 0..MAX_LABEL_SETS + 10 {
            counter!("x", format!("k{i}") => "v").increment(1);
        }
    });
    let mut n = 0;
    m.visit(|f| {
        if f.name() == "x" {
            n = f.label_sets().count();
        }
    });
    assert_eq!(n, MAX_LABEL_SETS);
    assert_eq!(value(&m, "mmo_metrics_facade_errors_total{metric=\"x\"}"), Some(10.0));
}

#[test]
fn label_sets_created_while_encoding_are_whole() {
    let m = MetricsManager::builder().series_limit(100_000).build();
    std::thread::scope(|s| {
        for t in 0..2 {
            let m = &m;
            s.spawn(move || {
                metrics::with_local_recorder(&m.recorder(), || {
                    for i in 0..2_000 {
                        let k = format!("k{}", i % 40);
                        counter!("x", k => format!("{t}-{i}")).increment(1);
                    }
                })
            });
        }
        s.spawn(|| {
            for _ in 0..20 {
                let t = text(&m);
                for l in t.lines().filter(|l| l.starts_with("x_total")) {
                    // Created, then recorded: 0 or 1.
                    assert!(l.ends_with(" 1") || l.ends_with(" 0"), "{l}");
                }
            }
        });
    });
    let t = text(&m);
    assert_eq!(t.lines().filter(|l| l.starts_with("x_total{")).count(), 4_000);
    assert_eq!(t.matches("# TYPE x_total").count(), 1);
}

// ---- help and migration options ----

#[test]
fn every_facade_family_has_help() {
    let m = MetricsManager::new();
    metrics::with_local_recorder(&m.recorder(), || {
        describe_counter!("described.first", "Given before use.");
        counter!("described.first").increment(1);
        counter!("plain").increment(1);
        counter!("described.later").increment(1);
        describe_counter!("described.later", "Given after use.");
    });
    let t = text(&m);
    assert!(t.contains("# HELP described_first_total Given before use.\n"), "{t}");
    assert!(t.contains("# HELP described_later_total Given after use.\n"), "{t}");
    assert!(
        t.contains("# HELP plain_total `metrics` facade counter plain, no description given"),
        "{t}"
    );
}

#[test]
fn buckets_per_name_summaries_units_and_global_labels() {
    let m = MetricsManager::builder()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &[0.1, 1.0])
        .unwrap()
        .set_buckets_for_metric(Matcher::Prefix("db.".into()), &[5.0])
        .unwrap()
        .histograms_as_summaries(true)
        .set_quantiles(&[0.5])
        .unwrap()
        .add_global_label("service", "zone")
        .unwrap()
        .add_global_label("service", "gateway")
        .unwrap()
        .with_recommended_naming(true)
        .build();
    assert!(MetricsManager::builder().add_global_label("le", "x").is_err());
    assert!(MetricsManager::builder().set_buckets(&[]).is_err());
    assert!(MetricsManager::builder().set_quantiles(&[2.0]).is_err());
    metrics::with_local_recorder(&m.recorder(), || {
        histogram!("rpc_seconds").record(0.5);
        histogram!("db.query").record(0.5);
        histogram!("tick").record(0.5);
        describe_histogram!("frame", Unit::Milliseconds, "Frame time.");
        histogram!("frame").record(16.0);
        describe_counter!("sent", Unit::Bytes, "Sent.");
        counter!("sent").increment(3);
    });
    let mut kinds = BTreeMap::new();
    m.visit(|f| {
        kinds.insert(f.name().to_owned(), f.kind());
    });
    assert_eq!(kinds["rpc_seconds"], MetricKind::Histogram);
    assert_eq!(kinds["db_query"], MetricKind::Histogram);
    assert_eq!(kinds["tick"], MetricKind::Summary);
    assert_eq!(kinds["frame_milliseconds"], MetricKind::Summary);
    assert_eq!(value(&m, "rpc_seconds_bucket{le=\"1\",service=\"gateway\"}"), None);
    assert_eq!(
        value(&m, "rpc_seconds_bucket{service=\"gateway\",le=\"1\"}"),
        Some(1.0),
        "{}",
        text(&m)
    );
    assert_eq!(value(&m, "db_query_bucket{service=\"gateway\",le=\"5\"}"), Some(1.0));
    let median = value(&m, "tick{service=\"gateway\",quantile=\"0.5\"}").unwrap();
    assert!((median - 0.5).abs() < 0.01, "{median}");
    assert_eq!(value(&m, "sent_bytes_total{service=\"gateway\"}"), Some(3.0));
    assert_eq!(value(&m, "frame_milliseconds_count{service=\"gateway\"}"), Some(1.0));
}
