//! The endpoint with a web configuration (TLS and basic auth) against plain HTTP.
//!
//! - `scrape/{http,https_basic_auth}`: one `GET /metrics` on a kept-alive connection, request
//!   written and whole response read, for an exposition the size of the `metrics --demo`
//!   service's (about 300 lines, 18 KB; the bytes go to stderr as `bench-exposition-bytes`). The
//!   TLS case sends basic-auth credentials on every request; the first request checks them with
//!   bcrypt, every later one hits the cache, so the figure is the cached check. The client is the
//!   same code over a `TcpStream` or a rustls `StreamOwned`.
//! - `handshake/tls13_ecdsa_p256`: a new connection, a full TLS 1.3 handshake (no resumption),
//!   `GET /health`, close. Client and server run one after the other, each on its own core, so
//!   the time is an upper bound of the server's CPU time per handshake on its one exporter thread:
//!   handshakes per second on one core is at least 1 / this time.
//!
//! Certificates are made at the start with the `openssl` command (an ECDSA P-256 CA and server
//! certificate for 127.0.0.1).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use mmo_metrics::MetricsManager;
use mmo_metrics_exporter::{Exporter, ExporterBuilder};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A registry whose text exposition is about the size of `metrics --demo`'s: 9 counters, 21
/// gauges, 5 histograms, with a few label values each.
fn registry() -> MetricsManager {
    let m = MetricsManager::new();
    for i in 0..9 {
        let name = format!("demo_counter_{i}_total");
        m.register_counter(&name, "A counter of the demo's size.", &["kind"])
            .unwrap();
        for v in ["login", "move", "chat", "trade"] {
            m.increment_counter(&name, 12_345 + i, &[v]).unwrap();
        }
    }
    for i in 0..21 {
        let name = format!("demo_gauge_{i}");
        m.register_gauge(&name, "A gauge of the demo's size.", &["zone"])
            .unwrap();
        for v in ["north", "south", "east", "west"] {
            m.set_gauge(&name, 42.5 + f64::from(i), &[v]).unwrap();
        }
    }
    let buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
    for i in 0..5 {
        let name = format!("demo_latency_{i}_seconds");
        m.register_histogram(&name, "A histogram of the demo's size.", &["op"], &buckets)
            .unwrap();
        for v in ["redis", "db"] {
            for k in 0..100 {
                m.observe_histogram(&name, f64::from(k) / 200.0, &[v]).unwrap();
            }
        }
    }
    m
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 in a new folder.
fn certificates() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mmo-metrics-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=bench-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    openssl(&dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    dir
}

/// Writes a GET and reads the whole response (Content-Length or chunked); returns the body's
/// length.
fn get<S: Read + Write>(stream: &mut BufReader<S>, path: &str, auth: Option<&str>, close: bool) -> usize {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: Basic {a}\r\n"));
    let connection = if close { "Connection: close\r\n" } else { "" };
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{connection}\r\n");
    stream.get_mut().write_all(request.as_bytes()).unwrap();
    stream.get_mut().flush().unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "status: {line:?}");
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        stream.read_line(&mut line).unwrap();
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = Some(v.trim().parse::<usize>().unwrap());
        }
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim_end().split(';').next().unwrap(), 16).unwrap();
            let start = body.len();
            body.resize(start + n + 2, 0);
            stream.read_exact(&mut body[start..]).unwrap();
            body.truncate(start + n);
            if n == 0 {
                break;
            }
        }
    } else {
        body.resize(length.expect("content-length or chunked"), 0);
        stream.read_exact(&mut body).unwrap();
    }
    body.len()
}

fn tls_client(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every handshake in the handshake bench is a full one.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect_tls(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> BufReader<Tls> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    BufReader::new(rustls::StreamOwned::new(conn, tcp))
}

fn serve(manager: MetricsManager, web_config: Option<&Path>) -> Exporter {
    let mut b = ExporterBuilder::new(manager).address("127.0.0.1:0".parse().unwrap());
    if let Some(path) = web_config {
        b = b.web_config_file(path);
    }
    b.serve().unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = certificates();
    let hash = bcrypt::hash("bench password", 10).unwrap();
    let config = dir.join("web.yml");
    std::fs::write(
        &config,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  bench: {hash}\n"
        ),
    )
    .unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("bench:bench password");
    let plain = serve(registry(), None);
    let secured = serve(registry(), Some(&config));
    let client = tls_client(&dir.join("ca.crt"));

    let mut http = BufReader::new(TcpStream::connect(plain.local_addr()).unwrap());
    http.get_ref().set_nodelay(true).unwrap();
    let bytes = get(&mut http, "/metrics", None, false);
    eprintln!("bench-exposition-bytes: {bytes}");
    let mut https = connect_tls(secured.local_addr(), &client);
    // The first request runs bcrypt; the timed ones find the credentials cached.
    let secured_bytes = get(&mut https, "/metrics", Some(&auth), false);
    assert!(
        secured_bytes.abs_diff(bytes) < bytes / 20,
        "the two expositions differ only in the exporters' self-metrics: {secured_bytes} and {bytes} bytes"
    );

    let mut g = c.benchmark_group("scrape");
    g.bench_function("http", |b| b.iter(|| get(&mut http, "/metrics", None, false)));
    // A new connection: the first one has been idle longer than the keep-alive timeout by now.
    let mut https = connect_tls(secured.local_addr(), &client);
    get(&mut https, "/metrics", Some(&auth), false);
    g.bench_function("https_basic_auth", |b| {
        b.iter(|| get(&mut https, "/metrics", Some(&auth), false))
    });
    g.finish();

    let mut g = c.benchmark_group("handshake");
    let addr = secured.local_addr();
    g.bench_function("tls13_ecdsa_p256", |b| {
        b.iter(|| {
            let mut s = connect_tls(addr, &client);
            get(&mut s, "/health", None, true)
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
