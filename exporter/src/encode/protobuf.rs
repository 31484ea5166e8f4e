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
//! Encoding reuses its allocations: one [`MetricFamily`] value for every family, and the
//! [`Metric`] values of families already written, with their label strings and bucket vectors,
//! for the series of the next family of the same kind.

use mmo_metrics::{MetricKind, MetricsManager, SeriesValue};
use prost::Message;

use super::proto::{Bucket, Counter, Gauge, Histogram, Metric, MetricFamily, MetricType, Quantile, Summary};
use super::{walk, FamilyMeta, Format, SeriesLabels};

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
        family: MetricFamily::default(),
        slot: None,
        spare: Default::default(),
    };
    walk(manager, global_labels, &mut encoder);
    encoder.finish_family();
}

struct Protobuf<'a> {
    out: &'a mut Vec<u8>,
    /// The family being filled; written out when the next one begins or the walk ends.
    family: MetricFamily,
    /// Index in `spare` of the family's kind; `None` for a kind this format has no type for.
    slot: Option<usize>,
    /// `Metric` values of written families, by the kind they held (counter, gauge, histogram,
    /// summary), so that a series reuses a metric of its own kind, with its vectors.
    spare: [Vec<Metric>; 4],
}

impl Format for Protobuf<'_> {
    fn family(&mut self, family: &FamilyMeta<'_>) {
        self.finish_family();
        let (slot, metric_type) = match family.kind {
            MetricKind::Counter => (0, MetricType::Counter),
            MetricKind::Gauge => (1, MetricType::Gauge),
            MetricKind::Histogram => (2, MetricType::Histogram),
            MetricKind::Summary => (3, MetricType::Summary),
            _ => {
                self.slot = None;
                return;
            }
        };
        self.slot = Some(slot);
        let name = self.family.name.get_or_insert_with(String::new);
        name.clear();
        name.push_str(family.name);
        if family.kind == MetricKind::Counter {
            name.push_str("_total");
        }
        match &family.help {
            Some(help) => {
                let text = self.family.help.get_or_insert_with(String::new);
                text.clear();
                text.push_str(help);
            }
            None => self.family.help = None,
        }
        self.family.set_type(metric_type);
    }

    fn series(&mut self, labels: SeriesLabels<'_>, value: SeriesValue<'_>) {
        let Some(slot) = self.slot else { return };
        let mut metric = self.spare[slot].pop().unwrap_or_default();
        match value {
            SeriesValue::Counter(v) => set_counter(&mut metric, v as f64),
            SeriesValue::FloatCounter(v) => set_counter(&mut metric, v),
            SeriesValue::Gauge(v) => {
                clear_value(&mut metric);
                metric.gauge = Some(Gauge { value: Some(v) });
            }
            SeriesValue::Histogram {
                bounds,
                cumulative,
                sum,
                count,
                ..
            } => {
                let histogram = take_histogram(&mut metric);
                histogram.sample_count = Some(count);
                histogram.sample_sum = Some(sum);
                histogram
                    .bucket
                    .extend(bounds.iter().zip(cumulative).map(|(&bound, &c)| Bucket {
                        cumulative_count: Some(c),
                        upper_bound: Some(bound),
                        ..Bucket::default()
                    }));
            }
            SeriesValue::Summary {
                quantiles,
                values,
                sum,
                count,
            } => {
                let summary = take_summary(&mut metric);
                summary.sample_count = Some(count);
                summary.sample_sum = Some(sum);
                summary
                    .quantile
                    .extend(quantiles.iter().zip(values).map(|(&q, &v)| Quantile {
                        quantile: Some(q),
                        value: Some(v),
                    }));
            }
            // A kind of value this format has no message for.
            _ => {
                self.spare[slot].push(metric);
                return;
            }
        }
        set_labels(&mut metric, labels);
        self.family.metric.push(metric);
    }
}

impl Protobuf<'_> {
    /// Writes the family filled so far, if it has series, and keeps its metrics for reuse.
    fn finish_family(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        if self.family.metric.is_empty() {
            return;
        }
        self.family
            .encode_length_delimited(&mut *self.out)
            .expect("a Vec<u8> grows to take any message");
        self.spare[slot].append(&mut self.family.metric);
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

fn set_counter(metric: &mut Metric, v: f64) {
    clear_value(metric);
    metric.counter = Some(Counter {
        value: Some(v),
        ..Counter::default()
    });
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
