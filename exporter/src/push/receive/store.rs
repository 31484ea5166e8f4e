//! The latest point of every received series, who sent it and when, and the metadata of the
//! families that have series.
//!
//! One mutex guards everything; it is held to apply a validated request (a hash-table probe per
//! series: the hashes are computed before, outside it), to copy out a snapshot (one `Arc` clone
//! per series), and to expire senders. Series are `Arc<TimeSeries>` so that a snapshot costs no
//! string copies; updating a series that a snapshot still holds copies that one series.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hashbrown::hash_table::Entry as TableEntry;
use hashbrown::{DefaultHashBuilder, HashTable};

use super::decode::{describe, stored_name, Batch, Point, Value};
use crate::push::remote_write::proto::{Label, MetricMetadata, Sample, TimeSeries};
use crate::push::SeriesSource;

/// Why a new series was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefuseReason {
    /// Its sender has [`super::ReceiveConfig::max_series_per_sender`] series already.
    SenderLimit,
    /// The store has [`super::ReceiveConfig::max_series`] series already.
    TotalLimit,
    /// Its name is one of the exporter's own families' (see [`Store::apply`]).
    Conflict,
}

impl RefuseReason {
    pub(crate) const ALL: [RefuseReason; 3] = [Self::SenderLimit, Self::TotalLimit, Self::Conflict];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::SenderLimit => "sender_limit",
            Self::TotalLimit => "total_limit",
            Self::Conflict => "conflict",
        }
    }
}

/// What applying one request did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub(crate) added: usize,
    pub(crate) updated: usize,
    /// Series removed by a stale marker.
    pub(crate) stale: usize,
    /// New series refused, by [`RefuseReason`] (index in [`RefuseReason::ALL`]), and the first
    /// refused series of each reason (`name{labels}`), for the log.
    pub(crate) refused: [usize; 3],
    pub(crate) first_refused: [Option<String>; 3],
}

/// Who sent a series: its `job` and `instance` label values, or for a series that has neither,
/// the address of the peer that sent it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SenderKey {
    Labels { job: String, instance: String },
    Peer(IpAddr),
}

struct Sender {
    key: SenderKey,
    series: usize,
    last_push: Instant,
}

struct Entry {
    hash: u64,
    series: Arc<TimeSeries>,
    /// Index of its sender in [`Inner::senders`].
    sender: u32,
    timestamp: i64,
    /// When its sender sent its stale marker: the series stays, with its last point, for the
    /// store's stale grace, then leaves.
    ended: Option<Instant>,
}

struct Family {
    metadata: Arc<MetricMetadata>,
    received: Instant,
}

#[derive(Default)]
struct Inner {
    table: HashTable<Entry>,
    /// Senders by index; `None` for a free slot (in `free`).
    senders: Vec<Option<Sender>>,
    free: Vec<u32>,
    by_key: HashMap<SenderKey, u32>,
    /// Series per metric name: which families have series.
    names: HashMap<String, usize>,
    /// Metadata by family name.
    metadata: HashMap<String, Family>,
}

/// A copy of the store's contents for one exposition or push.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub(crate) series: Vec<Arc<TimeSeries>>,
    pub(crate) metadata: Vec<Arc<MetricMetadata>>,
}

/// The received series.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    hasher: DefaultHashBuilder,
    max_series: usize,
    max_series_per_sender: usize,
    stale_grace: Duration,
}

/// Series applied per taking of the lock ([`Store::apply`]).
const CHUNK: usize = 4096;

/// Suffixes of the sample names a family's series may have besides its own name.
const SUFFIXES: [&str; 6] = ["_total", "_bucket", "_sum", "_count", "_created", "_info"];

impl Store {
    /// A store of at most `max_series` series, `max_series_per_sender` from one sender; a series
    /// whose stale marker arrives leaves `stale_grace` later (at once for zero).
    pub(crate) fn new(max_series: usize, max_series_per_sender: usize, stale_grace: Duration) -> Self {
        Self {
            inner: Mutex::default(),
            hasher: DefaultHashBuilder::default(),
            max_series,
            max_series_per_sender,
            stale_grace,
        }
    }

