//! A snapshot of the registry as remote write 1.0 requests: protobuf `WriteRequest`s of at most
//! a given number of samples each, compressed with snappy's block format.
//!
//! The wire format is written directly into one reused buffer with `prost::encoding`'s
//! primitives, lengths computed before each message is written, instead of building a
//! `WriteRequest` of owned strings: the bytes are those prost writes for the same message
//! (fields in field-number order, proto3 defaults left out), which the tests check by decoding
//! them with prost. Native histograms and exemplars, rare and small, are prost messages.
//!
//! Series as the text exposition shows them (one series identity whichever way Prometheus gets
//! them): counters as `<name>_total`, gauges, classic histograms as `_bucket{le}`, `_sum` and
//! `_count`, summaries as `{quantile}`, `_sum` and `_count`, native histograms as remote-write
//! histograms under the family name (a histogram both classic and native is sent both ways).
//! Labels are sorted by name in byte order (`__name__` is not always first: `A` sorts before
//! `_`); a label with an empty value is left out, as Prometheus drops it from a scrape. Every
//! sample of one push has the push's timestamp.
//!
//! The encoder remembers the label sets of the last push that was delivered (a 64-bit hash of
//! each series' encoded labels, and the labels themselves), so that a series gone since then
//! gets one stale marker.

use std::hash::Hasher as _;

use bytes::Bytes;
use mmo_metrics::{MetricKind, MetricsManager, NativeBuckets, Sample, SeriesValue};
use prost::encoding::encoded_len_varint;
use prost::Message as _;
use rustc_hash::{FxHashSet, FxHasher};

use super::proto;
use crate::encode::{count_deltas, fmt::push_f64, walk, FamilyMeta, Format, SeriesLabels};
use crate::push::SeriesSource;
use wire::*;

/// The stale marker: the NaN Prometheus writes for a series that ended (`value.StaleNaN`).
pub(crate) const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// One request of a push: its compressed body and the samples (and histograms) it carries.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) body: Bytes,
    pub(crate) samples: usize,
}

/// What one encode produced.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) requests: Vec<Request>,
    /// Every sample of every request.
    pub(crate) samples: usize,
    /// Series in the snapshot (stale markers left out).
    pub(crate) series: usize,
}

