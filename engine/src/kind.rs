//! [`MetricKind`]: the type of a metric family.

use std::fmt;

/// The metric types.
///
/// New types may be added: match with a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MetricKind {
    /// A monotonic `u64`.
    Counter,
    /// An `f64` that goes up and down.
    Gauge,
    /// Classic buckets, sum and count.
    Histogram,
    /// Quantiles over a sliding window, sum and count.
    Summary,
}

impl MetricKind {
    /// `counter`, `gauge`, `histogram` or `summary`, as in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