    /// The hasher of label sets ([`Point::hash`]).
    pub(crate) fn hasher(&self) -> &DefaultHashBuilder {
        &self.hasher
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a validated request from `peer` at `now`: each point replaces the stored one of
    /// its series unless older; a stale marker removes its series; a new series is stored unless
    /// `taken(name)` (a name of the exporter's own families), its sender is at
    /// its limit or the store is full, and then it is refused (counted in the result) and the
    /// rest of the request is applied. Metadata replaces the family's.
    pub(crate) fn apply(&self, batch: Batch<'_>, peer: IpAddr, now: Instant, taken: &dyn Fn(&str) -> bool) -> Applied {
        let Batch {
            labels,
            series,
            metadata,
            ..
        } = batch;
        let mut applied = Applied::default();
        let mut series = series.into_iter().peekable();
        // The lock is taken per chunk of series, so a large request never holds off a scrape's
        // snapshot for long: about 1 ms per chunk in the ingest bench.
        while series.peek().is_some() {
            let mut inner = self.lock();
            let inner = &mut *inner;
            // Requests come from one sender at a time, mostly: the last sender's labels are
            // compared before its key is built and looked up (within a chunk: a sender may expire
            // between two).
            let mut last: Option<(&str, &str, u32)> = None;
            for point in series.by_ref().take(CHUNK) {
                let pairs = &labels[point.labels.clone()];
                let (job, instance) = sender_labels(pairs);
                let sender = match last {
                    Some((j, i, id)) if j == job && i == instance => id,
                    _ => {
                        let key = if job.is_empty() && instance.is_empty() {
                            SenderKey::Peer(peer)
                        } else {
                            SenderKey::Labels {
                                job: job.to_owned(),
                                instance: instance.to_owned(),
                            }
                        };
                        let id = inner.sender(key, now);
                        last = Some((job, instance, id));
                        id
                    }
                };
                inner.apply_point(point, pairs, sender, self, taken, &mut applied);
            }
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        for m in metadata {
            let full = inner.metadata.len() >= self.max_series;
            match inner.metadata.get_mut(&m.metric_family_name) {
                Some(f) => {
                    if *f.metadata != m {
                        f.metadata = Arc::new(m);
                    }
                    f.received = now;
                }
                None if !full => {
                    inner.metadata.insert(
                        m.metric_family_name.clone(),
                        Family {
                            metadata: Arc::new(m),
                            received: now,
                        },
                    );
                }
                None => {}
            }
        }
        applied
    }

    /// Removes every series of the senders that have not pushed for `ttl`, the series whose stale
    /// grace is over, and the metadata of families without series received more than `ttl` ago.
    /// Returns the series removed by the ttl.
    pub(crate) fn expire(&self, now: Instant, ttl: Duration) -> usize {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let grace = self.stale_grace;
        if inner.table.iter().any(|e| e.ended.is_some()) {
            let names = &mut inner.names;
            let senders = &mut inner.senders;
            inner.table.retain(|e| {
                let over = e.ended.is_some_and(|t| now.saturating_duration_since(t) >= grace);
                if over {
                    forget_name(names, stored_name(&e.series.labels));
                    if let Some(s) = &mut senders[e.sender as usize] {
                        s.series = s.series.saturating_sub(1);
                    }
                }
                !over
            });
        }
        let gone: Vec<u32> = inner
            .senders
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref()
                    .filter(|s| now.saturating_duration_since(s.last_push) >= ttl)
                    .map(|_| i as u32)
            })
            .collect();
        let mut removed = 0;
        if !gone.is_empty() {
            let names = &mut inner.names;
            let senders = &inner.senders;
            inner.table.retain(|e| {
                let expired = senders[e.sender as usize]
                    .as_ref()
                    .is_some_and(|s| now.saturating_duration_since(s.last_push) >= ttl);
                if expired {
                    removed += 1;
                    forget_name(names, stored_name(&e.series.labels));
                }
                !expired
            });
            for id in gone {
                if let Some(s) = inner.senders[id as usize].take() {
                    inner.by_key.remove(&s.key);
                    inner.free.push(id);
                }
            }
        }
        let names = &inner.names;
        inner
            .metadata
            .retain(|family, f| now.saturating_duration_since(f.received) < ttl || has_series(names, family));
        removed
    }

    /// Series stored, and senders with series stored.
    pub(crate) fn len(&self) -> (usize, usize) {
        let inner = self.lock();
        let senders = inner.senders.iter().flatten().filter(|s| s.series > 0).count();
        (inner.table.len(), senders)
    }

