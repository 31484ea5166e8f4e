//! Stress run of the exporter against clients that misbehave, on a registry of 300,000 series
//! (one counter family labelled by player id, a UUID of 36 characters: about 25 MB of
//! exposition). Three phases, each against a fresh exporter with the default settings on the same
//! registry, so one phase's failure cannot hide or cause another's:
//!
//! - **a. aborted scrapes**: 1,000 scrapes abandoned about 1 ms after the request, while an encode
//!   runs (half reset by `SO_LINGER` 0, half closed), then 100 clients that give up after 10 ms
//!   like `curl --max-time 0.01`; then the status codes of 10 scrapes and the
//!   `mmo_metrics_scrapes_in_flight` gauge. Target: each of the 10 scrapes answers 200.
//! - **b. clients that never read**: 60 clients with a 4 KiB receive buffer request `/metrics`
//!   and read nothing. Growth of this process's RSS (`/proc/self/statm`) once each has either a
//!   stuck body or a 503. Target: under 250 MiB (one copy of the exposition is ~25 MB).
//! - **c. `/health` under gzip**: latency of 50 `/health` asks while 8 clients scrape `/metrics`
//!   with `Accept-Encoding: gzip` in a loop. Target: median under 10 ms.
//!
//! Prints the figures and a summary; exits with status 1 when a target is missed. Linux only (RSS
//! from `/proc`). Takes about half a minute, most of it waiting for the write timeout in phase b:
//!
//! ```text
//! cargo run --release -p mmo-metrics-exporter --example hostile_clients
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mmo_metrics::MetricsManager;
use mmo_metrics_exporter::{Exporter, ExporterBuilder, SCRAPES_IN_FLIGHT_METRIC, TIMEOUTS_METRIC};
use socket2::{Domain, SockRef, Socket, Type};

const FAMILY: &str = "mmo_player_actions";
const SERIES: usize = 300_000;

const ABORTS: usize = 1_000;
const ABORT_AFTER: Duration = Duration::from_millis(1);
const GIVE_UPS: usize = 100;
const GIVE_UP_AFTER: Duration = Duration::from_millis(10);
const SCRAPES_AFTER: usize = 10;

const NON_READERS: usize = 60;
const NON_READER_RCVBUF: usize = 4096;
const RSS_GROWTH_TARGET: u64 = 250 << 20;

const GZIP_SCRAPERS: usize = 8;
const HEALTH_ASKS: usize = 50;
const HEALTH_P50_TARGET: Duration = Duration::from_millis(10);

/// How long any one wait of this program may last.
const PATIENCE: Duration = Duration::from_secs(60);

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

/// The outcome of one phase, for the summary.
struct Check {
    name: &'static str,
    figure: String,
    ok: bool,
}

/// One phase of the run, against a fresh exporter of the registry.
type Phase = fn(&MetricsManager) -> io::Result<Check>;

fn main() -> ExitCode {
    let t = Instant::now();
    let m = registry();
    println!(
        "registry: {SERIES} series of `{FAMILY}_total{{player=\"<uuid>\"}}` built in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let phases: [(&'static str, Phase); 3] = [
        ("a. aborted scrapes", aborted_scrapes),
        ("b. clients that never read", non_readers),
        ("c. /health under gzip", health_under_gzip),
    ];
    let mut checks = Vec::new();
    for (name, phase) in phases {
        println!("\n== {name}");
        checks.push(phase(&m).unwrap_or_else(|e| Check {
            name,
            figure: format!("error: {e}"),
            ok: false,
        }));
    }

    println!("\n== summary");
    for c in &checks {
        println!(
            "  {:<30} {:<60} {}",
            c.name,
            c.figure,
            if c.ok { "ok" } else { "MISSED" }
        );
    }
    if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One counter family of [`SERIES`] series, one per player.
fn registry() -> MetricsManager {
    let m = MetricsManager::builder().series_limit(SERIES * 2).build();
    m.register_counter(FAMILY, "Actions of each player.", &["player"])
        .expect("register the player family");
    for i in 0..SERIES as u64 {
        m.counter(FAMILY, &[&player_id(i)])
            .expect("a player series")
            .increment(1 + splitmix64(i) % 5_000);
    }
    m
}

/// A player id shaped like a version-4 UUID, distinct for each `i` (it holds all 64 bits of a
/// bijection of `i`).
fn player_id(i: u64) -> String {
    let h = splitmix64(i);
    let g = splitmix64(h);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:04x}{:08x}",
        h >> 32,
        (h >> 16) & 0xffff,
        g >> 52,
        0x8000 | ((g >> 32) & 0x3fff),
        h & 0xffff,
        g & 0xffff_ffff
    )
}

/// The SplitMix64 finalizer: a bijection of `u64` that scatters consecutive inputs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn start(m: &MetricsManager) -> io::Result<Exporter> {
    ExporterBuilder::new(m.clone())
        .address(([127, 0, 0, 1], 0).into())
        .serve()
        .map_err(io::Error::other)
}

