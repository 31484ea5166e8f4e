//! Remote write 1.0 pushes (`RemoteWrite`) into real receivers on loopback: Prometheus 2.42
//! (`--web.enable-remote-write-receiver`, with native histograms), VictoriaMetrics, and a small
//! receiver of this file for what real ones will not do on demand (answer 500, 429 or 400,
//! stall, show the exact bytes and headers, serve TLS with a certificate made for the test).

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use mmo_metrics::{MetricsManager, NativeConfig};
use mmo_metrics_exporter::remote_write_proto::WriteRequest;
use mmo_metrics_exporter::{
    Exporter, ExporterBuilder, PushEndpoint, RemoteWrite, REMOTE_WRITE_DURATION_METRIC, REMOTE_WRITE_PENDING_METRIC,
    REMOTE_WRITE_REQUESTS_METRIC, REMOTE_WRITE_RETRIES_METRIC, REMOTE_WRITE_SAMPLES_METRIC,
};
use prost::Message;
use support::{free_port, get, query, tempdir, tool, wait_until, Proc, Prometheus};

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

// ---------------------------------------------------------------------------------------------
// Reading the manager and the self-metrics.

/// One sample of the text exposition: name, labels (empty values left out), value.
#[derive(Debug, Clone, PartialEq)]
struct TextSample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of the text exposition of `m` with `globals` (label values without `"`, `,` or
/// escapes), but the exporter's own `mmo_metrics_*` families, which change with every push.
fn text_samples(m: &MetricsManager, globals: &[(String, String)]) -> Vec<TextSample> {
    let mut text = String::new();
    mmo_metrics_exporter::encode_text_with(m, globals, &mut text);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("mmo_metrics_"))
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> TextSample {
    let (series, value) = line.rsplit_once(' ').unwrap();
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.trim_end_matches('}')),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap(),
    };
    TextSample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// The value of a self-metric sample of `m` whose labels include `labels` (0 when absent).
fn self_metric(m: &MetricsManager, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = mmo_metrics_exporter::encode_text(m);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(parse_line)
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| s.value)
        .sum()
}

/// Pushes that ended (delivered or not) for the endpoint at `url`.
fn pushes(m: &MetricsManager, url: &str) -> f64 {
    self_metric(m, &format!("{REMOTE_WRITE_DURATION_METRIC}_count"), &[("url", url)])
}

/// Waits until two more pushes to `url` ended: the second began after this call, so it carries
/// every value recorded before it.
fn wait_two_pushes(m: &MetricsManager, url: &str) {
    let start = pushes(m, url);
    wait_until("two more pushes", Duration::from_secs(30), || {
        pushes(m, url) >= start + 2.0
    });
}

// ---------------------------------------------------------------------------------------------
// The registry pushed.

fn globals() -> Vec<(String, String)> {
    vec![("service".into(), "login".into())]
}

/// Counters, a gauge, a classic histogram, a summary, a histogram both classic and native, and
/// (`native`) a native-only histogram; label names that sort before `__name__`.
fn game_server(native: bool) -> MetricsManager {
    let m = MetricsManager::builder()
        .add_global_label("host", "h1")
        .unwrap()
        .build();
    m.register_counter("logins", "Logins.", &["Zone", "result"]).unwrap();
    m.increment_counter("logins", 7, &["north", "ok"]).unwrap();
    m.increment_counter("logins", 2, &["south", "denied"]).unwrap();
    m.register_gauge("players", "Players online.", &["zone"]).unwrap();
    m.set_gauge("players", 41.5, &["north"]).unwrap();
    m.set_gauge("players", -3.0, &["south"]).unwrap();
    m.register_histogram("tick_seconds", "Tick time.", &["shard"], &[0.01, 0.1, 1.0])
        .unwrap();
    m.register_summary("rtt_seconds", "Round trips.", &["peer"], &[0.5, 0.9])
        .unwrap();
    for i in 1..=20 {
        m.observe_histogram("tick_seconds", f64::from(i) / 40.0, &["a"])
            .unwrap();
        m.observe_summary("rtt_seconds", f64::from(i) / 100.0, &["b"]).unwrap();
    }
    if native {
        m.register_native_histogram("frame_seconds", "Frames.", &["zone"], NativeConfig::default())
            .unwrap();
        m.register_histogram_with_native("queue_seconds", "Queue.", &[], &[0.5], NativeConfig::default())
            .unwrap();
        for v in [0.0, 0.3, -2.0, 0.25, 1.0, 7.5] {
            m.observe_histogram("frame_seconds", v, &["north"]).unwrap();
            m.observe_histogram("queue_seconds", v, &[]).unwrap();
        }
    }
    m
}

