//! The `metrics` binary end to end: flags, HTTP, errors, signals, and a real Prometheus scraping it.

mod support;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn serves_metrics_with_content_type_gzip_and_errors() {
    let (_p, addr) = start(&["--label", "service=gateway", "-log-level=debug"]);
    let url = format!("http://{addr}/metrics");
    wait_until("process metrics", Duration::from_secs(10), || {
        get(&url).1.contains("process_cpu_seconds_total")
    });
    let mut r = agent().get(&url).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = r.body_mut().read_to_string().unwrap();
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
        "mmo_metrics_series",
        "mmo_metrics_collector_duration_seconds_bucket",
    ]
    .into_iter()
    .chain(SYSTEM_FAMILIES)
    {
        assert!(text.contains(&format!("\n{family}{{")), "no {family} in\n{text}");
    }
    assert!(text.contains("service=\"gateway\""), "{text}");
    let heap: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("system_memory_alloc_bytes{service=\"gateway\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(heap > 0.0, "the binary installs the counting allocator");

    // gzip when asked.
    let mut r = agent().get(&url).header("Accept-Encoding", "gzip").call().unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let mut raw = Vec::new();
    r.body_mut().as_reader().read_to_end(&mut raw).unwrap();
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    assert!(unzipped.contains("# TYPE process_cpu_seconds_total counter\n"));

    assert_eq!(get(&format!("http://{addr}/nope")).0, 404);
    let post = agent().post(&url).send("").unwrap();
    assert_eq!(post.status(), 405);

    if let Some(promtool) = tool("promtool") {
        let out = run_with_stdin(Command::new(promtool).args(["check", "metrics"]), &text);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{said}\n---\n{text}"
        );
    }
    if let Some(python) = tool("python3") {
        let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                      n = sum(len(f.samples) for f in p(sys.stdin.read()))\nprint(n)\n";
        let out = run_with_stdin(Command::new(python).args(["-c", script]), &text);
        assert!(
            out.status.success(),
            "python parser failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let expected = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
        assert_eq!(n, expected);
    }
}

#[test]
fn slow_clients_are_cut_off() {
    use std::io::Write;
    let (_p, addr) = start(&[]);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap(); // never finishes the headers
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(10), "connection held {waited:?}");
    assert!(
        waited >= Duration::from_secs(4),
        "closed after {waited:?}, before the 5 s header timeout"
    );
}

#[test]
fn second_copy_on_the_same_port_fails_with_the_hint() {
    let (_p, addr) = start(&[]);
    let out = Command::new(BIN).args([&format!("-addr={addr}")]).output().unwrap();
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains(&format!("address {addr} is already in use")), "{said}");
    assert!(said.contains(&format!("ss -ltnp | grep {}", addr.port())), "{said}");
    assert!(
        said.contains(&format!("netstat -tuln | grep {}", addr.port())),
        "{said}"
    );
}

#[test]
fn bad_flags_name_the_flag_and_the_form() {
    for (args, flag, form) in [
        (vec!["-interval=5parsecs"], "--interval", "500ms"),
        (vec!["--interval", "0s"], "--interval", "at least 100ms"),
        (vec!["-interval=1ns"], "--interval", "at least 100ms"),
        (vec!["-interval=99ms"], "--interval", "at least 100ms"),
        (vec!["-addr=nonsense"], "--addr", "HOST:PORT"),
        (vec!["--label", "novalue"], "--label", "KEY=VALUE"),
        (vec!["--label", "le=x"], "--label", "reserved"),
        (vec!["--label", "quantile=0.5"], "--label", "reserved"),
        (vec!["--log-level", "loud=="], "--log-level", "error, warn, info"),
        (vec!["--log-level=loud"], "--log-level", "error, warn, info"),
        (
            vec!["--log-level", "info,hyper=loud"],
            "--log-level",
            "error, warn, info",
        ),
    ] {
        // A flag accepted by mistake starts the service, which then runs until stopped: wait a
        // bounded time for the exit, and fail (after killing it) if there is none.
        let mut child = Command::new(BIN)
            .args(&args)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(10) {
                child.kill().unwrap();
                panic!("{args:?} was accepted: the service started and ran");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains(flag) && said.contains(form), "{args:?}: {said}");
    }
}

#[test]
fn sigterm_and_sigint_stop_within_two_seconds() {
    for sig in ["-TERM", "-INT"] {
        let (mut p, _addr) = start(&[]);
        let log = stop_with(&mut p.0, sig, Duration::from_secs(2));
        assert!(log.contains("received, stopping") && log.contains("stopped"), "{log}");
    }
}

#[test]
fn a_real_prometheus_scrapes_the_service() {
    let Some(prometheus) = tool("prometheus") else { return };
    let (_p, addr) = start(&["--label", "instance_name=test"]);
    let prom = Prometheus::start(&prometheus, addr);
    let prom_addr = prom.addr;
    let rss = query(
        prom_addr,
        "max(process_resident_memory_bytes{job=\"mmo_server\", instance_name=\"test\"})",
    );
    assert!(first_value(&rss).is_some_and(|v| v > 1e6), "{rss}");
    let threads = query(prom_addr, "process_threads{job=\"mmo_server\"} >= 2");
    assert!(first_value(&threads).is_some(), "{threads}");
}
