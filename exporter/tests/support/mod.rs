//! Helpers shared by the tests that run the `metrics` binary and a real Prometheus.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_metrics");

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

pub fn get(url: &str) -> (u16, String) {
    match agent().get(url).call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `ok` every 100 ms until it holds (true) or `timeout` passes (false).
pub fn poll_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn start(args: &[&str]) -> (Proc, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(BIN)
        .args(["--addr", &addr.to_string()])
        .args(if args.contains(&"--interval") {
            &[][..]
        } else {
            &["--interval", "200ms"][..]
        })
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the metrics binary");
    let p = Proc(child);
    wait_until("/health", Duration::from_secs(20), || {
        get(&format!("http://{addr}/health")).0 == 200
    });
    (p, addr)
}

/// A tool the tests need; under MMO_REQUIRE_TOOLS (scripts/test.sh) its absence is a failure.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("MMO_REQUIRE_TOOLS").is_none(),
            "`{name}` is required (scripts/test.sh installs it)"
        );
        eprintln!("NOTICE: `{name}` not found; this check is not run (scripts/test.sh installs it)");
    }
    found
}

pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut c = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

pub fn query(prom: SocketAddr, q: &str) -> serde_json::Value {
    let mut r = agent()
        .get(&format!("http://{prom}/api/v1/query"))
        .query("query", q)
        .call()
        .unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

pub fn first_value(v: &serde_json::Value) -> Option<f64> {
    v["data"]["result"].get(0)?["value"][1].as_str()?.parse().ok()
}

pub fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("mmo-metrics-prom-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A Prometheus on loopback with a temporary config (job `mmo_server`, 1 s scrapes) and storage;
/// killed and cleaned up on drop.
pub struct Prometheus {
    pub addr: SocketAddr,
    dir: PathBuf,
    _proc: Proc,
    /// Keep `dir` on drop (a receiver restarted on the same data).
    keep_dir: bool,
}

impl Prometheus {
    /// Starts it scraping `target`, and waits until `up{job="mmo_server"}` is 1.
    pub fn start(binary: &std::path::Path, target: SocketAddr) -> Self {
        Self::start_with(binary, target, &[])
    }

    /// [`Prometheus::start`] with more command-line flags (e.g.
    /// `--enable-feature=native-histograms`).
    pub fn start_with(binary: &std::path::Path, target: SocketAddr, flags: &[&str]) -> Self {
        Self::start_with_config(binary, target, "", flags)
    }

    /// [`Prometheus::start_with`] with more top-level configuration appended (e.g. a
    /// `remote_write:` section).
    pub fn start_with_config(binary: &std::path::Path, target: SocketAddr, extra: &str, flags: &[&str]) -> Self {
        Self::start_with_job_config(binary, target, "", extra, flags)
    }

    /// [`Prometheus::start_with_config`] with more settings in the `mmo_server` scrape job, each
    /// line indented by four spaces (e.g. `    scheme: https`).
    pub fn start_with_job_config(
        binary: &std::path::Path,
        target: SocketAddr,
        job: &str,
        extra: &str,
        flags: &[&str],
    ) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mmo_server\n{job}    static_configs:\n      - targets: ['{target}']\n{extra}"
        );
        let me = Self::spawn(binary, addr, tempdir(), &config, flags);
        let mut last = serde_json::Value::Null;
        let deadline = Instant::now() + Duration::from_secs(60);
        while first_value(&last) != Some(1.0) {
            assert!(
                Instant::now() < deadline,
                "up{{job=\"mmo_server\"}} never became 1: {last}\n{}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(250));
            last = query(me.addr, "up{job=\"mmo_server\"}");
        }
        me
    }

    /// A Prometheus with no scrape target that accepts remote write
    /// (`--web.enable-remote-write-receiver`) at `http://{addr}/api/v1/write`, on a free port with
    /// a new temporary directory; waits until it is ready.
    pub fn receiver(binary: &std::path::Path, flags: &[&str]) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::receiver_at(binary, addr, tempdir(), flags)
    }

    /// [`Prometheus::receiver`] on `addr` with its config and data in `dir` (kept from a
    /// receiver stopped by [`Prometheus::kill_keeping_data`]).
    pub fn receiver_at(binary: &std::path::Path, addr: SocketAddr, dir: PathBuf, flags: &[&str]) -> Self {
        let flags: Vec<&str> = std::iter::once("--web.enable-remote-write-receiver")
            .chain(flags.iter().copied())
            .collect();
        Self::spawn(binary, addr, dir, "global:\n  evaluation_interval: 1s\n", &flags)
    }

    /// Writes `config` to `dir/prometheus.yml`, starts Prometheus on `addr` with its data in
    /// `dir/data` and its output appended to `dir/prometheus.log`, and waits until it is ready.
    fn spawn(binary: &std::path::Path, addr: SocketAddr, dir: PathBuf, config: &str, flags: &[&str]) -> Self {
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("prometheus.log"))
            .unwrap();
        let proc = Proc(
            Command::new(binary)
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .args(flags)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let me = Self {
            addr,
            dir,
            _proc: proc,
            keep_dir: false,
        };
        wait_until("Prometheus ready", Duration::from_secs(60), || {
            get(&format!("http://{addr}/-/ready")).0 == 200
        });
        me
    }

    /// Kills it (SIGKILL, no shutdown) and returns its address and directory, which stays.
    pub fn kill_keeping_data(mut self) -> (SocketAddr, PathBuf) {
        let _ = self._proc.0.kill();
        let _ = self._proc.0.wait();
        self.keep_dir = true;
        (self.addr, self.dir.clone())
    }

    /// What Prometheus logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self._proc.0.kill();
        let _ = self._proc.0.wait();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The seed's system family.
pub const SYSTEM_FAMILIES: [&str; 6] = [
    "system_memory_alloc_bytes",
    "system_memory_total_alloc_bytes",
    "system_memory_sys_bytes",
    "system_memory_heap_objects",
    "system_goroutines",
    "system_cpu_threads",
];

/// The seed's MMO families (connection, message, Redis, database), as exposed.
pub const MMO_FAMILIES: [&str; 12] = [
    "connection_count",
    "connection_rate",
    "connection_errors_total",
    "messages_total",
    "message_size_bytes",
    "message_process_time",
    "redis_operations_total",
    "redis_errors_total",
    "redis_connection_pool",
    "database_operations_total",
    "database_query_time",
    "database_errors_total",
];

/// Sends `signal` (e.g. `-TERM`) to `child`, asserts that it exits successfully within `limit`,
/// and returns what it printed on stdout.
pub fn stop_with(child: &mut Child, signal: &str, limit: Duration) -> String {
    use std::io::Read;
    let started = Instant::now();
    assert!(Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{signal}: exit {status}");
            break;
        }
        assert!(started.elapsed() < limit, "{signal}: still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut log = String::new();
    child.stdout.take().unwrap().read_to_string(&mut log).unwrap();
    log
}