/// The series sent, as needed to send stale markers for them later: a hash of each one's encoded
/// labels, and where those labels are in the compressed requests they were sent in (read back,
/// decompressed, only when a series is gone; the requests are shared with the snapshot, so they
/// cost no copy).
#[derive(Default)]
struct Seen {
    bodies: Vec<Bytes>,
    entries: Vec<Seen1>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen1 {
    hash: u64,
    /// Index in `bodies` of the request, and where the labels are in it once decompressed.
    request: u32,
    start: u32,
    len: u32,
    /// A native histogram: its stale marker is a histogram whose sum is the stale NaN.
    histogram: bool,
}

impl Seen {
    fn clear(&mut self) {
        self.bodies.clear();
        self.entries.clear();
    }
}

/// Per family: the encoded `__name__` labels of its sample names, and the `le`/`quantile` labels.
#[derive(Default)]
struct FamilyCache {
    kind: Option<MetricKind>,
    /// A hash of the family name: with a series' own and global labels ([`Encoder::labels_hash`])
    /// and which sample it is, the identity of a series sent.
    hash: u64,
    /// Encoded `__name__` label for: the family name as the samples carry it (`_total` for a
    /// counter), `_bucket`, `_sum`, `_count`.
    name: [Vec<u8>; 4],
    /// Encoded metadata (one `WriteRequest.metadata` field).
    metadata: Vec<u8>,
    /// Encoded extra labels (`le` of each bound then `+Inf`, or `quantile` of each quantile),
    /// one after another, with their ends.
    extra: Vec<u8>,
    extra_ends: Vec<usize>,
    /// The bounds or quantiles `extra` was made from.
    extra_of: Vec<f64>,
}

const NAME: usize = 0;
const BUCKET: usize = 1;
const SUM: usize = 2;
const COUNT: usize = 3;

/// Turns registry walks into remote write requests; one per endpoint, reused across pushes.
pub(crate) struct Encoder {
    max_samples: usize,
    timestamp_ms: i64,
    /// The timestamp of the last [`Self::encode`]'s samples (0 before the first).
    pub(crate) last_timestamp_ms: i64,
    /// The request being built: its `timeseries` fields.
    batch: Vec<u8>,
    /// Its `metadata` fields.
    batch_meta: Vec<u8>,
    batch_samples: usize,
    snappy: snap::raw::Encoder,
    compressed: Vec<u8>,
    snapshot: Snapshot,
    family: FamilyCache,
    /// The current series' labels but `__name__` and the extra label, sorted, each encoded.
    sorted: Vec<u8>,
    /// A hash of `sorted`.
    labels_hash: u64,
    /// Where in `sorted` the `__name__` label and the extra label go.
    name_at: usize,
    extra_at: usize,
    /// Scratch: own and global labels of the current series as `(name, encoded label)` ranges
    /// in `unsorted`.
    unsorted: Vec<u8>,
    ranges: Vec<(usize, usize, usize)>,
    scratch: String,
    /// The label layouts of the last label names seen, one per extra label (none, `le`,
    /// `quantile`).
    plans: [Plan; 3],
    /// The values of the current series' labels, in its order (an allocation reused across
    /// series whatever their lifetime: it is always empty between calls).
    values: Vec<&'static str>,
    histogram: proto::Histogram,
    exemplar: proto::Exemplar,
    exemplar_bytes: Vec<u8>,
    /// Series of the last delivered push, and of the one being encoded.
    delivered: Seen,
    current: Seen,
}

impl Encoder {
    /// An encoder of requests of at most `max_samples` samples (at least 1).
    pub(crate) fn new(max_samples: usize) -> Self {
        Self {
            max_samples: max_samples.max(1),
            timestamp_ms: 0,
            last_timestamp_ms: 0,
            batch: Vec::new(),
            batch_meta: Vec::new(),
            batch_samples: 0,
            snappy: snap::raw::Encoder::new(),
            compressed: Vec::new(),
            snapshot: Snapshot::default(),
            family: FamilyCache::default(),
            sorted: Vec::new(),
            labels_hash: 0,
            name_at: 0,
            extra_at: 0,
            unsorted: Vec::new(),
            ranges: Vec::new(),
            scratch: String::new(),
            plans: Default::default(),
            values: Vec::new(),
            histogram: proto::Histogram::default(),
            exemplar: proto::Exemplar::default(),
            exemplar_bytes: Vec::new(),
            delivered: Seen::default(),
            current: Seen::default(),
        }
    }

    /// Encodes every series of `manager` (with `global_labels` as the exposition adds them) and
    /// of `source`, and a stale marker for every series of the last delivered push that is gone,
    /// all at `timestamp_ms`.
    pub(crate) fn encode(
        &mut self,
        manager: &MetricsManager,
        global_labels: &[(String, String)],
        source: Option<&dyn SeriesSource>,
        timestamp_ms: i64,
    ) -> Snapshot {
        self.begin(timestamp_ms);
        self.last_timestamp_ms = timestamp_ms;
        walk(manager, global_labels, self);
        if let Some(source) = source {
            self.source(source, global_labels);
        }
        let series = self.current.entries.len();
        self.stale_markers();
        self.finish_batch();
        let mut snapshot = std::mem::take(&mut self.snapshot);
        snapshot.series = series;
        snapshot
    }

    /// The series of the last [`Self::encode`] were delivered: they are the ones later pushes
    /// send stale markers for when they are gone.
    pub(crate) fn delivered(&mut self) {
        std::mem::swap(&mut self.delivered, &mut self.current);
        self.current.clear();
    }

    /// Stale markers at `timestamp_ms` for every series of the last delivered push (a clean
    /// shutdown's last requests). Forgets them.
    pub(crate) fn all_stale(&mut self, timestamp_ms: i64) -> Snapshot {
        self.begin(timestamp_ms);
        self.stale_markers();
        self.finish_batch();
        self.delivered.clear();
        std::mem::take(&mut self.snapshot)
    }

