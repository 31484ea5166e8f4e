//! Exact totals under contention: 4 threads × 1M increments through the facade and the manager
//! while another thread scrapes; every scrape is consistent per series.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use mmo_metrics::MetricsManager;

const THREADS: usize = 4;
const OPS: u64 = 1_000_000;

/// Sample line (name and labels) → value.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("sample line");
            (k.to_owned(), v.parse::<f64>().expect("value"))
        })
        .collect()
}

fn check_histogram(s: &HashMap<String, f64>, name: &str, bounds: &[&str]) {
    let mut prev = 0.0;
    for le in bounds.iter().chain(std::iter::once(&"+Inf")) {
        let v = s.get(&format!("{name}_bucket{{le=\"{le}\"}}")).copied().unwrap_or(0.0);
        assert!(v >= prev, "{name}: buckets not cumulative at le={le}");
        prev = v;
    }
    let count = s.get(&format!("{name}_count")).copied().unwrap_or(0.0);
    assert_eq!(prev, count, "{name}: +Inf bucket {prev} != _count {count}");
}

#[test]
fn exact_totals_while_scraping() {
    let manager = MetricsManager::builder().shards(4).build();
    manager.install().expect("first install in this test binary");
    assert_eq!(
        manager.install().unwrap_err(),
        mmo_metrics::MetricsError::AlreadyInstalled
    );
    manager
        .register_counter("manager_ops_total", "Ops through the manager.", &["kind"])
        .unwrap();
    manager
        .register_histogram("manager_latency", "Latency.", &[], &[0.5, 1.5])
        .unwrap();
    let handle = manager.counter("manager_ops_total", &["handle"]).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(THREADS + 1));
    let scraper = {
        let (manager, done, start) = (manager.clone(), Arc::clone(&done), Arc::clone(&start));
        std::thread::spawn(move || {
            start.wait();
            let mut last: HashMap<String, f64> = HashMap::new();
            let mut scrapes = 0;
            while !done.load(Ordering::Relaxed) || scrapes < 3 {
                let s = parse(&mmo_metrics_exporter::encode_text(&manager));
                for (k, v) in &last {
                    if k.contains("_total") || k.contains("_bucket") || k.ends_with("_count") {
                        let now = s.get(k).copied().unwrap_or(0.0);
                        assert!(now >= *v, "{k} went down: {v} -> {now}");
                    }
                }
                check_histogram(
                    &s,
                    "facade_latency",
                    &[
                        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                    ],
                );
                check_histogram(&s, "manager_latency", &["0.5", "1.5"]);
                last = s;
                scrapes += 1;
            }
            scrapes
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (manager, handle, start) = (manager.clone(), handle.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                for i in 0..OPS {
                    match i % 4 {
                        0 => metrics::counter!("facade_ops_total").increment(1),
                        1 => manager.increment_counter("manager_ops_total", 1, &["by_name"]).unwrap(),
                        2 => handle.increment(1),
                        _ => metrics::counter!("facade_labelled_total", "thread" => "any").increment(1),
                    }
                    if i % 16 == 0 {
                        metrics::histogram!("facade_latency").record((i % 3) as f64);
                        manager
                            .observe_histogram("manager_latency", (t % 3) as f64, &[])
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let scrapes = scraper.join().unwrap();
    assert!(scrapes >= 3);

    let s = parse(&mmo_metrics_exporter::encode_text(&manager));
    let per = (THREADS as u64 * OPS / 4) as f64;
    assert_eq!(s["facade_ops_total"], per);
    assert_eq!(s["facade_labelled_total{thread=\"any\"}"], per);
    assert_eq!(s["manager_ops_total{kind=\"by_name\"}"], per);
    assert_eq!(s["manager_ops_total{kind=\"handle\"}"], per);
    let obs = (THREADS as u64 * OPS.div_ceil(16)) as f64;
    assert_eq!(s["facade_latency_count"], obs);
    assert_eq!(s["manager_latency_count"], obs);
    check_histogram(&s, "manager_latency", &["0.5", "1.5"]);
}
