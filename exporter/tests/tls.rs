//! `--web.config.file` (the exporter-toolkit format) against real clients: certificates made by
//! the `openssl` command, requests by `curl`, a real Prometheus scraping over TLS with basic auth,
//! client certificates, certificate rotation under a running service, slow handshakes, and bad
//! files.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, poll_until, wait_until, Proc, BIN};

/// The test's password, and its bcrypt hash at the lowest cost (the cost only slows the test).
const USER: &str = "prometheus";
const PASSWORD: &str = "s3cret:with:colons";

fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// The hash `htpasswd -nbBC 4 user password` makes (the README's recipe; Debian's
/// apache2-utils, which scripts/test.sh installs). Without `htpasswd` outside scripts/test.sh,
/// the bcrypt crate's hash stands in.
fn htpasswd_hash(user: &str, password: &str) -> String {
    let Some(htpasswd) = support::tool("htpasswd") else {
        return hash(password);
    };
    let out = Command::new(htpasswd)
        .args(["-nbBC", "4", user, password])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "htpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let (name, hash) = line.trim().split_once(':').unwrap();
    assert_eq!(name, user);
    assert!(hash.starts_with("$2y$04$"), "{hash}");
    hash.to_owned()
}

/// Runs `openssl` with `args` in `dir`; panics with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority in `dir`: `{name}.crt` and `{name}.key`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A certificate `{name}.crt` with its key `{name}.key` signed by the CA `ca`, for 127.0.0.1 and
/// localhost (`server`) or a client (`client`).
fn make_leaf(dir: &Path, ca: &str, name: &str, usage: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    let ext = dir.join(format!("{name}.ext"));
    let eku = if usage == "server" { "serverAuth" } else { "clientAuth" };
    std::fs::write(
        &ext,
        format!("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage={eku}\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// A folder with a CA `ca`, a server certificate `server` and a client certificate `client` signed
/// by it, and a second CA `other` with its own server (`other-server`) and client
/// (`other-client`) certificates.
fn pki() -> PathBuf {
    let dir = support::tempdir();
    make_ca(&dir, "ca");
    make_leaf(&dir, "ca", "server", "server");
    make_leaf(&dir, "ca", "client", "client");
    make_ca(&dir, "other");
    make_leaf(&dir, "other", "other-server", "server");
    make_leaf(&dir, "other", "other-client", "client");
    dir
}

/// What curl got: the status code (0 when no HTTP answer came), the headers and body, and its
/// error output.
struct Reply {
    code: u16,
    text: String,
    stderr: String,
}

/// `curl -i` with `args` to `url` (10 s at most).
fn curl(url: &str, args: &[&str]) -> Reply {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        code,
        text,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `metrics` binary with `--web.config.file=config` on a free port; waits until `/health`
/// answers 200 over https to a client that trusts `ca`.
fn start(config: &Path, ca: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(BIN)
        .args(["--addr", &addr.to_string(), "--interval", "200ms"])
        .arg(format!("--web.config.file={}", config.display()))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    let cacert = ca.to_str().unwrap();
    wait_until("https /health", Duration::from_secs(20), || {
        curl(&format!("https://{addr}/health"), &["--cacert", cacert]).code == 200
    });
    (p, addr)
}

fn write_config(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

fn creds() -> String {
    format!("{USER}:{PASSWORD}")
}

#[test]
fn curl_over_tls_with_basic_auth() {
    if support::tool("curl").is_none() || support::tool("openssl").is_none() {
        return;
    }
    let dir = pki();
    // Relative names: relative to the configuration file's folder.
    let config = write_config(
        &dir,
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  {USER}: {}\n  alice: {}\n",
            hash(PASSWORD),
            htpasswd_hash("alice", "alice's")
        ),
    );
    let ca = dir.join("ca.crt");
    let cacert = ca.to_str().unwrap();
    let (_p, addr) = start(&config, &ca, &["--receive"]);
    let url = |path: &str| format!("https://{addr}{path}");

    let health = curl(&url("/health"), &["--cacert", cacert]);
    assert_eq!(health.code, 200, "/health needs no credentials: {}", health.text);

    for (what, args) in [
        ("no credentials", vec![]),
        ("a wrong password", vec!["-u", "prometheus:wrong"]),
        ("an unknown user", vec!["-u", "mallory:s3cret:with:colons"]),
        ("another user's password", vec!["-u", "alice:s3cret:with:colons"]),
    ] {
        for path in ["/metrics", "/", "/nowhere"] {
            let mut a = vec!["--cacert", cacert];
            a.extend(&args);
            let r = curl(&url(path), &a);
            assert_eq!(r.code, 401, "{path} with {what}: {}", r.text);
            assert!(
                r.text.to_ascii_lowercase().contains("www-authenticate: basic"),
                "{path} with {what}: {}",
                r.text
            );
            assert!(
                r.text.to_ascii_lowercase().contains("x-frame-options: deny"),
                "the configured header on a 401: {}",
                r.text
            );
        }
    }
    let c = creds();
    let ok = curl(&url("/metrics"), &["--cacert", cacert, "-u", &c]);
    assert_eq!(ok.code, 200, "{}", ok.text);
    assert!(
        ok.text.contains("# TYPE mmo_metrics_http_connections gauge"),
        "{}",
        ok.text
    );
    assert!(
        ok.text.to_ascii_lowercase().contains("x-frame-options: deny"),
        "{}",
        ok.text
    );
    // Cached now: the same credentials again, and the second user.
    assert_eq!(curl(&url("/metrics"), &["--cacert", cacert, "-u", &c]).code, 200);
    assert_eq!(
        curl(&url("/"), &["--cacert", cacert, "-u", &c]).code,
        200,
        "the live view"
    );
    assert_eq!(
        curl(&url("/metrics"), &["--cacert", cacert, "-u", "alice:alice's"]).code,
        200
    );
    assert_eq!(
        curl(&url("/metrics"), &["--cacert", cacert, "-u", "alice:wrong"]).code,
        401,
        "a cached user with another password"
    );

    // The remote write receiver is behind the credentials too.
    let write = |auth: &[&str]| {
        let mut a = vec!["--cacert", cacert, "-X", "POST", "--data-binary", "x"];
        a.extend(auth);
        curl(&url("/api/v1/write"), &a)
    };
    let r = write(&[]);
    assert_eq!(r.code, 401, "remote write without credentials: {}", r.text);
    let r = write(&["-u", &c]);
    assert!(
        r.code != 401 && (400..500).contains(&r.code),
        "remote write with credentials reaches the receiver, which refuses the body: {}",
        r.text
    );

    // TLS 1.2 is accepted (the default minimum), and TLS 1.3.
    let tls12 = curl(&url("/health"), &["--cacert", cacert, "--tlsv1.2", "--tls-max", "1.2"]);
    assert_eq!(tls12.code, 200, "{}", tls12.stderr);
    let tls13 = curl(&url("/health"), &["--cacert", cacert, "--tlsv1.3"]);
    assert_eq!(tls13.code, 200, "{}", tls13.stderr);
    // A client that trusts another CA refuses the certificate.
    let other = dir.join("other.crt");
    let r = curl(&url("/health"), &["--cacert", other.to_str().unwrap()]);
    assert_eq!(r.code, 0, "the server's certificate is not from `other`: {}", r.text);

    // Plain HTTP on the TLS port gets no HTTP answer.
    let r = curl(&format!("http://{addr}/health"), &[]);
    assert_eq!(r.code, 0, "plain HTTP on the TLS port: {}", r.text);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&got)
    );

    // Each failed handshake is counted by what failed.
    let metrics = curl(&url("/metrics"), &["--cacert", cacert, "-u", &c]).text;
    let failed = |error: &str| {
        sample(
            &metrics,
            &format!("mmo_metrics_http_tls_handshake_errors_total{{error=\"{error}\"}}"),
        )
    };
    assert_eq!(
        failed("not_tls"),
        2.0,
        "curl's and the raw plain-HTTP request\n{metrics}"
    );
    assert_eq!(
        failed("peer_alert"),
        1.0,
        "the client that trusts another CA\n{metrics}"
    );
}

/// The value of the sample `series` (name and labels as written) in a text exposition; 0 when
/// it is absent.
fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn min_version_and_cipher_suites() {
    if support::tool("curl").is_none() || support::tool("openssl").is_none() {
        return;
    }
    let dir = pki();
    let ca = dir.join("ca.crt");
    let cacert = ca.to_str().unwrap();
    let config = write_config(
        &dir,
        "tls13.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n",
    );
    let (_p, addr) = start(&config, &ca, &[]);
    let url = format!("https://{addr}/health");
    let r = curl(&url, &["--cacert", cacert, "--tlsv1.2", "--tls-max", "1.2"]);
    assert_eq!(r.code, 0, "TLS 1.2 under min_version TLS13: {}", r.text);
    assert_eq!(curl(&url, &["--cacert", cacert, "--tlsv1.3"]).code, 200);

    let config = write_config(
        &dir,
        "suites.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS12\n  \
         cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n  prefer_server_cipher_suites: true\n",
    );
    let (_p2, addr) = start(&config, &ca, &[]);
    let url = format!("https://{addr}/health");
    let ok = curl(
        &url,
        &["--cacert", cacert, "--ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384", "-v"],
    );
    assert_eq!(ok.code, 200, "{}", ok.stderr);
    assert!(ok.stderr.contains("ECDHE-ECDSA-AES256-GCM-SHA384"), "{}", ok.stderr);
    let r = curl(
        &url,
        &["--cacert", cacert, "--ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"],
    );
    assert_eq!(r.code, 0, "a suite not in cipher_suites: {}", r.text);
    let r = curl(&url, &["--cacert", cacert, "--tlsv1.3"]);
    assert_eq!(r.code, 0, "TLS 1.3 above max_version TLS12: {}", r.text);
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let Some(prometheus) = support::tool("prometheus") else {
        return;
    };
    if support::tool("openssl").is_none() || support::tool("curl").is_none() {
        return;
    }
    let dir = pki();
    let config = write_config(
        &dir,
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  {USER}: {}\n",
            dir.join("server.crt").display(),
            dir.join("server.key").display(),
            hash(PASSWORD)
        ),
    );
    let ca = dir.join("ca.crt");
    let (_p, addr) = start(&config, &ca, &[]);
    let job = format!(
        "    scheme: https\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: {USER}\n      \
         password: '{PASSWORD}'\n",
        ca.display()
    );
    // Waits until up{job="mmo_server"} is 1.
    let prom = support::Prometheus::start_with_job_config(&prometheus, addr, &job, "", &[]);
    let samples = support::first_value(&support::query(prom.addr, "scrape_samples_scraped{job=\"mmo_server\"}"));
    assert!(samples.is_some_and(|n| n > 10.0), "samples scraped: {samples:?}");
    // The service counts a scrape after answering it: the second scrape carries the first.
    let counted = poll_until(Duration::from_secs(15), || {
        let scrapes = support::query(prom.addr, "mmo_metrics_scrapes_total{code=\"200\"}");
        support::first_value(&scrapes).is_some_and(|n| n >= 1.0)
    });
    assert!(
        counted,
        "the service's own count of good scrapes never reached Prometheus"
    );
}

#[test]
fn client_certificates() {
    if support::tool("curl").is_none() || support::tool("openssl").is_none() {
        return;
    }
    let dir = pki();
    let ca = dir.join("ca.crt");
    let cacert = ca.to_str().unwrap();
    let cert = |name: &str| {
        (
            dir.join(format!("{name}.crt")).to_str().unwrap().to_owned(),
            dir.join(format!("{name}.key")).to_str().unwrap().to_owned(),
        )
    };
    let (good_crt, good_key) = cert("client");
    let (bad_crt, bad_key) = cert("other-client");
    let with = |crt: &str, key: &str| {
        vec!["--cacert", cacert, "--cert", crt, "--key", key]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let without = vec!["--cacert".to_owned(), cacert.to_owned()];
    let good = with(&good_crt, &good_key);
    let bad = with(&bad_crt, &bad_key);
    // (client_auth_type, code without a certificate, with a good one, with one of another CA);
    // 0: the handshake fails.
    for (auth, none, good_code, bad_code) in [
        ("RequireAndVerifyClientCert", 0, 200, 0),
        ("VerifyClientCertIfGiven", 200, 200, 0),
        ("RequireAnyClientCert", 0, 200, 200),
        ("RequestClientCert", 200, 200, 200),
    ] {
        let ca_line = if auth.contains("Verify") {
            "  client_ca_file: ca.crt\n"
        } else {
            ""
        };
        let config = write_config(
            &dir,
            &format!("{auth}.yml"),
            &format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: {auth}\n{ca_line}"
            ),
        );
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let _p = Proc(
            Command::new(BIN)
                .args(["--addr", &addr.to_string()])
                .arg(format!("--web.config.file={}", config.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let url = format!("https://{addr}/metrics");
        wait_until("the service", Duration::from_secs(20), || {
            curl(&url, &as_strs(&good)).code == 200
        });
        let r = curl(&url, &as_strs(&without));
        assert_eq!(r.code, none, "{auth} without a certificate: {} {}", r.text, r.stderr);
        let r = curl(&url, &as_strs(&good));
        assert_eq!(
            r.code, good_code,
            "{auth} with a certificate of the CA: {} {}",
            r.text, r.stderr
        );
        let r = curl(&url, &as_strs(&bad));
        assert_eq!(
            r.code, bad_code,
            "{auth} with a certificate of another CA: {} {}",
            r.text, r.stderr
        );
        // A refused client certificate, or none where one is required, is counted as such.
        let refused = [none, bad_code].iter().filter(|c| **c == 0).count() as f64;
        let metrics = curl(&url, &as_strs(&good)).text;
        assert_eq!(
            sample(
                &metrics,
                "mmo_metrics_http_tls_handshake_errors_total{error=\"client_certificate\"}"
            ),
            refused,
            "{auth}\n{metrics}"
        );
    }
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Replaces `to` with `from` the way rotation jobs do: a new file renamed over the old one.
fn replace(dir: &Path, from: &str, to: &str) {
    let tmp = dir.join(format!("{to}.tmp"));
    std::fs::copy(dir.join(from), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(to)).unwrap();
}

#[test]
fn certificate_rotation_without_restart() {
    if support::tool("curl").is_none() || support::tool("openssl").is_none() {
        return;
    }
    let dir = pki();
    make_ca(&dir, "third");
    make_leaf(&dir, "third", "third-server", "server");
    replace(&dir, "server.crt", "live.crt");
    replace(&dir, "server.key", "live.key");
    let config = write_config(
        &dir,
        "web.yml",
        "tls_server_config:\n  cert_file: live.crt\n  key_file: live.key\n",
    );
    let ca = dir.join("ca.crt");
    let other = dir.join("other.crt");
    let (mut p, addr) = start(&config, &ca, &[]);
    let url = format!("https://{addr}/health");
    let trusts = |ca: &Path| curl(&url, &["--cacert", ca.to_str().unwrap()]).code == 200;
    assert!(trusts(&ca) && !trusts(&other));

    replace(&dir, "other-server.key", "live.key");
    replace(&dir, "other-server.crt", "live.crt");
    assert!(
        poll_until(Duration::from_secs(10), || trusts(&other)),
        "new connections never got the new certificate"
    );
    assert!(!trusts(&ca), "the old certificate is still served");

    // A certificate whose key is not there yet: the service keeps the last good pair.
    replace(&dir, "third-server.crt", "live.crt");
    for _ in 0..5 {
        assert!(
            trusts(&other),
            "the previous certificate is kept while the files do not match"
        );
    }
    replace(&dir, "third-server.key", "live.key");
    let third = dir.join("third.crt");
    assert!(
        poll_until(Duration::from_secs(10), || trusts(&third)),
        "the fixed pair was never taken"
    );

    let _ = p.0.kill();
    let mut log = String::new();
    p.0.stdout.take().unwrap().read_to_string(&mut log).unwrap();
    let bad = log.matches("keep the previous certificate").count();
    assert_eq!(bad, 1, "the bad pair is logged once, whatever the connections: {log}");
    assert!(log.contains("does not go with"), "{log}");
}

#[test]
fn slow_handshakes_are_cut_while_a_scrape_succeeds() {
    if support::tool("curl").is_none() || support::tool("openssl").is_none() {
        return;
    }
    let dir = pki();
    let config = write_config(
        &dir,
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  {USER}: {}\n",
            hash(PASSWORD)
        ),
    );
    let header_read = Duration::from_secs(2);
    let (_manager, exporter) = serve_in_process(&config, header_read);
    let addr = exporter.local_addr();
    // 500 clients that start a TLS handshake (the first bytes of a ClientHello record) and stall.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01]).unwrap();
            s
        })
        .collect();
    let ca = dir.join("ca.crt");
    let c = creds();
    let scrape = curl(
        &format!("https://{addr}/metrics"),
        &["--cacert", ca.to_str().unwrap(), "-u", &c],
    );
    assert_eq!(
        scrape.code, 200,
        "a scrape among 500 stalled handshakes: {}",
        scrape.stderr
    );
    // Every stalled client is closed: at the connection cap to make room, or at the header-read
    // timeout.
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                // A TLS alert before the close.
                Ok(_) => continue,
            }
        }
    }
    let all_closed = started.elapsed();
    assert!(
        all_closed < header_read + Duration::from_secs(5),
        "the stalled handshakes were closed after {all_closed:?}, the header-read timeout is {header_read:?}"
    );
    let metrics = curl(
        &format!("https://{addr}/metrics"),
        &["--cacert", ca.to_str().unwrap(), "-u", &c],
    );
    let cut: f64 = metrics
        .text
        .lines()
        .find(|l| l.starts_with("mmo_metrics_http_timeouts_total{timeout=\"header_read\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(
        cut >= 200.0,
        "handshakes cut by the header-read timeout: {cut}\n{}",
        metrics.text
    );
}

