//! Limits on what callers put in: the maximum label value length, the facade family limit's
//! overflow families, and the bounded set of facade problems logged once.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::{
    default_buckets, lock, HeldSeries, Origin, Registry, Spec, FACADE_ERRORS_METRIC, FACADE_FAMILY_OVERFLOW_METRIC,
    FACADE_OVERFLOW_COUNTER_METRIC, FACADE_OVERFLOW_GAUGE_METRIC, FACADE_OVERFLOW_HISTOGRAM_METRIC,
};
use crate::{MetricKind, MetricsError};

/// The longest label value, in bytes, a series may have: 2,048.
///
/// Mimir and Cortex refuse a series with a longer value by default (`max_label_value_length`,
/// 2,048; Grafana Cloud truncates there), VictoriaMetrics drops series past `-maxLabelValueLen`
/// (4 KiB by default), Prometheus itself has no default limit (`label_value_length_limit` is off).
/// 2,048 bytes is the longest value every store the exporter's senders write to accepts
/// unchanged, and far above any useful value (a player name, a zone, a message type): a longer
/// one is a bug (a payload or a stack trace in a label), and one such series would otherwise cost
/// its full length in memory and in every scrape.
///
/// The manager's by-name API and handle lookups refuse a longer value with
/// [`crate::MetricsError::LabelValueTooLong`]. The `metrics` facade, which cannot return errors,
/// truncates the value to at most this many bytes at a UTF-8 character boundary and records into
/// that series; it counts the truncation in `mmo_metrics_label_value_truncated_total{metric}`
/// ([`crate::LABEL_VALUE_TRUNCATED_METRIC`]) and logs a warning once per metric. Self-metrics whose label
/// is a metric name truncate it the same way.
pub const MAX_LABEL_VALUE_LEN: usize = 2048;

/// `value` cut to at most [`MAX_LABEL_VALUE_LEN`] bytes, at a character boundary.
pub(crate) fn truncate_label_value(value: &str) -> &str {
    truncate_at(value, MAX_LABEL_VALUE_LEN)
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn truncate_at(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A message cut to [`LOG_MESSAGE_MAX`] bytes, saying how long it was.
fn truncate_for_log(message: &str) -> Cow<'_, str> {
    if message.len() <= LOG_MESSAGE_MAX {
        return message.into();
    }
    format!("{}… ({} bytes)", truncate_at(message, LOG_MESSAGE_MAX), message.len()).into()
}

/// Distinct facade problems remembered (and so logged individually) by [`Registry::log_once`].
pub(crate) const LOG_ONCE_CAPACITY: usize = 1_000;
/// Past [`LOG_ONCE_CAPACITY`], the shortest time between two summary lines.
pub(crate) const LOG_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);
/// The longest message [`Registry::log_once`] writes, in bytes (a message may quote a name or a
/// value of any length).
const LOG_MESSAGE_MAX: usize = 1_024;

/// The facade problems already logged: a bounded set of message hashes.
#[derive(Default)]
pub(crate) struct LogOnce {
    /// Hashes of the messages logged, at most [`LOG_ONCE_CAPACITY`].
    seen: HashSet<u64>,
    /// Distinct problems not logged individually since the last summary line.
    suppressed: u64,
    /// When the last summary line was written.
    last_summary: Option<Instant>,
}

impl Registry {
    /// The series a facade call with a new name lands in past the facade family limit: the one
    /// series of the overflow family of its kind. Counted in the facade family overflow
    /// self-metric; the first time the limit is reached is logged.
    pub(crate) fn facade_overflow(&self, kind: MetricKind) -> Result<HeldSeries, MetricsError> {
        let (i, label, name, spec) = match kind {
            MetricKind::Counter => (0, "counter", FACADE_OVERFLOW_COUNTER_METRIC, Spec::Counter),
            MetricKind::Gauge => (1, "gauge", FACADE_OVERFLOW_GAUGE_METRIC, Spec::Gauge),
            _ => (
                2,
                "histogram",
                FACADE_OVERFLOW_HISTOGRAM_METRIC,
                Spec::Histogram(default_buckets()),
            ),
        };
        self.count_self(&self.self_metrics().facade_family_overflow, label);
        if !self.facade_limit_reached.swap(true, Relaxed) {
            tracing::warn!(
                limit = self.config.facade_family_limit,
                "mmo-metrics: the `metrics` facade reached its facade family limit of {} families; \
                 calls with new names fold into `{}`, `{}` and `{}`, counted in `{}_total`",
                self.config.facade_family_limit,
                FACADE_OVERFLOW_COUNTER_METRIC,
                FACADE_OVERFLOW_GAUGE_METRIC,
                FACADE_OVERFLOW_HISTOGRAM_METRIC,
                FACADE_FAMILY_OVERFLOW_METRIC,
            );
        }
        let family = self.facade_overflow[i].get_or_init(|| {
            let help = format!("`metrics` facade {label}s with names past the facade family limit, all in one series.");
            self.register_family(name, &help, &[], spec, Origin::SelfMetric)
                .map(|f| f.expect("only the facade's families are limited"))
        });
        match family {
            Ok(f) => self.series(f, &[]),
            Err(e) => Err(e.clone()),
        }
    }

