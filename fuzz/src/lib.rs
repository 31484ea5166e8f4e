//! What the fuzz targets share: a registry built from the fuzzer's bytes ([`build`]), the read
//! API's view of it ([`snapshot`]), the labels every exposition must give a series
//! ([`exposed_labels`]) and a strict parser of the text formats' sample lines ([`parse_sample`]).

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use mmo_metrics::{MetricKind, MetricsManager, SeriesValue};

/// A registry built from fuzzer bytes, and the global labels to encode it with.
pub struct Fuzzed {
    pub manager: MetricsManager,
    /// The exporter's global labels (valid names, none reserved).
    pub global: Vec<(String, String)>,
}

/// Names families are registered under: a few fixed ones, so registrations collide, redefine and
/// clash on sample names (`h` and `h_count`, `c` and `c_total`), and fuzzed ones.
const NAMES: [&str; 8] = ["c", "c_total", "g", "h", "h_count", "s", "lat_seconds", "x:y"];
const LABELS: [&str; 6] = ["zone", "a", "service", "le", "quantile", "__x"];

/// A float from the input, special values often: NaN, ±Inf, ±0, subnormals, extremes, small
/// integers and fractions, or any bit pattern.
pub fn float(u: &mut Unstructured<'_>) -> Result<f64> {
    Ok(match u.int_in_range(0..=11u8)? {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -0.0,
        4 => f64::from_bits(u.int_in_range(1..=(1u64 << 52) - 1)?),
        5 => -f64::from_bits(u.int_in_range(1..=(1u64 << 52) - 1)?),
        6 => f64::MAX,
        7 => f64::MIN_POSITIVE,
        8 => f64::from(u.int_in_range(-3..=20i8)?),
        9 => f64::from(u.arbitrary::<u16>()?) / 1000.0,
        _ => f64::from_bits(u.arbitrary()?),
    })
}

fn name<'a>(u: &mut Unstructured<'a>) -> Result<&'a str> {
    if u.ratio(3u8, 4)? {
        Ok(u.choose(&NAMES)?)
    } else {
        u.arbitrary()
    }
}

fn label_names<'a>(u: &mut Unstructured<'a>) -> Result<Vec<&'a str>> {
    let n = u.int_in_range(0..=3usize)?;
    (0..n)
        .map(|_| {
            if u.ratio(4u8, 5)? {
                Ok(*u.choose(&LABELS)?)
            } else {
                u.arbitrary()
            }
        })
        .collect()
}

fn floats(u: &mut Unstructured<'_>, max: usize) -> Result<Vec<f64>> {
    let n = u.int_in_range(0..=max)?;
    (0..n).map(|_| float(u)).collect()
}

fn label_values<'a>(u: &mut Unstructured<'a>, n: usize) -> Result<Vec<&'a str>> {
    // Now and then one value too many or too few (refused by the manager).
    let n = match u.int_in_range(0..=15u8)? {
        0 => n + 1,
        1 => n.saturating_sub(1),
        _ => n,
    };
    (0..n).map(|_| u.arbitrary()).collect()
}

/// Builds a registry from `data`: families of every kind registered through the manager (fuzzed
/// names, help, label names, buckets and quantiles; refusals ignored) and through the `metrics`
/// facade (with units), series recorded with fuzzed label values and values, global labels in the
/// manager and for the encoder.
pub fn build(data: &[u8]) -> Fuzzed {
    let mut u = Unstructured::new(data);
    let mut builder = MetricsManager::builder().with_recommended_naming(u.arbitrary().unwrap_or(false));
    if u.ratio(1u8, 4).unwrap_or(false) {
        let (n, v): (&str, &str) = (
            u.choose(&LABELS).copied().unwrap_or("zone"),
            u.arbitrary().unwrap_or(""),
        );
        builder = match builder.clone().add_global_label(n, v) {
            Ok(b) => b,
            Err(_) => builder,
        };
    }
    let manager = builder.build();
    let mut global = Vec::new();
    if u.ratio(1u8, 3).unwrap_or(false) {
        let n = if u.ratio(1u8, 2).unwrap_or(false) {
            u.choose(&LABELS).copied().unwrap_or("service")
        } else {
            u.arbitrary().unwrap_or("")
        };
        let v: &str = u.arbitrary().unwrap_or("");
        if mmo_metrics_exporter::validate_global_labels([n]).is_ok() {
            global.push((n.to_owned(), v.to_owned()));
        }
    }
    // On a thread of its own, so each input starts with empty per-thread caches (as a new game
    // thread does) and whatever they hold is freed when it exits, not at the next input's first
    // insert. Joined explicitly: the end of a scope waits for the closure only, and the thread's
    // destructors (which free its caches) may still run when the scope returns, where the leak
    // check libFuzzer runs after an input saw the caches' tables as leaked.
    std::thread::scope(|s| {
        let ops = s.spawn(|| {
            let _ = ops(&mut u, &manager);
        });
        if let Err(panic) = ops.join() {
            std::panic::resume_unwind(panic);
        }
    });
    Fuzzed { manager, global }
}

