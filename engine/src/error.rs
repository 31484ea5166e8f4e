//! Errors of the registry and the manager.

use crate::MetricKind;

/// What went wrong, naming the metric, what was expected and what was found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A metric name outside `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("metric name `{name}` is invalid: {reason} (expected [a-zA-Z_:][a-zA-Z0-9_:]*)")]
    InvalidMetricName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A label name outside `[a-zA-Z_][a-zA-Z0-9_]*`, or starting with `__`.
    #[error("metric `{metric}`: label name `{label}` is invalid: {reason}")]
    InvalidLabelName {
        /// The metric.
        metric: String,
        /// The label name given.
        label: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same label name twice in one metric.
    #[error("metric `{metric}`: label name `{label}` appears twice")]
    DuplicateLabelName {
        /// The metric.
        metric: String,
        /// The repeated label name.
        label: String,
    },
    /// A metric used or registered as another type than it was registered with.
    #[error("metric `{metric}` registered as {registered}, now asked for {requested}")]
    TypeConflict {
        /// The metric.
        metric: String,
        /// Its registered type.
        registered: MetricKind,
        /// The type asked for.
        requested: MetricKind,
    },
    /// A metric registered again with other label names, buckets or quantiles.
    #[error("metric `{metric}` registered with {registered}, now asked with {requested}")]
    DefinitionConflict {
        /// The metric.
        metric: String,
        /// The registered definition.
        registered: String,
        /// The requested one.
        requested: String,
    },
    /// Two families would expose the same sample name (e.g. counter `x` and gauge `x_total`).
    #[error("metric `{metric}` would expose sample `{sample}`, which {other} already exposes")]
    NameCollision {
        /// The metric being registered.
        metric: String,
        /// The clashing sample name.
        sample: String,
        /// The family already exposing it.
        other: String,
    },
    /// A metric asked for by name that does not exist, of any type.
    #[error("metric `{metric}` does not exist (nothing was registered or recorded under that name)")]
    UnknownMetric {
        /// The metric.
        metric: String,
    },
    /// A metric used before it was registered.
    #[error("metric `{metric}` is not registered (register it as a {requested} first)")]
    NotRegistered {
        /// The metric.
        metric: String,
        /// The type asked for.
        requested: MetricKind,
    },
    /// Label values that do not match the metric's label names.
    #[error("metric `{metric}` has labels [{expected}] ({expected_len} values expected), got {found} values [{found_values}]")]
    LabelArity {
        /// The metric.
        metric: String,
        /// Its label names, comma separated.
        expected: String,
        /// How many values it takes.
        expected_len: usize,
        /// How many were given.
        found: usize,
        /// The values given, comma separated.
        found_values: String,
    },
    /// Bad histogram buckets.
    #[error("histogram `{metric}`: buckets {found} are invalid: {reason}")]
    InvalidBuckets {
        /// The metric.
        metric: String,
        /// The buckets given.
        found: String,
        /// What is wrong.
        reason: String,
    },
    /// A native histogram setting out of its range.
    #[error("native histogram `{metric}`: {setting} must be {expected}, got {found}")]
    InvalidNativeHistogram {
        /// The metric (or which facade histograms the setting was for).
        metric: String,
        /// The setting: `bucket_factor`, `zero_threshold` or `max_buckets`.
        setting: String,
        /// The value given.
        found: String,
        /// What it must be.
        expected: String,
    },
    /// Bad summary quantiles or window.
    #[error("summary `{metric}`: {reason}, got {found}")]
    InvalidSummary {
        /// The metric.
        metric: String,
        /// The value given.
        found: String,
        /// What is expected.
        reason: String,
    },
    /// A label value longer than [`crate::MAX_LABEL_VALUE_LEN`] bytes.
    #[error("metric `{metric}`: value of label `{label}` is {found} bytes long, over the limit of {limit} bytes")]
    LabelValueTooLong {
        /// The metric.
        metric: String,
        /// The label whose value is too long.
        label: String,
        /// The limit, [`crate::MAX_LABEL_VALUE_LEN`].
        limit: usize,
        /// The value's length in bytes.
        found: usize,
    },
    /// Exemplar labels longer than OpenMetrics allows: more than
    /// [`crate::exemplar::MAX_EXEMPLAR_LABELS_CHARS`] UTF-8 characters of names and values
    /// together. Refused, never truncated.
    #[error(
        "{}exemplar labels [{names}] are {found} UTF-8 characters long (label names and values together), \
         over OpenMetrics' limit of {limit}; the exemplar is refused, not truncated",
        metric_prefix(.metric)
    )]
    ExemplarLabelsTooLong {
        /// The metric, when known (empty for a handle's exemplar).
        metric: String,
        /// The exemplar's label names, comma separated.
        names: String,
        /// Characters of the names and values together.
        found: usize,
        /// The limit, [`crate::exemplar::MAX_EXEMPLAR_LABELS_CHARS`].
        limit: usize,
    },
    /// An exemplar label name outside `[a-zA-Z_][a-zA-Z0-9_]*`, starting with `__`, or given twice.
    #[error("{}exemplar label name `{label}` is invalid: {reason}", metric_prefix(.metric))]
    InvalidExemplarLabel {
        /// The metric, when known (empty for a handle's exemplar).
        metric: String,
        /// The label name given.
        label: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `install` when a global `metrics` recorder is already set.
    #[error("a global `metrics` recorder is already installed; install() can succeed once per process")]
    AlreadyInstalled,
}

/// "metric `m`: ", or nothing for an error about no metric in particular.
fn metric_prefix(metric: &str) -> String {
    if metric.is_empty() {
        String::new()
    } else {
        format!("metric `{metric}`: ")
    }
}

impl MetricsError {
    /// The error naming `metric`, for an error about an exemplar checked before its metric was
    /// known; other errors unchanged.
    pub(crate) fn for_metric(self, name: &str) -> Self {
        match self {
            Self::ExemplarLabelsTooLong {
                names, found, limit, ..
            } => Self::ExemplarLabelsTooLong {
                metric: name.to_owned(),
                names,
                found,
                limit,
            },
            Self::InvalidExemplarLabel { label, reason, .. } => Self::InvalidExemplarLabel {
                metric: name.to_owned(),
                label,
                reason,
            },
            e => e,
        }
    }
}
