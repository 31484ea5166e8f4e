//! Prometheus text 0.0.4 (`encode_text_with`) of a registry built from the input (every kind,
//! fuzzed names, help, labels and values, NaN/±Inf/subnormals included, global labels): the
//! exposition is well formed (every line `# HELP`, `# TYPE` or a valid sample, families in one
//! block each) and says what the read API reports: the same families, series, labels and values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmo_metrics::MetricKind;
use mmo_metrics_fuzz::{build, find, global_label_collision, parse_exposition, same_f64, snapshot, stable, Value};

fuzz_target!(|data: &[u8]| {
    let fuzzed = build(data);
    let before = snapshot(&fuzzed.manager, &fuzzed.global);
    let mut out = String::new();
    mmo_metrics_exporter::encode_text_with(&fuzzed.manager, &fuzzed.global, &mut out);
    let after = snapshot(&fuzzed.manager, &fuzzed.global);
    let parsed = parse_exposition(&out, false).unwrap_or_else(|e| panic!("{e}\n--- exposition:\n{out}"));

    let names: Vec<(String, &str)> = after
        .iter()
        .map(|f| match f.kind {
            MetricKind::Counter => (format!("{}_total", f.name), "counter"),
            k => (f.name.clone(), k.as_str()),
        })
        .collect();
    let got: Vec<(String, &str)> = parsed.iter().map(|f| (f.name.to_owned(), f.kind)).collect();
    assert_eq!(
        got, names,
        "families (name, type) of the exposition against the read API\n{out}"
    );

    // Series told apart by their labels from here on.
    if global_label_collision(&after) {
        return;
    }
    let Some(want) = stable(before, &after) else { return };
    for (f, p) in want.iter().zip(&parsed) {
        assert_eq!(p.help, f.help, "help of `{}`", f.name);
        let got: Vec<_> = p.series.iter().map(|(l, _)| l).collect();
        let expected: Vec<_> = f.series.iter().map(|(l, _)| l).collect();
        assert_eq!(got, expected, "series labels of `{}`\n{out}", f.name);
        for ((labels, value), (_, samples)) in f.series.iter().zip(&p.series) {
            let n = p.name;
            let ok = match value {
                Value::Counter(v) => find(samples, n, ("", "")) == Some(*v as f64),
                Value::FloatCounter(v) | Value::Gauge(v) => find(samples, n, ("", "")).is_some_and(|x| same_f64(x, *v)),
                Value::Histogram {
                    bounds,
                    cumulative,
                    sum,
                    count,
                } => {
                    let le: Vec<f64> = samples
                        .iter()
                        .filter(|s| s.name.ends_with("_bucket"))
                        .map(|s| {
                            s.labels
                                .iter()
                                .find(|(n, _)| *n == "le")
                                .expect("le")
                                .1
                                .parse::<f64>()
                                .expect("le value")
                        })
                        .collect();
                    let counts: Vec<f64> = samples
                        .iter()
                        .filter(|s| s.name.ends_with("_bucket"))
                        .map(|s| s.value)
                        .collect();
                    le.len() == bounds.len() + 1
                        && le
                            .iter()
                            .zip(bounds.iter().chain([&f64::INFINITY]))
                            .all(|(a, b)| same_f64(*a, *b))
                        && counts.iter().zip(cumulative).all(|(a, b)| *a == *b as f64)
                        && find(samples, &format!("{n}_sum"), ("", "")).is_some_and(|x| same_f64(x, *sum))
                        && find(samples, &format!("{n}_count"), ("", "")) == Some(*count as f64)
                        && samples.len() == bounds.len() + 3
                }
                Value::Summary {
                    quantiles,
                    values,
                    sum,
                    count,
                } => {
                    let qs: Vec<(f64, f64)> = samples
                        .iter()
                        .filter(|s| s.name == n)
                        .map(|s| {
                            (
                                s.labels
                                    .iter()
                                    .find(|(n, _)| *n == "quantile")
                                    .expect("quantile")
                                    .1
                                    .parse()
                                    .expect("quantile value"),
                                s.value,
                            )
                        })
                        .collect();
                    qs.len() == quantiles.len()
                        && qs
                            .iter()
                            .zip(quantiles.iter().zip(values))
                            .all(|(a, b)| same_f64(a.0, *b.0) && same_f64(a.1, *b.1))
                        && find(samples, &format!("{n}_sum"), ("", "")).is_some_and(|x| same_f64(x, *sum))
                        && find(samples, &format!("{n}_count"), ("", "")) == Some(*count as f64)
                }
            };
            assert!(ok, "`{n}` {labels:?}: exposed {samples:?}, read API {value:?}\n{out}");
        }
    }
});
