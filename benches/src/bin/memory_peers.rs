//! Resident memory per counter series, one library and size per process.
//!
//! ```text
//! cargo run --release -p mmo-metrics-benches --bin memory_peers -- <library> <series> [shards]
//! ```
//!
//! `<library>` is `mmo` (optionally with `[shards]`, default: the manager's default, twice the
//! cores), `metrics-exporter-prometheus`, `prometheus` (tikv) or `prometheus-client`. Every
//! library gets one counter family `player_events` with two labels, and `<series>` series
//! (`zone{i % 1000}`, `player{i}`), each incremented once through the library's usual per-series
//! API; handles are dropped, the registry keeps the series. Prints one line:
//!
//! ```text
//! bench-memory: lib=mmo shards=4 series=1000000 rss_delta=… heap_delta=… rss_per_series=… heap_per_series=… seconds=…
//! ```
//!
//! `rss_delta` is the growth of `VmRSS` (what the OS charges the process, allocator overhead and
//! retained free memory included); `heap_delta` is the growth of live heap bytes counted by the
//! binary's global allocator (what the library asked for).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use mmo_metrics::MetricsManager;
use mmo_metrics_benches::{counted, resident_bytes, start_counting, CountingAlloc, MEP, MMO, PCLIENT, TIKV};
use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::family::Family;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const NAME: &str = "player_events";
const HELP: &str = "Events per player.";

/// Calls `f(zone, player)` for every series index.
fn each_series(series: usize, mut f: impl FnMut(&str, &str)) {
    let (mut zone, mut player) = (String::new(), String::new());
    for i in 0..series {
        zone.clear();
        player.clear();
        write!(zone, "zone{}", i % 1000).expect("write to String");
        write!(player, "player{i}").expect("write to String");
        f(&zone, &player);
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: memory_peers <{MMO}|{MEP}|{TIKV}|{PCLIENT}> <series> [shards (mmo only)]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(lib), Some(series)) = (args.first(), args.get(1).and_then(|s| s.parse::<usize>().ok())) else {
        return usage();
    };
    let shards: Option<u32> = match args.get(2) {
        Some(s) => match s.parse() {
            Ok(n) => Some(n),
            Err(_) => return usage(),
        },
        None => None,
    };
    let Some(before) = resident_bytes() else {
        eprintln!("memory_peers: cannot read VmRSS from /proc/self/status (Linux only)");
        return ExitCode::FAILURE;
    };
    start_counting();
    let start = Instant::now();

    // Each arm builds the registry, fills it, measures, and only then drops it.
    let (after, heap, shards_used, elapsed) = match lib.as_str() {
        MMO => {
            let mut b = MetricsManager::builder().series_limit(series + 1);
            if let Some(s) = shards {
                b = b.shards(s);
            }
            let m = b.build();
            m.register_counter(NAME, HELP, &["zone", "player"]).expect("register");
            each_series(series, |z, p| m.counter(NAME, &[z, p]).expect("series").increment(1));
            assert_eq!(m.counter(NAME, &["zone0", "player0"]).unwrap().get(), 1);
            let out = (resident_bytes(), counted(), m.shards().to_string(), start.elapsed());
            drop(m);
            out
        }
        MEP => {
            let rec = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            metrics::with_local_recorder(&rec, || {
                metrics::describe_counter!(NAME, HELP);
                each_series(series, |z, p| {
                    metrics::counter!(NAME, "zone" => z.to_owned(), "player" => p.to_owned()).increment(1)
                });
            });
            let out = (resident_bytes(), counted(), "-".to_owned(), start.elapsed());
            drop(rec);
            out
        }
        TIKV => {
            let registry = prometheus::Registry::new();
            let vec = prometheus::IntCounterVec::new(prometheus::Opts::new(NAME, HELP), &["zone", "player"])
                .expect("counter vec");
            registry.register(Box::new(vec.clone())).expect("register");
            each_series(series, |z, p| vec.with_label_values(&[z, p]).inc());
            let out = (resident_bytes(), counted(), "-".to_owned(), start.elapsed());
            drop((registry, vec));
            out
        }
        PCLIENT => {
            let mut registry = prometheus_client::registry::Registry::default();
            let family = Family::<[(&'static str, String); 2], PcCounter>::default();
            registry.register(NAME, HELP, family.clone());
            each_series(series, |z, p| {
                family
                    .get_or_create(&[("zone", z.to_owned()), ("player", p.to_owned())])
                    .inc();
            });
            let out = (resident_bytes(), counted(), "-".to_owned(), start.elapsed());
            drop((registry, family));
            out
        }
        _ => return usage(),
    };
    let seconds = elapsed.as_secs_f64();
    let after = after.expect("VmRSS readable once");
    let rss_delta = after.saturating_sub(before);
    let heap_delta = heap.live_bytes.max(0) as u64;
    println!(
        "bench-memory: lib={lib} shards={shards_used} series={series} rss_delta={rss_delta} heap_delta={heap_delta} \
         rss_per_series={:.1} heap_per_series={:.1} seconds={seconds:.2}",
        rss_delta as f64 / series as f64,
        heap_delta as f64 / series as f64,
    );
    ExitCode::SUCCESS
}
