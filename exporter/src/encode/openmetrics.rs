//! OpenMetrics 1.0 text exposition.
//!
//! Each family is `# TYPE`, `# UNIT` (see [`OpenMetrics::family`]), `# HELP`, then its samples;
//! the exposition ends with `# EOF`. Counter families are named without `_total` and their
//! samples with it, so a counter has the same series name here as in text 0.0.4. `le` and
//! `quantile` label values are canonical numbers ([`push_canonical_f64`]: `1.0`, `+Inf`).
//!
//! OpenMetrics forbids a few values the other formats carry, and those samples are left out here:
//! a histogram or summary `_sum` that is negative or NaN (the sum is a counter to OpenMetrics);
//! with it a histogram's `_count` (the two come together); the `_sum` and `_count` of every series
//! of a histogram with a negative bucket bound (OpenMetrics: "MUST NOT contain a sum value"); a
//! summary quantile whose value is negative. The buckets and the other samples are exposed.

use mmo_metrics::{Exemplar, MetricKind, MetricsManager, Sample, SeriesValue};

use super::fmt::{
    escape_label_value, push_bucket_head, push_canonical_f64, push_f64, push_label_pairs, push_sample_head, push_u64,
    SampleHead,
};
use super::{text_size_estimate, walk, FamilyMeta, Format, SeriesLabels};

/// The Content-Type of [`encode_openmetrics`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders every family of `manager` in OpenMetrics 1.0 text: `# TYPE`, `# UNIT` (when the
/// family has a unit and its name ends with it), `# HELP`; counter families named without
/// `_total` and samples with it; cumulative histogram buckets ending in `le="+Inf"`, `_count`
/// and `_sum`; summary quantiles, `_count` and `_sum`; escaped help and label values; families in
/// name order, series in creation order; `# EOF` at the end.
///
/// ```
/// use mmo_metrics::MetricsManager;
///
/// let m = MetricsManager::new();
/// m.register_counter("logins", "Logins.", &["zone"])?;
/// m.increment_counter("logins", 2, &["north"])?;
/// m.register_histogram("tick_seconds", "Tick \"time\".", &[], &[0.05, 1.0])?;
/// m.observe_histogram("tick_seconds", 0.02, &[])?;
/// assert_eq!(
///     mmo_metrics_exporter::encode_openmetrics(&m),
///     concat!(
///         "# TYPE logins counter\n",
///         "# HELP logins Logins.\n",
///         "logins_total{zone=\"north\"} 2\n",
///         "# TYPE tick_seconds histogram\n",
///         "# HELP tick_seconds Tick \\\"time\\\".\n",
///         "tick_seconds_bucket{le=\"0.05\"} 1\n",
///         "tick_seconds_bucket{le=\"1.0\"} 1\n",
///         "tick_seconds_bucket{le=\"+Inf\"} 1\n",
///         "tick_seconds_count 1\n",
///         "tick_seconds_sum 0.02\n",
///         "# EOF\n",
///     )
/// );
/// # Ok::<(), mmo_metrics::MetricsError>(())
/// ```
pub fn encode_openmetrics(manager: &MetricsManager) -> String {
    let mut out = String::with_capacity(4096);
    encode_openmetrics_with(manager, &[], &mut out);
    out
}

/// Like [`encode_openmetrics`], appending to `out` and adding `global_labels` (e.g. `service`,
/// `instance`) to every sample that does not carry a label of that name itself. The names must
/// be valid label names (see [`mmo_metrics::validate_label_names`]) and none of
/// [`RESERVED_GLOBAL_LABELS`](crate::RESERVED_GLOBAL_LABELS); the values are escaped here.
pub fn encode_openmetrics_with(manager: &MetricsManager, global_labels: &[(String, String)], out: &mut String) {
    encode_openmetrics_with_options(manager, global_labels, OpenMetricsOptions::default(), out);
}

/// What an OpenMetrics exposition carries besides the samples: exemplars always, `_created`
/// samples when asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenMetricsOptions {
    /// A `_created` sample (the series' creation time, Unix seconds) after each counter, histogram
    /// and summary series. Off by default: Prometheus 2.x stores each `_created` sample as a
    /// series of its own (a gauge whose value never changes), which adds one series per counter,
    /// histogram and summary series to its storage and to every query that matches the name, for
    /// a value only newer Prometheus versions use (and then from the protobuf format's
    /// `created_timestamp`, which that format always carries).
    pub created: bool,
}