/// a. Scrapes abandoned mid-encode must give their in-flight slot back.
fn aborted_scrapes(m: &MetricsManager) -> io::Result<Check> {
    let server = start(m)?;
    let addr = server.local_addr();
    let t = Instant::now();
    let first = request(addr, "/metrics", "")?;
    println!(
        "one scrape: {} in {} ms, so an abort {} ms after the request lands mid-encode",
        first.status,
        t.elapsed().as_millis(),
        ABORT_AFTER.as_millis()
    );

    let t = Instant::now();
    for i in 0..ABORTS {
        let s = TcpStream::connect(addr)?;
        (&s).write_all(SCRAPE)?;
        if i % 2 == 0 {
            // Closing with SO_LINGER 0 sends RST instead of FIN.
            SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
        }
        std::thread::sleep(ABORT_AFTER);
        drop(s);
    }
    println!(
        "{ABORTS} scrapes aborted ({} reset, {} closed) in {:.1} s",
        ABORTS.div_ceil(2),
        ABORTS / 2,
        t.elapsed().as_secs_f64()
    );

    let mut gave_up = 0;
    for _ in 0..GIVE_UPS {
        gave_up += usize::from(give_up(addr)?);
    }
    println!(
        "{GIVE_UPS} clients with a {} ms deadline: {gave_up} gave up before the end of the response",
        GIVE_UP_AFTER.as_millis()
    );

    let t = Instant::now();
    while in_flight(m) != 0.0 && t.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "{SCRAPES_IN_FLIGHT_METRIC} = {} ({} ms after the last client left)",
        in_flight(m),
        t.elapsed().as_millis()
    );
    let codes: Vec<String> = (0..SCRAPES_AFTER)
        .map(|_| match request(addr, "/metrics", "") {
            Ok(r) => r.status.to_string(),
            Err(e) => format!("error ({e})"),
        })
        .collect();
    println!("the {SCRAPES_AFTER} scrapes after: {}", codes.join(" "));
    println!("{SCRAPES_IN_FLIGHT_METRIC} = {} after them", in_flight(m));
    let ok200 = codes.iter().filter(|c| *c == "200").count();
    Ok(Check {
        name: "a. aborted scrapes",
        figure: format!("{ok200}/{SCRAPES_AFTER} scrapes after answer 200 (target: all)"),
        ok: ok200 == SCRAPES_AFTER,
    })
}

/// A client that sends a scrape and closes once [`GIVE_UP_AFTER`] has passed; true if it gave up
/// before the end of the response.
fn give_up(addr: SocketAddr) -> io::Result<bool> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = GIVE_UP_AFTER.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(true);
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(true),
            Err(e) => return Err(e),
        }
    }
}