    fn begin(&mut self, timestamp_ms: i64) {
        self.timestamp_ms = timestamp_ms;
        self.snapshot = Snapshot::default();
        self.batch.clear();
        self.batch_meta.clear();
        self.batch_samples = 0;
        self.current.clear();
        self.family.kind = None;
        // A plan's key holds addresses of label names, valid during one walk only.
        self.plans = Default::default();
    }

    /// A stale marker for every delivered series not in `current`.
    fn stale_markers(&mut self) {
        // Markers belong to no family: a request they start carries no family's metadata.
        self.family.kind = None;
        if self.delivered.entries.is_empty() {
            return;
        }
        let same = self.delivered.entries.len() == self.current.entries.len()
            && self
                .delivered
                .entries
                .iter()
                .zip(&self.current.entries)
                .all(|(a, b)| a.hash == b.hash);
        if same {
            return;
        }
        let current: FxHashSet<u64> = self.current.entries.iter().map(|e| e.hash).collect();
        let stale_sample = f64::from_bits(STALE_NAN);
        let mut decoder = snap::raw::Decoder::new();
        let mut raw = Vec::new();
        let mut raw_of = None;
        for i in 0..self.delivered.entries.len() {
            let e = self.delivered.entries[i];
            if current.contains(&e.hash) {
                continue;
            }
            self.room_for(1);
            if raw_of != Some(e.request) {
                raw = decoder
                    .decompress_vec(&self.delivered.bodies[e.request as usize])
                    .expect("a request this encoder compressed");
                raw_of = Some(e.request);
            }
            let labels = &raw[e.start as usize..(e.start + e.len) as usize];
            if e.histogram {
                self.histogram = proto::Histogram {
                    sum: stale_sample,
                    timestamp: self.timestamp_ms,
                    count: Some(proto::histogram::Count::CountInt(0)),
                    ..proto::Histogram::default()
                };
                let hlen = self.histogram.encoded_len();
                let len = labels.len() + 1 + encoded_len_varint(hlen as u64) + hlen;
                self.batch.push(KEY_1_LEN);
                encode_varint(len as u64, &mut self.batch);
                self.batch.extend_from_slice(labels);
                self.batch.push(KEY_4_LEN);
                self.histogram
                    .encode_length_delimited(&mut self.batch)
                    .expect("a Vec<u8> grows to take any message");
            } else {
                let slen = sample_len(stale_sample, self.timestamp_ms);
                let len = labels.len() + 1 + encoded_len_varint(slen as u64) + slen;
                self.batch.push(KEY_1_LEN);
                encode_varint(len as u64, &mut self.batch);
                self.batch.extend_from_slice(labels);
                write_sample(&mut self.batch, stale_sample, self.timestamp_ms, slen);
            }
            self.batch_samples += 1;
            self.snapshot.samples += 1;
        }
    }

    /// Ends the request being built when `n` more samples would not fit in it.
    fn room_for(&mut self, n: usize) {
        if self.batch_samples > 0 && self.batch_samples + n > self.max_samples {
            self.finish_batch();
            // The family being written has series in the next request too: its metadata goes
            // with them.
            if self.family.kind.is_some() {
                self.batch_meta.extend_from_slice(&self.family.metadata);
            }
        }
    }

    /// Compresses the request being built into a [`Request`], if it has anything.
    fn finish_batch(&mut self) {
        if self.batch.is_empty() && self.batch_meta.is_empty() {
            return;
        }
        self.batch.extend_from_slice(&self.batch_meta);
        let max = snap::raw::max_compress_len(self.batch.len());
        if self.compressed.len() < max {
            self.compressed.resize(max, 0);
        }
        let n = self
            .snappy
            .compress(&self.batch, &mut self.compressed)
            .expect("the output buffer is max_compress_len long");
        let body = Bytes::copy_from_slice(&self.compressed[..n]);
        self.current.bodies.push(body.clone());
        self.snapshot.requests.push(Request {
            body,
            samples: self.batch_samples,
        });
        self.batch.clear();
        self.batch_meta.clear();
        self.batch_samples = 0;
    }