/// Like [`encode_openmetrics_with`], with `_created` samples when `options` asks for them.
pub fn encode_openmetrics_with_options(
    manager: &MetricsManager,
    global_labels: &[(String, String)],
    options: OpenMetricsOptions,
    out: &mut String,
) {
    out.reserve(text_size_estimate(manager));
    let mut om = OpenMetrics {
        out,
        name: String::new(),
        head: SampleHead::default(),
        labels: String::new(),
        bucket: String::new(),
        le: Canonical::default(),
        quantile: Canonical::default(),
        options,
        stem_len: 0,
    };
    walk(manager, global_labels, &mut om);
    om.out.push_str("# EOF\n");
}

struct OpenMetrics<'a> {
    out: &'a mut String,
    /// The current family's name (a counter's without `_total`).
    name: String,
    /// The current family's and label set's `name{…} `, but the series' own values.
    head: SampleHead,
    /// `a="x",b="y"` of the current series, when it has more than one sample.
    labels: String,
    /// `name_bucket{a="x",b="y",le="` of the current histogram series.
    bucket: String,
    /// `le` values of the current histogram family's bounds.
    le: Canonical,
    /// `quantile` values of the current summary family.
    quantile: Canonical,
    options: OpenMetricsOptions,
    /// Length of the family name in `name` (which has `_total` after it for a counter).
    stem_len: usize,
}

/// Canonical renderings of one family's bounds or quantiles, kept while they stay the same (every
/// series of a family has the same ones), then `+Inf` for bounds; each followed by the text that
/// follows it in every sample line (one `Canonical` is always asked for the same one).
#[derive(Default)]
struct Canonical {
    of: Vec<f64>,
    text: Vec<String>,
}

impl Canonical {
    fn get(&mut self, values: &[f64], with_inf: bool, then: &str) -> &[String] {
        // The text's length tells a rendering of no values from none yet (an empty `of` either
        // way): a native-only histogram has no bounds and still needs its `+Inf`.
        let same = self.text.len() == values.len() + usize::from(with_inf)
            && self.of.len() == values.len()
            && self.of.iter().zip(values).all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            self.of.clear();
            self.of.extend_from_slice(values);
            self.text.clear();
            for &v in values {
                let mut s = String::new();
                push_canonical_f64(&mut s, v);
                s.push_str(then);
                self.text.push(s);
            }
            if with_inf {
                self.text.push(format!("+Inf{then}"));
            }
        }
        &self.text
    }
}

impl Format for OpenMetrics<'_> {
    /// `# UNIT` is written only when the family's name ends with `_<unit>`: OpenMetrics requires
    /// the unit to be the name's suffix and parsers reject the exposition otherwise. A family
    /// described with a unit but named without it (the facade without
    /// [`with_recommended_naming`](mmo_metrics::MetricsManagerBuilder::with_recommended_naming))
    /// is exposed without `# UNIT`, rather than renamed, so its series keep the name they have in
    /// every other format.
    fn family(&mut self, family: &FamilyMeta<'_>) {
        self.name.clear();
        self.name.push_str(family.name);
        self.head.reset();
        self.out.push_str("# TYPE ");
        self.out.push_str(&self.name);
        self.out.push(' ');
        self.out.push_str(family.kind.as_str());
        self.out.push('\n');
        if let Some(unit) = family.unit {
            let suffixed = self
                .name
                .strip_suffix(unit)
                .is_some_and(|stem| stem.len() > 1 && stem.ends_with('_'));
            if suffixed {
                self.out.push_str("# UNIT ");
                self.out.push_str(&self.name);
                self.out.push(' ');
                self.out.push_str(unit);
                self.out.push('\n');
            }
        }
        if let Some(help) = &family.help {
            self.out.push_str("# HELP ");
            self.out.push_str(&self.name);
            self.out.push(' ');
            // OpenMetrics escapes `"` in help too (an escaped-string, as label values).
            escape_label_value(self.out, help);
            self.out.push('\n');
        }
        self.stem_len = self.name.len();
        if family.kind == MetricKind::Counter {
            self.name.push_str("_total");
        }
    }

    /// Exemplars follow a counter's `_total` sample and a histogram's `_bucket` samples (one
    /// per bucket at most), as OpenMetrics allows them nowhere else.
    fn series(&mut self, labels: SeriesLabels<'_>, sample: &Sample<'_>) {
        match sample.value() {
            SeriesValue::Counter(v) => {
                self.head.write(self.out, &self.name, &labels);
                push_u64(self.out, v);
                self.exemplar(sample.exemplar());
                self.out.push('\n');
                self.created(&labels, sample);
            }
            SeriesValue::FloatCounter(v) => {
                self.head.write(self.out, &self.name, &labels);
                push_f64(self.out, v);
                self.out.push('\n');
                self.created(&labels, sample);
            }
            SeriesValue::Gauge(v) => {
                self.head.write(self.out, &self.name, &labels);
                push_f64(self.out, v);
                self.out.push('\n');
            }
            SeriesValue::Histogram {
                bounds,
                cumulative,
                sum,
                count,
                ..
            } => {
                self.set_labels(&labels);
                // `name_bucket{labels,le="` once for the series' buckets, each then its bound.
                self.bucket.clear();
                push_bucket_head(&mut self.bucket, &self.name, &self.labels);
                let mut le = std::mem::take(&mut self.le);
                for (i, (c, le)) in cumulative.iter().zip(le.get(bounds, true, "\"} ")).enumerate() {
                    self.out.push_str(&self.bucket);
                    self.out.push_str(le);
                    push_u64(self.out, *c);
                    self.exemplar(sample.bucket_exemplar(i));
                    self.out.push('\n');
                }
                self.le = le;
                // A negative bound forbids the sum in every series of the family.
                if bounds.first().is_none_or(|b| *b >= 0.0) && sum >= 0.0 {
                    self.count_sum(count, sum);
                }
                self.created(&labels, sample);
            }
            SeriesValue::Summary {
                quantiles,
                values,
                sum,
                count,
                ..
            } => {
                self.set_labels(&labels);
                let mut q = std::mem::take(&mut self.quantile);
                for (quantile, v) in q.get(quantiles, false, "").iter().zip(values) {
                    // NaN (an empty window) is what OpenMetrics asks for; negative is forbidden.
                    if *v < 0.0 {
                        continue;
                    }
                    self.sample("", Some(("quantile", quantile)));
                    push_f64(self.out, *v);
                    self.out.push('\n');
                }
                self.quantile = q;
                self.sample("_count", None);
                push_u64(self.out, count);
                self.out.push('\n');
                if sum >= 0.0 {
                    self.sample("_sum", None);
                    push_f64(self.out, sum);
                    self.out.push('\n');
                }
                self.created(&labels, sample);
            }
            // A kind of value this format has no samples for.
            _ => {}
        }
    }
}

