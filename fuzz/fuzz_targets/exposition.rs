//! Arbitrary names, label names, label values and help through the manager: registration either
//! fails with an error or succeeds, and the exposition stays well formed (every sample line is
//! `name{labels} value` with a name that passes the metric-name rules).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmo_metrics::MetricsManager;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1}');
    let name = parts.next().unwrap_or_default();
    let help = parts.next().unwrap_or_default();
    let label = parts.next().unwrap_or_default();
    let value = parts.next().unwrap_or_default();
    let m = MetricsManager::new();
    if m.register_counter(name, help, &[label]).is_ok() {
        m.increment_counter(name, 1, &[value]).unwrap();
    }
    if m.register_histogram(&format!("{name}_h"), help, &[label], &[]).is_ok() {
        m.observe_histogram(&format!("{name}_h"), value.len() as f64, &[value]).unwrap();
    }
    let out = mmo_metrics_exporter::encode_text(&m);
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        let sample = line.split(['{', ' ']).next().unwrap();
        mmo_metrics::validate_metric_name(sample).unwrap();
        let v = line.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok() || v == "+Inf" || v == "-Inf" || v == "NaN", "{line}");
    }
});
