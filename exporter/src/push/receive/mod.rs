//! The remote write 1.0 receiver: `POST /api/v1/write` (see [`ReceiveConfig`] for what it
//! accepts and its bounds), and the store of the latest point of every series it received.
//!
//! A request goes through, in order: the headers (`Content-Type: application/x-protobuf`,
//! `Content-Encoding: snappy`, else 415), the body size (`Content-Length`, then the bytes as they
//! are read; 413), the snappy header's decompressed length (413 before anything is inflated), the
//! protobuf decoding (400) and the validation of every series (400). A request refused at any of
//! these steps changes nothing. Then, under the store's lock, each series' point replaces the
//! stored one; new series past a limit are refused one by one and the rest is kept (204).

pub(crate) mod decode;
pub(crate) mod store;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use mmo_metrics::{MetricKind, MetricsManager};

use crate::http::self_metrics::ReceiveMetrics;
pub(crate) use store::Store;
use store::{Applied, RefuseReason};

/// Settings of the remote write receiver ([`ExporterBuilder::receive`](crate::ExporterBuilder::receive)).
///
/// What a request may carry, and what happens past each bound (each counted in a self-metric,
/// see [`RECEIVE_REQUESTS_REFUSED_METRIC`](crate::RECEIVE_REQUESTS_REFUSED_METRIC) and
/// [`RECEIVE_SERIES_REFUSED_METRIC`](crate::RECEIVE_SERIES_REFUSED_METRIC)):
///
/// | bound | default | past it |
/// |---|---|---|
/// | [`max_body_bytes`](Self::max_body_bytes) (compressed) | 8 MiB | 413, before the body is read when `Content-Length` says so |
/// | [`max_decompressed_bytes`](Self::max_decompressed_bytes) | 64 MiB | 413, from the snappy header, before inflating |
/// | [`max_series_per_sender`](Self::max_series_per_sender) | 50 000 | the sender's new series are refused, the rest kept (204) |
/// | [`max_series`](Self::max_series) (all senders) | 200 000 | new series are refused, the rest kept (204) |
/// | [`ttl`](Self::ttl) | 5 min | a sender's series leave that long after its last push |
/// | [`stale_grace`](Self::stale_grace) | 15 s | a series leaves that long after its stale marker, its last point exposed and forwarded until then |
///
/// Refusing whole requests for the series limits would lose their good data: remote write
/// senders never retry a 4xx. A request is refused whole (400) when it is not a valid remote
/// write 1.0 request: not snappy, not a `WriteRequest`, or a series without a valid `__name__`,
/// with an invalid or `__`-prefixed label name, a duplicate label name, labels not sorted by name
/// (the specification requires them sorted), or an invalid native histogram. Labels with an empty
/// value are dropped (an empty value is the label's absence, as in Prometheus).
///
/// A sender is the `job` and `instance` label values of a series (what Prometheus and this
/// crate's remote write sender put on every series); a series with neither belongs to the IP
/// address that sent it. A sender's series leave [`stale_grace`](Self::stale_grace) after it sends
/// their stale markers (Prometheus' stale NaN), or all at once [`ttl`](Self::ttl) after its last
/// push.
///
/// The store keeps one point per series (the newest by timestamp; an older one is ignored). Each
/// costs about 200 bytes plus its labels, so the default limits bound it to some 100 MB.
///
/// # Exposition
///
/// Received series follow the exporter's own families on `/metrics`, with their own labels
/// only (the exporter's global labels are not added: scrape the service with
/// `honor_labels: true` so their `job` and `instance` stay theirs), and without their
/// timestamps (a scrape stamps them, so Prometheus never drops them as out of order). They are
/// grouped by metric name, typed from the metadata their sender sent: `x_total` with counter
/// metadata is a counter (OpenMetrics: family `x`), a name with gauge metadata a gauge, anything
/// else, the series of classic histograms and summaries included, one untyped family per name
/// (`unknown` in OpenMetrics), which Prometheus stores as the same series. Native histograms are
/// exposed in protobuf only; the text formats cannot carry them. A received name that one of the
/// exporter's own families takes (its name, a sample name, or a name whose OpenMetrics family
/// it would be) cannot be a second family: such series are refused at ingest
/// (`reason="conflict"`), so every format stays valid for `promtool check metrics` and the strict
/// OpenMetrics parsers.
#[derive(Debug, Clone)]
pub struct ReceiveConfig {
    pub(crate) max_body_bytes: usize,
    pub(crate) max_decompressed_bytes: usize,
    pub(crate) max_series: usize,
    pub(crate) max_series_per_sender: usize,
    pub(crate) ttl: Duration,
    pub(crate) stale_grace: Duration,
}

impl Default for ReceiveConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_decompressed_bytes: 64 << 20,
            max_series: 200_000,
            max_series_per_sender: 50_000,
            ttl: Duration::from_secs(300),
            stale_grace: Duration::from_secs(15),
        }
    }
}