impl OpenMetrics<'_> {
    /// ` # {labels} value timestamp` after a sample's value, when there is an exemplar.
    fn exemplar(&mut self, exemplar: Option<Exemplar>) {
        let Some(e) = exemplar else { return };
        self.out.push_str(" # {");
        push_label_pairs(self.out, e.labels());
        self.out.push_str("} ");
        push_f64(self.out, e.value());
        self.out.push(' ');
        push_unix_seconds(self.out, e.timestamp_ms());
    }

    /// Renders the labels of a series of several samples into `labels`.
    fn set_labels(&mut self, labels: &SeriesLabels<'_>) {
        self.labels.clear();
        self.head.labels(&mut self.labels, &self.name, labels);
    }

    /// The series' `_created` sample, when the options ask for it.
    fn created(&mut self, labels: &SeriesLabels<'_>, sample: &Sample<'_>) {
        if !self.options.created {
            return;
        }
        self.set_labels(labels);
        // `_created` follows the family name, not a counter's `_total`.
        let total = self.name.split_off(self.stem_len);
        self.sample("_created", None);
        push_unix_seconds(self.out, sample.created_ms());
        self.out.push('\n');
        self.name.push_str(&total);
    }

    /// A histogram's `_count` and `_sum`, which OpenMetrics parsers want together.
    fn count_sum(&mut self, count: u64, sum: f64) {
        self.sample("_count", None);
        push_u64(self.out, count);
        self.out.push('\n');
        self.sample("_sum", None);
        push_f64(self.out, sum);
        self.out.push('\n');
    }

    /// Writes `name{suffix}{labels,extra} ` (the value follows).
    fn sample(&mut self, suffix: &str, extra: Option<(&str, &str)>) {
        push_sample_head(self.out, &self.name, suffix, &self.labels, extra);
    }
}