fn push_only(m: &MetricsManager, rw: RemoteWrite) -> Exporter {
    let mut b = ExporterBuilder::new(m.clone()).without_listener();
    for (k, v) in globals() {
        b = b.global_label(k, v);
    }
    b.remote_write(rw).serve().unwrap()
}

fn fast(url: &str) -> RemoteWrite {
    RemoteWrite::new(PushEndpoint::new(url).unwrap().timeout(Duration::from_secs(5)))
        .interval(Duration::from_millis(150))
        .min_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(100))
}

// ---------------------------------------------------------------------------------------------
// Real receivers.

/// `{__name__="n",k="v",…}`.
fn selector(s: &TextSample) -> String {
    let mut sel = format!("{{__name__=\"{}\"", s.name);
    for (k, v) in &s.labels {
        sel.push_str(&format!(",{k}=\"{v}\""));
    }
    sel.push('}');
    sel
}

/// Prometheus' instant vector for `q`: each series' labels and value.
fn prom_vector(prom: SocketAddr, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let v = query(prom, q);
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            (labels, r["value"][1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// Every sample of the text exposition is in Prometheus with exactly its labels and value.
fn prometheus_has(prom: SocketAddr, expected: &[TextSample]) -> Result<(), String> {
    for s in expected {
        let got = prom_vector(prom, &selector(s));
        let mut labels = s.labels.clone();
        labels.insert("__name__".into(), s.name.clone());
        if got.len() != 1 || got[0].0 != labels || got[0].1 != s.value {
            return Err(format!(
                "{}: expected {} with {labels:?}, found {got:?}",
                selector(s),
                s.value
            ));
        }
    }
    Ok(())
}

#[test]
fn prometheus_receives_every_kind_with_exact_values_then_stale_markers() {
    let Some(bin) = tool("prometheus") else { return };
    let prom = Prometheus::receiver(&bin, &["--enable-feature=native-histograms"]);
    let m = game_server(true);
    let url = format!("http://{}/api/v1/write", prom.addr);
    let exporter = push_only(&m, fast(&url));
    // A series that goes away: created through a handle, dropped, then removed.
    m.register_gauge("zone_load", "Load.", &["zone"]).unwrap();
    m.gauge("zone_load", &["7"]).unwrap().set(0.25);
    m.gauge("zone_load", &["8"]).unwrap().set(0.5);
    m.increment_counter("logins", 5, &["north", "ok"]).unwrap();
    wait_two_pushes(&m, &url);

    // Every sample of the text exposition, in Prometheus with its labels (own, global and the
    // manager's) and value; the native-only histogram is not in the text's classic form.
    let expected: Vec<_> = text_samples(&m, &globals())
        .into_iter()
        .filter(|s| !s.name.starts_with("frame_seconds"))
        .collect();
    assert!(expected
        .iter()
        .any(|s| s.name == "tick_seconds_bucket" && s.labels["le"] == "0.1"));
    assert!(expected
        .iter()
        .any(|s| s.name == "rtt_seconds" && s.labels["quantile"] == "0.9"));
    assert!(expected.iter().any(|s| s.name == "logins_total" && s.value == 12.0));
    let mut last = Ok(());
    wait_until("Prometheus holds every sample", Duration::from_secs(20), || {
        last = prometheus_has(prom.addr, &expected);
        last.is_ok()
    });
    // Native histograms: count and sum as the manager has them, buckets as a quantile.
    for (q, want) in [
        (
            "histogram_count(frame_seconds{zone=\"north\",service=\"login\",host=\"h1\"})",
            6.0,
        ),
        ("histogram_sum(frame_seconds)", 0.0 + 0.3 - 2.0 + 0.25 + 1.0 + 7.5),
        ("histogram_count(queue_seconds)", 6.0),
    ] {
        let got = prom_vector(prom.addr, q);
        assert_eq!(got.len(), 1, "{q}: {got:?}\n{}", prom.log());
        assert!((got[0].1 - want).abs() < 1e-9, "{q}: {got:?}, expected {want}");
    }
    let q = prom_vector(prom.addr, "histogram_quantile(1, frame_seconds)");
    // Schema 3: 7.5 is in the bucket (2^(23/8), 2^3]; quantile 1 is that bucket's upper bound.
    assert_eq!(q[0].1, 8.0, "the top bucket holds 7.5: {q:?}");

    // A removed series ends with a stale marker: gone from queries at once, not after 5 min.
    assert_eq!(prom_vector(prom.addr, "zone_load").len(), 2);
    assert!(m.remove_series("zone_load", &["7"]).unwrap());
    wait_until("the removed series is stale", Duration::from_secs(20), || {
        prom_vector(prom.addr, "zone_load").len() == 1
    });
    assert_eq!(prom_vector(prom.addr, "zone_load{zone=\"8\"}")[0].1, 0.5);

    // A clean shutdown: the last values, then every series stale.
    m.increment_counter("logins", 1, &["south", "denied"]).unwrap();
    let before = prom_vector(prom.addr, "count({service=\"login\"})")[0].1;
    assert!(before > 20.0, "{before}");
    let started = Instant::now();
    drop(exporter);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let v = prom_vector(prom.addr, "{service=\"login\"}");
    assert!(v.is_empty(), "every series is stale after the shutdown: {v:?}");
    // The last values arrived before the markers (range functions skip the markers).
    let last = prom_vector(prom.addr, "last_over_time(logins_total{Zone=\"south\"}[1m])");
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0].1, 3.0, "the final push carried the last increment");
}

/// A VictoriaMetrics on loopback, killed and cleaned up on drop.
struct Victoria {
    addr: SocketAddr,
    dir: std::path::PathBuf,
    _proc: Proc,
}

impl Victoria {
    fn start(bin: &Path) -> Self {
        let dir = tempdir();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.join("vm.log")).unwrap();
        let proc = Proc(
            Command::new(bin)
                .arg(format!("-httpListenAddr={addr}"))
                .arg(format!("-storageDataPath={}", dir.join("data").display()))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        wait_until("VictoriaMetrics healthy", Duration::from_secs(30), || {
            get(&format!("http://{addr}/health")).0 == 200
        });
        Self { addr, dir, _proc: proc }
    }

    /// The last value of every series (`/api/v1/export`).
    fn last_values(&self) -> Vec<(BTreeMap<String, String>, f64)> {
        let (code, body) = get(&format!(
            "http://{}/api/v1/export?match[]=%7B__name__%3D~%22.%2B%22%7D",
            self.addr
        ));
        assert_eq!(code, 200, "{body}");
        body.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let labels = v["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                let ts = v["timestamps"].as_array().unwrap();
                let values = v["values"].as_array().unwrap();
                let last = (0..ts.len()).max_by_key(|&i| ts[i].as_i64().unwrap()).unwrap();
                (labels, values[last].as_f64().unwrap_or(f64::NAN))
            })
            .collect()
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self._proc.0.kill();
        let _ = self._proc.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn victoria_metrics_receives_the_same_series_and_values() {
    let Some(bin) = tool("victoria-metrics") else { return };
    let vm = Victoria::start(&bin);
    let m = game_server(false);
    let url = format!("http://{}/api/v1/write", vm.addr);
    let _exporter = push_only(&m, fast(&url));
    m.increment_counter("logins", 5, &["north", "ok"]).unwrap();
    wait_two_pushes(&m, &url);
    let expected = text_samples(&m, &globals());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = vm.last_values();
        let missing: Vec<_> = expected
            .iter()
            .filter(|s| {
                let mut labels = s.labels.clone();
                labels.insert("__name__".into(), s.name.clone());
                // VictoriaMetrics keeps about 12 significant digits (it stores decimals).
                !got.iter()
                    .any(|(l, v)| *l == labels && (v - s.value).abs() <= 1e-11 * s.value.abs().max(1.0))
            })
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "VictoriaMetrics lacks {missing:#?}\nit has {got:#?}"
        );
        thread::sleep(Duration::from_millis(250));
    }
    assert!(expected.iter().any(|s| s.name == "logins_total" && s.value == 12.0));
}