/// An exporter in this process with the web configuration `config` and a header-read timeout
/// of `header_read`, on a free loopback port.
fn serve_in_process(
    config: &Path,
    header_read: Duration,
) -> (mmo_metrics::MetricsManager, mmo_metrics_exporter::Exporter) {
    let manager = mmo_metrics::MetricsManager::new();
    let exporter = mmo_metrics_exporter::ExporterBuilder::new(manager.clone())
        .address("127.0.0.1:0".parse().unwrap())
        .header_read_timeout(header_read)
        .web_config_file(config)
        .serve()
        .unwrap();
    (manager, exporter)
}

/// A client that spends most of the header-read timeout on its handshake, then sends its request
/// headers slowly: the handshake and the first request share the one timeout, so the connection
/// is closed before the request is whole.
#[test]
fn the_handshake_and_the_first_request_share_the_header_read_timeout() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;

    if support::tool("openssl").is_none() {
        return;
    }
    let dir = pki();
    let config = write_config(
        &dir,
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let header_read = Duration::from_secs(2);
    let (manager, exporter) = serve_in_process(&config, header_read);
    let addr = exporter.local_addr();

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    // Sends `request` in two halves `pause` apart after a handshake whose ClientHello also comes
    // in two halves `pause` apart; returns what the server answered.
    let exchange = |pause: Duration| -> Vec<u8> {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let name = ServerName::IpAddress(addr.ip().into());
        let mut tls = rustls::ClientConnection::new(Arc::clone(&client), name).unwrap();
        let mut hello = Vec::new();
        tls.write_tls(&mut hello).unwrap();
        tcp.write_all(&hello[..8]).unwrap();
        std::thread::sleep(pause);
        tcp.write_all(&hello[8..]).unwrap();
        while tls.is_handshaking() {
            if tls.complete_io(&mut tcp).is_err() {
                return Vec::new();
            }
        }
        let request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let mut send = |bytes: &[u8]| {
            tls.writer().write_all(bytes).unwrap();
            while tls.wants_write() {
                if tls.write_tls(&mut tcp).is_err() {
                    return false;
                }
            }
            true
        };
        if !send(&request[..20]) {
            return Vec::new();
        }
        std::thread::sleep(pause);
        if !send(&request[20..]) {
            return Vec::new();
        }
        let mut got = Vec::new();
        let _ = rustls::Stream::new(&mut tls, &mut tcp).read_to_end(&mut got);
        got
    };
    // Each part well within the timeout, the two together too: answered.
    let quick = exchange(Duration::from_millis(200));
    assert!(
        quick.starts_with(b"HTTP/1.1 200"),
        "a prompt client: {:?}",
        String::from_utf8_lossy(&quick)
    );
    // Each part within the timeout, the two together past it: closed, never answered.
    let slow = exchange(header_read * 3 / 5);
    assert!(
        !slow.starts_with(b"HTTP/"),
        "a handshake and a request that together took longer than the header-read timeout were answered: {:?}",
        String::from_utf8_lossy(&slow)
    );
    let cut = manager
        .counter(mmo_metrics_exporter::TIMEOUTS_METRIC, &["header_read"])
        .map(|c| c.get())
        .unwrap_or(0);
    assert_eq!(cut, 1, "the slow client counted as a header-read timeout");
}

