//! Expiry and removal of series: idle series go and come back, held ones stay, removal by labels,
//! and exact totals for every live series while others expire around them.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mmo_metrics::{MetricKind, MetricsError, MetricsManager, SeriesValue};

const ALL: [MetricKind; 4] = [
    MetricKind::Counter,
    MetricKind::Gauge,
    MetricKind::Histogram,
    MetricKind::Summary,
];

/// `(label values, value)` of every series of `name`, counters and gauges as `f64`.
fn series_of(m: &MetricsManager, name: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    m.visit(|f| {
        if f.name() != name {
            return;
        }
        f.for_each_series(|labels, v| {
            let key = labels.iter().map(|(_, v)| v).collect::<Vec<_>>().join(",");
            let v = match v {
                SeriesValue::Counter(c) => c as f64,
                SeriesValue::Gauge(g) => g,
                SeriesValue::Histogram { count, .. } | SeriesValue::Summary { count, .. } => count as f64,
                _ => f64::NAN,
            };
            out.push((key, v));
        });
    });
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn zones(m: &MetricsManager, name: &str) -> BTreeSet<String> {
    series_of(m, name).into_iter().map(|(k, _)| k).collect()
}

/// Sweeps every 10 ms until `done` holds; fails after 10 s.
fn sweep_until(m: &MetricsManager, what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    loop {
        // A by-name call on another series: this thread's cache lets go of what it held.
        m.increment_counter("unrelated", 1, &[]).unwrap();
        m.expire_idle();
        if done() {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "waited 10 s for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn idle_series_go_held_ones_stay_and_used_ones_come_back() {
    let m = MetricsManager::builder()
        .idle_timeout(ALL, Duration::from_millis(50))
        .series_limit(3)
        .build();
    m.register_counter("unrelated", "Keeps the by-name cache moving.", &[])
        .unwrap();
    m.register_counter("zone_kills", "Kills per zone.", &["zone"]).unwrap();
    let held = m.counter("zone_kills", &["1"]).unwrap();
    held.increment(5);
    m.increment_counter("zone_kills", 2, &["2"]).unwrap();
    let recorder = m.recorder();
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("zone_kills", "zone" => "3").increment(3);
    });
    assert_eq!(zones(&m, "zone_kills"), ["1", "2", "3"].map(String::from).into());

    // The facade's cache on this thread lets go at its next facade call after a sweep.
    sweep_until(&m, "zones 2 and 3 to expire", || {
        metrics::with_local_recorder(&recorder, || metrics::counter!("unrelated").increment(1));
        zones(&m, "zone_kills") == ["1"].map(String::from).into()
    });
    assert_eq!(held.get(), 5, "a held series keeps its total");

    // Their places under the limit of 3 were given back: two new zones are not the overflow.
    m.increment_counter("zone_kills", 1, &["4"]).unwrap();
    m.increment_counter("zone_kills", 1, &["5"]).unwrap();
    assert_eq!(zones(&m, "zone_kills"), ["1", "4", "5"].map(String::from).into());

    // Recorded into again: back, from zero.
    m.increment_counter("zone_kills", 7, &["2"]).unwrap();
    let s = series_of(&m, "zone_kills");
    assert!(
        s.contains(&("2".to_owned(), 7.0)) || s.contains(&("__overflow__".to_owned(), 7.0)),
        "{s:?}"
    );

    // The held one goes once its handle is dropped.
    drop(held);
    sweep_until(&m, "zone 1 to expire after its handle was dropped", || {
        !zones(&m, "zone_kills").contains("1")
    });
}

#[test]
fn facade_label_sets_expire_and_give_their_places_back() {
    let m = MetricsManager::builder()
        .idle_timeout(ALL, Duration::from_millis(20))
        .series_limit(2)
        .build();
    m.register_counter("unrelated", "Keeps the by-name cache moving.", &[])
        .unwrap();
    let recorder = m.recorder();
    let record = |method: &'static str, zone: &'static str| {
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("requests", "method" => method).increment(1);
            metrics::counter!("requests", "method" => method, "zone" => zone).increment(1);
        })
    };
    record("GET", "1");
    record("PUT", "2");
    // The limit of 2 is shared by both label sets: the second call folded into the overflow.
    let sets = |m: &MetricsManager| series_of(m, "requests").into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert!(sets(&m).iter().any(|k| k.contains("__overflow__")), "{:?}", sets(&m));
    // This thread's facade cache lets go at its next facade call after a sweep.
    sweep_until(&m, "every label set to expire", || {
        metrics::with_local_recorder(&recorder, || metrics::counter!("unrelated").increment(1));
        sets(&m).iter().all(|k| k.contains("__overflow__"))
    });
    record("POST", "3");
    let now = sets(&m);
    assert!(
        now.contains(&"POST".to_owned()) && now.contains(&"POST,3".to_owned()),
        "{now:?}"
    );
}

