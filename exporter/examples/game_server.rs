//! A simulated MMO game server with live metrics:
//! `cargo run --features service --example game_server [ADDR]` (default 127.0.0.1:9100), then open
//! http://127.0.0.1:9100/metrics. Ctrl-C stops it.
//!
//! The same as `metrics --demo`, written as an application would: a manager installed as the
//! `metrics` recorder, the typed MMO families, collectors, and the exporter.

use std::time::Duration;

use mmo_metrics::{system, MetricsCollector, MetricsManager};

/// The simulated game server of `metrics --demo`.
#[path = "../src/bin/metrics/demo.rs"]
mod demo;

#[global_allocator]
static ALLOC: system::CountingAllocator = system::CountingAllocator::system();

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".into())
        .parse()?;
    let manager = MetricsManager::new();
    manager.install()?;
    let server = mmo_metrics_exporter::serve(manager.clone(), addr)?;
    let (demo, conns) = demo::start(&manager, 50)?;

    let mut collector = MetricsCollector::new(manager.clone(), Duration::from_secs(1));
    collector.add_named_collector("process", system::process_collector());
    collector.add_named_collector("system", system::system_collector());
    collector.add_named_collector("connections", move |_: &MetricsManager| {
        conns.update_rate();
    });
    // A custom collector: any closure over the manager, run every interval.
    let _ = manager.register_gauge("game_world_zones", "Zones loaded in this world.", &[]);
    collector.add_collector(|m: &MetricsManager| {
        let _ = m.set_gauge("game_world_zones", 12.0, &[]);
    });
    let _running = collector.start();
    println!(
        "game server on {}, metrics on http://{}/metrics (Ctrl-C stops)",
        demo.addr(),
        server.local_addr()
    );

    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(tokio::signal::ctrl_c())?;
    Ok(())
}