#[test]
fn bad_files_stop_the_start_with_exit_2() {
    if support::tool("openssl").is_none() {
        return;
    }
    let dir = pki();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "syntax.yml",
            "tls_server_config: [\n".into(),
            "not a valid web configuration",
        ),
        (
            "missing-cert.yml",
            "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n".into(),
            "nowhere.crt: cannot read it",
        ),
        (
            "mismatch.yml",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other-server.key\n".into(),
            "does not go with cert_file",
        ),
        (
            "unknown.yml",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth: Yes\n".into(),
            "unknown field `client_auth`",
        ),
        (
            "not-a-hash.yml",
            "basic_auth_users:\n  prometheus: hunter2\n".into(),
            "not a bcrypt hash",
        ),
        (
            "bad-key.yml",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n".into(),
            "expected a PEM private key",
        ),
    ];
    for (i, (name, yaml, problem)) in cases.iter().enumerate() {
        let path = write_config(&dir, name, yaml);
        // Both flag forms.
        let flag = if i % 2 == 0 {
            "-web.config.file"
        } else {
            "--web.config.file"
        };
        let out = run_bounded(
            Command::new(BIN)
                .args(["--addr", "127.0.0.1:0"])
                .arg(format!("{flag}={}", path.display())),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "{name}: the message names the file: {stderr}"
        );
        assert!(stderr.contains(problem), "{name}: expected `{problem}` in: {stderr}");
    }
    let missing = dir.join("no-such-web.yml");
    let out = run_bounded(Command::new(BIN).arg(format!("--web.config.file={}", missing.display())));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no-such-web.yml") && stderr.contains("cannot read it"),
        "{stderr}"
    );
}

