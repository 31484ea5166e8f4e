//! Latency of creating a series while its family is encoded in a loop.
//!
//! ```text
//! cargo run --release -p mmo-metrics-benches --bin creation_latency -- [ticks] [series]
//! ```
//!
//! One counter family `player_events` with one label holds `<series>` series (default 300,000).
//! A scraper thread encodes the registry (`mmo_metrics_exporter::encode_text`) over and over while
//! the main thread, a game thread, creates one new series per 16 ms tick
//! (`increment_counter("player_events", 1, &[new value])`) for `<ticks>` ticks (default 200,
//! about 3.2 s), timing each creation. The target is every creation under 1 ms: a game thread
//! must not wait for an encode. Prints one line:
//!
//! ```text
//! bench-creation: series=300000 ticks=200 scrapes=… max_us=… p99_us=… p50_us=… over_1ms=… seconds=…
//! ```
//!
//! `scrapes` is the number of encodes the scraper completed during the ticks (at least one must
//! overlap the ticks for the figures to mean anything; the binary fails otherwise).

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mmo_metrics::MetricsManager;

const NAME: &str = "player_events";
const TICK: Duration = Duration::from_millis(16);

/// The `q`-quantile of sorted durations (nearest rank), in microseconds.
fn quantile_us(sorted: &[Duration], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e6
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize, default: usize| match args.get(i) {
        Some(s) => s.parse::<usize>().ok(),
        None => Some(default),
    };
    let (Some(ticks), Some(series)) = (parse(0, 200), parse(1, 300_000)) else {
        eprintln!("usage: creation_latency [ticks] [series]");
        return ExitCode::from(2);
    };
    if ticks == 0 {
        eprintln!("creation_latency: ticks must be at least 1");
        return ExitCode::from(2);
    }

    let manager = MetricsManager::builder().series_limit(series + ticks + 1).build();
    manager
        .register_counter(NAME, "Events per player.", &["player"])
        .expect("register");
    let mut value = String::new();
    for i in 0..series {
        use std::fmt::Write;
        value.clear();
        write!(value, "player{i}").expect("write to String");
        manager.increment_counter(NAME, 1, &[&value]).expect("series");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let scraper = {
        let (manager, stop, scrapes) = (manager.clone(), Arc::clone(&stop), Arc::clone(&scrapes));
        thread::spawn(move || {
            while !stop.load(Relaxed) {
                black_box(mmo_metrics_exporter::encode_text(&manager).len());
                scrapes.fetch_add(1, Relaxed);
            }
        })
    };
    // The scraper is in its walk once it has finished one encode and started the next.
    while scrapes.load(Relaxed) == 0 {
        thread::sleep(Duration::from_millis(1));
    }

    let start = Instant::now();
    let scrapes_before = scrapes.load(Relaxed);
    let mut latencies = Vec::with_capacity(ticks);
    let mut next = Instant::now();
    for t in 0..ticks {
        next += TICK;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        value.clear();
        {
            use std::fmt::Write;
            write!(value, "new{t}").expect("write to String");
        }
        let t0 = Instant::now();
        manager.increment_counter(NAME, 1, &[&value]).expect("new series");
        latencies.push(t0.elapsed());
    }
    let scraped = scrapes.load(Relaxed) - scrapes_before;
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    scraper.join().expect("scraper");

    latencies.sort_unstable();
    let over = latencies.iter().filter(|d| **d >= Duration::from_millis(1)).count();
    println!(
        "bench-creation: series={series} ticks={ticks} scrapes={scraped} max_us={:.1} p99_us={:.1} p50_us={:.1} \
         over_1ms={over} seconds={seconds:.2}",
        latencies.last().expect("ticks >= 1").as_secs_f64() * 1e6,
        quantile_us(&latencies, 0.99),
        quantile_us(&latencies, 0.5),
    );
    if scraped == 0 {
        eprintln!("creation_latency: no encode completed during the ticks; the figures measure nothing");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
