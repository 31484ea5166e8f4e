//! Prometheus protobuf exposition: length-delimited `io.prometheus.client.MetricFamily` messages.
//!
//! Names are those of the text format, so a scraper finds the same series whichever format it
//! negotiates. Prometheus' protobuf parser takes a family's name as the sample name of its
//! counters and gauges and adds `_bucket`/`_sum`/`_count` to histograms and summaries itself; it
//! adds no `_total`. A counter family is therefore named `<name>_total` here (as client_golang's
//! counters are), the name its samples have in the text format.
//!
//! A classic histogram has one bucket per finite upper bound and no `+Inf` bucket: the format
//! makes it optional and Prometheus takes `+Inf` from `sample_count`, as client_golang writes it.
//!
//! Each family is one `MetricFamily` message, streamed: every series is a [`Metric`] encoded by
//! prost as field 4 of the family into a buffer, and the family's other fields and its length go
//! before it once the family ends. The bytes are those prost writes for the whole message, without
//! holding a `Metric` per series: one `Metric` value per kind is refilled for every series, its
//! label strings and vectors reused, so a scrape allocates only for its longest labels and largest
//! family.

use mmo_metrics::{MetricKind, MetricsManager, NativeBuckets, Sample, SeriesValue};
use prost::Message;
use prost_types::Timestamp;

use super::proto::{
    Bucket, BucketSpan, Counter, Exemplar, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType, Quantile,
    Summary,
};
use super::{count_deltas, walk, FamilyMeta, Format, SeriesLabels};

/// The Content-Type of [`encode_protobuf_with`]'s output.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Appends every family of `manager` to `out` as Prometheus protobuf: one `MetricFamily` per
/// family, each preceded by its length as a varint (what Prometheus reads as
/// `encoding=delimited`), families in name order and series in creation order. Every series
/// carries its own labels, then `global_labels` (e.g. `service`, `instance`) and the manager's
/// global labels whose names it does not carry; the names must be valid label names
/// (see [`mmo_metrics::validate_label_names`]) and none of
/// [`RESERVED_GLOBAL_LABELS`](crate::RESERVED_GLOBAL_LABELS).
///
/// ```
/// use mmo_metrics::MetricsManager;
/// use mmo_metrics_exporter::proto::MetricFamily;
/// use prost::Message;
///
/// let manager = MetricsManager::new();
/// manager.register_counter("logins", "Logins.", &["zone"])?;
/// manager.increment_counter("logins", 2, &["north"])?;
/// let mut out = Vec::new();
/// mmo_metrics_exporter::encode_protobuf_with(&manager, &[("service".into(), "login".into())], &mut out);
///
/// let family = MetricFamily::decode_length_delimited(&out[..]).unwrap();
/// assert_eq!(family.name(), "logins_total");
/// assert_eq!(family.help(), "Logins.");
/// let metric = &family.metric[0];
/// let labels: Vec<_> = metric.label.iter().map(|l| (l.name(), l.value())).collect();
/// assert_eq!(labels, [("zone", "north"), ("service", "login")]);
/// assert_eq!(metric.counter.as_ref().unwrap().value(), 2.0);
/// # Ok::<(), mmo_metrics::MetricsError>(())
/// ```
pub fn encode_protobuf_with(manager: &MetricsManager, global_labels: &[(String, String)], out: &mut Vec<u8>) {
    let mut encoder = Protobuf {
        out,
        head: MetricFamily::default(),
        head_bytes: Vec::new(),
        metrics: Vec::new(),
        slot: None,
        metric: Default::default(),
    };
    walk(manager, global_labels, &mut encoder);
    encoder.finish_family();
}

/// The key of `MetricFamily.metric` (field 4, wire type 2: length-delimited): what precedes each
/// encoded `Metric` in a family.
const METRIC_FIELD_KEY: u8 = (4 << 3) | 2;

struct Protobuf<'a> {
    out: &'a mut Vec<u8>,
    /// Name, help and type of the family being written; its `metric` stays empty.
    head: MetricFamily,
    head_bytes: Vec<u8>,
    /// The family's metrics so far, each as field 4 of `MetricFamily`.
    metrics: Vec<u8>,
    /// Index in `metric` of the family's kind; `None` for a kind this format has no type for.
    slot: Option<usize>,
    /// One `Metric` per kind (counter, gauge, histogram, summary), refilled for every series of
    /// that kind.
    metric: [Metric; 4],
}