    /// Logs a facade problem as an error, once per message (see [`Registry::log_once_at`]).
    pub(crate) fn log_once(&self, message: &str) {
        self.log_once_at(tracing::Level::ERROR, message);
    }

    /// Logs a facade problem once per message. At most [`LOG_ONCE_CAPACITY`] distinct messages are
    /// remembered and logged; past them, distinct problems (still counted in their self-metrics)
    /// are summed in one line at most every [`LOG_SUMMARY_INTERVAL`], written when a problem comes
    /// after it. Memory: one hash per remembered message; a message is cut to 1 KiB when logged.
    pub(crate) fn log_once_at(&self, level: tracing::Level, message: &str) {
        // `DefaultHasher::new()` has fixed keys: equal messages hash equal.
        let mut h = std::hash::DefaultHasher::new();
        message.hash(&mut h);
        let hash = h.finish();
        let mut logged = lock(&self.logged);
        if logged.seen.contains(&hash) {
            return;
        }
        if logged.seen.len() < LOG_ONCE_CAPACITY {
            logged.seen.insert(hash);
            drop(logged);
            let message = truncate_for_log(message);
            match level {
                tracing::Level::ERROR => tracing::error!("mmo-metrics: {message}"),
                tracing::Level::WARN => tracing::warn!("mmo-metrics: {message}"),
                _ => tracing::info!("mmo-metrics: {message}"),
            }
            return;
        }
        logged.suppressed += 1;
        let now = Instant::now();
        if logged
            .last_summary
            .is_none_or(|t| now.duration_since(t) >= LOG_SUMMARY_INTERVAL)
        {
            let n = std::mem::take(&mut logged.suppressed);
            let first = logged.last_summary.is_none();
            logged.last_summary = Some(now);
            drop(logged);
            if first {
                tracing::warn!(
                    "mmo-metrics: {LOG_ONCE_CAPACITY} distinct facade problems logged; more facade problems not \
                     logged individually (counted in `{FACADE_ERRORS_METRIC}_total` and the other self-metrics), \
                     summed here at most every {LOG_SUMMARY_INTERVAL:?}"
                );
            } else {
                tracing::warn!(
                    "mmo-metrics: {n} more facade problems not logged individually (counted in \
                     `{FACADE_ERRORS_METRIC}_total` and the other self-metrics)"
                );
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn log_once_remembers_a_bounded_number_of_messages() {
        let r = Registry::new(crate::MetricsManager::builder().config());
        for i in 0..100_000 {
            r.log_once(&format!("problem {i}"));
        }
        let logged = lock(&r.logged);
        assert_eq!(logged.seen.len(), LOG_ONCE_CAPACITY);
        // The first summary line was written at the first problem past the capacity; the others
        // wait for the next interval.
        assert!(logged.last_summary.is_some());
        assert_eq!(logged.suppressed, 100_000 - LOG_ONCE_CAPACITY as u64 - 1);
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary() {
        let v = "é".repeat(MAX_LABEL_VALUE_LEN);
        let cut = truncate_label_value(&v);
        assert_eq!(cut.len(), MAX_LABEL_VALUE_LEN);
        let v = format!("x{v}");
        assert_eq!(truncate_label_value(&v).len(), MAX_LABEL_VALUE_LEN - 1);
        assert_eq!(truncate_label_value("short"), "short");
    }
}