#[test]
fn a_receiver_down_then_back_costs_resolution_only() {
    let Some(bin) = tool("prometheus") else { return };
    let prom = Prometheus::receiver(&bin, &[]);
    let m = MetricsManager::new();
    m.register_counter("events", "Events.", &["zone"]).unwrap();
    let events = m.counter("events", &["a"]).unwrap();
    let url = format!("http://{}/api/v1/write", prom.addr);
    let rw = fast(&url).max_retries(2).interval(Duration::from_millis(100));
    let exporter = push_only(&m, rw);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let recorder = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                events.increment(1);
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    wait_until("the first samples", Duration::from_secs(20), || {
        prom_vector(prom.addr, "events_total")
            .first()
            .is_some_and(|s| s.1 > 0.0)
    });
    let before_kill = prom_vector(prom.addr, "events_total")[0].1;
    let (addr, dir) = prom.kill_keeping_data();
    let one_push = || {
        let mut enc = mmo_metrics_exporter::RemoteWriteEncoder::new(usize::MAX);
        let body = enc.encode(&m, &globals(), 1).remove(0);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        WriteRequest::decode(&raw[..]).unwrap().timeseries.len() as f64
    };
    let dropped_before = self_metric(&m, REMOTE_WRITE_SAMPLES_METRIC, &[("result", "dropped")]);
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(3) {
        let pending = self_metric(&m, REMOTE_WRITE_PENDING_METRIC, &[("url", &url)]);
        let bound = one_push() + 50.0;
        assert!(
            pending <= bound,
            "{pending} samples pending: more than one snapshot ({bound})"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let dropped = self_metric(&m, REMOTE_WRITE_SAMPLES_METRIC, &[("result", "dropped")]) - dropped_before;
    assert!(dropped > 0.0, "pushes during the outage are dropped, not queued");
    assert!(self_metric(&m, REMOTE_WRITE_REQUESTS_METRIC, &[("url", &url), ("code", "error")]) > 0.0);

    let prom = Prometheus::receiver_at(&bin, addr, dir, &[]);
    let sent = self_metric(&m, REMOTE_WRITE_SAMPLES_METRIC, &[("result", "sent")]);
    wait_until("pushes resume", Duration::from_secs(30), || {
        self_metric(&m, REMOTE_WRITE_SAMPLES_METRIC, &[("result", "sent")]) > sent
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    recorder.join().unwrap();
    wait_two_pushes(&m, &url);
    let want = self_metric(&m, "events_total", &[("zone", "a")]);
    let raw = query(prom.addr, "events_total[5m]");
    let values: Vec<f64> = raw["data"]["result"][0]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{raw}"))
        .iter()
        .map(|v| v[1].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "the counter went down: {values:?}"
    );
    assert_eq!(values.last(), Some(&want), "{values:?}");
    // Values from both sides of the gap.
    assert!(
        values[0] <= before_kill && want > before_kill,
        "{before_kill}: {values:?}"
    );
    drop(exporter);
}

// ---------------------------------------------------------------------------------------------
// A receiver of our own, for the answers and bytes real ones do not show.

#[derive(Debug, Clone)]
struct Req {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn decode(&self) -> WriteRequest {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&self.body)
            .expect("snappy block format");
        WriteRequest::decode(&raw[..]).expect("a WriteRequest")
    }
}

/// What the receiver answers: each status of `script` in turn, then `then` (0: never answer).
struct TestReceiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Req>>>,
}

impl TestReceiver {
    fn start(script: &[u16], then: u16, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let reqs = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (reqs, script, tls) = (Arc::clone(&reqs), Arc::clone(&script), tls.clone());
                thread::spawn(move || match tls {
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config).unwrap();
                        serve(rustls::StreamOwned::new(conn, stream), &reqs, &script, then);
                    }
                    None => serve(stream, &reqs, &script, then),
                });
            }
        });
        Self { addr, requests }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}/api/v1/write", self.addr)
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve<S: Read + Write>(stream: S, reqs: &Mutex<Vec<Req>>, script: &Mutex<VecDeque<u16>>, then: u16) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut headers = Vec::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.to_owned(), v.trim().to_owned()));
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        reqs.lock().unwrap().push(Req { headers, body });
        let status = script.lock().unwrap().pop_front().unwrap_or(then);
        if status == 0 {
            thread::sleep(Duration::from_secs(600));
            return;
        }
        let answer = format!("HTTP/1.1 {status} Status\r\ncontent-length: 8\r\n\r\nbecause!");
        let s = reader.get_mut();
        if s.write_all(answer.as_bytes()).and_then(|()| s.flush()).is_err() {
            return;
        }
    }
}