impl Format for Protobuf<'_> {
    fn family(&mut self, family: &FamilyMeta<'_>) {
        self.finish_family();
        let (slot, metric_type) = match family.kind {
            MetricKind::Counter => (0, MetricType::Counter),
            MetricKind::Gauge => (1, MetricType::Gauge),
            MetricKind::Histogram => (2, MetricType::Histogram),
            MetricKind::Summary => (3, MetricType::Summary),
            _ => return,
        };
        self.slot = Some(slot);
        let name = self.head.name.get_or_insert_with(String::new);
        name.clear();
        name.push_str(family.name);
        if family.kind == MetricKind::Counter {
            name.push_str("_total");
        }
        match &family.help {
            Some(help) => set_str(&mut self.head.help, help),
            None => self.head.help = None,
        }
        self.head.set_type(metric_type);
    }

    fn series(&mut self, labels: SeriesLabels<'_>, sample: &Sample<'_>) {
        let Some(slot) = self.slot else { return };
        let metric = &mut self.metric[slot];
        let created = Some(timestamp(sample.created_ms()));
        match sample.value() {
            SeriesValue::Counter(v) => {
                set_counter(metric, v as f64, created);
                if let (Some(counter), Some(e)) = (&mut metric.counter, sample.exemplar()) {
                    counter.exemplar = Some(exemplar(&e));
                }
            }
            SeriesValue::FloatCounter(v) => set_counter(metric, v, created),
            SeriesValue::Gauge(v) => {
                clear_value(metric);
                metric.gauge = Some(Gauge { value: Some(v) });
            }
            SeriesValue::Histogram {
                bounds,
                cumulative,
                sum,
                count,
                native,
            } => {
                let histogram = take_histogram(metric);
                histogram.sample_count = Some(count);
                histogram.sample_sum = Some(sum);
                histogram.created_timestamp = created;
                histogram.bucket.extend(
                    bounds
                        .iter()
                        .zip(cumulative)
                        .enumerate()
                        .map(|(i, (&bound, &c))| Bucket {
                            cumulative_count: Some(c),
                            upper_bound: Some(bound),
                            exemplar: sample.bucket_exemplar(i).as_ref().map(exemplar),
                            ..Bucket::default()
                        }),
                );
                if let Some(native) = native {
                    set_native(histogram, &native);
                    // The exemplars of a native histogram go with it (Prometheus keeps only
                    // those with a timestamp, which ours always have); the `+Inf` bucket has no
                    // `Bucket` here, so its exemplar is carried only this way.
                    histogram.exemplars.extend(
                        (0..cumulative.len())
                            .filter_map(|i| sample.bucket_exemplar(i))
                            .map(|e| exemplar(&e)),
                    );
                }
            }
            SeriesValue::Summary {
                quantiles,
                values,
                sum,
                count,
            } => {
                let summary = take_summary(metric);
                summary.sample_count = Some(count);
                summary.sample_sum = Some(sum);
                summary.created_timestamp = created;
                summary
                    .quantile
                    .extend(quantiles.iter().zip(values).map(|(&q, &v)| Quantile {
                        quantile: Some(q),
                        value: Some(v),
                    }));
            }
            // A kind of value this format has no message for.
            _ => return,
        }
        set_labels(metric, labels);
        self.metrics.push(METRIC_FIELD_KEY);
        metric
            .encode_length_delimited(&mut self.metrics)
            .expect("a Vec<u8> grows to take any message");
    }
}

impl Protobuf<'_> {
    /// Writes the family begun last, if it has series: its length, its name, help and type, then
    /// its metrics.
    fn finish_family(&mut self) {
        if self.slot.take().is_none() || self.metrics.is_empty() {
            self.metrics.clear();
            return;
        }
        self.head_bytes.clear();
        self.head
            .encode(&mut self.head_bytes)
            .expect("a Vec<u8> grows to take any message");
        prost::encode_length_delimiter(self.head_bytes.len() + self.metrics.len(), &mut *self.out)
            .expect("a Vec<u8> grows to take any length");
        self.out.extend_from_slice(&self.head_bytes);
        self.out.extend_from_slice(&self.metrics);
        self.metrics.clear();
    }
}

