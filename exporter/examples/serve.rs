//! A runnable exporter: a [`MetricsManager`] installed as the `metrics` facade's recorder, a few
//! demo metrics updated once a second, and `GET /metrics` / `GET /health` on one exporter thread,
//! until SIGTERM or SIGINT.
//!
//! ```text
//! cargo run --release -p mmo-metrics-exporter --example serve                  # 127.0.0.1:9100
//! cargo run --release -p mmo-metrics-exporter --example serve -- 127.0.0.1:9200
//! cargo run --release -p mmo-metrics-exporter --example serve -- -addr=:9200   # 0.0.0.0:9200
//! ```
//!
//! `scripts/start_metrics.sh` and `scripts/stop_metrics.sh` run it in the background until the
//! full `metrics` service binary exists.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mmo_metrics::MetricsManager;

const DEFAULT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9100);
const USAGE: &str = "usage: serve [ADDR | -addr=ADDR] [-interval=DURATION]
  ADDR      host:port to listen on (default 127.0.0.1:9100); `:PORT` means 0.0.0.0:PORT
  DURATION  how often the demo metrics change, e.g. 1s, 500ms (default 1s)";

struct Args {
    addr: SocketAddr,
    interval: Duration,
}

/// `127.0.0.1:9100`, `[::1]:9100`, or the seed's `:9100` (every interface).
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("invalid port in address {s:?}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    s.parse()
        .map_err(|_| format!("invalid address {s:?} (expected host:port or :port)"))
}

/// `5s`, `500ms`, `2m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {s:?} (expected e.g. 1s, 500ms, 2m)");
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| err())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(err()),
    };
    if d.is_zero() {
        return Err(err());
    }
    Ok(d)
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        addr: DEFAULT_ADDR,
        interval: Duration::from_secs(1),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.trim_start_matches('-').to_owned(), Some(v.to_owned())),
            _ if arg.starts_with('-') && arg.len() > 1 => (arg.trim_start_matches('-').to_owned(), None),
            _ => {
                out.addr = parse_addr(&arg)?;
                continue;
            }
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("-{flag} needs a value"))
        };
        match flag.as_str() {
            "addr" => out.addr = parse_addr(&value()?)?,
            "interval" => out.interval = parse_duration(&value()?)?,
            "h" | "help" => return Err(String::new()),
            _ => return Err(format!("unknown flag {arg:?}")),
        }
    }
    Ok(out)
}

/// Registers the demo metrics and updates them every `interval` until `stop` is set.
fn demo(manager: MetricsManager, interval: Duration, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    manager
        .register_gauge("demo_uptime_seconds", "Seconds since the demo exporter started.", &[])
        .unwrap();
    manager
        .register_counter("demo_ticks", "Demo ticks, by zone.", &["zone"])
        .unwrap();
    manager
        .register_histogram(
            "demo_tick_seconds",
            "Simulated tick duration.",
            &[],
            &[0.001, 0.005, 0.01, 0.05, 0.1],
        )
        .unwrap();
    manager
        .register_summary("demo_message_bytes", "Simulated message sizes.", &["direction"], &[])
        .unwrap();
    metrics::describe_counter!(
        "demo_facade_events_total",
        "Events recorded through the `metrics` facade."
    );
    metrics::describe_gauge!("demo_players_online", "Simulated players online (through the facade).");

    let ticks = manager.counter("demo_ticks", &["north"]).unwrap();
    let tick_time = manager.histogram("demo_tick_seconds", &[]).unwrap();
    let started = Instant::now();
    std::thread::Builder::new()
        .name("demo-metrics".into())
        .spawn(move || {
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                ticks.increment(1);
                if n.is_multiple_of(3) {
                    let _ = manager.increment_counter("demo_ticks", 1, &["south"]);
                }
                tick_time.record((n % 17) as f64 * 0.003);
                let _ = manager.set_gauge("demo_uptime_seconds", started.elapsed().as_secs_f64(), &[]);
                let _ = manager.observe_summary("demo_message_bytes", (64 + (n * 37) % 1000) as f64, &["in"]);
                let _ = manager.observe_summary("demo_message_bytes", (32 + (n * 11) % 200) as f64, &["out"]);
                metrics::counter!("demo_facade_events_total", "kind" => "tick").increment(1);
                metrics::gauge!("demo_players_online").set(100.0 + (n % 50) as f64);
                // Sleep in short steps so a stop request is seen quickly.
                let until = Instant::now() + interval;
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50).min(interval));
                }
            }
        })
        .expect("spawn the demo thread")
}

/// Blocks until SIGTERM or SIGINT.
fn wait_for_signal() -> std::io::Result<&'static str> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::select! {
                _ = term.recv() => Ok("SIGTERM"),
                _ = int.recv() => Ok("SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await?;
            Ok("Ctrl-C")
        }
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("serve: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    let manager = MetricsManager::new();
    if let Err(e) = manager.install() {
        eprintln!("serve: cannot install the metrics recorder: {e}");
        return ExitCode::FAILURE;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let updater = demo(manager.clone(), args.interval, Arc::clone(&stop));

    let server = match mmo_metrics_exporter::serve(manager, args.addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("serve: cannot listen on {}: {e}", args.addr);
            if e.kind() == std::io::ErrorKind::AddrInUse {
                eprintln!(
                    "serve: the port is already in use; stop the other process or pass another address (-addr=:9200)"
                );
            }
            stop.store(true, Ordering::Relaxed);
            let _ = updater.join();
            return ExitCode::FAILURE;
        }
    };
    let bound = server.local_addr();
    let shown = if bound.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
    } else {
        bound
    };
    println!(
        "mmo-metrics example exporter listening on {bound} (pid {})",
        std::process::id()
    );
    println!("metrics: http://{shown}/metrics");
    println!("health:  http://{shown}/health");

    let code = match wait_for_signal() {
        Ok(sig) => {
            println!("received {sig}, stopping");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("serve: cannot wait for signals: {e}");
            ExitCode::FAILURE
        }
    };
    drop(server);
    stop.store(true, Ordering::Relaxed);
    let _ = updater.join();
    println!("stopped");
    code
}