#[test]
fn every_kind_expires() {
    let m = MetricsManager::builder()
        .idle_timeout(ALL, Duration::from_millis(20))
        .build();
    m.register_counter("unrelated", "Keeps the by-name cache moving.", &[])
        .unwrap();
    m.register_gauge("g", "A gauge.", &["k"]).unwrap();
    m.register_histogram("h", "A histogram.", &["k"], &[]).unwrap();
    m.register_summary("s", "A summary.", &["k"], &[]).unwrap();
    m.gauge("g", &["a"]).unwrap().set(1.0);
    m.histogram("h", &["a"]).unwrap().record(1.0);
    m.summary("s", &["a"]).unwrap().observe(1.0);
    for name in ["g", "h", "s"] {
        assert_eq!(series_of(&m, name), vec![("a".to_owned(), 1.0)]);
    }
    sweep_until(&m, "every kind to expire", || {
        ["g", "h", "s"].iter().all(|n| series_of(&m, n).is_empty())
    });
}

#[test]
fn nothing_expires_without_a_timeout() {
    let m = MetricsManager::new();
    m.register_counter("unrelated", "Keeps the by-name cache moving.", &[])
        .unwrap();
    m.register_counter("c", "A counter.", &["k"]).unwrap();
    m.increment_counter("c", 1, &["a"]).unwrap();
    for _ in 0..5 {
        m.increment_counter("unrelated", 1, &[]).unwrap();
        assert_eq!(m.expire_idle(), 0);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(zones(&m, "c"), ["a"].map(String::from).into());
}

#[test]
fn removal_by_labels() {
    let m = MetricsManager::new();
    m.register_counter("unrelated", "Keeps the by-name cache moving.", &[])
        .unwrap();
    m.register_gauge("zone_players", "Players per zone and faction.", &["zone", "faction"])
        .unwrap();
    for zone in ["1", "2"] {
        for faction in ["red", "blue"] {
            m.gauge("zone_players", &[zone, faction]).unwrap().set(10.0);
        }
    }
    let held = m.gauge("zone_players", &["2", "blue"]).unwrap();
    assert_eq!(m.remove_matching("zone_players", &[("zone", "2")]).unwrap(), 2);
    assert_eq!(
        zones(&m, "zone_players"),
        ["1,blue", "1,red", "2,blue"].map(String::from).into(),
        "the held series stays until its handle is dropped"
    );
    held.set(11.0);
    drop(held);
    m.expire_idle();
    assert_eq!(zones(&m, "zone_players"), ["1,blue", "1,red"].map(String::from).into());

    assert!(m.remove_series("zone_players", &["1", "red"]).unwrap());
    assert!(!m.remove_series("zone_players", &["1", "red"]).unwrap(), "already gone");
    assert_eq!(zones(&m, "zone_players"), ["1,blue"].map(String::from).into());

    // A removal request is cancelled by a record before the series is let go of.
    m.set_gauge("zone_players", 3.0, &["1", "blue"]).unwrap();
    assert_eq!(m.remove_matching("zone_players", &[("faction", "blue")]).unwrap(), 1);
    assert_eq!(
        zones(&m, "zone_players").len(),
        1,
        "held by this thread's by-name cache"
    );
    m.set_gauge("zone_players", 4.0, &["1", "blue"]).unwrap();
    m.expire_idle();
    assert_eq!(series_of(&m, "zone_players"), vec![("1,blue".to_owned(), 4.0)]);

    match m.remove_matching("zone_players", &[("region", "eu")]) {
        Err(MetricsError::DefinitionConflict { metric, .. }) => assert_eq!(metric, "zone_players"),
        other => panic!("{other:?}"),
    }
    match m.remove_series("no_such_metric", &[]) {
        Err(e @ MetricsError::UnknownMetric { .. }) => assert!(e.to_string().contains("`no_such_metric`"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        m.remove_series("zone_players", &["1"]),
        Err(MetricsError::LabelArity { .. })
    ));
}

/// Threads record into live series through a handle, the by-name API and the facade while they
/// also make a new short-lived series every 16 records, and a sweeper expires with a 100 ms
/// timeout as fast as it can, for a second. Every live series ends with the exact total recorded
/// into it (each is used every few hundred nanoseconds, so it is never idle for 100 ms), and the
/// short-lived ones are removed.
#[test]
fn threads_recording_while_series_expire_lose_nothing() {
    const THREADS: usize = 2;
    const LIVE: [&str; 4] = ["live_handle", "live_by_name", "live_histogram", "live_facade"];
    const RUN: Duration = Duration::from_secs(1);
    const MAX_ROUNDS: u64 = 5_000_000;
    let m = MetricsManager::builder()
        .idle_timeout(ALL, Duration::from_millis(100))
        .series_limit(1_000_000)
        .build();
    m.register_counter("live_handle", "Live, through a handle.", &["t"])
        .unwrap();
    m.register_counter("live_by_name", "Live, by name.", &["t"]).unwrap();
    m.register_histogram("live_histogram", "Live, by name.", &["t"], &[])
        .unwrap();
    m.register_counter("short", "Short-lived.", &["t", "i"]).unwrap();
    let recorder = m.recorder();
    let done = AtomicBool::new(false);
    let finished = AtomicUsize::new(0);
    let removed = AtomicUsize::new(0);
    let (rounds, totals) = std::thread::scope(|s| {
        let sweeper = s.spawn(|| {
            while finished.load(Ordering::Acquire) < THREADS {
                removed.fetch_add(m.expire_idle(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (m, recorder, done, finished) = (&m, &recorder, &done, &finished);
                s.spawn(move || {
                    let t = t.to_string();
                    let handle = m.counter("live_handle", &[&t]).unwrap();
                    let start = Instant::now();
                    let mut rounds = 0;
                    metrics::with_local_recorder(recorder, || {
                        while rounds < MAX_ROUNDS && (rounds % 1024 != 0 || start.elapsed() < RUN) {
                            handle.increment(1);
                            m.increment_counter("live_by_name", 1, &[&t]).unwrap();
                            m.observe_histogram("live_histogram", 0.5, &[&t]).unwrap();
                            metrics::counter!("live_facade", "t" => t.clone()).increment(1);
                            if rounds % 16 == 0 {
                                let i = (rounds / 16).to_string();
                                m.increment_counter("short", 1, &[&t, &i]).unwrap();
                                metrics::gauge!("short_facade", "t" => t.clone(), "i" => i).set(1.0);
                            }
                            rounds += 1;
                        }
                    });
                    // The live series stay held (handle, caches) until the totals are read.
                    finished.fetch_add(1, Ordering::Release);
                    while !done.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    drop(handle);
                    rounds
                })
            })
            .collect();
        sweeper.join().unwrap();
        // Reading sweeps once more: the live series are still held by the waiting workers.
        let totals: Vec<_> = LIVE.iter().map(|name| series_of(&m, name)).collect();
        done.store(true, Ordering::Release);
        let rounds: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        (rounds, totals)
    });
    let expected: Vec<(String, f64)> = rounds
        .iter()
        .enumerate()
        .map(|(t, r)| (t.to_string(), *r as f64))
        .collect();
    for (name, got) in LIVE.iter().zip(totals) {
        assert_eq!(got, expected, "{name}");
    }
    let made = rounds.iter().map(|r| r.div_ceil(16) as usize).sum::<usize>() * 2;
    let left: usize = ["short", "short_facade"].iter().map(|n| series_of(&m, n).len()).sum();
    assert!(removed.load(Ordering::Relaxed) > 0, "the sweeper removed nothing");
    assert!(
        left < made / 2,
        "short-lived series were not removed: {left} of {made} left"
    );
    eprintln!(
        "rounds {rounds:?}; short-lived series made {made}, removed by the sweeper {}, left {left}",
        removed.load(Ordering::Relaxed)
    );
}
