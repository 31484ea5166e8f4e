//! OpenMetrics 1.0 text (`encode_openmetrics_with`) of a registry built from the input (every
//! kind, fuzzed names, help, units, labels and values, NaN/±Inf/subnormals included, global
//! labels): the exposition is well formed as the specification (and Python's strict parser) asks
//! — every line `# TYPE`, `# HELP`, `# UNIT` or a sample `name{labels} value`, family blocks not
//! interleaved, `# EOF\n` once and last, values that parse, counter-like samples neither NaN nor
//! negative, `le` buckets ascending with `+Inf` last and `_count` equal to it, `_sum` with `_count`
//! and never with a negative bucket, quantiles in [0, 1] with no negative value — and it says what
//! the read API reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmo_metrics_fuzz::{build, find, global_label_collision, parse_exposition, same_f64, snapshot, stable, Value};

fuzz_target!(|data: &[u8]| {
    let fuzzed = build(data);
    let before = snapshot(&fuzzed.manager, &fuzzed.global);
    let mut out = String::new();
    mmo_metrics_exporter::encode_openmetrics_with(&fuzzed.manager, &fuzzed.global, &mut out);
    let after = snapshot(&fuzzed.manager, &fuzzed.global);

    let body = out
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("no `# EOF\\n` at the end:\n{out}"));
    assert!(
        !body.split('\n').any(|l| l == "# EOF"),
        "`# EOF` before the end:\n{out}"
    );
    assert!(
        body.is_empty() || body.ends_with('\n'),
        "last line before `# EOF` not ended:\n{out}"
    );
    let parsed = parse_exposition(body, true).unwrap_or_else(|e| panic!("{e}\n--- exposition:\n{out}"));

    let names: Vec<(&str, &str)> = after.iter().map(|f| (f.name.as_str(), f.kind.as_str())).collect();
    let got: Vec<(&str, &str)> = parsed.iter().map(|f| (f.name, f.kind)).collect();
    assert_eq!(
        got, names,
        "families (name, type) of the exposition against the read API\n{out}"
    );

    // A global label filled in where a series lacks it can give two series of one family the
    // same labels (see `global_label_collision`); the parser then reads them as one series, whose
    // bucket and quantile runs are checked only when no such pair exists.
    let collision = global_label_collision(&after);
    for p in &parsed {
        let n = p.name;
        if let Some(unit) = p.unit {
            assert!(
                n.len() > unit.len() + 1 && n.ends_with(&format!("_{unit}")),
                "`# UNIT {unit}` of `{n}`, not its suffix"
            );
        }
        for (labels, samples) in &p.series {
            for s in samples {
                let counter_like = s.name != n || p.kind == "counter";
                assert!(
                    !counter_like || !(s.value.is_nan() || s.value < 0.0),
                    "counter-like sample `{}` {labels:?} is {}\n{out}",
                    s.name,
                    s.value
                );
            }
            match p.kind {
                _ if collision => {}
                "histogram" => {
                    let buckets: Vec<(&str, f64)> = samples
                        .iter()
                        .filter(|s| s.name.ends_with("_bucket"))
                        .map(|s| {
                            (
                                s.labels.iter().find(|(n, _)| *n == "le").expect("le").1.as_str(),
                                s.value,
                            )
                        })
                        .collect();
                    let les: Vec<f64> = buckets.iter().map(|(le, _)| le.parse().expect("le parses")).collect();
                    assert!(
                        !buckets.is_empty() && buckets.last().unwrap().0 == "+Inf",
                        "`{n}` {labels:?}: last bucket not +Inf\n{out}"
                    );
                    assert!(
                        les.windows(2).all(|w| w[0] < w[1]),
                        "`{n}` {labels:?}: buckets out of order\n{out}"
                    );
                    assert!(
                        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                        "`{n}` {labels:?}: bucket counts decrease\n{out}"
                    );
                    for (le, _) in &buckets {
                        assert!(
                            le.contains(['.', 'e']) || le.ends_with("Inf"),
                            "`{n}`: le=\"{le}\" is not canonical\n{out}"
                        );
                    }
                    let count = find(samples, &format!("{n}_count"), ("", ""));
                    let sum = find(samples, &format!("{n}_sum"), ("", ""));
                    assert_eq!(
                        count.is_some(),
                        sum.is_some(),
                        "`{n}` {labels:?}: _count and _sum come together\n{out}"
                    );
                    if let Some(c) = count {
                        assert_eq!(
                            c,
                            buckets.last().unwrap().1,
                            "`{n}` {labels:?}: _count against the +Inf bucket\n{out}"
                        );
                        assert!(les[0] >= 0.0, "`{n}` {labels:?}: _sum with a negative bucket\n{out}");
                    }
                }
                "summary" => {
                    for s in samples.iter().filter(|s| s.name == n) {
                        let q: f64 = s
                            .labels
                            .iter()
                            .find(|(n, _)| *n == "quantile")
                            .expect("quantile")
                            .1
                            .parse()
                            .expect("quantile parses");
                        assert!((0.0..=1.0).contains(&q), "`{n}`: quantile {q}\n{out}");
                        assert!(
                            s.value >= 0.0 || s.value.is_nan(),
                            "`{n}`: negative quantile value\n{out}"
                        );
                    }
                }
                _ => {}
            }
        }
    }

    // Series told apart by their labels from here on.
    if collision {
        return;
    }
    let Some(want) = stable(before, &after) else { return };
    for (f, p) in want.iter().zip(&parsed) {
        let n = p.name;
        assert_eq!(p.help, f.help, "help of `{n}`");
        let unit = f.unit.filter(|u| {
            n.strip_suffix(u)
                .is_some_and(|stem| stem.len() > 1 && stem.ends_with('_'))
        });
        assert_eq!(p.unit, unit, "`# UNIT` of `{n}` (described with {:?})", f.unit);
        let got: Vec<_> = p.series.iter().map(|(l, _)| l).collect();
        let expected: Vec<_> = f.series.iter().map(|(l, _)| l).collect();
        assert_eq!(got, expected, "series labels of `{n}`\n{out}");
        for ((labels, value), (_, samples)) in f.series.iter().zip(&p.series) {
            let total = format!("{n}_total");
            let ok = match value {
                Value::Counter(v) => find(samples, &total, ("", "")) == Some(*v as f64),
                Value::FloatCounter(v) => find(samples, &total, ("", "")).is_some_and(|x| same_f64(x, *v)),
                Value::Gauge(v) => find(samples, n, ("", "")).is_some_and(|x| same_f64(x, *v)),
                Value::Histogram {
                    bounds,
                    cumulative,
                    sum,
                    count,
                } => {
                    let counts: Vec<f64> = samples
                        .iter()
                        .filter(|s| s.name.ends_with("_bucket"))
                        .map(|s| s.value)
                        .collect();
                    let les: Vec<f64> = samples
                        .iter()
                        .filter(|s| s.name.ends_with("_bucket"))
                        .map(|s| s.labels.iter().find(|(n, _)| *n == "le").unwrap().1.parse().unwrap())
                        .collect();
                    // The documented rule: `_count` and `_sum` unless the sum is negative or NaN
                    // or a bound is negative.
                    let with_sum = bounds.first().is_none_or(|b| *b >= 0.0) && *sum >= 0.0;
                    counts.len() == cumulative.len()
                        && counts.iter().zip(cumulative).all(|(a, b)| *a == *b as f64)
                        && les
                            .iter()
                            .zip(bounds.iter().chain([&f64::INFINITY]))
                            .all(|(a, b)| same_f64(*a, *b))
                        && find(samples, &format!("{n}_count"), ("", "")) == with_sum.then_some(*count as f64)
                        && find(samples, &format!("{n}_sum"), ("", "")).is_some_and(|x| same_f64(x, *sum)) == with_sum
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
                                    .unwrap()
                                    .1
                                    .parse()
                                    .unwrap(),
                                s.value,
                            )
                        })
                        .collect();
                    let kept: Vec<(f64, f64)> = quantiles
                        .iter()
                        .copied()
                        .zip(values.iter().copied())
                        .filter(|(_, v)| *v >= 0.0 || v.is_nan())
                        .collect();
                    qs.len() == kept.len()
                        && qs
                            .iter()
                            .zip(&kept)
                            .all(|(a, b)| same_f64(a.0, b.0) && same_f64(a.1, b.1))
                        && find(samples, &format!("{n}_count"), ("", "")) == Some(*count as f64)
                        && find(samples, &format!("{n}_sum"), ("", "")).is_some_and(|x| same_f64(x, *sum))
                            == (*sum >= 0.0)
                }
            };
            assert!(ok, "`{n}` {labels:?}: exposed {samples:?}, read API {value:?}\n{out}");
        }
    }
});