impl ReceiveConfig {
    /// The defaults (see the table above).
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest request body, as sent (snappy-compressed), in bytes (default 8 MiB; a Prometheus
    /// request of 2 000 samples is some 30 KB).
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// Largest body once decompressed, in bytes (default 64 MiB), checked against the length the
    /// snappy header announces before anything is inflated.
    pub fn max_decompressed_bytes(mut self, n: usize) -> Self {
        self.max_decompressed_bytes = n;
        self
    }

    /// Series stored at once, from every sender (default 200 000).
    pub fn max_series(mut self, n: usize) -> Self {
        self.max_series = n;
        self
    }

    /// Series stored at once from one sender (default 50 000).
    pub fn max_series_per_sender(mut self, n: usize) -> Self {
        self.max_series_per_sender = n;
        self
    }

    /// Time after a sender's last push when all its series leave (default 5 minutes: the
    /// lookback window of Prometheus' queries, so a sender that dies leaves this service when a
    /// series it stopped exposing would leave a Prometheus query; that is 30 missed pushes at the
    /// default 10 s interval, so a few lost pushes never drop a live sender).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Time a series stays, with its last point, after its sender's stale marker for it (default
    /// 15 s, Prometheus' default scrape interval). A sender that stops sends its last values and
    /// then its stale markers within milliseconds; without the grace no scrape of this service
    /// and no push from it would carry those last values, and the increments of the sender's
    /// last interval would never reach Prometheus. Set it to at least the scrape interval of the
    /// Prometheus that scrapes this service and the interval of this service's own pushes.
    /// Zero: the series leaves at once.
    pub fn stale_grace(mut self, grace: Duration) -> Self {
        self.stale_grace = grace;
        self
    }
}

/// Why a request was refused, with the message for its body.
#[derive(Debug)]
pub(crate) enum Refusal {
    BodyTooLarge(String),
    DecompressedTooLarge(String),
    ContentType(String),
    Encoding(String),
    Snappy(String),
    Protobuf(String),
    Invalid(String),
}

impl Refusal {
    /// The HTTP status code.
    pub(crate) fn code(&self) -> u16 {
        match self {
            Self::BodyTooLarge(_) | Self::DecompressedTooLarge(_) => 413,
            Self::ContentType(_) | Self::Encoding(_) => 415,
            Self::Snappy(_) | Self::Protobuf(_) | Self::Invalid(_) => 400,
        }
    }

    /// The `reason` label of [`crate::RECEIVE_REQUESTS_REFUSED_METRIC`].
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::BodyTooLarge(_) => "body_size",
            Self::DecompressedTooLarge(_) => "decompressed_size",
            Self::ContentType(_) => "content_type",
            Self::Encoding(_) => "content_encoding",
            Self::Snappy(_) => "snappy",
            Self::Protobuf(_) => "protobuf",
            Self::Invalid(_) => "invalid_series",
        }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            Self::BodyTooLarge(m)
            | Self::DecompressedTooLarge(m)
            | Self::ContentType(m)
            | Self::Encoding(m)
            | Self::Snappy(m)
            | Self::Protobuf(m)
            | Self::Invalid(m) => m,
        }
    }
}

/// The names a received family cannot take: every family name of the manager and every sample
/// name its exposition has (see [`Taken::contains`]).
#[derive(Default)]
pub(crate) struct Taken(HashSet<String>);

/// Suffixes a sample name may have after its family's name.
const SUFFIXES: [&str; 5] = ["_total", "_bucket", "_sum", "_count", "_created"];

impl Taken {
    /// The names `manager`'s families expose.
    pub(crate) fn of(manager: &MetricsManager) -> Self {
        let mut names = HashSet::new();
        manager.visit(|f| {
            let name = f.name();
            let suffixes: &[&str] = match f.kind() {
                MetricKind::Counter => &["_total", "_created"],
                MetricKind::Histogram => &["_bucket", "_sum", "_count", "_created"],
                MetricKind::Summary => &["_sum", "_count", "_created"],
                _ => &[],
            };
            names.insert(name.to_owned());
            for s in suffixes {
                names.insert(format!("{name}{s}"));
            }
        });
        Self(names)
    }

    /// Whether a received series named `name` would clash with the manager's families: `name`
    /// is one of their names, or `name` is a family name plus a suffix that name (`x_total`,
    /// whose OpenMetrics family is `x`, beside a gauge `x`).
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
            || SUFFIXES
                .iter()
                .any(|s| name.strip_suffix(s).is_some_and(|stem| self.0.contains(stem)))
    }
}

/// Reads at most this many requests' bodies at once; the others wait (up to the request timeout,
/// then 503, which senders retry).
const READING: usize = 4;