    /// Writes one series: the sorted labels with `__name__` (`name`: an index into the family's
    /// names) and the extra label (`extra`: an index into the family's extra labels) in their
    /// places, then its point.
    fn emit(&mut self, name: usize, extra: Option<usize>, point: Point) {
        self.room_for(1);
        let name_label = &self.family.name[name];
        let extra_label = match extra {
            Some(i) => {
                let start = if i == 0 { 0 } else { self.family.extra_ends[i - 1] };
                &self.family.extra[start..self.family.extra_ends[i]]
            }
            None => &[][..],
        };
        let labels_len = self.sorted.len() + name_label.len() + extra_label.len();
        let point_len = match point {
            Point::Sample(v) => {
                let slen = sample_len(v, self.timestamp_ms);
                1 + encoded_len_varint(slen as u64) + slen
            }
            Point::Histogram => {
                let hlen = self.histogram.encoded_len();
                1 + encoded_len_varint(hlen as u64) + hlen
            }
        };
        let exemplar_len = self.exemplar_bytes.len();
        let len = labels_len + point_len + exemplar_len;
        let batch = &mut self.batch;
        batch.push(KEY_1_LEN);
        encode_varint(len as u64, batch);
        let labels_start = batch.len();
        // `__name__` and the extra label in their sorted places (`name_at <= extra_at` or not).
        let (first, first_at, second, second_at) = if self.name_at <= self.extra_at {
            (&name_label[..], self.name_at, extra_label, self.extra_at)
        } else {
            (extra_label, self.extra_at, &name_label[..], self.name_at)
        };
        batch.extend_from_slice(&self.sorted[..first_at]);
        batch.extend_from_slice(first);
        batch.extend_from_slice(&self.sorted[first_at..second_at]);
        batch.extend_from_slice(second);
        batch.extend_from_slice(&self.sorted[second_at..]);
        let labels_end = batch.len();
        match point {
            Point::Sample(v) => {
                let slen = sample_len(v, self.timestamp_ms);
                write_sample(batch, v, self.timestamp_ms, slen);
            }
            Point::Histogram => {}
        }
        batch.extend_from_slice(&self.exemplar_bytes);
        if let Point::Histogram = point {
            batch.push(KEY_4_LEN);
            self.histogram
                .encode_length_delimited(&mut *batch)
                .expect("a Vec<u8> grows to take any message");
        }
        self.exemplar_bytes.clear();
        self.batch_samples += 1;
        self.snapshot.samples += 1;
        // The series' identity: its own and global labels, its family, which of the family's
        // samples (name suffix and extra label) it is; hashing these is a third of the work of
        // hashing the labels as written.
        let mut hasher = FxHasher::default();
        hasher.write_u64(self.labels_hash);
        hasher.write_u64(self.family.hash);
        hasher.write_u64((name as u64) << 32 | extra.map_or(0, |e| e as u64 + 1));
        self.current.entries.push(Seen1 {
            hash: hasher.finish(),
            request: self.snapshot.requests.len() as u32,
            start: labels_start as u32,
            len: (labels_end - labels_start) as u32,
            histogram: matches!(point, Point::Histogram),
        });
    }