/// b. Clients that never read must not pin a copy of the exposition each.
fn non_readers(m: &MetricsManager) -> io::Result<Check> {
    let server = start(m)?;
    let addr = server.local_addr();
    let size = request(addr, "/metrics", "")?.body.len();
    let cut_before = counter(m, TIMEOUTS_METRIC, "write");
    let before = rss_bytes()?;

    let clients: Vec<TcpStream> = (0..NON_READERS).map(|_| non_reader(addr)).collect::<io::Result<_>>()?;
    let t = Instant::now();
    let mut codes: Vec<Option<u16>> = vec![None; NON_READERS];
    while codes.iter().any(Option::is_none) && t.elapsed() < PATIENCE {
        for (c, code) in clients.iter().zip(&mut codes) {
            if code.is_none() {
                *code = peek_status(c);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let answered = t.elapsed();
    let during = rss_bytes()?;
    let grown = during.saturating_sub(before);
    let stuck = codes.iter().filter(|c| **c == Some(200)).count();
    let refused = codes.iter().filter(|c| **c == Some(503)).count();
    let other = NON_READERS - stuck - refused;
    println!("exposition: {:.1} MiB", mib(size as u64));
    println!(
        "{NON_READERS} clients that never read, answered in {} ms: {stuck} stuck in a 200 body, {refused} answered 503, \
         {other} other or no answer",
        answered.as_millis()
    );
    println!(
        "RSS before (after one scrape) {:.1} MiB, while they hang {:.1} MiB: grew {:.1} MiB ({:.1} copies of the exposition)",
        mib(before),
        mib(during),
        mib(grown),
        grown as f64 / size as f64
    );

    // Not a target of this phase, shown for the record: the write timeout cuts the stuck clients.
    let t = Instant::now();
    while (counter(m, TIMEOUTS_METRIC, "write") - cut_before < stuck as u64 || in_flight(m) != 0.0)
        && t.elapsed() < PATIENCE
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "write timeout: {} stuck clients cut {:.1} s later, {SCRAPES_IN_FLIGHT_METRIC} = {}",
        counter(m, TIMEOUTS_METRIC, "write") - cut_before,
        (answered + t.elapsed()).as_secs_f64(),
        in_flight(m)
    );
    drop(clients);
    println!("a scrape after: {}", request(addr, "/metrics", "")?.status);

    Ok(Check {
        name: "b. clients that never read",
        figure: format!(
            "RSS +{:.1} MiB with {NON_READERS} hanging (target < {} MiB)",
            mib(grown),
            RSS_GROWTH_TARGET >> 20
        ),
        ok: grown < RSS_GROWTH_TARGET && other == 0,
    })
}

/// A client with a small receive window that sends a scrape and never reads.
fn non_reader(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_recv_buffer_size(NON_READER_RCVBUF)?;
    s.connect(&addr.into())?;
    s.send(SCRAPE)?;
    let s = TcpStream::from(s);
    s.set_nonblocking(true)?;
    Ok(s)
}

/// The status code of the response waiting in `s`'s receive buffer, looked at without reading it.
fn peek_status(s: &TcpStream) -> Option<u16> {
    let mut buf = [0u8; 12];
    match s.peek(&mut buf) {
        Ok(12) => std::str::from_utf8(&buf[9..12]).ok()?.parse().ok(),
        _ => None,
    }
}

/// c. `/health` must answer quickly while gzip scrapes run.
fn health_under_gzip(m: &MetricsManager) -> io::Result<Check> {
    let server = start(m)?;
    let addr = server.local_addr();
    let stop = AtomicBool::new(false);
    let scrapes = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let gzip_size = AtomicUsize::new(0);

    let mut health = std::thread::scope(|s| {
        for _ in 0..GZIP_SCRAPERS {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    match gzip_scrape(addr) {
                        Ok(n) => {
                            gzip_size.store(n, Ordering::Relaxed);
                            scrapes.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            });
        }
        // Let the first encode start.
        std::thread::sleep(Duration::from_millis(50));
        let mut health = Vec::with_capacity(HEALTH_ASKS);
        for _ in 0..HEALTH_ASKS {
            let t = Instant::now();
            let r = request(addr, "/health", "");
            let took = t.elapsed();
            match r {
                Ok(r) if r.status == 200 => health.push(took),
                Ok(r) => failures.lock().unwrap().push(format!("/health answered {}", r.status)),
                Err(e) => failures.lock().unwrap().push(format!("/health: {e}")),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        health
    });
    let failures = failures.into_inner().unwrap();

    health.sort();
    let p50 = health.get(health.len() / 2).copied().unwrap_or(Duration::MAX);
    let max = health.last().copied().unwrap_or(Duration::MAX);
    println!(
        "{} gzip scrapes by {GZIP_SCRAPERS} clients ({:.1} MiB each, gzipped); {} failures{}",
        scrapes.load(Ordering::Relaxed),
        mib(gzip_size.load(Ordering::Relaxed) as u64),
        failures.len(),
        failures.first().map(|f| format!(", first: {f}")).unwrap_or_default()
    );
    println!(
        "/health over {} asks: p50 {:.2} ms, max {:.2} ms",
        health.len(),
        ms(p50),
        ms(max)
    );
    Ok(Check {
        name: "c. /health under gzip",
        figure: format!(
            "p50 {:.2} ms, max {:.2} ms over {} asks (target p50 < {} ms)",
            ms(p50),
            ms(max),
            health.len(),
            HEALTH_P50_TARGET.as_millis()
        ),
        ok: p50 < HEALTH_P50_TARGET && health.len() == HEALTH_ASKS,
    })
}

/// One gzip scrape, checked to decode to the exposition; the compressed size.
fn gzip_scrape(addr: SocketAddr) -> io::Result<usize> {
    let r = request(addr, "/metrics", "Accept-Encoding: gzip\r\n")?;
    if r.status != 200 || !r.head.to_ascii_lowercase().contains("content-encoding: gzip") {
        return Err(io::Error::other(format!("gzip scrape answered {}", r.status)));
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(&r.body[..]).read_to_string(&mut text)?;
    if !text.contains(&format!("{FAMILY}_total{{player=\"")) {
        return Err(io::Error::other("the gzip body does not decode to the exposition"));
    }
    Ok(r.body.len())
}

struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// One request on a new connection, its response read to the end.
fn request(addr: SocketAddr, path: &str, headers: &str) -> io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(PATIENCE))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {what}"));
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid("no status code"))?;
    let body = raw.split_off(end + 4);
    let length = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    if length.is_some_and(|n| n != body.len()) {
        return Err(invalid("body shorter than its Content-Length"));
    }
    Ok(Response { status, head, body })
}

fn in_flight(m: &MetricsManager) -> f64 {
    m.gauge(SCRAPES_IN_FLIGHT_METRIC, &[]).map_or(f64::NAN, |g| g.get())
}

fn counter(m: &MetricsManager, name: &str, label: &str) -> u64 {
    m.counter(name, &[label]).map_or(0, |c| c.get())
}

/// Resident set size of this process.
fn rss_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/statm"))?;
    // SAFETY: sysconf only reads its integer argument; it has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages * page as u64)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
