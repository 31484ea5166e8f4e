//! Prometheus text exposition format 0.0.4.

use mmo_metrics::{MetricKind, MetricsManager, Sample, SeriesValue};

use super::fmt::{escape_help, push_bucket_head, push_f64, push_sample_head, push_u64, SampleHead};
use super::{text_size_estimate, walk, FamilyMeta, Format, SeriesLabels};

/// The Content-Type of [`encode_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every family of `manager` in the Prometheus text format 0.0.4: `# HELP` (when given)
/// and `# TYPE` lines, counters with `_total`, cumulative histogram buckets ending in `+Inf`,
/// summary quantiles, escaped help and label values, families in name order and series in
/// creation order.
pub fn encode_text(manager: &MetricsManager) -> String {
    let mut out = String::with_capacity(4096);
    encode_text_into(manager, &mut out);
    out
}

/// Like [`encode_text`], appending to `out` (reuse one buffer across scrapes).
pub fn encode_text_into(manager: &MetricsManager, out: &mut String) {
    encode_text_with(manager, &[], out);
}

/// Like [`encode_text_into`], adding `global_labels` (e.g. `service`, `instance`) to every
/// sample that does not carry a label of that name itself. The names must be valid label names
/// (see [`mmo_metrics::validate_label_names`]) and none of
/// [`RESERVED_GLOBAL_LABELS`](crate::RESERVED_GLOBAL_LABELS); the values are escaped here.
pub fn encode_text_with(manager: &MetricsManager, global_labels: &[(String, String)], out: &mut String) {
    out.reserve(text_size_estimate(manager));
    let mut text = Text {
        out,
        labels: String::new(),
        name: String::new(),
        head: SampleHead::default(),
        bucket: String::new(),
        le: Vec::new(),
        le_of: std::ptr::null(),
    };
    walk(manager, global_labels, &mut text);
}

struct Text<'a> {
    out: &'a mut String,
    /// Formatted `le` values of the bounds at `le_of`, then `+Inf`, each followed by `"} `.
    le: Vec<String>,
    le_of: *const f64,
    /// `a="x",b="y"` of the current series, when it has more than one sample.
    labels: String,
    /// Sample name of the current family.
    name: String,
    /// The current family's and label set's `name{…} `, but the series' own values.
    head: SampleHead,
    /// `name_bucket{a="x",b="y",le="` of the current histogram series.
    bucket: String,
}

impl Format for Text<'_> {
    fn family(&mut self, family: &FamilyMeta<'_>) {
        self.name.clear();
        self.name.push_str(family.name);
        if family.kind == MetricKind::Counter {
            self.name.push_str("_total");
        }
        self.head.reset();
        if let Some(help) = &family.help {
            self.out.push_str("# HELP ");
            self.out.push_str(&self.name);
            self.out.push(' ');
            escape_help(self.out, help);
            self.out.push('\n');
        }
        self.out.push_str("# TYPE ");
        self.out.push_str(&self.name);
        self.out.push(' ');
        self.out.push_str(family.kind.as_str());
        self.out.push('\n');
    }

    /// Text 0.0.4 has no exemplars and no creation times: only the value is written.
    fn series(&mut self, labels: SeriesLabels<'_>, sample: &Sample<'_>) {
        match sample.value() {
            SeriesValue::Counter(v) => {
                self.head.write(self.out, &self.name, &labels);
                push_u64(self.out, v);
                self.out.push('\n');
            }
            SeriesValue::Gauge(v) | SeriesValue::FloatCounter(v) => {
                self.head.write(self.out, &self.name, &labels);
                push_f64(self.out, v);
                self.out.push('\n');
            }
            // Text 0.0.4 has no native histograms: their classic part (or `+Inf` alone) is shown.
            SeriesValue::Histogram {
                bounds,
                cumulative,
                sum,
                count,
                ..
            } => {
                self.set_labels(&labels);
                // The bounds are the family's: format them once per family, not per series.
                if self.le.len() != bounds.len() + 1 || self.le_of != bounds.as_ptr() {
                    self.le.clear();
                    for b in bounds {
                        let mut le = String::new();
                        push_f64(&mut le, *b);
                        le.push_str("\"} ");
                        self.le.push(le);
                    }
                    self.le.push("+Inf\"} ".into());
                    self.le_of = bounds.as_ptr();
                }
                // `name_bucket{labels,le="` once for the series' buckets, each then its bound.
                self.bucket.clear();
                push_bucket_head(&mut self.bucket, &self.name, &self.labels);
                let le = std::mem::take(&mut self.le);
                for (c, le) in cumulative.iter().zip(&le) {
                    self.out.push_str(&self.bucket);
                    self.out.push_str(le);
                    push_u64(self.out, *c);
                    self.out.push('\n');
                }
                self.le = le;
                self.sum_count(sum, count);
            }
            SeriesValue::Summary {
                quantiles,
                values,
                sum,
                count,
            } => {
                self.set_labels(&labels);
                let mut q = String::new();
                for (quantile, v) in quantiles.iter().zip(values) {
                    q.clear();
                    push_f64(&mut q, *quantile);
                    self.sample("", Some(("quantile", &q)));
                    push_f64(self.out, *v);
                    self.out.push('\n');
                }
                self.sum_count(sum, count);
            }
            // A kind of value this format has no samples for.
            _ => {}
        }
    }
}

impl Text<'_> {
    /// Renders the labels of a series of several samples into `labels`.
    fn set_labels(&mut self, labels: &SeriesLabels<'_>) {
        self.labels.clear();
        self.head.labels(&mut self.labels, &self.name, labels);
    }

    fn sum_count(&mut self, sum: f64, count: u64) {
        self.sample("_sum", None);
        push_f64(self.out, sum);
        self.out.push('\n');
        self.sample("_count", None);
        push_u64(self.out, count);
        self.out.push('\n');
    }

    /// Writes `name{suffix}{labels,extra} ` (the value follows).
    fn sample(&mut self, suffix: &str, extra: Option<(&str, &str)>) {
        push_sample_head(self.out, &self.name, suffix, &self.labels, extra);
    }
}