/// Fills the native part of `histogram`: schema, zero bucket, spans, and the counts as deltas
/// (each bucket's count minus the previous bucket's, across spans, as the format defines them).
fn set_native(histogram: &mut Histogram, native: &NativeBuckets<'_>) {
    histogram.schema = Some(native.schema);
    histogram.zero_threshold = Some(native.zero_threshold);
    histogram.zero_count = Some(native.zero_count);
    let spans = |out: &mut Vec<BucketSpan>, spans: &[mmo_metrics::BucketSpan]| {
        out.extend(spans.iter().map(|s| BucketSpan {
            offset: Some(s.offset),
            length: Some(s.length),
        }));
    };
    spans(&mut histogram.positive_span, native.positive_spans);
    histogram.positive_delta.extend(count_deltas(native.positive_counts));
    spans(&mut histogram.negative_span, native.negative_spans);
    histogram.negative_delta.extend(count_deltas(native.negative_counts));
    // Prometheus reads a histogram as native when it has a span, a zero threshold or a zero count
    // above zero; one with none of them (no observation, threshold 0) gets an empty span, as
    // client_golang writes it, so it is not taken for a classic one.
    if histogram.positive_span.is_empty()
        && histogram.negative_span.is_empty()
        && native.zero_threshold == 0.0
        && native.zero_count == 0
    {
        histogram.positive_span.push(BucketSpan {
            offset: Some(0),
            length: Some(0),
        });
    }
}

/// Sets the labels of `metric` to `labels`, reusing its label strings.
fn set_labels(metric: &mut Metric, labels: SeriesLabels<'_>) {
    let mut n = 0;
    for (name, value) in labels.iter() {
        if n == metric.label.len() {
            metric.label.push(Default::default());
        }
        let pair = &mut metric.label[n];
        set_str(&mut pair.name, name);
        set_str(&mut pair.value, value);
        n += 1;
    }
    metric.label.truncate(n);
}

fn set_str(field: &mut Option<String>, s: &str) {
    let field = field.get_or_insert_with(String::new);
    field.clear();
    field.push_str(s);
}

fn set_counter(metric: &mut Metric, v: f64, created: Option<Timestamp>) {
    clear_value(metric);
    metric.counter = Some(Counter {
        value: Some(v),
        created_timestamp: created,
        ..Counter::default()
    });
}

/// Milliseconds since the Unix epoch as a protobuf `Timestamp`.
fn timestamp(ms: u64) -> Timestamp {
    Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: (ms % 1000) as i32 * 1_000_000,
    }
}

/// An exemplar as the format carries it: labels, value, timestamp.
fn exemplar(e: &mmo_metrics::Exemplar) -> Exemplar {
    Exemplar {
        label: e
            .labels()
            .map(|(name, value)| LabelPair {
                name: Some(name.to_owned()),
                value: Some(value.to_owned()),
            })
            .collect(),
        value: Some(e.value()),
        timestamp: Some(timestamp(e.timestamp_ms())),
    }
}

/// The histogram of `metric`, emptied, keeping its vectors' allocations.
fn take_histogram(metric: &mut Metric) -> &mut Histogram {
    let old = metric.histogram.take().unwrap_or_default();
    clear_value(metric);
    // Every field named: a vector added to the message must be kept here too, or it is allocated
    // anew for each series.
    let Histogram {
        sample_count: _,
        sample_count_float: _,
        sample_sum: _,
        mut bucket,
        created_timestamp: _,
        schema: _,
        zero_threshold: _,
        zero_count: _,
        zero_count_float: _,
        mut negative_span,
        mut negative_delta,
        mut negative_count,
        mut positive_span,
        mut positive_delta,
        mut positive_count,
        mut exemplars,
    } = old;
    bucket.clear();
    negative_span.clear();
    negative_delta.clear();
    negative_count.clear();
    positive_span.clear();
    positive_delta.clear();
    positive_count.clear();
    exemplars.clear();
    metric.histogram.insert(Histogram {
        bucket,
        negative_span,
        negative_delta,
        negative_count,
        positive_span,
        positive_delta,
        positive_count,
        exemplars,
        ..Histogram::default()
    })
}

/// The summary of `metric`, emptied, keeping its quantile vector's allocation.
fn take_summary(metric: &mut Metric) -> &mut Summary {
    let mut quantile = metric.summary.take().map(|s| s.quantile).unwrap_or_default();
    clear_value(metric);
    quantile.clear();
    metric.summary.insert(Summary {
        quantile,
        ..Summary::default()
    })
}

/// Leaves `metric` without a value, as if new but for its labels.
fn clear_value(metric: &mut Metric) {
    metric.gauge = None;
    metric.counter = None;
    metric.summary = None;
    metric.untyped = None;
    metric.histogram = None;
    metric.timestamp_ms = None;
}