/// Runs a command that should exit on its own; kills it after 20 s.
fn run_bounded(cmd: &mut Command) -> std::process::Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn health_answers_while_wrong_passwords_wait_for_bcrypt() {
    if support::tool("curl").is_none() || support::tool("openssl").is_none() {
        return;
    }
    let dir = pki();
    // Cost 10, as `htpasswd -nbBC 10` makes: each wrong password costs a bcrypt run of that cost.
    let config = write_config(
        &dir,
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  {USER}: {}\n",
            bcrypt::hash(PASSWORD, 10).unwrap()
        ),
    );
    let ca = dir.join("ca.crt");
    let (_p, addr) = start(&config, &ca, &[]);
    let cacert = ca.to_str().unwrap().to_owned();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let wrong: Vec<_> = (0..10)
        .map(|i| {
            let (cacert, done) = (cacert.clone(), std::sync::Arc::clone(&done));
            std::thread::spawn(move || {
                let r = curl(
                    &format!("https://{addr}/metrics"),
                    &["--cacert", &cacert, "-u", &format!("{USER}:wrong{i}")],
                );
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                r.code
            })
        })
        .collect();
    // Once a wrong password has reached the service, /health answers while the rest wait for
    // their turn at bcrypt (one run at a time).
    std::thread::sleep(Duration::from_millis(200));
    let health = curl(&format!("https://{addr}/health"), &["--cacert", &cacert]);
    let finished_by_then = done.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(health.code, 200, "{}", health.stderr);
    assert!(
        finished_by_then < 10,
        "/health answered only after all {finished_by_then} bcrypt checks"
    );
    for w in wrong {
        assert_eq!(w.join().unwrap(), 401);
    }
}
