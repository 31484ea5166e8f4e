//! A simulated MMO server, for `metrics --demo` and `examples/game_server.rs`: players connect and
//! disconnect over real loopback TCP, exchange framed messages of several types and sizes, and the
//! handlers make simulated Redis and database calls with realistic latencies and error rates, so
//! every MMO family has live data within seconds.
//!
//! A frame is a 4-byte big-endian length, a 1-byte message type and the payload.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mmo_metrics::families::{
    ConnectionMetrics, DatabaseMetrics, Direction, MessageHandles, MessageMetrics, RedisMetrics,
};
use mmo_metrics::{MetricsError, MetricsManager, NativeConfig};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Message types: name, payload size range (bytes), share of traffic (weights), and whether the
/// handler reads the database.
const TYPES: [(&str, (usize, usize), u32, bool); 5] = [
    ("move", (16, 64), 60, false),
    ("chat", (32, 512), 15, false),
    ("attack", (24, 96), 15, false),
    ("trade", (128, 2048), 5, true),
    ("login", (256, 4096), 5, true),
];

/// One message in this many is traced (see `session`).
const TRACE_EVERY: u32 = 20;

/// Redis connections in the simulated pool.
const REDIS_POOL: u32 = 16;

/// The families the demo feeds, registered once.
#[derive(Clone)]
struct Families {
    conns: ConnectionMetrics,
    redis: RedisMetrics,
    db: DatabaseMetrics,
    /// Handles per message type (index of [`TYPES`]), resolved once.
    inbound: Arc<[MessageHandles]>,
    outbound: Arc<[MessageHandles]>,
    redis_active: Arc<AtomicU32>,
}