/// The receiver of one exporter: its settings, store and self-metrics.
pub(crate) struct Receiver {
    pub(crate) config: ReceiveConfig,
    store: Arc<Store>,
    manager: MetricsManager,
    metrics: ReceiveMetrics,
    /// Names the manager's families take, refreshed by [`Receiver::tick`] and every scrape.
    taken: RwLock<Arc<Taken>>,
    /// Per [`RefuseReason`]: whether a refusal of that reason was logged.
    logged: [AtomicBool; 3],
    /// Bodies being read or decoded, at most [`READING`].
    pub(crate) reading: tokio::sync::Semaphore,
    /// Decodes running on the blocking pool: one, so the pool's other thread stays free for
    /// scrapes. The permit moves into the blocking task, so a request whose answer timed out
    /// keeps it until its decode really ends.
    pub(crate) decoding: Arc<tokio::sync::Semaphore>,
    /// The decompressed bytes of the last request, whose allocation the next one reuses.
    buffer: Mutex<Vec<u8>>,
}

/// Largest decompression buffer kept between requests (a Prometheus request of 2,000 samples
/// decompresses to some 300 KB).
const KEPT_BUFFER: usize = 4 << 20;

impl Receiver {
    pub(crate) fn new(manager: &MetricsManager, config: ReceiveConfig) -> Self {
        let metrics = ReceiveMetrics::register(manager);
        Self {
            store: Arc::new(Store::new(
                config.max_series,
                config.max_series_per_sender,
                config.stale_grace,
            )),
            config,
            manager: manager.clone(),
            metrics,
            taken: RwLock::new(Arc::new(Taken::of(manager))),
            logged: Default::default(),
            reading: tokio::sync::Semaphore::new(READING),
            decoding: Arc::new(tokio::sync::Semaphore::new(1)),
            buffer: Mutex::default(),
        }
    }

    /// The store (what the exposition and the remote write sender read).
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Checks the request's `Content-Type` and `Content-Encoding`.
    pub(crate) fn check_headers(content_type: Option<&str>, encoding: Option<&str>) -> Result<(), Refusal> {
        let media = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
        if !media.is_some_and(|m| m.eq_ignore_ascii_case("application/x-protobuf")) {
            return Err(Refusal::ContentType(format!(
                "Content-Type: expected application/x-protobuf (remote write 1.0), found {}",
                content_type.map_or("none".to_owned(), |c| format!("`{c}`"))
            )));
        }
        // Remote write 2.0 names its message in a `proto` parameter; 1.0 has none or this one.
        if let Some(proto) = content_type
            .into_iter()
            .flat_map(|c| c.split(';').skip(1))
            .find_map(|p| p.trim().strip_prefix("proto="))
        {
            if proto.trim_matches('"') != "prometheus.WriteRequest" {
                return Err(Refusal::ContentType(format!(
                    "Content-Type: expected proto=prometheus.WriteRequest (remote write 1.0), found proto={proto}"
                )));
            }
        }
        if !encoding.is_some_and(|e| e.trim().eq_ignore_ascii_case("snappy")) {
            return Err(Refusal::Encoding(format!(
                "Content-Encoding: expected snappy, found {}",
                encoding.map_or("none".to_owned(), |e| format!("`{e}`"))
            )));
        }
        Ok(())
    }

    /// Counts a refused request.
    pub(crate) fn refused(&self, refusal: &Refusal) {
        self.metrics.request(refusal.code());
        self.metrics.request_refused(refusal.reason());
    }

    /// Counts a request that failed for another reason than its content (`timeout`, `failed`).
    pub(crate) fn refused_other(&self, code: u16, reason: &str) {
        self.metrics.request(code);
        self.metrics.request_refused(reason);
    }