    /// Lays out the labels of a series of the walk into `sorted` (and `name_at`, `extra_at`) with
    /// the plan for its label names: [`Self::collect_labels`] and [`Self::sort_labels`] with the
    /// sorting done once per label set.
    fn plan_labels(&mut self, labels: SeriesLabels<'_>, extra: usize) {
        let extra_name = ["", "le", "quantile"][extra];
        let mut values: Vec<&str> = reuse(std::mem::take(&mut self.values));
        let mut key = (0, 0, 0);
        for (i, (name, value)) in labels.iter().enumerate() {
            if i == 0 {
                key = (name.as_ptr() as usize, name.len(), 0);
            }
            values.push(value);
        }
        key.2 = values.len();
        let plan = &mut self.plans[extra];
        if plan.key != Some(key) {
            let mut names: Vec<(&str, u32)> = labels.iter().enumerate().map(|(i, (n, _))| (n, i as u32)).collect();
            names.push(("__name__", NAME_SLOT));
            if !extra_name.is_empty() {
                names.push((extra_name, EXTRA_SLOT));
            }
            names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            plan.order.clear();
            plan.order.extend(names.iter().map(|n| n.1));
            plan.names.clear();
            for (name, _) in labels.iter() {
                let mut field = Vec::new();
                write_string_field(&mut field, KEY_1_LEN, name);
                plan.names.push(field);
            }
            plan.key = Some(key);
        }
        self.sorted.clear();
        self.name_at = 0;
        self.extra_at = 0;
        for &i in &plan.order {
            match i {
                NAME_SLOT => self.name_at = self.sorted.len(),
                EXTRA_SLOT => self.extra_at = self.sorted.len(),
                i => {
                    let value = values[i as usize];
                    if value.is_empty() {
                        continue;
                    }
                    let name = &plan.names[i as usize];
                    let len = name.len() + 1 + encoded_len_varint(value.len() as u64) + value.len();
                    self.sorted.push(KEY_1_LEN);
                    encode_varint(len as u64, &mut self.sorted);
                    self.sorted.extend_from_slice(name);
                    self.sorted.push(KEY_2_LEN);
                    encode_varint(value.len() as u64, &mut self.sorted);
                    self.sorted.extend_from_slice(value.as_bytes());
                }
            }
        }
        if extra_name.is_empty() {
            self.extra_at = self.name_at;
        }
        let mut hasher = FxHasher::default();
        hasher.write(&self.sorted);
        self.labels_hash = hasher.finish();
        self.values = reuse(values);
    }

    /// Sorts the current series' labels (`ranges` over `unsorted`) into `sorted`, and finds where
    /// `__name__` and `extra_name` go.
    fn sort_labels(&mut self, extra_name: &str) {
        let unsorted = &self.unsorted;
        let name_of = |r: &(usize, usize, usize)| &unsorted[r.0..r.1];
        // Insertion sort: a series has a handful of labels.
        for i in 1..self.ranges.len() {
            let mut j = i;
            while j > 0 && name_of(&self.ranges[j - 1]) > name_of(&self.ranges[j]) {
                self.ranges.swap(j - 1, j);
                j -= 1;
            }
        }
        self.sorted.clear();
        self.name_at = usize::MAX;
        self.extra_at = usize::MAX;
        for r in &self.ranges {
            let name = &unsorted[r.0..r.1];
            if self.name_at == usize::MAX && name > b"__name__".as_slice() {
                self.name_at = self.sorted.len();
            }
            if self.extra_at == usize::MAX && name > extra_name.as_bytes() {
                self.extra_at = self.sorted.len();
            }
            self.sorted.extend_from_slice(&unsorted[r.1..r.2]);
        }
        if self.name_at == usize::MAX {
            self.name_at = self.sorted.len();
        }
        if self.extra_at == usize::MAX {
            self.extra_at = self.sorted.len();
        }
    }

    /// Collects `(name, value)` pairs into `unsorted`/`ranges`, leaving out empty values.
    fn collect_labels<'a>(&mut self, labels: impl Iterator<Item = (&'a str, &'a str)>) {
        self.unsorted.clear();
        self.ranges.clear();
        for (name, value) in labels {
            if value.is_empty() {
                continue;
            }
            let name_start = self.unsorted.len();
            self.unsorted.extend_from_slice(name.as_bytes());
            let name_end = self.unsorted.len();
            write_label(&mut self.unsorted, name, value);
            self.ranges.push((name_start, name_end, self.unsorted.len()));
        }
        // `ranges` hold (name start, name end = encoded label start, encoded label end).
    }

