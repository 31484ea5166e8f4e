//! Expiry gives memory back: an exporter serving a registry, 10^5 series made through handles,
//! the by-name API and the `metrics` facade, left idle past the timeout, then one scrape: at
//! least 90 % of the memory the series took is given back to the OS, and RSS is back within 10 %
//! of the start. It measures this process'
//! RSS, so it is a binary of its own (another test allocating alongside would count).
//!
//! glibc's allocator keeps freed memory for reuse up to a threshold it raises each time a large
//! block is freed (up to 64 MiB per arena): with its defaults, the registry frees everything
//! (`malloc_stats` shows 0.45 MiB in use after the expiry) while RSS stays where it was. It also
//! keeps a pad (128 KiB) at the top of each arena it trims, and every thread that made series has
//! an arena. The test fixes the thresholds at glibc's starting values and the pad at 0 (`mallopt`,
//! what `GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072:glibc.malloc.mmap_threshold=131072:
//! glibc.malloc.top_pad=0` does for a service), so RSS shows what the registry gives back rather
//! than the allocator's policy.
//!
//! `cargo test --release -p mmo-metrics-exporter --test expiry_memory -- --nocapture` prints the
//! figures (`EXPIRY_GLIBC_DEFAULTS=1` in front: with glibc's default thresholds).

mod client;

use std::net::SocketAddr;
use std::time::Duration;

use mmo_metrics::{MetricKind, MetricsManager};
use mmo_metrics_exporter::ExporterBuilder;

/// This process' resident memory, and the anonymous part of it (`RssAnon`: heap, mappings,
/// stacks; the rest is the binary's and libraries' pages).
fn rss_bytes() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"));
        kib << 10
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// Series per way of making them: 10^5 in all.
const EACH: usize = 100_000 / 4;