/// The labels of a series as a map.
fn labels_of(t: &mmo_metrics_exporter::remote_write_proto::TimeSeries) -> BTreeMap<String, String> {
    t.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect()
}

#[test]
fn exact_headers_and_snappy_block_bodies_holding_the_exposition() {
    let receiver = TestReceiver::start(&[], 204, None);
    let m = game_server(false);
    let exporter = push_only(&m, fast(&receiver.url("http")).max_samples_per_request(10_000));
    wait_until("a push", Duration::from_secs(10), || !receiver.requests().is_empty());
    let req = receiver.requests().remove(0);
    assert_eq!(req.header("Content-Encoding"), Some("snappy"));
    assert_eq!(req.header("Content-Type"), Some("application/x-protobuf"));
    assert_eq!(req.header("X-Prometheus-Remote-Write-Version"), Some("0.1.0"));
    assert_eq!(
        req.header("User-Agent"),
        Some(concat!("mmo-metrics/", env!("CARGO_PKG_VERSION")))
    );
    let write = req.decode();
    let ts = write.timeseries[0].samples[0].timestamp;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now - ts).abs() < 60_000, "milliseconds since the epoch: {ts}");
    for t in &write.timeseries {
        let names: Vec<&str> = t.labels.iter().map(|l| l.name.as_str()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted: {names:?}");
        assert!(t.samples.iter().all(|s| s.timestamp == ts), "one timestamp per push");
    }
    for s in text_samples(&m, &globals()) {
        let mut labels = s.labels.clone();
        labels.insert("__name__".into(), s.name.clone());
        assert!(
            write
                .timeseries
                .iter()
                .any(|t| labels_of(t) == labels && t.samples[0].value == s.value),
            "{s:?} not in the push"
        );
    }
    let logins = write
        .metadata
        .iter()
        .find(|md| md.metric_family_name == "logins_total")
        .unwrap();
    assert_eq!((logins.r#type, logins.help.as_str()), (1, "Logins."));
    drop(exporter);
}

/// Every log line of the test binary (one global subscriber; lines name their endpoint's port).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let b = Arc::clone(&buf);
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || W(Arc::clone(&b)))
            .init();
        buf
    })
    .clone()
}

