//! One remote write 1.0 body: snappy block format, then a protobuf `WriteRequest`, then the
//! validation of every series. Nothing here touches the store: a body that fails anywhere is
//! refused whole.

use std::fmt::Write as _;
use std::hash::BuildHasher;

use prost::Message;

use super::Refusal;
use crate::push::remote_write::proto::{histogram, Histogram, Label, MetricMetadata, TimeSeries, WriteRequest};

/// Prometheus' stale marker: the NaN with this bit pattern (`value.StaleNaN`), which a sender
/// writes as the last sample of a series that is gone.
pub(crate) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A validated request: its series, each with one point, and its metadata.
pub(crate) struct Batch {
    pub(crate) series: Vec<Point>,
    pub(crate) metadata: Vec<MetricMetadata>,
    /// Samples and histograms the request carried, stale markers included.
    pub(crate) points: usize,
}

/// The latest point of one series of a request.
pub(crate) struct Point {
    /// Hash of the labels, by the store's hasher.
    pub(crate) hash: u64,
    /// Labels sorted by name, none with an empty value, and exactly one sample or one
    /// histogram; no exemplars.
    pub(crate) series: TimeSeries,
    /// Milliseconds since the Unix epoch, as the sender stamped the point.
    pub(crate) timestamp: i64,
    /// The point is a stale marker: the series is gone.
    pub(crate) stale: bool,
}

impl Point {
    /// The series' `__name__`.
    pub(crate) fn name(&self) -> &str {
        metric_name(&self.series.labels)
    }
}

/// The `__name__` of validated labels.
pub(crate) fn metric_name(labels: &[Label]) -> &str {
    labels
        .iter()
        .find(|l| l.name == "__name__")
        .map_or("", |l| l.value.as_str())
}

/// Decompresses, decodes and validates `body`. The decompressed length is read from the snappy
/// header and checked against `max_decompressed` before anything is inflated.
pub(crate) fn decode(body: &[u8], max_decompressed: usize, hasher: &impl BuildHasher) -> Result<Batch, Refusal> {
    let len = snap::raw::decompress_len(body).map_err(|e| {
        Refusal::Snappy(format!(
            "body: expected the snappy block format (Content-Encoding: snappy), found bytes it cannot read: {e}"
        ))
    })?;
    if len > max_decompressed {
        return Err(Refusal::DecompressedTooLarge(format!(
            "body: its snappy header announces {len} bytes decompressed, above the limit of {max_decompressed} bytes"
        )));
    }
    let mut raw = vec![0; len];
    let n = snap::raw::Decoder::new()
        .decompress(body, &mut raw)
        .map_err(|e| Refusal::Snappy(format!("body: invalid snappy block data: {e}")))?;
    raw.truncate(n);
    let request = WriteRequest::decode(&raw[..]).map_err(|e| {
        Refusal::Protobuf(format!(
            "body: expected a protobuf prometheus.WriteRequest (remote write 1.0), found bytes it cannot decode: {e}"
        ))
    })?;
    drop(raw);
    validate(request, hasher)
}

/// Validates every series and metadata entry of `request`.
pub(crate) fn validate(request: WriteRequest, hasher: &impl BuildHasher) -> Result<Batch, Refusal> {
    let WriteRequest { timeseries, metadata } = request;
    let mut points = 0;
    let mut series = Vec::with_capacity(timeseries.len());
    for (i, ts) in timeseries.into_iter().enumerate() {
        points += ts.samples.len() + ts.histograms.len();
        if let Some(point) = validate_series(ts, hasher).map_err(|(labels, problem)| {
            Refusal::Invalid(format!("series {i} {}: {problem}", describe(&labels)))
        })? {
            series.push(point);
        }
    }
    for (i, m) in metadata.iter().enumerate() {
        if let Err(e) = mmo_metrics::validate_metric_name(&m.metric_family_name) {
            return Err(Refusal::Invalid(format!("metadata {i}: {e}")));
        }
    }
    Ok(Batch {
        series,
        metadata,
        points,
    })
}

