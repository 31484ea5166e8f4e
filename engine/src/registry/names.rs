//! Name rules of the Prometheus data model, and the sanitisation the `metrics` facade applies.
//!
//! The facade renames what the by-name API refuses, with the rules of metrics-exporter-prometheus
//! 0.18 (`formatting.rs`, `sanitize_metric_name` and `sanitize_label_key`), so a program moved from
//! that exporter exposes the same names:
//!
//! - a metric name keeps each character that is valid where it stands (`[a-zA-Z_:]` first,
//!   `[a-zA-Z0-9_:]` after) and every other *character* (not byte: `é` is one) becomes `_`:
//!   `http.requests` → `http_requests`, `5xx_responses` → `_xx_responses`;
//! - a label key likewise, without `:` (`[a-zA-Z_]` first, `[a-zA-Z0-9_]` after):
//!   `http.method` → `http_method`, `service-name` → `service_name`;
//! - nothing else changes: no collapsing of `_` runs, no trimming, an empty name stays empty.

use std::borrow::Cow;

use crate::MetricsError;

fn metric_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn metric_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn label_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn label_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `s` with each character that fails `start` (first) or `rest` (the others) replaced by `_`;
/// borrowed when nothing is replaced.
fn sanitize(s: &str, start: fn(char) -> bool, rest: fn(char) -> bool) -> Cow<'_, str> {
    let valid = |(i, c): (usize, char)| if i == 0 { start(c) } else { rest(c) };
    if s.chars().enumerate().all(valid) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .enumerate()
            .map(|(i, c)| if valid((i, c)) { c } else { '_' })
            .collect(),
    )
}

/// A metric name made valid as metrics-exporter-prometheus 0.18 makes it: every character outside
/// `[a-zA-Z_:]` (first) or `[a-zA-Z0-9_:]` (others) becomes `_`. Borrowed when already valid (or
/// empty, which stays invalid).
pub fn sanitize_metric_name(name: &str) -> Cow<'_, str> {
    sanitize(name, metric_name_start, metric_name_char)
}

/// A label key made valid as metrics-exporter-prometheus 0.18 makes it: every character outside
/// `[a-zA-Z_]` (first) or `[a-zA-Z0-9_]` (others) becomes `_`. Borrowed when already valid. Keys
/// that stay invalid after it (empty, `__` reserved, duplicates) are for
/// [`check_label_names`] to refuse.
pub fn sanitize_label_key(key: &str) -> Cow<'_, str> {
    sanitize(key, label_name_start, label_name_char)
}

/// Checks a metric name against `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn check_metric_name(name: &str) -> Result<(), MetricsError> {
    let err = |reason: String| MetricsError::InvalidMetricName {
        name: name.to_owned(),
        reason,
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(err("it is empty".into())),
        Some(c) if !metric_name_start(c) => return Err(err(format!("it starts with {c:?}"))),
        _ => {}
    }
    if let Some(c) = chars.find(|&c| !metric_name_char(c)) {
        return Err(err(format!("it contains {c:?}")));
    }
    Ok(())
}

/// Checks label names: `[a-zA-Z_][a-zA-Z0-9_]*`, not `__*` (reserved), no duplicates, and not the
/// names the exposition adds (`le` for histograms, `quantile` for summaries) when `reserved` names
/// one. `metric` only names the metric in the error.
pub fn check_label_names(metric: &str, labels: &[&str], reserved: Option<&str>) -> Result<(), MetricsError> {
    for (i, &label) in labels.iter().enumerate() {
        let err = |reason: String| MetricsError::InvalidLabelName {
            metric: metric.to_owned(),
            label: label.to_owned(),
            reason,
        };
        let mut chars = label.chars();
        match chars.next() {
            None => return Err(err("it is empty".into())),
            Some(c) if !label_name_start(c) => {
                return Err(err(format!("it starts with {c:?} (expected [a-zA-Z_][a-zA-Z0-9_]*)")))
            }
            _ => {}
        }
        if let Some(c) = chars.find(|&c| !label_name_char(c)) {
            return Err(err(format!("it contains {c:?} (expected [a-zA-Z_][a-zA-Z0-9_]*)")));
        }
        if label.starts_with("__") {
            return Err(err("names starting with `__` are reserved for Prometheus".into()));
        }
        if Some(label) == reserved {
            return Err(err(format!("`{label}` is added by the exposition of this type")));
        }
        if labels[..i].contains(&label) {
            return Err(MetricsError::DuplicateLabelName {
                metric: metric.to_owned(),
                label: label.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        for ok in ["a", "_a", ":a", "a:b_c9", "A"] {
            check_metric_name(ok).unwrap();
        }
        for bad in ["", "9a", "a-b", "a.b", "é"] {
            let e = check_metric_name(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn sanitised_as_metrics_exporter_prometheus() {
        // Its own known cases (formatting.rs), and the names of issue 13.
        for (raw, want) in [
            ("*", "_"),
            ("\"", "_"),
            ("foo_bar", "foo_bar"),
            ("1foobar", "_foobar"),
            ("foo1:bar2", "foo1:bar2"),
            ("123", "_23"),
            ("http.requests", "http_requests"),
            ("my-service-errors", "my_service_errors"),
            ("5xx_responses", "_xx_responses"),
            ("prefix.é.x", "prefix___x"),
            ("", ""),
        ] {
            assert_eq!(sanitize_metric_name(raw), want, "{raw:?}");
        }
        for (raw, want) in [
            ("*", "_"),
            (":", "_"),
            ("1foobar", "_foobar"),
            ("__foobar", "__foobar"),
            ("123", "_23"),
            ("http.method", "http_method"),
            ("service-name", "service_name"),
        ] {
            assert_eq!(sanitize_label_key(raw), want, "{raw:?}");
        }
        assert!(matches!(sanitize_metric_name("ok_name"), Cow::Borrowed(_)));
    }

    #[test]
    fn label_names() {
        check_label_names("m", &["a", "_b", "c9"], None).unwrap();
        assert!(check_label_names("m", &["__x"], None)
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        assert!(check_label_names("m", &["a:b"], None).is_err());
        assert!(check_label_names("m", &["le"], Some("le")).is_err());
        assert_eq!(
            check_label_names("m", &["a", "a"], None).unwrap_err().to_string(),
            "metric `m`: label name `a` appears twice"
        );
    }
}
