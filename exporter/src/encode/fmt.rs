//! Number and escape helpers every text-based format shares.

use super::SeriesLabels;

/// Appends `v` in decimal.
pub(crate) fn push_u64(out: &mut String, v: u64) {
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

/// Floats as OpenMetrics wants `le` and `quantile` label values ("Canonical Numbers"): Go's
/// shortest `%g` rendering with `.0` appended when it has neither a point nor an exponent, so
/// `1.0`, `0.005`, `100000.0`, `1e+06`, `1e-05`; `+Inf`, `-Inf`, `NaN`. Label values are opaque
/// to a store, so one bound must always be the same text: this is the rendering client_golang,
/// Python's `prometheus_client` and Prometheus 3's parsers (which rewrite `le="1"` to `1.0`) use.
pub(crate) fn push_canonical_f64(out: &mut String, v: f64) {
    use std::fmt::Write as _;
    if v.is_nan() {
        return out.push_str("NaN");
    }
    if v.is_infinite() {
        return out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    }
    if v == 0.0 {
        // -0.0 too: it is the same bound.
        return out.push_str("0.0");
    }
    // Rust's `{:e}` gives the shortest digits that read back to `v`, as Go's shortest mode does:
    // `d[.ddd]e<exp>`.
    let mut sci = String::with_capacity(24);
    write!(sci, "{:e}", v.abs()).expect("writing to a String cannot fail");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` has an integer exponent");
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    if v < 0.0 {
        out.push('-');
    }
    // Go's %g in shortest mode uses the exponent form for exponents below -4 or from 6 up.
    if !(-4..6).contains(&exp) {
        out.push(digits[0] as char);
        if digits.len() > 1 {
            out.push('.');
            out.extend(digits[1..].iter().map(|&d| d as char));
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        if exp.abs() < 10 {
            out.push('0');
        }
        push_u64(out, u64::from(exp.unsigned_abs()));
        return;
    }
    // Fixed notation: `point` digits before the decimal point (zero or negative: none).
    let point = exp + 1;
    let digit = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .map_or('0', |&d| d as char)
    };
    if point > 0 {
        out.extend((0..point).map(digit));
    } else {
        out.push('0');
    }
    let fraction = digits.len() as i32 - point;
    out.push('.');
    if fraction > 0 {
        out.extend((point..point + fraction).map(digit));
    } else {
        // An integer: the `.0` that marks it as a float.
        out.push('0');
    }
}

/// Appends `a="x",b="y"`: the pairs, values escaped.
pub(crate) fn push_label_pairs<'a>(out: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
}

/// Writes `name{suffix}{labels,extra} ` (the value follows): `labels` already formatted
/// (`a="x",b="y"`), `extra` a label whose value needs no escaping (`le`, `quantile`).
pub(crate) fn push_sample_head(out: &mut String, name: &str, suffix: &str, labels: &str, extra: Option<(&str, &str)>) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some((k, v)) = extra {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            out.push_str(v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
}

/// Writes `name_bucket{labels,le="`: what every bucket sample of a series begins with, `labels`
/// formatted (`a="x",b="y"`) or empty.
pub(crate) fn push_bucket_head(out: &mut String, name: &str, labels: &str) {
    out.push_str(name);
    out.push_str("_bucket{");
    if !labels.is_empty() {
        out.push_str(labels);
        out.push(',');
    }
    out.push_str("le=\"");
}

/// Escapes a `# HELP` text: backslash and line feed.
pub(crate) fn escape_help(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes a label value: backslash, double quote and line feed.
#[inline]
pub(crate) fn escape_label_value(out: &mut String, s: &str) {
    // A byte scan: the three are ASCII, and no byte of a multi-byte UTF-8 character is ASCII.
    match s.bytes().position(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        None => out.push_str(s),
        Some(first) => escape_from(out, s, first),
    }
}

/// [`escape_label_value`] of a value whose byte `first` is the first to escape.
#[cold]
fn escape_from(out: &mut String, s: &str, first: usize) {
    let (clean, rest) = s.split_at(first);
    out.push_str(clean);
    for c in rest.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One label set's sample head, `name{a="x",b="y"} `, with every byte but the series' own label
/// values rendered once per family and label set rather than once per series: the name, the
/// label names, the quotes and commas, and the global labels (escaped). A series then costs the
/// copy of these pieces and of its escaped values.
///
/// The head of a series of no labels, own or global, is `name ` (no braces).
#[derive(Default)]
pub(crate) struct SampleHead {
    /// [`mmo_metrics::Labels::label_set_id`] of the label set the pieces are for; `None` before
    /// the first series of a family.
    of: Option<usize>,
    /// `name{k0="` (own labels), `name{` (global labels only) or `name ` (no label).
    open: String,
    /// Where the labels begin in `open`: after the `{`.
    labels_at: usize,
    /// `",ki="`, before own value `i`, for `i >= 1` (index `i - 1`).
    between: Vec<String>,
    /// After the last own value: its closing `"`, each global label as `,g="v"` (without the
    /// comma when nothing precedes it), then `} `.
    close: String,
    /// `close` without the `} `.
    close_labels: usize,
}

impl SampleHead {
    /// Forgets the pieces: the next series is of a new family (or a new name).
    pub(crate) fn reset(&mut self) {
        self.of = None;
    }

    /// Makes the pieces for `labels`' label set and `name`, unless they are made already.
    #[inline]
    fn prepare(&mut self, name: &str, labels: &SeriesLabels<'_>) {
        let id = labels.own().label_set_id();
        if self.of != Some(id) {
            self.make(name, labels, id);
        }
    }

    /// Makes the pieces for label set `id` (of `labels`) and `name`.
    #[cold]
    fn make(&mut self, name: &str, labels: &SeriesLabels<'_>, id: usize) {
        self.of = Some(id);
        self.open.clear();
        self.open.push_str(name);
        self.between.clear();
        self.close.clear();
        let mut own = labels.own().names();
        let has_own = if let Some(first) = own.next() {
            self.open.push('{');
            self.labels_at = self.open.len();
            self.open.push_str(first);
            self.open.push_str("=\"");
            for n in own {
                self.between.push(format!("\",{n}=\""));
            }
            self.close.push('"');
            true
        } else {
            false
        };
        let mut any = has_own;
        for (k, v) in labels
            .global
            .iter()
            .filter(|(k, _)| !labels.own().names().any(|n| n == k))
        {
            if any {
                self.close.push(',');
            } else {
                self.open.push('{');
                self.labels_at = self.open.len();
            }
            any = true;
            self.close.push_str(k);
            self.close.push_str("=\"");
            escape_label_value(&mut self.close, v);
            self.close.push('"');
        }
        self.close_labels = self.close.len();
        if any {
            self.close.push_str("} ");
        } else {
            self.open.push(' ');
            self.labels_at = self.open.len();
        }
    }

    /// Writes `name{labels} ` (the value follows) for a series of `labels`, named `name`
    /// (the same name for every series until [`Self::reset`]).
    #[inline]
    pub(crate) fn write(&mut self, out: &mut String, name: &str, labels: &SeriesLabels<'_>) {
        self.prepare(name, labels);
        out.push_str(&self.open);
        self.values(out, labels);
        out.push_str(&self.close);
    }

    /// Writes the series' labels alone, `a="x",b="y"` (what [`push_sample_head`] takes), for
    /// `labels` of a series named `name`.
    pub(crate) fn labels(&mut self, out: &mut String, name: &str, labels: &SeriesLabels<'_>) {
        self.prepare(name, labels);
        out.push_str(&self.open[self.labels_at..]);
        self.values(out, labels);
        out.push_str(&self.close[..self.close_labels]);
    }

    /// The own values, escaped, with the pieces between them.
    #[inline]
    fn values(&self, out: &mut String, labels: &SeriesLabels<'_>) {
        let mut values = labels.own().values();
        if let Some(first) = values.next() {
            escape_label_value(out, first);
            for (between, v) in self.between.iter().zip(values) {
                out.push_str(between);
                escape_label_value(out, v);
            }
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
    fn canonical_floats() {
        let f = |v| {
            let mut s = String::new();
            push_canonical_f64(&mut s, v);
            s
        };
        // The examples of the OpenMetrics 1.0 specification ("Canonical Numbers").
        for (v, want) in [
            (0.0, "0.0"),
            (0.001, "0.001"),
            (0.002, "0.002"),
            (0.01, "0.01"),
            (0.1, "0.1"),
            (0.9, "0.9"),
            (0.95, "0.95"),
            (0.99, "0.99"),
            (0.999, "0.999"),
            (1.0, "1.0"),
            (1.7, "1.7"),
            (10.0, "10.0"),
            (1e-10, "1e-10"),
            (1e-9, "1e-09"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1e10, "1e+10"),
        ] {
            assert_eq!(f(v), want, "{v:e}");
        }
        // Go's strconv.FormatFloat(v, 'g', -1, 64), plus `.0` where it has no point or exponent.
        for (v, want) in [
            (-0.0, "0.0"),
            (-1.0, "-1.0"),
            (-0.25, "-0.25"),
            (2.5, "2.5"),
            (0.005, "0.005"),
            (0.025, "0.025"),
            (123456.0, "123456.0"),
            (1234567.0, "1.234567e+06"),
            (1.5e300, "1.5e+300"),
            (5e-324, "5e-324"),
            (0.00012, "0.00012"),
            (0.000012, "1.2e-05"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(f(v), want, "{v:e}");
        }
        for v in [0.1 + 0.2, 1.0 / 3.0, 6.02e23, 299_792.458, 1e-7, 4096.0] {
            assert_eq!(f(v).parse::<f64>().unwrap(), v, "{v:e} reads back");
        }
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