#[test]
fn server_errors_and_429_are_retried_and_400_is_not() {
    let logs = logs();
    let m = game_server(false);
    // 500 then 204: the same request again.
    for first in [500u16, 429] {
        let receiver = TestReceiver::start(&[first], 204, None);
        let url = receiver.url("http");
        let exporter = push_only(
            &m,
            fast(&url)
                .interval(Duration::from_secs(3600))
                .max_samples_per_request(100_000),
        );
        drop(exporter); // the shutdown's last push goes through the retry as well
        let reqs = receiver.requests();
        assert!(reqs.len() >= 2, "{first}: {} requests", reqs.len());
        assert_eq!(reqs[0].body, reqs[1].body, "{first}: the retry sends the same request");
        assert_eq!(self_metric(&m, REMOTE_WRITE_RETRIES_METRIC, &[("url", &url)]), 1.0);
        assert_eq!(
            self_metric(
                &m,
                REMOTE_WRITE_REQUESTS_METRIC,
                &[("url", &url), ("code", &first.to_string())]
            ),
            1.0
        );
        let samples = reqs[1].decode().timeseries.len() as f64;
        assert!(self_metric(&m, REMOTE_WRITE_SAMPLES_METRIC, &[("url", &url), ("result", "sent")]) >= samples);
        assert_eq!(
            self_metric(&m, REMOTE_WRITE_SAMPLES_METRIC, &[("url", &url), ("result", "dropped")]),
            0.0
        );
    }

    // 400: never retried, counted `failed`, logged once however many pushes it refuses.
    let receiver = TestReceiver::start(&[], 400, None);
    let url = receiver.url("http");
    let exporter = push_only(&m, fast(&url));
    wait_until("three refused pushes", Duration::from_secs(20), || {
        receiver.requests().len() >= 3
    });
    drop(exporter);
    let reqs = receiver.requests();
    let samples: usize = reqs.iter().map(|r| r.decode().timeseries.len()).sum();
    assert_eq!(self_metric(&m, REMOTE_WRITE_RETRIES_METRIC, &[("url", &url)]), 0.0);
    assert_eq!(
        self_metric(&m, REMOTE_WRITE_REQUESTS_METRIC, &[("url", &url), ("code", "400")]),
        reqs.len() as f64
    );
    assert_eq!(
        self_metric(&m, REMOTE_WRITE_SAMPLES_METRIC, &[("url", &url), ("result", "failed")]),
        samples as f64
    );
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let port = format!(":{}/", receiver.addr.port());
    let lines: Vec<_> = text
        .lines()
        .filter(|l| l.contains(&port) && l.contains("400"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("not retried") && lines[0].contains("because!"),
        "{}",
        lines[0]
    );
}

#[test]
fn shutdown_sends_the_last_values_then_stale_markers_and_a_dead_receiver_cannot_hold_it() {
    let receiver = TestReceiver::start(&[], 204, None);
    let m = game_server(false);
    let exporter = push_only(&m, fast(&receiver.url("http")).interval(Duration::from_secs(3600)));
    m.increment_counter("logins", 1, &["north", "ok"]).unwrap();
    drop(exporter);
    let reqs = receiver.requests();
    let timestamp = |r: &WriteRequest| r.timeseries[0].samples[0].timestamp;
    let requests: Vec<WriteRequest> = reqs.iter().map(Req::decode).collect();
    let last_ts = timestamp(requests.last().unwrap());
    let (markers, values): (Vec<_>, Vec<_>) = requests.iter().partition(|r| timestamp(r) == last_ts);
    let marked: Vec<_> = markers.iter().flat_map(|r| &r.timeseries).collect();
    let valued: Vec<_> = values.iter().flat_map(|r| &r.timeseries).collect();
    assert!(marked.iter().all(|t| t.samples[0].value.to_bits() == STALE_NAN));
    assert!(valued
        .iter()
        .all(|t| t.samples[0].value.to_bits() != STALE_NAN && t.samples[0].timestamp < last_ts));
    let mut a: Vec<_> = marked.iter().map(|t| labels_of(t)).collect();
    let mut b: Vec<_> = valued.iter().map(|t| labels_of(t)).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "a marker for every series of the last push");
    let logins = valued
        .iter()
        .find(|t| labels_of(t).get("Zone").map(String::as_str) == Some("north"))
        .unwrap();
    assert_eq!(logins.samples[0].value, 8.0, "the last push has the last increment");

    // A receiver that never answers: the shutdown ends at its deadline.
    let stalled = TestReceiver::start(&[], 0, None);
    let rw = RemoteWrite::new(
        PushEndpoint::new(&stalled.url("http"))
            .unwrap()
            .timeout(Duration::from_secs(60)),
    )
    .interval(Duration::from_millis(50))
    .shutdown_timeout(Duration::from_secs(1));
    let exporter = push_only(&m, rw);
    wait_until("a stalled push", Duration::from_secs(10), || {
        !stalled.requests().is_empty()
    });
    let started = Instant::now();
    drop(exporter);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
}

