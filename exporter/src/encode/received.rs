//! Exposition of the series the remote write receiver stored, after the manager's families.
//!
//! Received series are grouped by metric name into families, in name order, series in label
//! order, each family typed from the metadata its sender sent:
//!
//! - a name ending in `_total` whose metadata (under that name, or the name without `_total`)
//!   says counter: a counter (text and protobuf: family `x_total`; OpenMetrics: family `x` with
//!   samples `x_total`, or `unknown` when a value is negative or NaN, which an OpenMetrics counter
//!   cannot have, or when `x` is itself a received name);
//! - a name whose metadata says gauge, unless it ends in `_total`, `_bucket`, `_sum`, `_count`,
//!   `_created` or `_info` (names Prometheus' linter and OpenMetrics reserve for other types): a
//!   gauge;
//! - everything else, the series of classic histograms and summaries included (`x_bucket`,
//!   `x_sum`, `x_count`, `x`): one untyped family per name (`untyped` in text, `unknown` in
//!   OpenMetrics, `UNTYPED` in protobuf). Prometheus stores them as the same series as typed
//!   ones, and `histogram_quantile` works on them; only the type is not carried. They are not
//!   regrouped into histogram and summary families because their series need not arrive together
//!   (Prometheus' remote write splits what it sends across shards and requests): a scrape may
//!   see a `_count` newer than its `+Inf` bucket, which a typed family must not show and strict
//!   parsers refuse.
//!
//! Every family has a `# HELP`: the sender's help for it (or for the name without its suffix),
//! else a note that none was sent. Received timestamps are not exposed: a scrape's samples are
//! stamped with the scrape's time, as the exporter's own are, so Prometheus does not drop points
//! as too old or out of order. Native histograms are exposed in protobuf only (as native
//! histograms); the text formats cannot carry them, and a name with both float and histogram
//! series exposes only its float series in protobuf. Received series are exposed with their own
//! labels only: the exporter's global labels are not added (scrape this service with
//! `honor_labels: true` so their `job` and `instance` stay theirs). A name the manager's families
//! take ([`Taken`]) is left out: such series are refused at ingest, and this covers families the
//! manager gained since.

use std::collections::{BTreeMap, HashMap};

use prost::Message;

use super::fmt::{escape_help, escape_label_value, push_f64, push_label_pairs, push_sample_head};
use super::proto::{self as pb, MetricType};
use super::ExpositionFormat;
use crate::push::receive::store::Snapshot;
use crate::push::receive::Taken;
use crate::push::remote_write::proto::metric_metadata::MetricType as RwType;
use crate::push::remote_write::proto::{histogram, Label, MetricMetadata, TimeSeries};

/// Help of a received family whose sender sent no metadata.
const NO_HELP: &str = "Received by remote write; its sender sent no metadata for it.";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Untyped,
}

/// The received series of one name.
struct Family<'a> {
    name: &'a str,
    kind: Kind,
    help: &'a str,
    floats: Vec<&'a TimeSeries>,
    histograms: Vec<&'a TimeSeries>,
}

/// Appends the received families of `snapshot` to `out`, in `format`.
pub(crate) fn expose(snapshot: &Snapshot, taken: &Taken, format: ExpositionFormat, out: &mut Vec<u8>) {
    let families = families(snapshot, taken);
    match format {
        ExpositionFormat::Text | ExpositionFormat::OpenMetrics => {
            let mut text = String::new();
            text_families(&families, format == ExpositionFormat::OpenMetrics, &mut text);
            out.extend_from_slice(text.as_bytes());
        }
        ExpositionFormat::Protobuf => protobuf_families(&families, out),
    }
}

