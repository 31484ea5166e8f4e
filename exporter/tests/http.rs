//! The HTTP endpoint over real sockets on loopback: status codes, the exact Content-Type, the body,
//! and that dropping the server handle stops it. A minimal HTTP/1.1 client over `TcpStream` keeps
//! the test independent of the server's HTTP stack; every read and the whole test are bounded in
//! time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mmo_metrics::MetricsManager;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `Connection: close` and reads the response to the end.
fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the exporter");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let body_header = if method == "POST" { "Content-Length: 0\r\n" } else { "" };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{body_header}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("read the response (the server must close the connection)");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8(raw.to_vec()).expect("response is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {status_line:?}");
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("header line {l:?}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    if let Some((_, len)) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        assert_eq!(
            len.parse::<usize>().unwrap(),
            body.len(),
            "Content-Length matches the body"
        );
    }
    Response { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).expect("chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        s = rest[size..].strip_prefix("\r\n").expect("CRLF after chunk");
    }
}

fn manager() -> MetricsManager {
    let m = MetricsManager::new();
    m.register_counter("logins", "Logins.", &["zone"]).unwrap();
    m.increment_counter("logins", 2, &["north"]).unwrap();
    m.register_gauge("connection_count", "Open connections.", &[]).unwrap();
    m.set_gauge("connection_count", 42.0, &[]).unwrap();
    m
}

fn start(m: &MetricsManager) -> mmo_metrics_exporter::Exporter {
    mmo_metrics_exporter::serve(m.clone(), "127.0.0.1:0".parse().unwrap()).expect("serve on an ephemeral port")
}

#[test]
fn get_metrics_returns_the_exposition() {
    let m = manager();
    let server = start(&m);
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);

    let r = request(addr, "GET", "/metrics");
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(r.header("content-type"), Some(mmo_metrics_exporter::TEXT_CONTENT_TYPE));
    assert!(r.body.contains("# TYPE logins_total counter\n"), "{}", r.body);
    assert!(r.body.contains("logins_total{zone=\"north\"} 2\n"), "{}", r.body);
    assert!(r.body.contains("connection_count 42\n"), "{}", r.body);

    // Each scrape sees current values.
    m.increment_counter("logins", 3, &["north"]).unwrap();
    let r = request(addr, "GET", "/metrics");
    assert!(r.body.contains("logins_total{zone=\"north\"} 5\n"), "{}", r.body);
    // The same exposition as `encode_text`, but for the exporter's own scrape self-metrics.
    let ours = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.contains("mmo_metrics_"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(ours(&r.body), ours(&mmo_metrics_exporter::encode_text(&m)));
}

#[test]
fn health_not_found_and_method_not_allowed() {
    let m = manager();
    let server = start(&m);
    let addr = server.local_addr();

    let r = request(addr, "GET", "/health");
    assert_eq!(r.status, 200, "body: {}", r.body);

    let r = request(addr, "GET", "/nope");
    assert_eq!(r.status, 404, "body: {}", r.body);

    let r = request(addr, "POST", "/metrics");
    assert_eq!(r.status, 405, "body: {}", r.body);
}

#[test]
fn concurrent_scrapes_all_succeed() {
    let m = manager();
    let server = start(&m);
    let addr = server.local_addr();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| request(addr, "GET", "/metrics").status)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for c in clients {
        assert!(c.join().unwrap().iter().all(|&s| s == 200));
    }
}

#[test]
fn dropping_the_handle_stops_the_server() {
    let m = manager();
    let server = start(&m);
    let addr = server.local_addr();
    assert_eq!(request(addr, "GET", "/health").status, 200);

    // Drop on another thread so a hang fails the test instead of blocking it forever.
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        drop(server);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(3))
        .expect("dropping the exporter returns within 3 s");
    assert!(t0.elapsed() < Duration::from_secs(3));

    // The listener is closed: a new connection is refused, or at least never answered.
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Err(_) => {}
        Ok(mut s) => {
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            assert!(
                buf.is_empty(),
                "a stopped exporter answered: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    }
}

#[test]
fn dropping_with_an_idle_connection_open_is_bounded() {
    let m = manager();
    let server = start(&m);
    let addr = server.local_addr();
    // A client that connected and sent nothing must not keep the exporter alive for long.
    let idle = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    assert_eq!(request(addr, "GET", "/health").status, 200);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        server.stop();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("stop returns within the shutdown grace period");
    drop(idle);
}

#[test]
fn binding_a_port_in_use_is_an_error() {
    let m = manager();
    let server = start(&m);
    let err = mmo_metrics_exporter::serve(m.clone(), server.local_addr()).expect_err("the port is taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
}

/// With an address allowlist (metrics-exporter-prometheus' `add_allowed_address`), a client from
/// elsewhere gets 403 on every path, before basic auth would ask for credentials; a client inside
/// it is served as usual.
#[test]
fn an_allowlist_refuses_other_addresses_on_every_path() {
    let m = manager();
    // Basic auth only: the configuration names no file to read, so its path is for messages.
    let web = mmo_metrics_exporter::WebConfig::from_yaml(
        &format!("basic_auth_users:\n  prom: {}\n", bcrypt::hash("secret", 4).unwrap()),
        "web.yml",
    )
    .unwrap();
    let serve = |allowed: &[&str], web: Option<mmo_metrics_exporter::WebConfig>| {
        let mut b = mmo_metrics_exporter::ExporterBuilder::new(m.clone()).address("127.0.0.1:0".parse().unwrap());
        for a in allowed {
            b = b.add_allowed_address(a).unwrap();
        }
        if let Some(web) = web {
            b = b.web_config(web);
        }
        b.serve().unwrap()
    };

    let elsewhere = serve(&["10.0.0.0/8", "::1"], None);
    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/health"),
        ("GET", "/"),
        ("GET", "/nope"),
        ("POST", "/metrics"),
    ] {
        let r = request(elsewhere.local_addr(), method, path);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
    }
    // Refused before basic auth: 403, not 401.
    let guarded = serve(&["10.0.0.0/8"], Some(web.clone()));
    assert_eq!(request(guarded.local_addr(), "GET", "/metrics").status, 403);

    let here = serve(&["10.0.0.0/8", "127.0.0.0/8"], None);
    let r = request(here.local_addr(), "GET", "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("logins_total{zone=\"north\"} 2\n"), "{}", r.body);
    let one = serve(&["127.0.0.1"], Some(web));
    assert_eq!(
        request(one.local_addr(), "GET", "/metrics").status,
        401,
        "inside the list, auth still applies"
    );

    let e = mmo_metrics_exporter::ExporterBuilder::new(m.clone())
        .add_allowed_address("10.0.0.0/33")
        .unwrap_err();
    assert!(e.to_string().contains("\"10.0.0.0/33\""), "{e}");
}