    /// Makes the family's extra labels (`le` or `quantile`) for `values`, unless they are made.
    fn extra_labels(&mut self, label: &str, values: &[f64], inf: bool) {
        let f = &mut self.family;
        if f.extra_of == values && !f.extra_ends.is_empty() {
            return;
        }
        f.extra_of.clear();
        f.extra_of.extend_from_slice(values);
        f.extra.clear();
        f.extra_ends.clear();
        for v in values {
            self.scratch.clear();
            push_f64(&mut self.scratch, *v);
            write_label(&mut f.extra, label, &self.scratch);
            f.extra_ends.push(f.extra.len());
        }
        if inf {
            write_label(&mut f.extra, label, "+Inf");
            f.extra_ends.push(f.extra.len());
        }
    }

    /// Encodes an exemplar into `exemplar_bytes` (as one `TimeSeries.exemplars` field).
    fn set_exemplar(&mut self, e: Option<mmo_metrics::Exemplar>) {
        self.exemplar_bytes.clear();
        let Some(e) = e else { return };
        let ex = &mut self.exemplar;
        ex.labels.clear();
        ex.labels.extend(e.labels().map(|(name, value)| proto::Label {
            name: name.to_owned(),
            value: value.to_owned(),
        }));
        ex.value = e.value();
        ex.timestamp = e.timestamp_ms() as i64;
        self.exemplar_bytes.push(KEY_3_LEN);
        ex.encode_length_delimited(&mut self.exemplar_bytes)
            .expect("a Vec<u8> grows to take any message");
    }

    fn set_native(&mut self, native: &NativeBuckets<'_>, sum: f64, count: u64) {
        let h = &mut self.histogram;
        h.count = Some(proto::histogram::Count::CountInt(count));
        h.sum = sum;
        h.schema = native.schema;
        h.zero_threshold = native.zero_threshold;
        h.zero_count = Some(proto::histogram::ZeroCount::ZeroCountInt(native.zero_count));
        h.timestamp = self.timestamp_ms;
        h.reset_hint = 0;
        let spans = |out: &mut Vec<proto::BucketSpan>, spans: &[mmo_metrics::BucketSpan]| {
            out.clear();
            out.extend(spans.iter().map(|s| proto::BucketSpan {
                offset: s.offset,
                length: s.length,
            }));
        };
        let deltas = |out: &mut Vec<i64>, counts: &[u64]| {
            out.clear();
            out.extend(count_deltas(counts));
        };
        spans(&mut h.positive_spans, native.positive_spans);
        deltas(&mut h.positive_deltas, native.positive_counts);
        spans(&mut h.negative_spans, native.negative_spans);
        deltas(&mut h.negative_deltas, native.negative_counts);
        h.positive_counts.clear();
        h.negative_counts.clear();
    }

    /// The series and metadata of `source`, with the global labels they do not carry.
    fn source(&mut self, source: &dyn SeriesSource, global: &[(String, String)]) {
        self.family.kind = None;
        let mut meta = std::mem::take(&mut self.batch_meta);
        source.for_each_metadata(&mut |m| {
            meta.push(KEY_3_LEN);
            m.encode_length_delimited(&mut meta)
                .expect("a Vec<u8> grows to take any message");
        });
        self.batch_meta = meta;
        source.for_each_series(&mut |series| {
            self.room_for(1);
            self.collect_labels(
                series.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).chain(
                    global
                        .iter()
                        .filter(|(k, _)| !series.labels.iter().any(|l| l.name == *k))
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                ),
            );
            // `__name__` is among the source's labels: no hole to fill.
            self.sort_labels("");
            let labels_len = self.sorted.len();
            let mut rest = std::mem::take(&mut self.exemplar_bytes);
            rest.clear();
            for s in &series.samples {
                rest.push(KEY_2_LEN);
                s.encode_length_delimited(&mut rest)
                    .expect("a Vec<u8> grows to take any message");
            }
            for e in &series.exemplars {
                rest.push(KEY_3_LEN);
                e.encode_length_delimited(&mut rest)
                    .expect("a Vec<u8> grows to take any message");
            }
            for h in &series.histograms {
                rest.push(KEY_4_LEN);
                h.encode_length_delimited(&mut rest)
                    .expect("a Vec<u8> grows to take any message");
            }
            let batch = &mut self.batch;
            batch.push(KEY_1_LEN);
            encode_varint((labels_len + rest.len()) as u64, batch);
            let start = batch.len();
            batch.extend_from_slice(&self.sorted);
            let end = batch.len();
            batch.extend_from_slice(&rest);
            rest.clear();
            self.exemplar_bytes = rest;
            let n = series.samples.len() + series.histograms.len();
            self.batch_samples += n;
            self.snapshot.samples += n;
            let mut hasher = FxHasher::default();
            hasher.write(&self.batch[start..end]);
            self.current.entries.push(Seen1 {
                hash: hasher.finish(),
                request: self.snapshot.requests.len() as u32,
                start: start as u32,
                len: (end - start) as u32,
                histogram: !series.histograms.is_empty(),
            });
        });
    }
}