fn families<'a>(snapshot: &'a Snapshot, taken: &Taken) -> Vec<Family<'a>> {
    let metadata: HashMap<&str, &MetricMetadata> = snapshot
        .metadata
        .iter()
        .map(|m| (m.metric_family_name.as_str(), &**m))
        .collect();
    let mut by_name: BTreeMap<&str, Family<'a>> = BTreeMap::new();
    for s in &snapshot.series {
        let name = crate::push::receive::decode::stored_name(&s.labels);
        if taken.contains(name) {
            continue;
        }
        let f = by_name.entry(name).or_insert_with(|| Family {
            name,
            kind: Kind::Untyped,
            help: NO_HELP,
            floats: Vec::new(),
            histograms: Vec::new(),
        });
        if s.histograms.is_empty() {
            f.floats.push(s);
        } else {
            f.histograms.push(s);
        }
    }
    let names: Vec<&str> = by_name.keys().copied().collect();
    let mut out: Vec<Family<'a>> = by_name.into_values().collect();
    for f in &mut out {
        let own = metadata.get(f.name).copied();
        let stem = ["_total", "_bucket", "_sum", "_count", "_created", "_info"]
            .iter()
            .find_map(|s| f.name.strip_suffix(s));
        let of_stem = stem.and_then(|s| metadata.get(s).copied());
        let typ = |m: Option<&MetricMetadata>| m.and_then(|m| RwType::try_from(m.r#type).ok());
        f.kind = if f.name.ends_with("_total")
            && (typ(own) == Some(RwType::Counter) || typ(of_stem) == Some(RwType::Counter))
        {
            Kind::Counter
        } else if typ(own) == Some(RwType::Gauge) && stem.is_none() {
            Kind::Gauge
        } else {
            Kind::Untyped
        };
        // The OpenMetrics family of a counter `x_total` is `x`: it must not be a received name.
        if f.kind == Kind::Counter && stem.is_some_and(|s| names.binary_search(&s).is_ok()) {
            f.kind = Kind::Untyped;
        }
        if let Some(m) = own.or(of_stem).filter(|m| !m.help.is_empty()) {
            f.help = &m.help;
        }
        f.floats.sort_by(|a, b| by_labels(a, b));
        f.histograms.sort_by(|a, b| by_labels(a, b));
    }
    out
}

/// Orders series by their labels (names, then values, in order).
fn by_labels(a: &TimeSeries, b: &TimeSeries) -> std::cmp::Ordering {
    a.labels
        .iter()
        .map(|l| (&l.name, &l.value))
        .cmp(b.labels.iter().map(|l| (&l.name, &l.value)))
}

/// The labels of a series as exposed: all but `__name__`, in their (sorted) order.
fn labels(s: &TimeSeries) -> impl Iterator<Item = (&str, &str)> {
    s.labels
        .iter()
        .filter(|l| l.name != "__name__")
        .map(|l| (l.name.as_str(), l.value.as_str()))
}

fn value(s: &TimeSeries) -> f64 {
    s.samples.first().map_or(f64::NAN, |p| p.value)
}

fn text_families(families: &[Family<'_>], openmetrics: bool, out: &mut String) {
    let mut pairs = String::new();
    for f in families.iter().filter(|f| !f.floats.is_empty()) {
        let kind = match f.kind {
            // OpenMetrics counters are not negative, and not NaN.
            Kind::Counter if openmetrics && f.floats.iter().any(|s| value(s).is_nan() || value(s) < 0.0) => {
                Kind::Untyped
            }
            k => k,
        };
        let family = match (kind, openmetrics) {
            (Kind::Counter, true) => f.name.strip_suffix("_total").unwrap_or(f.name),
            _ => f.name,
        };
        let type_name = match (kind, openmetrics) {
            (Kind::Counter, _) => "counter",
            (Kind::Gauge, _) => "gauge",
            (Kind::Untyped, false) => "untyped",
            (Kind::Untyped, true) => "unknown",
        };
        let help = |out: &mut String| {
            out.push_str("# HELP ");
            out.push_str(family);
            out.push(' ');
            if openmetrics {
                escape_label_value(out, f.help);
            } else {
                escape_help(out, f.help);
            }
            out.push('\n');
        };
        let type_line = |out: &mut String| {
            out.push_str("# TYPE ");
            out.push_str(family);
            out.push(' ');
            out.push_str(type_name);
            out.push('\n');
        };
        if openmetrics {
            type_line(out);
            help(out);
        } else {
            help(out);
            type_line(out);
        }
        for s in &f.floats {
            pairs.clear();
            push_label_pairs(&mut pairs, labels(s));
            push_sample_head(out, f.name, "", &pairs, None);
            push_f64(out, value(s));
            out.push('\n');
        }
    }
}

fn protobuf_families(families: &[Family<'_>], out: &mut Vec<u8>) {
    for f in families {
        let (metric_type, metric) = if !f.floats.is_empty() {
            let metric = f
                .floats
                .iter()
                .map(|s| {
                    let v = Some(value(s));
                    pb::Metric {
                        label: label_pairs(&s.labels),
                        counter: (f.kind == Kind::Counter).then(|| pb::Counter {
                            value: v,
                            ..Default::default()
                        }),
                        gauge: (f.kind == Kind::Gauge).then_some(pb::Gauge { value: v }),
                        untyped: (f.kind == Kind::Untyped).then_some(pb::Untyped { value: v }),
                        ..Default::default()
                    }
                })
                .collect();
            let t = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Untyped => MetricType::Untyped,
            };
            (t, metric)
        } else {
            let metric = f
                .histograms
                .iter()
                .map(|s| pb::Metric {
                    label: label_pairs(&s.labels),
                    histogram: Some(native(&s.histograms[0])),
                    ..Default::default()
                })
                .collect();
            (MetricType::Histogram, metric)
        };
        let family = pb::MetricFamily {
            name: Some(f.name.to_owned()),
            help: Some(f.help.to_owned()),
            r#type: Some(metric_type as i32),
            metric,
            ..Default::default()
        };
        family
            .encode_length_delimited(out)
            .expect("a Vec<u8> grows to take any message");
    }
}

fn label_pairs(labels: &[Label]) -> Vec<pb::LabelPair> {
    labels
        .iter()
        .filter(|l| l.name != "__name__")
        .map(|l| pb::LabelPair {
            name: Some(l.name.clone()),
            value: Some(l.value.clone()),
        })
        .collect()
}

/// A remote write native histogram as the exposition's: the same schema, zero bucket, spans and
/// counts (integer deltas, or float counts).
fn native(h: &crate::push::remote_write::proto::Histogram) -> pb::Histogram {
    let spans = |spans: &[crate::push::remote_write::proto::BucketSpan]| {
        spans
            .iter()
            .map(|s| pb::BucketSpan {
                offset: Some(s.offset),
                length: Some(s.length),
            })
            .collect()
    };
    let mut out = pb::Histogram {
        sample_sum: Some(h.sum),
        schema: Some(h.schema),
        zero_threshold: Some(h.zero_threshold),
        positive_span: spans(&h.positive_spans),
        negative_span: spans(&h.negative_spans),
        positive_delta: h.positive_deltas.clone(),
        negative_delta: h.negative_deltas.clone(),
        positive_count: h.positive_counts.clone(),
        negative_count: h.negative_counts.clone(),
        ..Default::default()
    };
    match h.count {
        Some(histogram::Count::CountFloat(c)) => out.sample_count_float = Some(c),
        Some(histogram::Count::CountInt(c)) => out.sample_count = Some(c),
        None => out.sample_count = Some(0),
    }
    match h.zero_count {
        Some(histogram::ZeroCount::ZeroCountFloat(c)) => out.zero_count_float = Some(c),
        Some(histogram::ZeroCount::ZeroCountInt(c)) => out.zero_count = Some(c),
        None => out.zero_count = Some(0),
    }
    // Prometheus reads a histogram as native when it has a span, a zero threshold or a zero
    // count above zero: an empty one gets an empty span, as client_golang writes it.
    if out.positive_span.is_empty()
        && out.negative_span.is_empty()
        && h.zero_threshold == 0.0
        && out.zero_count.unwrap_or(0) == 0
        && out.zero_count_float.unwrap_or(0.0) == 0.0
    {
        out.positive_span.push(pb::BucketSpan {
            offset: Some(0),
            length: Some(0),
        });
    }
    out
}