/// The series' latest point, `None` when it carries none; or its labels and what is wrong.
fn validate_series(mut ts: TimeSeries, hasher: &impl BuildHasher) -> Result<Option<Point>, (Vec<Label>, String)> {
    // An empty label value is the label's absence (Prometheus' data model): such labels are
    // dropped, so `{a=""}` and `{}` are one series.
    ts.labels.retain(|l| !l.value.is_empty());
    if let Err(problem) = check_labels(&ts.labels) {
        return Err((ts.labels, problem));
    }
    let latest_sample = ts.samples.iter().copied().max_by_key(|s| s.timestamp);
    let latest_histogram = ts
        .histograms
        .iter()
        .enumerate()
        .max_by_key(|(_, h)| h.timestamp)
        .map(|(i, h)| (i, h.timestamp));
    let (timestamp, stale) = match (latest_sample, latest_histogram) {
        (None, None) => return Ok(None),
        (Some(s), None) => {
            ts.samples.clear();
            ts.samples.push(s);
            ts.histograms.clear();
            (s.timestamp, s.value.to_bits() == STALE_NAN_BITS)
        }
        (Some(s), Some((_, t))) if s.timestamp >= t => {
            ts.samples.clear();
            ts.samples.push(s);
            ts.histograms.clear();
            (s.timestamp, s.value.to_bits() == STALE_NAN_BITS)
        }
        (_, Some((i, t))) => {
            let h = ts.histograms.swap_remove(i);
            let stale = h.sum.to_bits() == STALE_NAN_BITS;
            if !stale {
                if let Err(problem) = check_histogram(&h) {
                    return Err((ts.labels, problem));
                }
            }
            ts.histograms.clear();
            ts.histograms.push(h);
            ts.samples.clear();
            (t, stale)
        }
    };
    ts.exemplars = Vec::new();
    Ok(Some(Point {
        hash: hasher.hash_one(&ts.labels),
        series: ts,
        timestamp,
        stale,
    }))
}

/// Labels as remote write 1.0 requires them: a valid `__name__`, valid label names not starting
/// with `__`, sorted by name (which also rules out duplicates).
fn check_labels(labels: &[Label]) -> Result<(), String> {
    for pair in labels.windows(2) {
        match pair[0].name.cmp(&pair[1].name) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Err(format!("duplicate label name `{}`", pair[0].name)),
            std::cmp::Ordering::Greater => {
                return Err(format!(
                    "labels not sorted by name (remote write 1.0 requires it): `{}` before `{}`",
                    pair[0].name, pair[1].name
                ))
            }
        }
    }
    let mut name = None;
    for l in labels {
        if l.name == "__name__" {
            name = Some(&l.value);
            continue;
        }
        if let Err(e) = mmo_metrics::validate_label_names("received series", &[&l.name], None) {
            return Err(e.to_string());
        }
    }
    let Some(name) = name else {
        return Err("no `__name__` label (the metric name)".into());
    };
    mmo_metrics::validate_metric_name(name).map_err(|e| e.to_string())
}

/// Schema -4..=8, spans that cover exactly the buckets given, counts not negative: what the
/// protobuf exposition needs for Prometheus to read the histogram back.
fn check_histogram(h: &Histogram) -> Result<(), String> {
    if !(-4..=8).contains(&h.schema) {
        return Err(format!("native histogram schema {}: expected -4 to 8", h.schema));
    }
    if !(h.zero_threshold >= 0.0 && h.zero_threshold.is_finite()) {
        return Err(format!(
            "native histogram zero threshold {}: expected a finite value of 0 or more",
            h.zero_threshold
        ));
    }
    let float = matches!(h.count, Some(histogram::Count::CountFloat(_)));
    for (side, spans, deltas, counts) in [
        ("positive", &h.positive_spans, &h.positive_deltas, &h.positive_counts),
        ("negative", &h.negative_spans, &h.negative_deltas, &h.negative_counts),
    ] {
        let buckets: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
        let given = if float { counts.len() } else { deltas.len() };
        if buckets != given as u64 {
            return Err(format!(
                "native histogram: its {side} spans cover {buckets} buckets, found {given} {}",
                if float { "counts" } else { "deltas" }
            ));
        }
        if float {
            if let Some(c) = counts.iter().find(|c| !(**c >= 0.0)) {
                return Err(format!("native histogram: {side} bucket count {c}, expected 0 or more"));
            }
        } else {
            let mut count = 0i64;
            for d in deltas.iter() {
                count = count.checked_add(*d).filter(|c| *c >= 0).ok_or_else(|| {
                    format!("native histogram: {side} bucket deltas give a negative or overflowing count")
                })?;
            }
        }
    }
    Ok(())
}

/// `name{a="x",b="y"}` of a series for an error message, cut to about 200 characters.
pub(crate) fn describe(labels: &[Label]) -> String {
    let mut out = String::new();
    out.push_str(metric_name(labels));
    out.push('{');
    let mut first = true;
    for l in labels.iter().filter(|l| l.name != "__name__") {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{}={:?}", l.name, l.value);
        if out.len() > 200 {
            let mut cut = 200;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("…");
            break;
        }
    }
    out.push('}');
    out
}