/// `each` series of each kind, from four threads that then exit (their caches let go then, as a
/// zone's worker threads' do), and a handle to each: they are let go of when the result is
/// dropped, all at once.
fn make(m: &MetricsManager, recorder: &mmo_metrics::MetricsRecorder, each: usize) -> Vec<Box<dyn Send>> {
    std::thread::scope(|s| {
        let mut threads: Vec<std::thread::ScopedJoinHandle<'_, Box<dyn Send>>> = Vec::new();
        threads.push(s.spawn(|| -> Box<dyn Send> {
            let held: Vec<_> = (0..each)
                .map(|i| {
                    let h = m.counter(
                        "instance_kills",
                        &[&format!("dungeon-{}", i / 50), &format!("player-{i}")],
                    );
                    let h = h.unwrap();
                    h.increment(1);
                    h
                })
                .collect();
            Box::new(held)
        }));
        threads.push(s.spawn(|| -> Box<dyn Send> {
            let held: Vec<_> = (0..each)
                .map(|i| {
                    let labels = [format!("raid-{}", i / 10), format!("boss-{i}")];
                    let labels = [labels[0].as_str(), labels[1].as_str()];
                    m.set_gauge("instance_hp", 100.0, &labels).unwrap();
                    m.gauge("instance_hp", &labels).unwrap()
                })
                .collect();
            Box::new(held)
        }));
        threads.push(s.spawn(|| -> Box<dyn Send> {
            let held: Vec<_> = (0..each)
                .map(|i| {
                    let zone = format!("arena-{i}");
                    m.observe_histogram("instance_tick_seconds", 0.01, &[&zone]).unwrap();
                    m.histogram("instance_tick_seconds", &[&zone]).unwrap()
                })
                .collect();
            Box::new(held)
        }));
        threads.push(s.spawn(|| -> Box<dyn Send> {
            metrics::with_local_recorder(recorder, || {
                let held: Vec<_> = (0..each)
                    .map(|i| {
                        let c = metrics::counter!("facade_instance_events", "instance" => format!("pvp-{i}"));
                        c.increment(1);
                        c
                    })
                    .collect();
                Box::new(held) as Box<dyn Send>
            })
        }));
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// Waits past the timeout, then scrapes once; returns the series left.
fn expire(m: &MetricsManager, addr: SocketAddr, timeout: Duration) -> usize {
    std::thread::sleep(timeout + Duration::from_millis(50));
    assert_eq!(client::status(addr, "/metrics"), 200);
    let mut left = 0;
    m.visit(|f| left += f.series_count());
    left
}

#[test]
fn expired_series_give_their_memory_back() {
    // `EXPIRY_GLIBC_DEFAULTS=1` leaves glibc's thresholds as they are, to see its policy: the
    // figures are printed, and the RSS bound is not asserted (it measures the allocator then).
    let glibc_defaults = std::env::var_os("EXPIRY_GLIBC_DEFAULTS").is_some();
    if !glibc_defaults {
        // SAFETY: `mallopt` has no preconditions; glibc's own starting thresholds, fixed, and no
        // pad kept at an arena's top.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
            libc::mallopt(libc::M_TOP_PAD, 0);
        }
    }
    let timeout = Duration::from_millis(300);
    let m = MetricsManager::builder()
        .idle_timeout([MetricKind::Counter, MetricKind::Gauge, MetricKind::Histogram], timeout)
        .series_limit(1_000_000)
        .build();
    m.register_counter(
        "instance_kills",
        "Kills per dungeon instance and player.",
        &["instance", "player"],
    )
    .unwrap();
    m.register_gauge(
        "instance_hp",
        "Boss health per dungeon instance.",
        &["instance", "boss"],
    )
    .unwrap();
    m.register_histogram("instance_tick_seconds", "Tick time per instance.", &["instance"], &[])
        .unwrap();
    let server = ExporterBuilder::new(m.clone())
        .address("127.0.0.1:0".parse().unwrap())
        .serve()
        .unwrap();
    let addr = server.local_addr();
    let recorder = m.recorder();
    // A first round of 100 series, expired, so what exists once per process and per thread (the
    // allocator's per-thread arenas, the first counter chunk, the code a scrape runs) is in the
    // start.
    drop(make(&m, &recorder, 25));
    expire(&m, addr, timeout);
    let start = rss_bytes();
    let held = make(&m, &recorder, EACH);
    assert_eq!(client::status(addr, "/metrics"), 200);
    let mut series = 0;
    m.visit(|f| series += f.series_count());
    let full = rss_bytes();
    drop(held);
    let left = expire(&m, addr, timeout);
    let after = rss_bytes();
    if std::env::var("PROBE").is_ok() {
        std::thread::sleep(Duration::from_millis(500));
        eprintln!("500 ms later {:?}", rss_bytes());
        m.expire_idle();
        eprintln!("after another sweep {:?}", rss_bytes());
        assert_eq!(client::status(addr, "/metrics"), 200);
        eprintln!("after another scrape {:?}", rss_bytes());
    }
    eprintln!(
        "RSS (anonymous) before {:.1} ({:.1}) MiB, with {series} series {:.1} ({:.1}) MiB, \
         after expiry and one scrape ({left} series left) {:.1} ({:.1}) MiB, {:.1} % above the start",
        mib(start.0),
        mib(start.1),
        mib(full.0),
        mib(full.1),
        mib(after.0),
        mib(after.1),
        (after.0 as f64 / start.0 as f64 - 1.0) * 100.0
    );
    assert!(series >= 100_000, "{series} series made");
    assert!(left < 50, "{left} series left");
    if glibc_defaults {
        return;
    }
    let taken = full.0.saturating_sub(start.0) as f64;
    let kept = after.0.saturating_sub(start.0) as f64;
    assert!(
        kept <= taken * 0.10,
        "{:.1} of the {:.1} MiB the series took still resident after expiry",
        kept / (1 << 20) as f64,
        taken / (1 << 20) as f64
    );
    assert!(
        after.0 <= start.0 + start.0 / 10,
        "RSS {:.2} MiB after expiry, more than 10 % above the {:.2} MiB at the start",
        mib(after.0),
        mib(start.0)
    );
}