/// A running demo; dropping it stops the players and the server (within about a second).
#[derive(Debug)]
pub struct Demo {
    addr: SocketAddr,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Demo {
    /// The simulated game server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the simulated server and `players` simulated players on a runtime thread of their own,
/// registered as the `demo` tokio runtime (so `system_goroutines` counts its tasks). Returns the
/// families for a collector to update (`ConnectionMetrics::update_rate`).
pub fn start(manager: &MetricsManager, players: usize) -> Result<(Demo, ConnectionMetrics), MetricsError> {
    let msgs = MessageMetrics::register_with_native(manager, NativeConfig::default())?;
    let handles = |d| {
        TYPES
            .iter()
            .map(|t| msgs.handles(d, t.0))
            .collect::<Result<Arc<[_]>, _>>()
    };
    let fam = Families {
        conns: ConnectionMetrics::register(manager)?,
        inbound: handles(Direction::In)?,
        outbound: handles(Direction::Out)?,
        redis: RedisMetrics::register(manager)?,
        db: DatabaseMetrics::register_with_native(manager, NativeConfig::default())?,
        redis_active: Arc::new(AtomicU32::new(0)),
    };
    fam.redis.set_pool(0, REDIS_POOL, REDIS_POOL);
    // Error series exist (at zero) from the start, so dashboards show them before the first error.
    for e in ["handshake_timeout", "read", "write", "protocol"] {
        fam.conns.errors(e)?;
    }
    let conns = fam.conns.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("demo runtime");
    mmo_metrics::system::register_tokio_runtime("demo", rt.handle().clone());
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind the demo server on loopback");
    let addr = listener.local_addr().expect("demo server address");
    let (tx, rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("mmo-metrics-demo".into())
        .spawn(move || {
            rt.block_on(async move {
                tokio::spawn(server(listener, fam.clone(), rx.clone()));
                for i in 0..players {
                    tokio::spawn(player(addr, rx.clone(), i));
                }
                let mut rx = rx;
                let _ = rx.wait_for(|stop| *stop).await;
            });
            // Dropping the runtime cancels the remaining tasks.
        })
        .expect("spawn the demo thread");
    Ok((
        Demo {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        },
        conns,
    ))
}

async fn server(listener: TcpListener, fam: Families, stop: watch::Receiver<bool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        if *stop.borrow() {
            return;
        }
        // A few handshakes fail, as on a real server.
        if rand::thread_rng().gen_bool(0.02) {
            fam.conns.error("handshake_timeout");
            continue;
        }
        fam.conns.opened();
        tokio::spawn(session(stream, fam.clone()));
    }
}

async fn session(mut stream: TcpStream, fam: Families) {
    let mut buf = Vec::new();
    loop {
        let mut head = [0u8; 5];
        match stream.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(_) => {
                fam.conns.error("read");
                break;
            }
        }
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let Some(&(name, _, _, uses_db)) = TYPES.get(head[4] as usize) else {
            fam.conns.error("protocol");
            break;
        };
        buf.resize(len, 0);
        if stream.read_exact(&mut buf).await.is_err() {
            fam.conns.error("read");
            break;
        }
        let handles = &fam.inbound[head[4] as usize];
        handles.received(len + 5);
        let timer = handles.process_timer();
        redis_call(&fam, if uses_db { "HGETALL" } else { "GET" }).await;
        if uses_db {
            db_call(
                &fam,
                if name == "login" { "select" } else { "update" },
                if name == "login" { "players" } else { "items" },
            )
            .await;
        }
        if name == "attack" {
            redis_call(&fam, "INCRBY").await;
        }
        // One message in TRACE_EVERY is traced: its processing time carries its trace id as an
        // exemplar, which Prometheus (with exemplar storage) keeps beside the bucket it fell in.
        if rand::thread_rng().gen_ratio(1, TRACE_EVERY) {
            let trace_id = format!("{:032x}", rand::thread_rng().gen::<u128>());
            timer
                .finish_with_exemplar(&[("trace_id", &trace_id)])
                .expect("a 40-character exemplar is within the limit");
        } else {
            drop(timer);
        }
        let reply = reply_size(name);
        let mut frame = Vec::with_capacity(reply + 5);
        frame.extend_from_slice(&(reply as u32).to_be_bytes());
        frame.push(head[4]);
        frame.resize(reply + 5, 0);
        if stream.write_all(&frame).await.is_err() {
            fam.conns.error("write");
            break;
        }
        fam.outbound[head[4] as usize].sent(frame.len());
    }
    fam.conns.closed();
}

fn reply_size(name: &str) -> usize {
    let mut rng = rand::thread_rng();
    match name {
        "login" => rng.gen_range(2048..65536),
        "trade" => rng.gen_range(256..4096),
        _ => rng.gen_range(16..256),
    }
}

/// A latency drawn from a log-normal-ish distribution around `median` seconds, with a long tail.
fn latency(median: f64) -> Duration {
    let mut rng = rand::thread_rng();
    let z: f64 = (0..4).map(|_| rng.gen::<f64>()).sum::<f64>() - 2.0; // ≈ normal, sd ≈ 0.58
    let tail = if rng.gen_bool(0.01) { 10.0 } else { 1.0 };
    Duration::from_secs_f64((median * (z * 1.2).exp() * tail).min(2.0))
}

async fn redis_call(fam: &Families, command: &str) {
    let active = fam.redis_active.fetch_add(1, Ordering::Relaxed) + 1;
    fam.redis
        .set_pool(active.min(REDIS_POOL), REDIS_POOL.saturating_sub(active), REDIS_POOL);
    tokio::time::sleep(latency(0.0004)).await;
    let ok = !rand::thread_rng().gen_bool(0.005);
    fam.redis.command(command).expect("registered family").done(ok);
    let active = fam.redis_active.fetch_sub(1, Ordering::Relaxed) - 1;
    fam.redis
        .set_pool(active.min(REDIS_POOL), REDIS_POOL.saturating_sub(active), REDIS_POOL);
}

async fn db_call(fam: &Families, operation: &str, table: &str) {
    let d = latency(0.004);
    tokio::time::sleep(d).await;
    let ok = !rand::thread_rng().gen_bool(0.01);
    fam.db
        .handles(operation, table)
        .expect("registered family")
        .done(d.as_secs_f64(), ok);
}

async fn player(addr: SocketAddr, stop: watch::Receiver<bool>, id: usize) {
    // Stagger the first logins.
    tokio::time::sleep(Duration::from_millis((id as u64 * 37) % 1000)).await;
    while !*stop.borrow() {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let (session_len, tick) = {
            let mut rng = rand::thread_rng();
            (rng.gen_range(20..200), Duration::from_millis(rng.gen_range(30..120)))
        };
        let mut first = true;
        for _ in 0..session_len {
            if *stop.borrow() {
                return;
            }
            let (kind, len) = {
                let mut rng = rand::thread_rng();
                let total: u32 = TYPES.iter().map(|t| t.2).sum();
                let mut pick = rng.gen_range(0..total);
                let mut kind = 0;
                for (i, t) in TYPES.iter().enumerate() {
                    if pick < t.2 {
                        kind = i;
                        break;
                    }
                    pick -= t.2;
                }
                if first {
                    kind = 4; // login first
                }
                let (lo, hi) = TYPES[kind].1;
                (kind, rng.gen_range(lo..hi))
            };
            first = false;
            let mut frame = Vec::with_capacity(len + 5);
            frame.extend_from_slice(&(len as u32).to_be_bytes());
            frame.push(kind as u8);
            frame.resize(len + 5, 0);
            if stream.write_all(&frame).await.is_err() {
                break;
            }
            let mut head = [0u8; 5];
            if stream.read_exact(&mut head).await.is_err() {
                break;
            }
            let mut body = vec![0u8; u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize];
            if stream.read_exact(&mut body).await.is_err() {
                break;
            }
            tokio::time::sleep(tick).await;
        }
        drop(stream);
        let pause = rand::thread_rng().gen_range(100..1500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