/// Where each label of a series goes once sorted, for every series with the same label names
/// (a family's series have the same ones): worked out once, not per series.
#[derive(Default)]
struct Plan {
    /// The label names it is for: address and length of the first name, and the number of
    /// labels. Names live in the family (or the global labels) for the whole walk, so equal
    /// addresses are equal names.
    key: Option<(usize, usize, usize)>,
    /// Label indices in sorted order; [`NAME_SLOT`] and [`EXTRA_SLOT`] where `__name__` and the
    /// extra label go.
    order: Vec<u32>,
    /// Each label's encoded name field (`Label.name`), by label index.
    names: Vec<Vec<u8>>,
}

const NAME_SLOT: u32 = u32::MAX;
const EXTRA_SLOT: u32 = u32::MAX - 1;

#[derive(Clone, Copy)]
enum Point {
    Sample(f64),
    /// The histogram in `Encoder::histogram`.
    Histogram,
}

impl Format for Encoder {
    fn family(&mut self, family: &FamilyMeta<'_>) {
        let f = &mut self.family;
        f.kind = Some(family.kind);
        let mut hasher = FxHasher::default();
        hasher.write(family.name.as_bytes());
        f.hash = hasher.finish();
        let (metric_type, suffixes): (_, &[(usize, &str)]) = match family.kind {
            MetricKind::Counter => (proto::metric_metadata::MetricType::Counter, &[(NAME, "_total")]),
            MetricKind::Gauge => (proto::metric_metadata::MetricType::Gauge, &[(NAME, "")]),
            MetricKind::Histogram => (
                proto::metric_metadata::MetricType::Histogram,
                &[(NAME, ""), (BUCKET, "_bucket"), (SUM, "_sum"), (COUNT, "_count")],
            ),
            MetricKind::Summary => (
                proto::metric_metadata::MetricType::Summary,
                &[(NAME, ""), (SUM, "_sum"), (COUNT, "_count")],
            ),
            _ => {
                f.kind = None;
                return;
            }
        };
        for &(i, suffix) in suffixes {
            self.scratch.clear();
            self.scratch.push_str(family.name);
            self.scratch.push_str(suffix);
            f.name[i].clear();
            write_label(&mut f.name[i], "__name__", &self.scratch);
        }
        let name = if family.kind == MetricKind::Counter {
            format!("{}_total", family.name)
        } else {
            family.name.to_owned()
        };
        let meta = proto::MetricMetadata {
            r#type: metric_type as i32,
            metric_family_name: name,
            help: family.help.as_deref().unwrap_or("").to_owned(),
            unit: family.unit.unwrap_or("").to_owned(),
        };
        f.metadata.clear();
        write_metadata(&mut f.metadata, &meta);
        self.batch_meta.extend_from_slice(&f.metadata);
        f.extra_ends.clear();
    }

