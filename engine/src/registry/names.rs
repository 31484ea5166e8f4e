//! Name rules of the Prometheus data model.

use crate::MetricsError;

/// Checks a metric name against `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn check_metric_name(name: &str) -> Result<(), MetricsError> {
    let err = |reason: String| MetricsError::InvalidMetricName {
        name: name.to_owned(),
        reason,
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(err("it is empty".into())),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_' || c == ':') => {
            return Err(err(format!("it starts with {c:?}")))
        }
        _ => {}
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == ':')) {
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
            Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
                return Err(err(format!("it starts with {c:?} (expected [a-zA-Z_][a-zA-Z0-9_]*)")))
            }
            _ => {}
        }
        if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
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
