//! Native histograms through the manager and the text exposition.
#![cfg(not(loom))]

use mmo_metrics::{MetricsManager, NativeConfig};

/// Text 0.0.4 shows a native-only histogram as `+Inf`, `_sum` and `_count`, and the classic part
/// of one with both.
#[test]
fn text_shows_the_classic_part() {
    let m = MetricsManager::new();
    m.register_native_histogram("native_seconds", "N.", &[], NativeConfig::default())
        .unwrap();
    m.register_histogram_with_native("both_seconds", "B.", &[], &[0.5], NativeConfig::default())
        .unwrap();
    for v in [0.25, 2.0] {
        m.observe_histogram("native_seconds", v, &[]).unwrap();
        m.observe_histogram("both_seconds", v, &[]).unwrap();
    }
    let text = mmo_metrics_exporter::encode_text(&m);
    for line in [
        "native_seconds_bucket{le=\"+Inf\"} 2\nnative_seconds_sum 2.25\nnative_seconds_count 2\n",
        "both_seconds_bucket{le=\"0.5\"} 1\nboth_seconds_bucket{le=\"+Inf\"} 2\nboth_seconds_sum 2.25\nboth_seconds_count 2\n",
        "# TYPE native_seconds histogram\n",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}
