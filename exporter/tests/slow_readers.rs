//! Clients that send a scrape of a large exposition and never read the answer. The test measures
//! this process's RSS, so it runs in a binary of its own: another test allocating in the same
//! process would be counted as growth.

mod client;
mod fixtures;

use std::net::SocketAddr;
use std::time::Duration;

use client::{status, wait_until};
use fixtures::{attacked_registry, counter, gauge, rss_bytes};
use mmo_metrics_exporter::{ExporterBuilder, SCRAPES_IN_FLIGHT_METRIC, TIMEOUTS_METRIC};
use socket2::{Domain, Socket, Type};

const LOOPBACK: &str = "127.0.0.1:0";

/// A client with a tiny receive window that sends a scrape and never reads.
fn non_reader(addr: SocketAddr) -> Socket {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s
}

#[test]
fn clients_that_stop_reading_share_one_copy_and_are_cut() {
    // About 11 MB of exposition: far more than the socket buffers hold.
    let m = attacked_registry(8_000, 1_400);
    let server = ExporterBuilder::new(m.clone())
        .address(LOOPBACK.parse().unwrap())
        .write_timeout(Duration::from_secs(1))
        .serve()
        .unwrap();
    let addr = server.local_addr();
    assert_eq!(status(addr, "/metrics"), 200);
    let before = rss_bytes();
    // One after another, each once the previous one was answered, as stalled scrapes pile up
    // over time: each may get an encode of its own, yet at most eight hold a body at once (the
    // rest are answered 503 until the write timeout frees a slot).
    let answered = || {
        counter(&m, mmo_metrics_exporter::SCRAPES_METRIC, "200")
            + counter(&m, mmo_metrics_exporter::SCRAPES_METRIC, "503")
    };
    let clients: Vec<Socket> = (0..60)
        .map(|_| {
            let n = answered();
            let c = non_reader(addr);
            wait_until("the scrape to be answered", Duration::from_secs(30), || answered() > n);
            c
        })
        .collect();
    let grown = rss_bytes().saturating_sub(before);
    eprintln!("60 clients that do not read grew RSS by {} MiB", grown >> 20);
    assert!(
        grown < 250 << 20,
        "60 clients that do not read grew RSS by {} MiB",
        grown >> 20
    );
    // The write timeout cuts the stuck ones and gives their slots back.
    wait_until(
        "the write timeout to cut the stuck clients",
        Duration::from_secs(20),
        || counter(&m, TIMEOUTS_METRIC, "write") >= 8 && gauge(&m, SCRAPES_IN_FLIGHT_METRIC) == 0.0,
    );
    drop(clients);
    assert_eq!(status(addr, "/metrics"), 200);
}