    /// Every series and metadata entry, as of now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            series: inner.table.iter().map(|e| Arc::clone(&e.series)).collect(),
            metadata: inner.metadata.values().map(|f| Arc::clone(&f.metadata)).collect(),
        }
    }
}

impl Inner {
    /// The index of the sender of `key`, created if new; its last push is `now`.
    fn sender(&mut self, key: SenderKey, now: Instant) -> u32 {
        if let Some(&id) = self.by_key.get(&key) {
            if let Some(s) = &mut self.senders[id as usize] {
                s.last_push = now;
            }
            return id;
        }
        let sender = Sender {
            key: key.clone(),
            series: 0,
            last_push: now,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.senders[id as usize] = Some(sender);
                id
            }
            None => {
                self.senders.push(Some(sender));
                (self.senders.len() - 1) as u32
            }
        };
        self.by_key.insert(key, id);
        id
    }

    fn count(&mut self, sender: u32, delta: isize) {
        if let Some(s) = &mut self.senders[sender as usize] {
            s.series = s.series.saturating_add_signed(delta);
        }
    }

    fn apply_point(
        &mut self,
        point: Point,
        pairs: &[(&str, &str)],
        sender: u32,
        store: &Store,
        taken: &dyn Fn(&str) -> bool,
        applied: &mut Applied,
    ) {
        let stored = self.table.len();
        let entry = self
            .table
            .entry(point.hash, |e| same(&e.series.labels, pairs), |e| e.hash);
        match entry {
            TableEntry::Occupied(mut o) => {
                let e = o.get_mut();
                if point.timestamp < e.timestamp {
                    return;
                }
                if point.stale {
                    if e.ended.is_none() {
                        applied.stale += 1;
                    }
                    if store.stale_grace.is_zero() {
                        let (e, _) = o.remove();
                        forget_name(&mut self.names, stored_name(&e.series.labels));
                        self.count(e.sender, -1);
                    } else {
                        // Kept with its last point for the grace, so that a push or a scrape
                        // after its sender's last push still carries that point.
                        e.ended.get_or_insert_with(Instant::now);
                    }
                    return;
                }
                e.ended = None;
                e.timestamp = point.timestamp;
                match Arc::get_mut(&mut e.series) {
                    Some(ts) => set_point(ts, point.value, point.timestamp),
                    // A snapshot holds the series: it keeps the old one.
                    None => {
                        let mut ts = TimeSeries {
                            labels: e.series.labels.clone(),
                            ..TimeSeries::default()
                        };
                        set_point(&mut ts, point.value, point.timestamp);
                        e.series = Arc::new(ts);
                    }
                }
                applied.updated += 1;
                let old = std::mem::replace(&mut e.sender, sender);
                if old != sender {
                    self.count(old, -1);
                    self.count(sender, 1);
                }
            }
            TableEntry::Vacant(v) => {
                if point.stale {
                    return;
                }
                let name = super::decode::metric_name(pairs.iter().copied());
                let over_sender = self.senders[sender as usize]
                    .as_ref()
                    .is_some_and(|s| s.series >= store.max_series_per_sender);
                let reason = if taken(name) {
                    Some(RefuseReason::Conflict)
                } else if over_sender {
                    Some(RefuseReason::SenderLimit)
                } else if stored >= store.max_series {
                    Some(RefuseReason::TotalLimit)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let i = reason as usize;
                    applied.refused[i] += 1;
                    if applied.first_refused[i].is_none() {
                        applied.first_refused[i] = Some(describe(pairs));
                    }
                    return;
                }
                *self.names.entry(name.to_owned()).or_default() += 1;
                let mut ts = TimeSeries {
                    labels: pairs
                        .iter()
                        .map(|(n, v)| Label {
                            name: (*n).to_owned(),
                            value: (*v).to_owned(),
                        })
                        .collect(),
                    ..TimeSeries::default()
                };
                set_point(&mut ts, point.value, point.timestamp);
                v.insert(Entry {
                    hash: point.hash,
                    series: Arc::new(ts),
                    ended: None,
                    sender,
                    timestamp: point.timestamp,
                });
                self.count(sender, 1);
                applied.added += 1;
            }
        }
    }
}