fn ops(u: &mut Unstructured<'_>, m: &MetricsManager) -> Result<()> {
    let mut arity: Vec<(String, usize)> = Vec::new();
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=9u8)? {
            0..=2 => {
                let (name, help, labels) = (name(u)?, u.arbitrary::<&str>()?, label_names(u)?);
                let ok = match u.int_in_range(0..=4u8)? {
                    0 => m.register_counter(name, help, &labels),
                    1 => m.register_float_counter(name, help, &labels),
                    2 => m.register_gauge(name, help, &labels),
                    3 => m.register_histogram(name, help, &labels, &floats(u, 4)?),
                    _ => m.register_summary(name, help, &labels, &floats(u, 3)?),
                };
                if ok.is_ok() {
                    arity.push((name.to_owned(), labels.len()));
                }
            }
            3..=7 if !arity.is_empty() => {
                let (name, n) = u.choose(&arity)?.clone();
                let values = label_values(u, n)?;
                let by_name = u.arbitrary::<bool>()?;
                let _ = match (u.int_in_range(0..=6u8)?, by_name) {
                    (0, true) => m.increment_counter(&name, u.int_in_range(0..=u64::from(u32::MAX))?, &values),
                    (0, false) => m
                        .counter(&name, &values)
                        .map(|h| h.increment(u.int_in_range(0..=u64::from(u32::MAX)).unwrap_or(0))),
                    (1, _) => m.set_float_counter(&name, float(u)?, &values),
                    (2, true) => m.set_gauge(&name, float(u)?, &values),
                    (2, false) => m.gauge(&name, &values).map(|h| h.set(float(u).unwrap_or(0.0))),
                    (3, true) => m.add_gauge(&name, float(u)?, &values),
                    (3, false) => m.gauge(&name, &values).map(|h| h.add(float(u).unwrap_or(0.0))),
                    (4 | 5, true) => m.observe_histogram(&name, float(u)?, &values),
                    (4 | 5, false) => m.histogram(&name, &values).map(|h| h.record(float(u).unwrap_or(0.0))),
                    (_, true) => m.observe_summary(&name, float(u)?, &values),
                    (_, false) => m.summary(&name, &values).map(|h| h.observe(float(u).unwrap_or(0.0))),
                };
            }
            _ => facade(u, m)?,
        }
    }
    Ok(())
}

/// One `metrics` facade call (and its `describe_*!`, with a unit) on `m`'s recorder.
fn facade(u: &mut Unstructured<'_>, m: &MetricsManager) -> Result<()> {
    let name = name(u)?.to_owned();
    let keys = label_names(u)?;
    let mut labels = Vec::new();
    for k in keys {
        labels.push(metrics::Label::new(k.to_owned(), u.arbitrary::<&str>()?.to_owned()));
    }
    let unit = *u.choose(&[metrics::Unit::Seconds, metrics::Unit::Bytes, metrics::Unit::Count])?;
    let (describe, kind, v) = (u.ratio(1u8, 2)?, u.int_in_range(0..=2u8)?, float(u)?);
    let n = u.int_in_range(0..=1000u64)?;
    let help = u.arbitrary::<&str>()?.to_owned();
    metrics::with_local_recorder(&m.recorder(), || match kind {
        0 => {
            if describe {
                metrics::describe_counter!(name.clone(), unit, help);
            }
            metrics::counter!(name, labels).increment(n);
        }
        1 => {
            if describe {
                metrics::describe_gauge!(name.clone(), unit, help);
            }
            metrics::gauge!(name, labels).set(v);
        }
        _ => {
            if describe {
                metrics::describe_histogram!(name.clone(), unit, help);
            }
            metrics::histogram!(name, labels).record(v);
        }
    });
    Ok(())
}

/// A series' value as the read API reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter(u64),
    FloatCounter(f64),
    Gauge(f64),
    Histogram {
        bounds: Vec<f64>,
        cumulative: Vec<u64>,
        sum: f64,
        count: u64,
    },
    Summary {
        quantiles: Vec<f64>,
        values: Vec<f64>,
        sum: f64,
        count: u64,
    },
}

