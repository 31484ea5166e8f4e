//! The manager contract: registration rules, errors, series limit, facade behaviour, collectors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mmo_metrics::{MetricsCollector, MetricsError, MetricsManager};

fn text(m: &MetricsManager) -> String {
    mmo_metrics_exporter::encode_text(m)
}

fn value(m: &MetricsManager, sample: &str) -> Option<f64> {
    text(m).lines().find_map(|l| {
        l.strip_prefix(sample)
            .and_then(|r| r.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    })
}

#[test]
fn errors_name_the_metric_and_the_expectation() {
    let m = MetricsManager::new();
    let msg = |e: MetricsError| e.to_string();
    assert_eq!(
        msg(m.register_counter("bad-name", "", &[]).unwrap_err()),
        "metric name `bad-name` is invalid: it contains '-' (expected [a-zA-Z_:][a-zA-Z0-9_:]*)"
    );
    assert!(msg(m.register_counter("9x", "", &[]).unwrap_err()).contains("starts with '9'"));
    assert_eq!(
        msg(m.register_gauge("g", "", &["ok", "__bad"]).unwrap_err()),
        "metric `g`: label name `__bad` is invalid: names starting with `__` are reserved for Prometheus"
    );
    assert!(msg(m.register_gauge("g", "", &["a.b"]).unwrap_err()).contains("label name `a.b` is invalid"));
    assert_eq!(
        msg(m.register_gauge("g", "", &["a", "a"]).unwrap_err()),
        "metric `g`: label name `a` appears twice"
    );
    assert!(msg(m.register_histogram("h", "", &["le"], &[]).unwrap_err()).contains("`le`"));
    assert!(msg(m.register_summary("s", "", &["quantile"], &[]).unwrap_err()).contains("`quantile`"));

    m.register_counter("events", "Events.", &["kind"]).unwrap();
    m.register_counter("events", "", &["kind"]).unwrap(); // same definition: fine
    m.register_counter("events_total", "", &["kind"]).unwrap(); // same family, with _total
    assert_eq!(
        msg(m.register_gauge("events", "", &["kind"]).unwrap_err()),
        "metric `events` registered as counter, now asked for gauge"
    );
    assert_eq!(
        msg(m.register_counter("events", "", &["other"]).unwrap_err()),
        "metric `events` registered with labels [kind], now asked with labels [other]"
    );
    assert_eq!(
        msg(m.register_gauge("events_total", "", &[]).unwrap_err()),
        "metric `events_total` would expose sample `events_total`, which metric `events` already exposes"
    );
    m.register_histogram("lat", "", &[], &[1.0, 2.0]).unwrap();
    assert!(
        msg(m.register_histogram("lat", "", &[], &[1.0]).unwrap_err()).contains("registered with buckets [1.0, 2.0]")
    );
    assert!(msg(m.register_gauge("lat_count", "", &[]).unwrap_err()).contains("sample `lat_count`"));
    assert_eq!(
        msg(m.increment_counter("nope", 1, &[]).unwrap_err()),
        "metric `nope` is not registered (register it as a counter first)"
    );
    assert_eq!(
        msg(m.increment_counter("events", 1, &["a", "b"]).unwrap_err()),
        "metric `events` has labels [kind] (1 values expected), got 2 values [a, b]"
    );
    assert_eq!(
        msg(m.observe_histogram("events", 1.0, &["a"]).unwrap_err()),
        "metric `events` registered as counter, now asked for histogram"
    );
    assert!(msg(m.register_histogram("h2", "", &[], &[2.0, 1.0]).unwrap_err()).contains("strictly increasing"));
    assert!(msg(m.register_histogram("h2", "", &[], &[f64::NAN]).unwrap_err()).contains("finite"));
    assert!(msg(m.register_summary("s2", "", &[], &[1.5]).unwrap_err()).contains("within [0, 1]"));
    assert!(msg(m.register_summary("s2", "", &[], &[0.9, 0.5]).unwrap_err()).contains("strictly increasing"));
    assert!(m
        .register_summary_with_window("s3", "", &[], &[], Duration::ZERO, 5)
        .is_err());
}

#[test]
fn histogram_bounds_are_inclusive_and_inf_equals_count() {
    let m = MetricsManager::new();
    m.register_histogram("h", "", &[], &[1.0, 2.0, f64::INFINITY]).unwrap();
    for v in [1.0, 2.0, 2.0000001, f64::NAN, -5.0] {
        m.observe_histogram("h", v, &[]).unwrap();
    }
    assert_eq!(value(&m, "h_bucket{le=\"1\"}"), Some(2.0));
    assert_eq!(value(&m, "h_bucket{le=\"2\"}"), Some(3.0));
    assert_eq!(value(&m, "h_bucket{le=\"+Inf\"}"), Some(5.0));
    assert_eq!(value(&m, "h_count"), Some(5.0));
    assert!(value(&m, "h_sum").unwrap().is_nan());
}

#[test]
fn series_limit_folds_into_overflow_and_counts() {
    let m = MetricsManager::builder().series_limit(3).build();
    m.register_counter("players", "", &["id"]).unwrap();
    for i in 0..10 {
        m.increment_counter("players", 1, &[&format!("p{i}")]).unwrap();
    }
    // Repeats of a folded label set hit this thread's cache: still the overflow series.
    m.increment_counter("players", 1, &["p9"]).unwrap();
    let t = text(&m);
    let series = t.lines().filter(|l| l.starts_with("players_total{")).count();
    assert_eq!(series, 4, "{t}");
    assert_eq!(value(&m, "players_total{id=\"__overflow__\"}"), Some(8.0));
    assert_eq!(
        value(&m, "mmo_metrics_series_overflow_total{metric=\"players\"}"),
        Some(7.0)
    );
}

#[test]
fn facade_problems_are_counted_not_panics() {
    let m = MetricsManager::new();
    m.register_counter("hits", "", &["zone"]).unwrap();
    metrics::with_local_recorder(&m.recorder(), || {
        for _ in 0..3 {
            metrics::counter!("bad.name").increment(1);
        }
        metrics::gauge!("hits", "zone" => "x").set(1.0); // type conflict
        metrics::counter!("hits", "other" => "x").increment(1); // not the registered label names
        metrics::counter!("hits", "zone" => "north").increment(2);
        metrics::counter!("hits", "zone" => "north").absolute(10);
        metrics::counter!("hits", "zone" => "north").absolute(4); // never goes down
    });
    // An invalid name is sanitised (counted once), not dropped.
    assert_eq!(value(&m, "bad_name_total"), Some(3.0));
    assert_eq!(
        value(&m, "mmo_metrics_facade_renamed_total{metric=\"bad.name\"}"),
        Some(1.0)
    );
    assert_eq!(value(&m, "mmo_metrics_facade_errors_total{metric=\"hits\"}"), Some(2.0));
    assert_eq!(value(&m, "hits_total{zone=\"north\"}"), Some(10.0));
}

#[test]
fn facade_describe_and_histograms_into_registered_summaries() {
    let m = MetricsManager::new();
    m.register_summary("tick_seconds", "Tick time.", &[], &[0.5]).unwrap();
    metrics::with_local_recorder(&m.recorder(), || {
        metrics::describe_counter!("logins", "Logins so far.");
        metrics::counter!("logins").increment(1);
        metrics::counter!("logouts").increment(1);
        metrics::describe_counter!("logouts", metrics::Unit::Count, "Logouts so far.");
        metrics::describe_gauge!("online", "Players online.");
        metrics::gauge!("online").set(5.0);
        metrics::gauge!("online").decrement(2.0);
        for _ in 0..10 {
            metrics::histogram!("tick_seconds").record(0.016);
        }
        metrics::histogram!("plain_seconds").record(0.3);
    });
    let t = text(&m);
    assert!(
        t.contains("# HELP logins_total Logins so far.\n# TYPE logins_total counter\nlogins_total 1\n"),
        "{t}"
    );
    assert!(t.contains("# HELP logouts_total Logouts so far.\n"), "{t}");
    assert!(
        t.contains("# HELP online Players online.\n# TYPE online gauge\nonline 3\n"),
        "{t}"
    );
    assert_eq!(value(&m, "tick_seconds_count"), Some(10.0));
    let p50 = value(&m, "tick_seconds{quantile=\"0.5\"}").unwrap();
    assert!(
        (p50 - 0.016).abs() <= 0.016 * mmo_metrics::SUMMARY_RELATIVE_ERROR,
        "{p50}"
    );
    assert_eq!(value(&m, "plain_seconds_bucket{le=\"0.5\"}"), Some(1.0));
    assert_eq!(value(&m, "plain_seconds_bucket{le=\"0.25\"}"), Some(0.0));
}

#[test]
fn handles_and_registries_are_independent() {
    let a = MetricsManager::builder().shards(1).build();
    let b = MetricsManager::builder().shards(64).build();
    for m in [&a, &b] {
        m.register_counter("n", "", &[]).unwrap();
        m.register_gauge("g", "", &[]).unwrap();
    }
    let h = a.counter("n", &[]).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    h.increment(1);
                    b.increment_counter("n", 2, &[]).unwrap();
                }
            });
        }
    });
    assert_eq!(h.get(), 4000);
    assert_eq!(b.counter("n", &[]).unwrap().get(), 8000);
    let g = a.gauge("g", &[]).unwrap();
    g.set(1.5);
    g.add(-0.5);
    assert_eq!(g.get(), 1.0);
    assert_eq!(value(&b, "g"), Some(0.0));
}