/// A certificate for 127.0.0.1 made by `openssl` now: (certificate PEM path, key PEM path).
fn certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let config = dir.join("openssl.cnf");
    std::fs::write(
        &config,
        "[req]\ndistinguished_name = dn\nx509_extensions = v3\nprompt = no\n[dn]\nCN = 127.0.0.1\n\
         [v3]\nbasicConstraints = critical,CA:FALSE\nsubjectAltName = IP:127.0.0.1\n\
         keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .arg("-config")
        .arg(&config)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

#[test]
fn tls_with_a_ca_file_and_credentials_and_extra_headers() {
    if tool("openssl").is_none() {
        return;
    }
    use rustls_pki_types::pem::PemObject;
    let dir = tempdir();
    let (cert, key) = certificate(&dir);
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let receiver = TestReceiver::start(&[], 204, Some(Arc::new(config)));
    let url = receiver.url("https");
    let m = game_server(false);
    let basic = PushEndpoint::new(&url)
        .unwrap()
        .ca_file(&cert)
        .basic_auth("game", "s3cret")
        .header("X-Scope-OrgID", "tenant-1")
        .unwrap();
    let bearer = PushEndpoint::new(&url).unwrap().ca_file(&cert).bearer_token("t0ken");
    let exporter = ExporterBuilder::new(m.clone())
        .without_listener()
        .remote_write(RemoteWrite::new(basic).interval(Duration::from_millis(100)))
        .remote_write(RemoteWrite::new(bearer).interval(Duration::from_millis(100)))
        .serve()
        .unwrap();
    assert_eq!(exporter.local_addr(), "0.0.0.0:0".parse().unwrap());
    wait_until("pushes with both credentials", Duration::from_secs(10), || {
        let r = receiver.requests();
        r.iter()
            .any(|r| r.header("Authorization") == Some("Basic Z2FtZTpzM2NyZXQ="))
            && r.iter().any(|r| r.header("Authorization") == Some("Bearer t0ken"))
    });
    for r in receiver.requests() {
        let basic = r.header("Authorization") == Some("Basic Z2FtZTpzM2NyZXQ=");
        assert_eq!(r.header("X-Scope-OrgID").is_some(), basic);
        if basic {
            assert_eq!(r.header("X-Scope-OrgID"), Some("tenant-1"));
        }
        assert!(!r.decode().timeseries.is_empty());
    }
    drop(exporter);

    // Without the CA file the system's authorities do not know the certificate: no answer,
    // counted `error`.
    let m = game_server(false);
    let untrusted = PushEndpoint::new(&url).unwrap();
    let before = receiver.requests().len();
    let exporter = push_only(
        &m,
        RemoteWrite::new(untrusted)
            .interval(Duration::from_millis(100))
            .max_retries(0),
    );
    wait_until("an untrusted push", Duration::from_secs(10), || {
        self_metric(&m, REMOTE_WRITE_REQUESTS_METRIC, &[("code", "error")]) > 0.0
    });
    drop(exporter);
    assert_eq!(
        receiver.requests().len(),
        before,
        "no request over an untrusted connection"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