/// Whether stored labels are `pairs`.
fn same(labels: &[Label], pairs: &[(&str, &str)]) -> bool {
    labels.len() == pairs.len()
        && labels
            .iter()
            .zip(pairs)
            .all(|(l, (n, v))| l.name == *n && l.value == *v)
}

/// Makes `value` the one point of `ts`, reusing its vectors.
fn set_point(ts: &mut TimeSeries, value: Value, timestamp: i64) {
    ts.samples.clear();
    ts.histograms.clear();
    match value {
        Value::Sample(value) => ts.samples.push(Sample { value, timestamp }),
        Value::Histogram(h) => ts.histograms.push(*h),
    }
}

/// Whether the family `family` has series: one named `family`, or `family` and a suffix.
fn has_series(names: &HashMap<String, usize>, family: &str) -> bool {
    names.contains_key(family) || SUFFIXES.iter().any(|s| names.contains_key(&format!("{family}{s}")))
}

/// One series of `name` fewer.
fn forget_name(names: &mut HashMap<String, usize>, name: &str) {
    if let Some(n) = names.get_mut(name) {
        *n -= 1;
        if *n == 0 {
            names.remove(name);
        }
    }
}

/// The `job` and `instance` values of sorted labels (empty when absent).
fn sender_labels<'a>(labels: &[(&'a str, &'a str)]) -> (&'a str, &'a str) {
    let get = |name: &str| {
        labels
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .map_or("", |i| labels[i].1)
    };
    (get("job"), get("instance"))
}

/// The sender forwards what the store holds: a snapshot is taken under the lock, and `f` runs
/// after it is released.
impl SeriesSource for Store {
    fn for_each_series(&self, f: &mut dyn FnMut(&TimeSeries)) {
        for s in self.snapshot().series {
            f(&s);
        }
    }

