//! Prometheus text exposition format 0.0.4.

use mmo_metrics::{FamilyView, Labels, MetricKind, MetricsManager, SeriesValue};

/// The Content-Type of [`encode_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every family of `manager` in the Prometheus text format 0.0.4: `# HELP` (when given)
/// and `# TYPE` lines, counters with `_total`, cumulative histogram buckets ending in `+Inf`,
/// summary quantiles, escaped help and label values, families in name order and series in a
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
/// (see [`mmo_metrics::validate_label_names`]); the values are escaped here.
pub fn encode_text_with(manager: &MetricsManager, global_labels: &[(String, String)], out: &mut String) {
    let mut enc = Encoder {
        out,
        labels: String::new(),
        name: String::new(),
        global: global_labels,
        le: Vec::new(),
        le_of: std::ptr::null(),
    };
    manager.visit(|family| enc.family(family));
}

struct Encoder<'a> {
    out: &'a mut String,
    /// Labels added to every series.
    global: &'a [(String, String)],
    /// Formatted `le` values of the bounds at `le_of`, then `+Inf`.
    le: Vec<String>,
    le_of: *const f64,
    /// `a="x",b="y"` of the current series.
    labels: String,
    /// Sample name of the current family.
    name: String,
}

impl Encoder<'_> {
    fn family(&mut self, family: &mut FamilyView<'_>) {
        if family.series_count() == 0 {
            return;
        }
        self.name.clear();
        self.name.push_str(family.name());
        if family.kind() == MetricKind::Counter {
            self.name.push_str("_total");
        }
        if let Some(help) = family.help() {
            self.out.push_str("# HELP ");
            self.out.push_str(&self.name);
            self.out.push(' ');
            escape_help(self.out, &help);
            self.out.push('\n');
        }
        self.out.push_str("# TYPE ");
        self.out.push_str(&self.name);
        self.out.push(' ');
        self.out.push_str(family.kind().as_str());
        self.out.push('\n');
        family.for_each_series(|labels, value| self.series(labels, value));
    }

    fn series(&mut self, labels: Labels<'_>, value: SeriesValue<'_>) {
        self.labels.clear();
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.labels.push(',');
            }
            self.labels.push_str(k);
            self.labels.push_str("=\"");
            escape_label_value(&mut self.labels, v);
            self.labels.push('"');
        }
        for (k, v) in self.global {
            if labels.iter().any(|(n, _)| n == k) {
                continue;
            }
            if !self.labels.is_empty() {
                self.labels.push(',');
            }
            self.labels.push_str(k);
            self.labels.push_str("=\"");
            escape_label_value(&mut self.labels, v);
            self.labels.push('"');
        }
        match value {
            SeriesValue::Counter(v) => {
                self.sample("", None);
                push_u64(self.out, v);
                self.out.push('\n');
            }
            SeriesValue::Gauge(v) | SeriesValue::FloatCounter(v) => {
                self.sample("", None);
                push_f64(self.out, v);
                self.out.push('\n');
            }
            SeriesValue::Histogram {
                bounds,
                cumulative,
                sum,
                count,
            } => {
                // The bounds are the family's: format them once per family, not per series.
                if self.le.len() != bounds.len() + 1 || self.le_of != bounds.as_ptr() {
                    self.le.clear();
                    for b in bounds {
                        let mut le = String::new();
                        push_f64(&mut le, *b);
                        self.le.push(le);
                    }
                    self.le.push("+Inf".into());
                    self.le_of = bounds.as_ptr();
                }
                let le = std::mem::take(&mut self.le);
                for (c, le) in cumulative.iter().zip(&le) {
                    self.sample("_bucket", Some(("le", le)));
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
        self.out.push_str(&self.name);
        self.out.push_str(suffix);
        if !self.labels.is_empty() || extra.is_some() {
            self.out.push('{');
            self.out.push_str(&self.labels);
            if let Some((k, v)) = extra {
                if !self.labels.is_empty() {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                self.out.push_str(v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }
}

fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Floats as Prometheus reads them: `NaN`, `+Inf`, `-Inf`, integers without a fraction, others in
/// the shortest form that reads back to the same `f64`.
pub(crate) fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.abs() < 9.007_199_254_740_992e15 && v == (v as i64) as f64 {
        // An integer (exactly representable): print it without a fraction, as Prometheus does.
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

fn escape_help(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_label_value(out: &mut String, s: &str) {
    if !s.contains(['\\', '"', '\n']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats() {
        let f = |v| {
            let mut s = String::new();
            push_f64(&mut s, v);
            s
        };
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(2.0), "2");
        assert_eq!(f(-0.0), "0");
        assert_eq!(f(0.005), "0.005");
        assert_eq!(f(1e300), "1e300");
        assert_eq!(f(1e-7).parse::<f64>().unwrap(), 1e-7);
    }

    #[test]
    fn escapes() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\\b\"c\nd");
        assert_eq!(s, r#"a\\b\"c\nd"#);
        s.clear();
        escape_help(&mut s, "a\\b\"c\nd");
        assert_eq!(s, r#"a\\b"c\nd"#);
    }
}