impl Value {
    /// Equal, floats compared by bits (NaN equals NaN).
    pub fn same(&self, other: &Value) -> bool {
        let f = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        match (self, other) {
            (Value::Counter(a), Value::Counter(b)) => a == b,
            (Value::FloatCounter(a), Value::FloatCounter(b)) | (Value::Gauge(a), Value::Gauge(b)) => {
                a.to_bits() == b.to_bits()
            }
            (
                Value::Histogram {
                    bounds: b1,
                    cumulative: c1,
                    sum: s1,
                    count: n1,
                },
                Value::Histogram {
                    bounds: b2,
                    cumulative: c2,
                    sum: s2,
                    count: n2,
                },
            ) => f(b1, b2) && c1 == c2 && s1.to_bits() == s2.to_bits() && n1 == n2,
            (
                Value::Summary {
                    quantiles: q1,
                    values: v1,
                    sum: s1,
                    count: n1,
                },
                Value::Summary {
                    quantiles: q2,
                    values: v2,
                    sum: s2,
                    count: n2,
                },
            ) => f(q1, q2) && f(v1, v2) && s1.to_bits() == s2.to_bits() && n1 == n2,
            _ => false,
        }
    }
}

/// A family as the read API reports it, with the labels an exposition gives each series.
#[derive(Debug, Clone)]
pub struct Family {
    /// The name as exposed by the read API (a counter's without `_total`).
    pub name: String,
    pub kind: MetricKind,
    pub help: Option<String>,
    pub unit: Option<&'static str>,
    pub series: Vec<(LabelSet, Value)>,
}

