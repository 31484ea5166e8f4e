//! What the `metrics` facade does as metrics-exporter-prometheus (0.18) does, so a program moves from
//! that exporter to this engine with the same builder calls and the same exposition: histogram
//! buckets per name ([`Matcher`]), bucketless histograms as summaries, and unit suffixes
//! (`with_recommended_naming`). The builder methods are on [`crate::MetricsManagerBuilder`].

use std::sync::Arc;

use crate::registry::{check_summary, Spec};
use crate::storage::histogram::Buckets;
use crate::storage::native::NativeSpec;
use crate::MetricsError;

/// The quantiles of a facade histogram rendered as a summary when none are set: those of
/// metrics-exporter-prometheus' `PrometheusBuilder`, so its dashboards find the same `quantile`
/// labels.
pub const FACADE_SUMMARY_QUANTILES: [f64; 7] = [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];

/// Which facade histograms a bucket list applies to, by metric name (after sanitisation, see
/// [`crate::sanitize_metric_name`]), as metrics-exporter-prometheus' `Matcher`.
///
/// When several match one name, the one first in metrics-exporter-prometheus' order wins (it sorts
/// its matchers so and takes the first that matches): a [`Matcher::Full`] before a
/// [`Matcher::Prefix`] before a [`Matcher::Suffix`], and among matchers of one kind the one whose
/// pattern sorts first by bytes: `Prefix("db")` before `Prefix("db_query")`, `Suffix("_seconds")`
/// before `Suffix("query_seconds")`. Setting one matcher again replaces what it was set to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Matcher {
    /// The whole name.
    Full(String),
    /// The beginning of the name.
    Prefix(String),
    /// The end of the name.
    Suffix(String),
}

impl Matcher {
    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Matcher::Full(s) => name == s,
            Matcher::Prefix(s) => name.starts_with(s.as_str()),
            Matcher::Suffix(s) => name.ends_with(s.as_str()),
        }
    }

    /// The pattern sanitised like the names it is matched against (as metrics-exporter-prometheus
    /// does): `Prefix("http.")` matches `http.requests`, recorded as `http_requests`.
    pub(crate) fn sanitized(self) -> Self {
        let s = |p: String| crate::sanitize_metric_name(&p).into_owned();
        match self {
            Matcher::Full(p) => Matcher::Full(s(p)),
            Matcher::Prefix(p) => Matcher::Prefix(s(p)),
            Matcher::Suffix(p) => Matcher::Suffix(s(p)),
        }
    }

    /// The order in which matchers are tried (the first that matches wins): kind, then pattern.
    fn order(&self) -> (u8, &str) {
        match self {
            Matcher::Full(p) => (0, p),
            Matcher::Prefix(p) => (1, p),
            Matcher::Suffix(p) => (2, p),
        }
    }
}

/// Sets `matcher` (sanitised) to `value` in `entries`: replaces what an equal matcher was set to,
/// as metrics-exporter-prometheus' map of matchers does, else adds it.
pub(crate) fn set_matcher<T>(entries: &mut Vec<(Matcher, T)>, matcher: Matcher, value: T) {
    let matcher = matcher.sanitized();
    match entries.iter_mut().find(|(m, _)| *m == matcher) {
        Some(e) => e.1 = value,
        None => entries.push((matcher, value)),
    }
}

/// How the facade makes the family of a histogram name it sees for the first time.
#[derive(Clone, Debug)]
pub(crate) struct FacadeHistograms {
    /// Buckets per name pattern ([`set_matcher`]).
    pub(crate) overrides: Vec<(Matcher, Arc<Buckets>)>,
    /// Native buckets per name pattern ([`set_matcher`]; their `classic` is unset: the classic
    /// part comes from `overrides`).
    pub(crate) native: Vec<(Matcher, Arc<NativeSpec>)>,
    /// Buckets of a histogram no matcher matches, unless `summaries`.
    pub(crate) buckets: Arc<Buckets>,
    /// Whether a histogram no matcher matches is a summary.
    pub(crate) summaries: bool,
    /// Quantiles of those summaries.
    pub(crate) quantiles: Arc<[f64]>,
}

impl FacadeHistograms {
    pub(crate) fn new() -> Self {
        Self {
            overrides: Vec::new(),
            native: Vec::new(),
            buckets: crate::registry::default_buckets(),
            summaries: false,
            quantiles: FACADE_SUMMARY_QUANTILES.into(),
        }
    }

