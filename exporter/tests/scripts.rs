//! scripts/start_metrics.sh and scripts/stop_metrics.sh, run for real (on a temporary run
//! directory and a loopback port, with the test build of the binary instead of a release build).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn script(name: &str, run_dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(repo().join("scripts").join(name))
        .args(args)
        .env("METRICS_RUN_DIR", run_dir)
        .env("METRICS_BIN", env!("CARGO_BIN_EXE_metrics"))
        .output()
        .unwrap();
    eprintln!(
        "{name} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn start_refuses_a_second_copy_and_stop_stops_by_pid_file() {
    let run_dir = std::env::temp_dir().join(format!("mmo-metrics-scripts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("-addr=127.0.0.1:{port}");

    let out = script("start_metrics.sh", &run_dir, &[&addr, "-interval=1s"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains(&format!("http://127.0.0.1:{port}/metrics")),
        "{}",
        said(&out)
    );
    assert!(run_dir.join("bin/metrics").is_file(), "installed as bin/metrics");
    let pid: u32 = std::fs::read_to_string(run_dir.join("logs/metrics.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let log = std::fs::read_to_string(run_dir.join("logs/metrics.log")).unwrap();
    assert!(log.contains("metrics service listening on"), "{log}");

    let again = script("start_metrics.sh", &run_dir, &[&addr]);
    assert!(!again.status.success());
    assert!(said(&again).contains("already running"), "{}", said(&again));

    let stop = script("stop_metrics.sh", &run_dir, &[]);
    assert!(stop.status.success(), "{}", said(&stop));
    assert!(said(&stop).contains(&format!("stopped (pid {pid})")), "{}", said(&stop));
    assert!(!run_dir.join("logs/metrics.pid").exists());
    std::thread::sleep(Duration::from_millis(100));
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.split(' ').nth(2) == Some("Z"),
        "pid {pid} still runs: {state}"
    );
    let log = std::fs::read_to_string(run_dir.join("logs/metrics.log")).unwrap();
    assert!(log.contains("SIGTERM received, stopping"), "{log}");

    let twice = script("stop_metrics.sh", &run_dir, &[]);
    assert!(twice.status.success());
    assert!(said(&twice).contains("not running"), "{}", said(&twice));
    let _ = std::fs::remove_dir_all(&run_dir);
}