/// The labels an exposition gives a series: its own, then the encoder's `global` labels, then the
/// manager's, each only if the series has no label of that name yet.
pub fn exposed_labels(
    own: impl Iterator<Item = (String, String)>,
    global: &[(String, String)],
    manager_global: &[(String, String)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = own.collect();
    for (k, v) in global.iter().chain(manager_global) {
        if !out.iter().any(|(n, _)| n == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

/// Every family with series, in visit order, with the labels [`exposed_labels`] gives.
pub fn snapshot(m: &MetricsManager, global: &[(String, String)]) -> Vec<Family> {
    let mut out = Vec::new();
    let manager_global = m.global_labels().to_vec();
    m.visit(|f| {
        if f.series_count() == 0 {
            return;
        }
        let mut family = Family {
            name: f.name().to_owned(),
            kind: f.kind(),
            help: f.help().map(|h| h.to_string()),
            unit: f.unit().map(|u| u.as_str()),
            series: Vec::new(),
        };
        let mut owns: Vec<Vec<(String, String)>> = Vec::new();
        f.for_each_series(|labels, value| {
            let value = match value {
                SeriesValue::Counter(v) => Value::Counter(v),
                SeriesValue::FloatCounter(v) => Value::FloatCounter(v),
                SeriesValue::Gauge(v) => Value::Gauge(v),
                SeriesValue::Histogram {
                    bounds,
                    cumulative,
                    sum,
                    count,
                    ..
                } => Value::Histogram {
                    bounds: bounds.to_vec(),
                    cumulative: cumulative.to_vec(),
                    sum,
                    count,
                },
                SeriesValue::Summary {
                    quantiles,
                    values,
                    sum,
                    count,
                    ..
                } => Value::Summary {
                    quantiles: quantiles.to_vec(),
                    values: values.to_vec(),
                    sum,
                    count,
                },
                // Kinds of value these targets do not know yet.
                _ => return,
            };
            let own: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            assert!(
                !owns.contains(&own),
                "family `{}`: two series with the labels {own:?}",
                family.name
            );
            owns.push(own.clone());
            family
                .series
                .push((exposed_labels(own.into_iter(), global, &manager_global), value));
        });
        out.push(family);
    });
    out
}

/// The snapshot, if two reads (before and after the encode) agree; `None` when something changed
/// in between (a summary's window rotated), so a comparison with the encoder's read would be unfair.
pub fn stable(before: Vec<Family>, after: &[Family]) -> Option<Vec<Family>> {
    let same = before.len() == after.len()
        && before.iter().zip(after).all(|(a, b)| {
            a.name == b.name
                && a.series.len() == b.series.len()
                && a.series
                    .iter()
                    .zip(&b.series)
                    .all(|(x, y)| x.0 == y.0 && x.1.same(&y.1))
        });
    same.then_some(before)
}

/// A sample line: `name{labels} value`, labels unescaped.
#[derive(Debug)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

/// Whether `s` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Whether `s` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// A sample value as both text formats write it: `NaN`, `+Inf`, `-Inf`, or a decimal number
/// (`-?digits[.digits][e[+-]digits]`); Rust's laxer forms (`inf`, `infinity`, `+nan`) are refused.
pub fn parse_value(s: &str) -> std::result::Result<f64, String> {
    match s {
        "NaN" => return Ok(f64::NAN),
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let body = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exp) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (body, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit());
    let ok =
        digits(int) && frac.is_none_or(digits) && exp.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    if !ok {
        return Err(format!("value `{s}`: a number, NaN, +Inf or -Inf expected"));
    }
    s.parse().map_err(|e| format!("value `{s}`: {e}"))
}

/// Parses `name{a="x",b="y"} value` (labels optional, no timestamp): names and label names valid,
/// label values with only `\\`, `\"` and `\n` escapes, no duplicate label name.
pub fn parse_sample(line: &str) -> std::result::Result<Sample<'_>, String> {
    let end = line.find(['{', ' ']).ok_or_else(|| format!("no value in `{line}`"))?;
    let name = &line[..end];
    if !is_metric_name(name) {
        return Err(format!("sample name `{name}` is not a valid metric name in `{line}`"));
    }
    let mut rest = &line[end..];
    let mut labels: Vec<(&str, String)> = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            let eq = rest.find('=').ok_or_else(|| format!("label without `=` in `{line}`"))?;
            let label = &rest[..eq];
            if !is_label_name(label) {
                return Err(format!("label name `{label}` is not valid in `{line}`"));
            }
            if labels.iter().any(|(n, _)| *n == label) {
                return Err(format!("label `{label}` twice in `{line}`"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or_else(|| format!("label value not quoted in `{line}`"))?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let close = loop {
                match chars.next() {
                    None => return Err(format!("label value not closed in `{line}`")),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("escape `\\{other:?}` in a label value of `{line}`")),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((label, value));
            rest = &rest[close + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            } else {
                return Err(format!("`,` or `}}` expected after a label value in `{line}`"));
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("one space before the value expected in `{line}`"))?;
    if value.contains(' ') {
        return Err(format!("a timestamp or more after the value in `{line}`"));
    }
    let value = parse_value(value).map_err(|e| format!("{e} in `{line}`"))?;
    Ok(Sample { name, labels, value })
}

/// The labels of `sample` but `except` (`le`, `quantile`), owned, in order.
pub fn series_labels(sample: &Sample<'_>, except: &str) -> Vec<(String, String)> {
    sample
        .labels
        .iter()
        .filter(|(n, _)| *n != except)
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect()
}

/// One family of a text exposition: its metadata and its samples, grouped by series (consecutive
/// samples with the same labels but `le`/`quantile`).
#[derive(Debug)]
pub struct ParsedFamily<'a> {
    /// The name of `# TYPE`.
    pub name: &'a str,
    pub kind: &'a str,
    /// The text of `# HELP`, unescaped.
    pub help: Option<String>,
    pub unit: Option<&'a str>,
    pub series: Vec<(LabelSet, Vec<Sample<'a>>)>,
}

/// `(name, value)` label pairs of a series, in exposition order.
pub type LabelSet = Vec<(String, String)>;

/// Unescapes a `# HELP` text: `\\`, `\n`, and in OpenMetrics `\"`; any other escape is an error.
fn unescape_help(s: &str, openmetrics: bool) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if openmetrics && c == '"' {
                return Err(format!("unescaped `\"` in OpenMetrics help `{s}`"));
            }
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if openmetrics => out.push('"'),
            other => return Err(format!("escape `\\{other:?}` in help `{s}`")),
        }
    }
    Ok(out)
}

/// The sample-name suffixes of a family of `kind` (after the `# TYPE` name).
pub fn suffixes(kind: &str, openmetrics: bool) -> &'static [&'static str] {
    match kind {
        "counter" if openmetrics => &["_total"],
        "counter" | "gauge" => &[""],
        // Received series without a type (fuzz_targets/receive.rs).
        "untyped" if !openmetrics => &[""],
        "unknown" if openmetrics => &[""],
        "histogram" => &["_bucket", "_sum", "_count"],
        "summary" => &["", "_sum", "_count"],
        _ => &[],
    }
}

/// Splits a text exposition (0.0.4, or OpenMetrics without its `# EOF` line) into families:
/// every line is metadata (`# HELP`, `# TYPE`, and in OpenMetrics `# UNIT`) or a sample; a family
/// begins with metadata naming it, `# TYPE` once, metadata before samples, every sample's name
/// the family's plus a suffix of its type, and no family or sample name in two blocks.
pub fn parse_exposition(text: &str, openmetrics: bool) -> std::result::Result<Vec<ParsedFamily<'_>>, String> {
    let mut families: Vec<ParsedFamily<'_>> = Vec::new();
    for line in text.split_terminator('\n') {
        if let Some(meta) = line.strip_prefix("# ") {
            let (what, rest) = meta.split_once(' ').ok_or_else(|| format!("metadata line `{line}`"))?;
            let (name, arg) = rest
                .split_once(' ')
                .ok_or_else(|| format!("metadata without text `{line}`"))?;
            if !is_metric_name(name) {
                return Err(format!("metadata for an invalid name in `{line}`"));
            }
            let new = families.last().is_none_or(|f| f.name != name || !f.series.is_empty());
            if new {
                if families.iter().any(|f| f.name == name) {
                    return Err(format!("family `{name}` in two blocks, again at `{line}`"));
                }
                families.push(ParsedFamily {
                    name,
                    kind: "",
                    help: None,
                    unit: None,
                    series: Vec::new(),
                });
            }
            let f = families.last_mut().expect("pushed above");
            match what {
                "HELP" if f.help.is_none() => f.help = Some(unescape_help(arg, openmetrics)?),
                "TYPE" if f.kind.is_empty() => {
                    if suffixes(arg, openmetrics).is_empty() {
                        return Err(format!("unknown type in `{line}`"));
                    }
                    f.kind = arg;
                }
                "UNIT" if openmetrics && f.unit.is_none() => f.unit = Some(arg),
                _ => return Err(format!("unexpected or repeated metadata `{line}`")),
            }
            continue;
        }
        let sample = parse_sample(line)?;
        let f = families
            .last_mut()
            .ok_or_else(|| format!("sample before any metadata: `{line}`"))?;
        if f.kind.is_empty() {
            return Err(format!("sample of a family without `# TYPE`: `{line}`"));
        }
        let suffix = sample.name.strip_prefix(f.name).unwrap_or("-");
        if !suffixes(f.kind, openmetrics).contains(&suffix) {
            return Err(format!("sample `{line}` in the block of {} `{}`", f.kind, f.name));
        }
        let except = match (f.kind, suffix) {
            ("histogram", "_bucket") => "le",
            ("summary", "") => "quantile",
            _ => "",
        };
        if !except.is_empty() && !sample.labels.iter().any(|(n, _)| *n == except) {
            return Err(format!("sample `{line}` without its `{except}` label"));
        }
        let labels = series_labels(&sample, except);
        match f.series.last_mut() {
            Some((l, samples)) if *l == labels => samples.push(sample),
            _ => f.series.push((labels, vec![sample])),
        }
    }
    // Sample names are the family's only: no family's name plus suffix is another's sample name.
    let mut seen = std::collections::HashSet::new();
    for f in &families {
        for s in suffixes(f.kind, openmetrics) {
            let name = format!("{}{s}", f.name);
            if !seen.insert(name.clone()) {
                return Err(format!("sample name `{name}` belongs to two families"));
            }
        }
    }
    Ok(families)
}

/// Whether two series of one family are exposed with the same labels. Their own labels differ
/// (the read API's series are distinct, [`snapshot`] checks it), so a global label filled in the
/// one that lacks it: a series without label `zone` and a global `zone="x"` is exposed as the
/// family's series with its own `zone="x"` is, which the merge rule of the encoders' walk allows
/// (a scraper keeps one of the two samples). Checks that tell series apart by their labels skip
/// such an exposition.
pub fn global_label_collision(families: &[Family]) -> bool {
    families.iter().any(|f| {
        f.series
            .iter()
            .enumerate()
            .any(|(i, (l, _))| f.series[..i].iter().any(|(m, _)| m == l))
    })
}

/// `a` and `b` are the same float (NaN equals NaN, 0 equals -0).
pub fn same_f64(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// The value of the sample of `samples` named `name` with `label` = `value` (or without
/// `label`, when it is empty).
pub fn find(samples: &[Sample<'_>], name: &str, label: (&str, &str)) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && (label.0.is_empty() || s.labels.iter().any(|(n, v)| *n == label.0 && v == label.1)))
        .map(|s| s.value)
}