    /// The spec of a new facade histogram family named `name` (sanitised); a summary spec uses the
    /// manager's summary window.
    ///
    /// A name a native matcher matches is a native histogram, with the classic buckets of the
    /// bucket matcher that matches it too, if one does (classic + native), else without classic
    /// buckets.
    pub(crate) fn spec(&self, name: &str, window: (std::time::Duration, u32)) -> Result<Spec, MetricsError> {
        let best = best_match(&self.overrides, name);
        if let Some((_, native)) = best_match(&self.native, name) {
            let mut spec = NativeSpec::clone(native);
            spec.classic = best.map(|(_, b)| Arc::clone(b));
            return Ok(Spec::Native(Arc::new(spec)));
        }
        match best {
            Some((_, b)) => Ok(Spec::Histogram(Arc::clone(b))),
            None if self.summaries => check_summary(name, &self.quantiles, window.0, window.1).map(Spec::Summary),
            None => Ok(Spec::Histogram(Arc::clone(&self.buckets))),
        }
    }
}

/// The entry whose matcher matches `name` and wins over the others that do (see [`Matcher`]).
fn best_match<'a, T>(entries: &'a [(Matcher, T)], name: &str) -> Option<&'a (Matcher, T)> {
    entries
        .iter()
        .filter(|(m, _)| m.matches(name))
        .min_by(|(a, _), (b, _)| a.order().cmp(&b.order()))
}

/// Appends `unit` to `name` as metrics-exporter-prometheus' `with_recommended_naming` does
/// (`add_unit_if_missing` in its `formatting.rs`): nothing for [`metrics::Unit::Count`],
/// `ratio` for [`metrics::Unit::Percent`], the unit's name otherwise (`seconds`, `bytes`,
/// `kibibytes`, `bits_per_second`, …); before a trailing `_sum`, `_count`, `_bucket` or `_total`
/// in the name, and not when the name (before that suffix) already ends with it.
pub(crate) fn push_unit_suffix(name: &mut String, unit: metrics::Unit) {
    const KNOWN_SUFFIXES: [&str; 4] = ["_sum", "_count", "_bucket", "_total"];
    let unit = match unit {
        metrics::Unit::Count => return,
        metrics::Unit::Percent => "ratio",
        u => u.as_str(),
    };
    let end = KNOWN_SUFFIXES
        .iter()
        .find(|s| name.ends_with(*s))
        .map_or(name.len(), |s| name.len() - s.len());
    if !name[..end].ends_with(unit) {
        name.insert_str(end, unit);
        name.insert(end, '_');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::Unit;

    #[test]
    fn unit_suffixes_as_metrics_exporter_prometheus() {
        for (name, unit, want) in [
            ("latency", Unit::Seconds, "latency_seconds"),
            ("latency_seconds", Unit::Seconds, "latency_seconds"),
            ("requests_total", Unit::Bytes, "requests_bytes_total"),
            ("requests", Unit::Count, "requests"),
            ("hit", Unit::Percent, "hit_ratio"),
            ("x_count", Unit::Milliseconds, "x_milliseconds_count"),
            ("io", Unit::BitsPerSecond, "io_bits_per_second"),
        ] {
            let mut s = name.to_owned();
            push_unit_suffix(&mut s, unit);
            assert_eq!(s, want);
        }
    }

    /// metrics-exporter-prometheus' order: Full, Prefix, Suffix, then the pattern's bytes; a
    /// matcher set twice keeps its later buckets.
    #[test]
    fn matcher_precedence() {
        let b = |v: f64| Arc::new(Buckets::new(&[v]));
        let mut h = FacadeHistograms::new();
        for (m, v) in [
            (Matcher::Suffix("query_seconds".into()), 4.0),
            (Matcher::Suffix("_seconds".into()), 3.0),
            (Matcher::Prefix("db_query".into()), 2.0),
            (Matcher::Prefix("db".into()), 1.0),
            (Matcher::Full("dup".into()), 5.0),
            (Matcher::Full("dup".into()), 6.0),
            (Matcher::Full("db_query_seconds".into()), 7.0),
            (Matcher::Prefix("http.".into()), 8.0),
        ] {
            set_matcher(&mut h.overrides, m, b(v));
        }
        assert_eq!(h.overrides.len(), 7, "a matcher set twice is one entry");
        let w = (std::time::Duration::from_secs(60), 3);
        let bound = |h: &FacadeHistograms, n: &str| match h.spec(n, w).unwrap() {
            Spec::Histogram(b) => b.bounds().first().copied(),
            _ => None,
        };
        assert_eq!(bound(&h, "db_query_seconds"), Some(7.0));
        assert_eq!(bound(&h, "db_query_x"), Some(1.0));
        assert_eq!(bound(&h, "db_query_time_seconds"), Some(1.0));
        assert_eq!(bound(&h, "rpc_query_seconds"), Some(3.0));
        assert_eq!(bound(&h, "dup"), Some(6.0));
        assert_eq!(bound(&h, "http_requests"), Some(8.0), "the pattern is sanitised");
        assert_eq!(bound(&h, "rpc"), Some(0.005));
        h.summaries = true;
        assert!(matches!(h.spec("rpc", w).unwrap(), Spec::Summary(_)));
        assert_eq!(bound(&h, "rpc_seconds"), Some(3.0));
    }
}
