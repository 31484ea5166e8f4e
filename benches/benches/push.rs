//! Remote write pushes of a 100k-series registry (`mmo_metrics_exporter::RemoteWrite`).
//!
//! - `remote_write_encode/100k_counters`: one push's encode and snappy compression
//!   (`RemoteWriteEncoder::encode`, requests of 2,000 samples, Prometheus' default), on the
//!   registry shape `100k_counters` of `benches/encode.rs` (1,000 counter names × 100 values of
//!   one label, every series incremented). Before timing, a line
//!   `bench-bytes: remote_write=… requests=… text=… text_gzip=…` goes to stderr: the bytes on
//!   the wire of one push against the text exposition of the same registry and its gzip at the
//!   level scrapes use (level 1).
//! - `push_interference`: two recording threads (a counter increment and a histogram record per
//!   operation on their own series, as in `benches/scrape_interference.rs`) while an exporter
//!   without a listener pushes the 100k-series registry every second to a receiver on loopback
//!   (a thread of this bench answering 204), against the same threads with no pusher. Figures
//!   are CPU time per operation of the slower recording thread (`getrusage(RUSAGE_THREAD)`), so
//!   the time-slicing on a two-core machine is left out and what remains is the interference
//!   (shared cache lines, memory bandwidth); pushes completed go to stderr as
//!   `bench-pushes: <n>`.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use mmo_metrics::MetricsManager;
use mmo_metrics_benches::two_recorders;
use mmo_metrics_exporter::{ExporterBuilder, PushEndpoint, RemoteWrite, RemoteWriteEncoder};

const NAMES: usize = 1_000;
const VALUES: usize = 100;

/// The `100k_counters` shape of `benches/encode.rs`: same names, label values and counts.
fn registry(extra: usize) -> MetricsManager {
    let manager = MetricsManager::builder().series_limit(VALUES + extra + 1).build();
    for n in 0..NAMES {
        let name = format!("bench_counter_{n}_total");
        manager
            .register_counter(&name, "A bench counter.", &["zone"])
            .expect("register counter");
        for v in 0..VALUES {
            manager
                .increment_counter(&name, (n * 31 + v) as u64 + 1, &[&format!("zone{v}")])
                .expect("increment");
        }
    }
    manager
}

fn gzip(text: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text).unwrap();
    enc.finish().unwrap()
}

fn encode(c: &mut Criterion) {
    let manager = registry(0);
    let mut encoder = RemoteWriteEncoder::new(2_000);
    let bodies = encoder.encode(&manager, &[], 1_700_000_000_000);
    let wire: usize = bodies.iter().map(|b| b.len()).sum();
    let text = mmo_metrics_exporter::encode_text(&manager);
    let text_gzip = gzip(text.as_bytes()).len();
    eprintln!(
        "bench-bytes: remote_write={wire} requests={} text={} text_gzip={text_gzip}",
        bodies.len(),
        text.len()
    );
    let mut g = c.benchmark_group("remote_write_encode");
    g.sample_size(30).measurement_time(Duration::from_secs(5));
    g.bench_function("100k_counters", |b| {
        b.iter(|| black_box(encoder.encode(&manager, &[], 1_700_000_000_000)))
    });
    // For reference: the text exposition of the same registry into a reused buffer, and the
    // snappy compression alone of the push's uncompressed requests.
    let mut text_buf = String::new();
    g.bench_function("100k_counters_text_reference", |b| {
        b.iter(|| {
            text_buf.clear();
            mmo_metrics_exporter::encode_text_into(&manager, &mut text_buf);
            black_box(text_buf.len())
        })
    });
    let raw: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| snap::raw::Decoder::new().decompress_vec(b).unwrap())
        .collect();
    eprintln!(
        "bench-bytes: remote_write_uncompressed={}",
        raw.iter().map(Vec::len).sum::<usize>()
    );
    let mut snappy = snap::raw::Encoder::new();
    let mut out = vec![0; raw.iter().map(|r| snap::raw::max_compress_len(r.len())).max().unwrap()];
    g.bench_function("100k_counters_snappy_only", |b| {
        b.iter(|| {
            for r in &raw {
                black_box(snappy.compress(r, &mut out).unwrap());
            }
        })
    });
    g.finish();
}

/// A receiver that answers every request 204 after reading its body; counts requests.
fn sink() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&requests);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let count = Arc::clone(&count);
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    if writer.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, requests)
}

fn interference(c: &mut Criterion) {
    let m = registry(2);
    let hot = mmo_metrics_benches::hot_series(&m);
    let op = |t: usize, i: u64| {
        hot[t].0.increment(1);
        hot[t].1.record(mmo_metrics_benches::value(i));
    };
    let mut g = c.benchmark_group("push_interference");
    g.measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    g.bench_function("cpu/quiet", |b| b.iter_custom(|iters| two_recorders(iters, true, &op)));
    let (addr, requests) = sink();
    let endpoint = PushEndpoint::new(&format!("http://{addr}/api/v1/write")).unwrap();
    let exporter = ExporterBuilder::new(m.clone())
        .without_listener()
        .remote_write(RemoteWrite::new(endpoint).interval(Duration::from_secs(1)))
        .serve()
        .unwrap();
    let before = requests.load(Ordering::Relaxed);
    g.bench_function("cpu/pushing_100k_every_1s", |b| {
        b.iter_custom(|iters| two_recorders(iters, true, &op))
    });
    let pushed = requests.load(Ordering::Relaxed) - before;
    drop(exporter);
    eprintln!(
        "bench-pushes: {} requests ({} per push)",
        pushed,
        100_002usize.div_ceil(2_000)
    );
    g.finish();
}

criterion_group!(benches, encode, interference);
criterion_main!(benches);