    fn series(&mut self, labels: SeriesLabels<'_>, sample: &Sample<'_>) {
        if self.family.kind.is_none() {
            return;
        }
        match sample.value() {
            SeriesValue::Counter(v) => {
                self.plan_labels(labels, 0);
                self.set_exemplar(sample.exemplar());
                self.emit(NAME, None, Point::Sample(v as f64));
            }
            SeriesValue::FloatCounter(v) | SeriesValue::Gauge(v) => {
                self.plan_labels(labels, 0);
                self.emit(NAME, None, Point::Sample(v));
            }
            SeriesValue::Histogram {
                bounds,
                cumulative,
                sum,
                count,
                native,
            } => {
                if let Some(native) = &native {
                    self.plan_labels(labels, 0);
                    self.set_native(native, sum, count);
                    self.emit(NAME, None, Point::Histogram);
                }
                if native.is_none() || !bounds.is_empty() {
                    self.plan_labels(labels, 1);
                    self.extra_labels("le", bounds, true);
                    for (i, &c) in cumulative.iter().enumerate() {
                        self.set_exemplar(sample.bucket_exemplar(i));
                        self.emit(BUCKET, Some(i), Point::Sample(c as f64));
                    }
                    self.emit(SUM, None, Point::Sample(sum));
                    self.emit(COUNT, None, Point::Sample(count as f64));
                }
            }
            SeriesValue::Summary {
                quantiles,
                values,
                sum,
                count,
            } => {
                self.plan_labels(labels, 2);
                self.extra_labels("quantile", quantiles, false);
                for (i, &v) in values.iter().enumerate() {
                    self.emit(NAME, Some(i), Point::Sample(v));
                }
                self.emit(SUM, None, Point::Sample(sum));
                self.emit(COUNT, None, Point::Sample(count as f64));
            }
            // A kind of value remote write has no series for.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
mod wire;

/// The requests one push of [`RemoteWrite`](crate::RemoteWrite) sends, for pushing by other
/// means or measuring: each a protobuf `WriteRequest` ([`proto::WriteRequest`]) of at most a
/// given number of samples, compressed with snappy's block format, ready to be the body of a
/// `POST` with the remote write 1.0 headers.
///
/// ```
/// use mmo_metrics::MetricsManager;
/// use mmo_metrics_exporter::{remote_write_proto::WriteRequest, RemoteWriteEncoder};
/// use prost::Message;
///
/// let manager = MetricsManager::new();
/// manager.register_counter("logins", "Logins.", &["zone"])?;
/// manager.increment_counter("logins", 2, &["north"])?;
/// let mut encoder = RemoteWriteEncoder::new(2_000);
/// let bodies = encoder.encode(&manager, &[("service".into(), "login".into())], 1_700_000_000_000);
/// let raw = snap::raw::Decoder::new().decompress_vec(&bodies[0]).unwrap();
/// let request = WriteRequest::decode(&raw[..]).unwrap();
/// let labels: Vec<_> = request.timeseries[0].labels.iter().map(|l| (&*l.name, &*l.value)).collect();
/// assert_eq!(labels, [("__name__", "logins_total"), ("service", "login"), ("zone", "north")]);
/// assert_eq!(request.timeseries[0].samples[0].value, 2.0);
/// # Ok::<(), mmo_metrics::MetricsError>(())
/// ```
pub struct RemoteWriteEncoder(Encoder);

impl std::fmt::Debug for RemoteWriteEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriteEncoder")
            .field("max_samples_per_request", &self.0.max_samples)
            .finish_non_exhaustive()
    }
}

impl RemoteWriteEncoder {
    /// An encoder of requests of at most `max_samples_per_request` samples (at least 1); it keeps
    /// its buffers from one call to the next.
    pub fn new(max_samples_per_request: usize) -> Self {
        Self(Encoder::new(max_samples_per_request))
    }

    /// The request bodies of every series of `manager`, with `global_labels` added to the series
    /// that lack them (as the exposition adds them), every sample at `timestamp_ms` (ms since
    /// the Unix epoch). It sends no stale markers: that needs to know which pushes were
    /// delivered, which [`RemoteWrite`](crate::RemoteWrite) does.
    pub fn encode(
        &mut self,
        manager: &MetricsManager,
        global_labels: &[(String, String)],
        timestamp_ms: i64,
    ) -> Vec<Bytes> {
        let snapshot = self.0.encode(manager, global_labels, None, timestamp_ms);
        self.0.current.clear();
        snapshot.requests.into_iter().map(|r| r.body).collect()
    }
}
