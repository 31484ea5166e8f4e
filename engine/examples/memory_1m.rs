//! Resident memory of 10^6 counter series with 16 shards.
//!
//! Builds a manager with 16 shards, registers one counter with two labels, creates 10^6 series
//! (`zone{i % 1000}`, `player{i}`) through `MetricsManager::counter`, increments each once and
//! drops the handle. Prints the process' resident memory (`VmRSS` of `/proc/self/status`) before
//! and after, the difference and the bytes per series, and the resident memory after reading every
//! series back (as a scrape does); exits non-zero when the resident total is above 300 MiB (the
//! target).
//!
//! ```text
//! cargo run --release -p mmo-metrics --example memory_1m
//! ```

use std::process::ExitCode;
use std::time::Instant;

use mmo_metrics::{MetricsManager, SeriesValue};

const SERIES: usize = 1_000_000;
const SHARDS: u32 = 16;
const LIMIT_BYTES: u64 = 300 * 1024 * 1024;

/// Resident memory of this process in bytes (`mmo_metrics::system::process_stats`), or `None`
/// where it cannot be read (not Linux).
fn resident_bytes() -> Option<u64> {
    mmo_metrics::system::process_stats()
        .ok()
        .map(|p| p.resident_memory_bytes as u64)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() -> ExitCode {
    let Some(before) = resident_bytes() else {
        eprintln!("memory_1m: cannot read VmRSS from /proc/self/status (Linux only)");
        return ExitCode::FAILURE;
    };

    let manager = MetricsManager::builder().shards(SHARDS).series_limit(2_000_000).build();
    manager
        .register_counter("player_events", "Events per player.", &["zone", "player"])
        .expect("register player_events");

    let start = Instant::now();
    let mut zone = String::new();
    let mut player = String::new();
    for i in 0..SERIES {
        use std::fmt::Write;
        zone.clear();
        player.clear();
        write!(zone, "zone{}", i % 1000).expect("write to String");
        write!(player, "player{i}").expect("write to String");
        let handle = manager
            .counter("player_events", &[&zone, &player])
            .expect("counter series");
        handle.increment(1);
    }
    let elapsed = start.elapsed();

    let after = resident_bytes().expect("VmRSS readable once");
    // Spot checks: the series exist and were not folded into the overflow series.
    assert_eq!(
        manager
            .counter("player_events", &["zone0", "player0"])
            .expect("series")
            .get(),
        1
    );
    assert_eq!(
        manager
            .counter("player_events", &["zone999", "player999999"])
            .expect("series")
            .get(),
        1
    );

    let delta = after.saturating_sub(before);
    println!(
        "series:            {SERIES} counter series, {SHARDS} shards (manager.shards() = {})",
        manager.shards()
    );
    println!(
        "created in:        {:.2} s ({:.0} ns per series)",
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / SERIES as f64
    );
    println!("VmRSS before:      {before} bytes ({:.1} MiB)", mib(before));
    println!("VmRSS after:       {after} bytes ({:.1} MiB)", mib(after));
    println!("delta:             {delta} bytes ({:.1} MiB)", mib(delta));
    println!("bytes per series:  {:.1}", delta as f64 / SERIES as f64);
    println!(
        "limit:             {LIMIT_BYTES} bytes ({:.0} MiB) resident total",
        mib(LIMIT_BYTES)
    );

    // A full read (what a scrape does) sums every shard's cell of every series, including the
    // shards no thread wrote: those read the OS's zero page and must not grow the process.
    let mut total = 0u64;
    manager.visit(|family| {
        family.for_each_series(|_, value| {
            if let SeriesValue::Counter(v) = value {
                total += v;
            }
        })
    });
    assert_eq!(total, SERIES as u64, "one increment per series");
    let read = resident_bytes().expect("VmRSS readable once");
    println!(
        "after a full read: {read} bytes ({:.1} MiB, {:+.1} MiB)",
        mib(read),
        (read as f64 - after as f64) / (1024.0 * 1024.0)
    );

    // Keep the manager alive until after the measurement.
    drop(manager);

    if after <= LIMIT_BYTES {
        println!(
            "result:            OK ({:.1} MiB <= {:.0} MiB)",
            mib(after),
            mib(LIMIT_BYTES)
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "result:            FAILED ({:.1} MiB > {:.0} MiB)",
            mib(after),
            mib(LIMIT_BYTES)
        );
        ExitCode::FAILURE
    }
}
