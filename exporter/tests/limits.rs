//! Exporter limits: concurrent scrapes share one encode, scrapes past the in-flight limit get 503,
//! and `/health` answers while a large registry is being encoded.

mod client;

use std::time::{Duration, Instant};

use client::status;
use mmo_metrics::MetricsManager;
use mmo_metrics_exporter::ExporterBuilder;

fn big_registry(series: usize) -> MetricsManager {
    let m = MetricsManager::builder().series_limit(series * 2).build();
    m.register_counter("big", "Many series.", &["id"]).unwrap();
    for i in 0..series {
        m.counter("big", &[&i.to_string()]).unwrap().increment(1);
    }
    m
}

fn scrape_count(m: &MetricsManager, code: &str) -> f64 {
    mmo_metrics_exporter::encode_text(m)
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("mmo_metrics_scrapes_total{{code=\"{code}\"}} "))
                .map(|v| v.parse().unwrap())
        })
        .unwrap_or(0.0)
}

#[test]
fn health_answers_during_a_long_encode_and_scrapes_coalesce() {
    let m = big_registry(300_000);
    let server = ExporterBuilder::new(m.clone())
        .address("127.0.0.1:0".parse().unwrap())
        .serve()
        .unwrap();
    let addr = server.local_addr();
    let t0 = Instant::now();
    assert_eq!(status(addr, "/metrics"), 200);
    let one_encode = t0.elapsed();

    std::thread::scope(|s| {
        let scrapes: Vec<_> = (0..4).map(|_| s.spawn(|| status(addr, "/metrics"))).collect();
        std::thread::sleep(one_encode / 10);
        let t = Instant::now();
        assert_eq!(status(addr, "/health"), 200);
        let health = t.elapsed();
        assert!(
            health < one_encode / 2 || health < Duration::from_millis(50),
            "/health took {health:?} while one encode takes {one_encode:?}"
        );
        for h in scrapes {
            assert_eq!(h.join().unwrap(), 200);
        }
    });
    assert_eq!(scrape_count(&m, "200"), 5.0);
    // Coalesced: the 4 concurrent scrapes took far less than 4 encodes.
    let (m2, t) = (m.clone(), Instant::now());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_eq!(status(addr, "/metrics"), 200));
        }
    });
    let four = t.elapsed();
    assert!(
        four < one_encode * 3,
        "4 concurrent scrapes took {four:?}, one takes {one_encode:?}"
    );
    drop(m2);
}

#[test]
fn scrapes_past_the_limit_get_503() {
    let m = big_registry(300_000);
    let server = ExporterBuilder::new(m.clone())
        .address("127.0.0.1:0".parse().unwrap())
        .max_in_flight(1)
        .serve()
        .unwrap();
    let addr = server.local_addr();
    let codes: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6).map(|_| s.spawn(|| status(addr, "/metrics"))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(codes.contains(&200), "{codes:?}");
    assert!(codes.contains(&503), "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 503), "{codes:?}");
    assert_eq!(
        scrape_count(&m, "503"),
        codes.iter().filter(|c| **c == 503).count() as f64
    );
}

#[test]
fn global_labels_apply_and_bad_names_are_refused() {
    let m = MetricsManager::new();
    m.register_gauge("g", "", &["service"]).unwrap();
    m.set_gauge("g", 1.0, &["own"]).unwrap();
    let mut out = String::new();
    mmo_metrics_exporter::encode_text_with(
        &m,
        &[("service".into(), "gw".into()), ("zone".into(), "a\"b".into())],
        &mut out,
    );
    assert!(out.contains("g{service=\"own\",zone=\"a\\\"b\"} 1\n"), "{out}");
    let err = ExporterBuilder::new(m)
        .address("127.0.0.1:0".parse().unwrap())
        .global_label("bad-name", "x")
        .serve();
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("label name `bad-name` is invalid"));
}
