//! Number and escape helpers every text-based format shares.

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
pub(crate) fn escape_label_value(out: &mut String, s: &str) {
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
