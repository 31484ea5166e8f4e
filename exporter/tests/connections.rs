//! The connection cap, in a process of its own with a low file-descriptor limit: 400 idle clients
//! cannot make the exporter run out of descriptors, `/health` keeps answering, and arrivals at
//! the cap are logged once per interval, not once per connection.

mod client;

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use client::status;
use mmo_metrics::MetricsManager;
use mmo_metrics_exporter::{ExporterBuilder, CONNECTION_LIMIT_METRIC};

/// Log lines written through `tracing`.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn idle_clients_cannot_exhaust_descriptors() {
    let logs = Logs::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();
    // 600 descriptors: 400 client sockets fit, 400 more on the server side do not.
    let limit = libc::rlimit {
        rlim_cur: 600,
        rlim_max: 600,
    };
    // SAFETY: setrlimit reads the struct we pass; lowering the limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);

    let m = MetricsManager::new();
    let server = ExporterBuilder::new(m.clone())
        .address("127.0.0.1:0".parse().unwrap())
        .max_connections(64)
        .serve()
        .unwrap();
    let addr = server.local_addr();
    let idle: Vec<TcpStream> = (0..400).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for _ in 0..20 {
        assert_eq!(status(addr, "/health"), 200);
    }
    let at_cap = m.counter(CONNECTION_LIMIT_METRIC, &["evicted"]).unwrap().get()
        + m.counter(CONNECTION_LIMIT_METRIC, &["refused"]).unwrap().get();
    assert!(at_cap >= 400 - 64, "{at_cap} arrivals at the cap counted");
    drop(idle);
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    let lines = logged
        .lines()
        .filter(|l| l.contains("limit of 64 open connections"))
        .count();
    assert!((1..=2).contains(&lines), "{lines} log lines about the cap:\n{logged}");
    assert!(!logged.contains("accept call(s) failed"), "{logged}");
}