    fn for_each_metadata(&self, f: &mut dyn FnMut(&MetricMetadata)) {
        let kept: Vec<Arc<MetricMetadata>> = {
            let inner = self.lock();
            inner
                .metadata
                .iter()
                .filter(|(family, _)| has_series(&inner.names, family))
                .map(|(_, f)| Arc::clone(&f.metadata))
                .collect()
        };
        for m in kept {
            f(&m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::receive::decode::{decode, Batch};
    use crate::push::remote_write::proto::WriteRequest;
    use prost::Message;

    fn ts(labels: &[(&str, &str)], value: f64, timestamp: i64) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            samples: vec![Sample { value, timestamp }],
            ..Default::default()
        }
    }

    fn apply(store: &Store, series: Vec<TimeSeries>, now: Instant) -> Applied {
        let raw = WriteRequest {
            timeseries: series,
            metadata: vec![],
        }
        .encode_to_vec();
        let batch: Batch<'_> = decode(&raw, store.hasher()).unwrap();
        store.apply(batch, IpAddr::from([10, 0, 0, 1]), now, &|n| n == "taken")
    }

    fn values(store: &Store) -> Vec<(String, f64)> {
        let mut v: Vec<_> = store
            .snapshot()
            .series
            .iter()
            .map(|s| (describe_stored(s), s.samples[0].value))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn describe_stored(s: &TimeSeries) -> String {
        let pairs: Vec<(&str, &str)> = s.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
        describe(&pairs)
    }

    #[test]
    fn latest_point_wins_and_stale_markers_remove() {
        let store = Store::new(10, 10, Duration::ZERO);
        let t0 = Instant::now();
        let a = [("__name__", "x"), ("job", "j")];
        let b = [("__name__", "x"), ("job", "k")];
        let r = apply(&store, vec![ts(&a, 1.0, 10), ts(&b, 2.0, 10)], t0);
        assert_eq!((r.added, r.updated), (2, 0));
        // Newer wins, older is ignored, several samples of one series: the latest.
        let mut many = ts(&a, 5.0, 30);
        many.samples.push(Sample {
            value: 4.0,
            timestamp: 20,
        });
        apply(&store, vec![many, ts(&b, 0.0, 5)], t0);
        assert_eq!(
            values(&store),
            [("x{job=\"j\"}".to_owned(), 5.0), ("x{job=\"k\"}".to_owned(), 2.0)]
        );
        let r = apply(
            &store,
            vec![ts(&a, f64::from_bits(super::super::decode::STALE_NAN_BITS), 31)],
            t0,
        );
        assert_eq!(r.stale, 1);
        assert_eq!(values(&store), [("x{job=\"k\"}".to_owned(), 2.0)]);
    }

    #[test]
    fn a_stale_series_keeps_its_last_point_for_the_grace() {
        let grace = Duration::from_secs(15);
        let store = Store::new(10, 10, grace);
        let t0 = Instant::now();
        let a = [("__name__", "x"), ("job", "j")];
        apply(&store, vec![ts(&a, 7.0, 10)], t0);
        let stale = f64::from_bits(super::super::decode::STALE_NAN_BITS);
        let r = apply(&store, vec![ts(&a, stale, 11)], t0);
        assert_eq!(r.stale, 1);
        // Still there with its last value (a push or a scrape now carries it) until the grace ends.
        assert_eq!(values(&store), [("x{job=\"j\"}".to_owned(), 7.0)]);
        store.expire(Instant::now(), Duration::from_secs(300));
        assert_eq!(values(&store).len(), 1);
        store.expire(Instant::now() + grace, Duration::from_secs(300));
        assert!(values(&store).is_empty());
        assert_eq!(store.len(), (0, 0));
    }

    #[test]
    fn limits_and_conflicts_refuse_only_new_series() {
        let store = Store::new(3, 2, Duration::ZERO);
        let now = Instant::now();
        let s = |job: &str, i: &str| ts(&[("__name__", "x"), ("i", i), ("job", job)], 1.0, 1);
        let r = apply(&store, vec![s("a", "1"), s("a", "2"), s("a", "3")], now);
        assert_eq!((r.added, r.refused), (2, [1, 0, 0]));
        let r = apply(
            &store,
            vec![
                s("b", "1"),
                s("b", "2"),
                ts(&[("__name__", "taken")], 1.0, 1),
                s("a", "1"),
            ],
            now,
        );
        assert_eq!((r.added, r.updated, r.refused), (1, 1, [0, 1, 1]));
        assert_eq!(store.len(), (3, 2));
    }

    #[test]
    fn a_request_larger_than_a_chunk_keeps_its_senders_counts() {
        let store = Store::new(100_000, CHUNK + 10, Duration::ZERO);
        let ids: Vec<String> = (0..CHUNK * 2).map(|i| i.to_string()).collect();
        let series = ids
            .iter()
            .map(|i| ts(&[("__name__", "x"), ("i", i), ("job", "a")], 1.0, 1))
            .collect();
        let r = apply(&store, series, Instant::now());
        assert_eq!((r.added, r.refused), (CHUNK + 10, [CHUNK - 10, 0, 0]));
        assert_eq!(store.len(), (CHUNK + 10, 1));
    }

    #[test]
    fn senders_expire_after_the_ttl_and_metadata_with_them() {
        let store = Store::new(10, 10, Duration::ZERO);
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        apply(&store, vec![ts(&[("__name__", "x_total"), ("job", "a")], 1.0, 1)], t0);
        apply(
            &store,
            vec![ts(&[("__name__", "x_total"), ("job", "b")], 1.0, 1)],
            t0 + ttl / 2,
        );
        // Empty label values are the labels' absence: this one is the peer's series.
        apply(&store, vec![ts(&[("__name__", "y"), ("job", "")], 1.0, 1)], t0);
        assert_eq!(store.len(), (3, 3));
        let raw = WriteRequest {
            timeseries: vec![],
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "x".into(),
                help: "X.".into(),
                unit: String::new(),
            }],
        }
        .encode_to_vec();
        store.apply(
            decode(&raw, store.hasher()).unwrap(),
            IpAddr::from([10, 0, 0, 1]),
            t0,
            &|_| false,
        );
        assert_eq!(store.expire(t0 + ttl, ttl), 2);
        assert_eq!(store.len(), (1, 1));
        // `x` still has a series (`x_total` of b): its metadata stays.
        let mut kept = Vec::new();
        store.for_each_metadata(&mut |m| kept.push(m.metric_family_name.clone()));
        assert_eq!(kept, ["x"]);
        assert_eq!(store.expire(t0 + ttl * 2, ttl), 1);
        assert_eq!(store.len(), (0, 0));
        kept.clear();
        store.for_each_metadata(&mut |m| kept.push(m.metric_family_name.clone()));
        assert!(kept.is_empty());
    }
}
