//! The exporter against clients that misbehave: scrapes aborted by reset, by close and by the
//! request timeout; gzip scrapes of a large exposition while `/health` is asked; reserved global
//! label names. Clients that stop reading are in `slow_readers.rs`. Every wait is bounded.

mod client;
mod fixtures;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use client::{status, wait_until};
use fixtures::{attacked_registry, counter, gauge, registry};
use mmo_metrics::MetricsManager;
use mmo_metrics_exporter::{ExporterBuilder, SCRAPES_IN_FLIGHT_METRIC, TIMEOUTS_METRIC};
use socket2::SockRef;

const LOOPBACK: &str = "127.0.0.1:0";

#[test]
fn aborted_scrapes_give_their_slot_back() {
    let m = attacked_registry(50_000, 8);
    let server = ExporterBuilder::new(m.clone())
        .address(LOOPBACK.parse().unwrap())
        .max_in_flight(2)
        .serve()
        .unwrap();
    let addr = server.local_addr();
    // 1,000 scrapes abandoned while an encode runs: half reset (RST), half closed (FIN).
    for i in 0..1000 {
        let s = TcpStream::connect(addr).unwrap();
        (&s).write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        if i % 2 == 0 {
            SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
        drop(s);
    }
    wait_until("every slot to come back", Duration::from_secs(30), || {
        gauge(&m, SCRAPES_IN_FLIGHT_METRIC) == 0.0
    });
    for _ in 0..20 {
        assert_eq!(status(addr, "/metrics"), 200);
    }
}

#[test]
fn scrapes_cut_by_the_request_timeout_give_their_slot_back() {
    let m = registry(50_000, 8);
    let server = ExporterBuilder::new(m.clone())
        .address(LOOPBACK.parse().unwrap())
        .max_in_flight(2)
        .request_timeout(Duration::from_millis(1))
        .serve()
        .unwrap();
    let addr = server.local_addr();
    let codes: Vec<u16> = (0..20).map(|_| status(addr, "/metrics")).collect();
    // A leaked slot would turn every scrape after the second into a 503.
    assert!(codes.iter().all(|c| *c == 408 || *c == 200), "{codes:?}");
    assert!(codes.iter().filter(|c| **c == 408).count() >= 10, "{codes:?}");
    assert_eq!(
        counter(&m, TIMEOUTS_METRIC, "request"),
        codes.iter().filter(|c| **c == 408).count() as u64
    );
}

/// Reads one response (with a Content-Length body) from `s`.
fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let (head, len) = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the headers");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("Content-Length");
            raw.drain(..end + 4);
            break (head, len);
        }
    };
    while raw.len() < len {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed in the body");
        raw.extend_from_slice(&buf[..n]);
    }
    (head, raw)
}

#[test]
fn health_answers_while_gzip_scrapes_run() {
    let m = registry(100_000, 100);
    let server = ExporterBuilder::new(m.clone())
        .address(LOOPBACK.parse().unwrap())
        .serve()
        .unwrap();
    let addr = server.local_addr();
    let mut health = std::thread::scope(|s| {
        let scrapes: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
                        .unwrap();
                    let (head, body) = read_response(&mut c);
                    assert!(head.to_ascii_lowercase().contains("content-encoding: gzip"), "{head}");
                    let mut text = String::new();
                    flate2::read::GzDecoder::new(&body[..])
                        .read_to_string(&mut text)
                        .unwrap();
                    assert!(text.contains("big_total{id=\""), "gzip body decodes to the exposition");
                })
            })
            .collect();
        let mut health = Vec::new();
        while scrapes.iter().any(|h| !h.is_finished()) || health.len() < 5 {
            let t = Instant::now();
            assert_eq!(status(addr, "/health"), 200);
            health.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(5));
        }
        for h in scrapes {
            h.join().unwrap();
        }
        health
    });
    health.sort();
    let (median, max) = (health[health.len() / 2], health[health.len() - 1]);
    assert!(
        median < Duration::from_millis(50) && max < Duration::from_secs(1),
        "/health median {median:?}, max {max:?} while 8 gzip scrapes ran ({} asks)",
        health.len()
    );
}

#[test]
fn reserved_global_labels_are_refused() {
    for label in ["le", "quantile"] {
        let err = ExporterBuilder::new(MetricsManager::new())
            .address(LOOPBACK.parse().unwrap())
            .global_label(label, "x")
            .serve()
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("global label `{label}` is reserved")), "{err}");
    }
    let err = ExporterBuilder::new(MetricsManager::new())
        .address(LOOPBACK.parse().unwrap())
        .global_label("zone", "a")
        .global_label("zone", "b")
        .serve()
        .unwrap_err()
        .to_string();
    assert!(err.contains("zone"), "{err}");
}