/// Unix milliseconds as seconds with three decimals (`1700000000.123`).
fn push_unix_seconds(out: &mut String, ms: u64) {
    push_u64(out, ms / 1000);
    out.push('.');
    let frac = ms % 1000;
    out.push(char::from(b'0' + (frac / 100) as u8));
    out.push(char::from(b'0' + (frac / 10 % 10) as u8));
    out.push(char::from(b'0' + (frac % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_escapes() {
        let m = MetricsManager::new();
        m.register_counter("x_total", "X \"events\"\\n.\nsecond line", &[])
            .unwrap();
        m.increment_counter("x_total", 2, &[]).unwrap();
        m.register_gauge("g", "G.", &["k"]).unwrap();
        m.set_gauge("g", -1.5, &["a\"b\\c\nd"]).unwrap();
        m.set_gauge("g", f64::NAN, &["nan"]).unwrap();
        m.set_gauge("g", f64::NEG_INFINITY, &["neg"]).unwrap();
        m.set_gauge("g", 3.0, &["int"]).unwrap();
        let text = encode_openmetrics(&m);
        assert_eq!(
            text,
            concat!(
                "# TYPE g gauge\n",
                "# HELP g G.\n",
                "g{k=\"a\\\"b\\\\c\\nd\"} -1.5\n",
                "g{k=\"nan\"} NaN\n",
                "g{k=\"neg\"} -Inf\n",
                "g{k=\"int\"} 3\n",
                "# TYPE x counter\n",
                "# HELP x X \\\"events\\\"\\\\n.\\nsecond line\n",
                "x_total 2\n",
                "# EOF\n",
            )
        );
    }

    #[test]
    fn summaries_and_global_labels() {
        let m = MetricsManager::new();
        m.register_summary("rtt_seconds", "RTT.", &["zone"], &[0.5, 0.99])
            .unwrap();
        for _ in 0..10 {
            m.observe_summary("rtt_seconds", 0.25, &["north"]).unwrap();
        }
        m.register_summary("idle", "Never observed.", &[], &[0.5]).unwrap();
        let _ = m.summary("idle", &[]).unwrap();
        let mut text = String::new();
        encode_openmetrics_with(&m, &[("service".into(), "gate\"way".into())], &mut text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "# TYPE idle summary",
                "# HELP idle Never observed.",
                "idle{service=\"gate\\\"way\",quantile=\"0.5\"} NaN",
                "idle_count{service=\"gate\\\"way\"} 0",
                "idle_sum{service=\"gate\\\"way\"} 0",
                "# TYPE rtt_seconds summary",
                "# HELP rtt_seconds RTT.",
                lines[7],
                lines[8],
                "rtt_seconds_count{zone=\"north\",service=\"gate\\\"way\"} 10",
                "rtt_seconds_sum{zone=\"north\",service=\"gate\\\"way\"} 2.5",
                "# EOF",
            ]
        );
        for (line, q) in [(lines[7], "0.5"), (lines[8], "0.99")] {
            let want = format!("rtt_seconds{{zone=\"north\",service=\"gate\\\"way\",quantile=\"{q}\"}} ");
            let v: f64 = line
                .strip_prefix(&want)
                .unwrap_or_else(|| panic!("{line}"))
                .parse()
                .unwrap();
            assert!((v - 0.25).abs() <= 0.25 * mmo_metrics::SUMMARY_RELATIVE_ERROR, "{line}");
        }
    }

    #[test]
    fn values_openmetrics_forbids_are_left_out() {
        let m = MetricsManager::new();
        // A negative bound: no _sum, no _count, in every series of the family.
        m.register_histogram("delta", "Deltas.", &[], &[-1.0, 1.0]).unwrap();
        m.observe_histogram("delta", 0.5, &[]).unwrap();
        // Non-negative bounds, a negative sum: no _sum and no _count for that series.
        m.register_histogram("h", "H.", &["s"], &[1.0]).unwrap();
        m.observe_histogram("h", -5.0, &["neg"]).unwrap();
        m.observe_histogram("h", 0.5, &["pos"]).unwrap();
        // A summary of negative values: no negative quantile and no negative _sum.
        m.register_summary("s", "S.", &[], &[0.5]).unwrap();
        m.observe_summary("s", -2.0, &[]).unwrap();
        let text = encode_openmetrics(&m);
        assert_eq!(
            text,
            concat!(
                "# TYPE delta histogram\n",
                "# HELP delta Deltas.\n",
                "delta_bucket{le=\"-1.0\"} 0\n",
                "delta_bucket{le=\"1.0\"} 1\n",
                "delta_bucket{le=\"+Inf\"} 1\n",
                "# TYPE h histogram\n",
                "# HELP h H.\n",
                "h_bucket{s=\"neg\",le=\"1.0\"} 1\n",
                "h_bucket{s=\"neg\",le=\"+Inf\"} 1\n",
                "h_bucket{s=\"pos\",le=\"1.0\"} 1\n",
                "h_bucket{s=\"pos\",le=\"+Inf\"} 1\n",
                "h_count{s=\"pos\"} 1\n",
                "h_sum{s=\"pos\"} 0.5\n",
                "# TYPE s summary\n",
                "# HELP s S.\n",
                "s_count 1\n",
                "# EOF\n",
            )
        );
    }

    #[test]
    fn empty_registry_is_just_eof() {
        assert_eq!(encode_openmetrics(&MetricsManager::new()), "# EOF\n");
    }
}