    /// Decodes, validates and stores a body (the headers checked). Runs on the blocking pool.
    pub(crate) fn ingest(&self, body: &[u8], peer: IpAddr) -> Result<Applied, Refusal> {
        self.metrics.bytes(body.len());
        let mut raw = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(PoisonError::into_inner));
        decode::decompress(body, self.config.max_decompressed_bytes, &mut raw)?;
        let batch = decode::decode(&raw, self.store.hasher())?;
        self.metrics.samples(batch.points);
        let taken = Arc::clone(&self.taken.read().unwrap_or_else(PoisonError::into_inner));
        let applied = self
            .store
            .apply(batch, peer, Instant::now(), &|name| taken.contains(name));
        self.account(&applied);
        // The buffer is kept for the next request unless it grew past what a usual request needs.
        if raw.capacity() <= KEPT_BUFFER {
            *self.buffer.lock().unwrap_or_else(PoisonError::into_inner) = raw;
        }
        self.metrics.request(204);
        Ok(applied)
    }

    fn account(&self, applied: &Applied) {
        for (i, reason) in RefuseReason::ALL.into_iter().enumerate() {
            let n = applied.refused[i];
            if n == 0 {
                continue;
            }
            self.metrics.series_refused(reason.as_str(), n);
            if !self.logged[i].swap(true, Ordering::Relaxed) {
                let why = match reason {
                    RefuseReason::SenderLimit => format!(
                        "its sender has {} series already (max_series_per_sender)",
                        self.config.max_series_per_sender
                    ),
                    RefuseReason::TotalLimit => {
                        format!("the store has {} series already (max_series)", self.config.max_series)
                    }
                    RefuseReason::Conflict => "its name is taken by one of this exporter's own families".to_owned(),
                };
                tracing::warn!(
                    "remote write receiver: new series refused: {why}; first: {}; counted in \
                     mmo_metrics_receive_series_refused_total{{reason=\"{}\"}}, logged once",
                    applied.first_refused[i].as_deref().unwrap_or(""),
                    reason.as_str()
                );
            }
        }
        if applied.stale > 0 {
            self.metrics.series_removed("stale", applied.stale);
        }
        self.set_gauges();
    }

    fn set_gauges(&self) {
        let (series, senders) = self.store.len();
        self.metrics.stored(series, senders);
    }

    /// Replaces the names the manager's families take.
    pub(crate) fn set_taken(&self, taken: Arc<Taken>) {
        *self.taken.write().unwrap_or_else(PoisonError::into_inner) = taken;
    }

    /// The periodic work: expire silent senders, refresh the taken names, update the gauges.
    pub(crate) fn tick(&self) {
        let removed = self.store.expire(Instant::now(), self.config.ttl);
        if removed > 0 {
            self.metrics.series_removed("ttl", removed);
        }
        self.set_taken(Arc::new(Taken::of(&self.manager)));
        self.set_gauges();
    }

    /// The period of [`Receiver::tick`]: a tenth of the TTL, between 10 ms and 1 s, so a
    /// sender leaves at most 10 % (or 1 s) after its TTL.
    pub(crate) fn tick_period(&self) -> Duration {
        (self.config.ttl / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// Runs [`Receiver::tick`] every [`Receiver::tick_period`] on the exporter's runtime, until the
/// runtime stops.
pub(crate) async fn expiry_loop(receiver: Arc<Receiver>) {
    let mut interval = tokio::time::interval(receiver.tick_period());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        receiver.tick();
    }
}

/// The receiver's decode, validation and store, without HTTP, for the fuzz target and the
/// benchmark: not a stable API.
#[doc(hidden)]
pub struct ReceiverHarness {
    receiver: Receiver,
}

impl ReceiverHarness {
    /// A receiver registering its self-metrics in `manager`.
    pub fn new(manager: &MetricsManager, config: ReceiveConfig) -> Self {
        Self {
            receiver: Receiver::new(manager, config),
        }
    }

    /// What `POST /api/v1/write` answers to these headers and this body from 127.0.0.1, past the
    /// body size check: the status code, and the message of a refusal.
    pub fn post(&self, content_type: Option<&str>, encoding: Option<&str>, body: &[u8]) -> (u16, String) {
        let result = Receiver::check_headers(content_type, encoding).and_then(|()| {
            if body.len() > self.receiver.config.max_body_bytes {
                return Err(Refusal::BodyTooLarge(String::new()));
            }
            self.receiver.ingest(body, IpAddr::from([127, 0, 0, 1]))
        });
        match result {
            Ok(_) => (204, String::new()),
            Err(r) => {
                self.receiver.refused(&r);
                (r.code(), r.message().to_owned())
            }
        }
    }

    /// Series stored.
    pub fn series(&self) -> usize {
        self.receiver.store.len().0
    }

    /// Every stored series and metadata entry, as the remote write sender reads them
    /// (`SeriesSource`).
    pub fn stored(
        &self,
    ) -> (
        Vec<crate::remote_write_proto::TimeSeries>,
        Vec<crate::remote_write_proto::MetricMetadata>,
    ) {
        use crate::push::SeriesSource;
        let (mut series, mut metadata) = (Vec::new(), Vec::new());
        let store: &dyn SeriesSource = &*self.receiver.store;
        store.for_each_series(&mut |s| series.push(s.clone()));
        store.for_each_metadata(&mut |m| metadata.push(m.clone()));
        (series, metadata)
    }

    /// Runs the periodic expiry now.
    pub fn tick(&self) {
        self.receiver.tick();
    }

    /// The received series in `format`, as `/metrics` appends them to the manager's.
    pub fn expose(&self, format: crate::ExpositionFormat) -> Vec<u8> {
        let mut out = Vec::new();
        let taken = Taken::of(&self.receiver.manager);
        crate::encode::received::expose(&self.receiver.store.snapshot(), &taken, format, &mut out);
        out
    }
}