#[test]
fn collector_runs_every_interval_and_survives_panics() {
    let m = MetricsManager::new();
    m.register_gauge("ticks", "", &[]).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut c = MetricsCollector::new(m.clone(), Duration::from_millis(20));
    let r = Arc::clone(&runs);
    c.add_collector(move |m: &MetricsManager| {
        r.fetch_add(1, Ordering::SeqCst);
        m.add_gauge("ticks", 1.0, &[]).unwrap();
    });
    c.add_named_collector("flaky", |_m: &MetricsManager| panic!("collector bug"));
    let running = c.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Each collector runs on its own thread: wait for both to have run 5 times.
    let panics = || value(&m, "mmo_metrics_collector_panics_total{collector=\"flaky\"}").unwrap_or(0.0);
    while runs.load(Ordering::SeqCst) < 5 || panics() < 5.0 {
        assert!(Instant::now() < deadline, "collectors did not run 5 times in 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped = Instant::now();
    drop(running);
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "drop must stop the loop promptly"
    );
    let after = runs.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(runs.load(Ordering::SeqCst), after, "no run after drop");
    assert!(value(&m, "ticks").unwrap() >= 5.0);
    let panics = panics();
    let runs_timed = value(
        &m,
        "mmo_metrics_collector_duration_seconds_count{collector=\"collector_1\"}",
    )
    .unwrap();
    assert!(runs_timed >= 5.0, "{runs_timed}");
    assert!(panics >= 5.0, "{panics}");
}

/// `absolute` from several threads at once, through the facade and by name, as metrics-process'
/// collectors run from concurrent scrapes: threads started together raise one series through
/// the same values, and its total is exactly the largest value (metrics-exporter-prometheus'
/// `fetch_max`), never above. Threads collide mostly while they start in step, so the test makes
/// many short races, each on a series of its own.
#[test]
fn absolute_from_several_threads_lands_on_the_largest_value() {
    const THREADS: usize = 4;
    const STEPS: u64 = 2_000;
    const RACES: usize = 200;
    // More threads than exclusive shards: both kinds of shard take part.
    let m = MetricsManager::builder().shards(2).build();
    m.register_counter("mirrored_by_name", "", &["race"]).unwrap();
    let rec = m.recorder();
    for race in 0..RACES {
        let race = race.to_string();
        let start = std::sync::Barrier::new(THREADS);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                let (m, rec, start, race) = (&m, &rec, &start, &race);
                s.spawn(move || {
                    metrics::with_local_recorder(rec, || {
                        let c = metrics::counter!("mirrored", "race" => race.clone());
                        start.wait();
                        for i in 1..=STEPS {
                            c.absolute(i * 1000);
                            m.set_float_counter("mirrored_by_name", (i * 1000) as f64, &[race])
                                .unwrap();
                        }
                    });
                });
            }
        });
    }
    let text = text(&m);
    for race in 0..RACES {
        for name in ["mirrored_total", "mirrored_by_name_total"] {
            let sample = format!("{name}{{race=\"{race}\"}} {}", STEPS * 1000);
            assert!(text.lines().any(|l| l == sample), "{sample} not in the exposition");
        }
    }
}
