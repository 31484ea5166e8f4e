//! Prometheus protobuf (`encode_protobuf_with`) of a registry built from the input (every kind,
//! fuzzed names, help, labels and values, NaN/±Inf/subnormals included, global labels): the bytes
//! decode with prost into length-delimited `MetricFamily` messages, with nothing left over, and
//! every family has the name (a counter's with `_total`), help and type, and its metrics the
//! labels, counts and values that the read API reports, in the same order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmo_metrics::MetricKind;
use mmo_metrics_exporter::proto::{MetricFamily, MetricType};
use mmo_metrics_fuzz::{build, global_label_collision, snapshot, stable, Value};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let fuzzed = build(data);
    let before = snapshot(&fuzzed.manager, &fuzzed.global);
    let mut out = Vec::new();
    mmo_metrics_exporter::encode_protobuf_with(&fuzzed.manager, &fuzzed.global, &mut out);
    let after = snapshot(&fuzzed.manager, &fuzzed.global);

    let mut rest = &out[..];
    let mut families = Vec::new();
    while !rest.is_empty() {
        let f = MetricFamily::decode_length_delimited(&mut rest).unwrap_or_else(|e| {
            panic!(
                "a length-delimited MetricFamily expected at byte {}: {e}",
                out.len() - rest.len()
            )
        });
        families.push(f);
    }

    let names: Vec<(String, MetricType)> = after
        .iter()
        .map(|f| match f.kind {
            MetricKind::Counter => (format!("{}_total", f.name), MetricType::Counter),
            MetricKind::Gauge => (f.name.clone(), MetricType::Gauge),
            MetricKind::Histogram => (f.name.clone(), MetricType::Histogram),
            _ => (f.name.clone(), MetricType::Summary),
        })
        .collect();
    let got: Vec<(String, MetricType)> = families.iter().map(|f| (f.name().to_owned(), f.r#type())).collect();
    assert_eq!(got, names, "families (name, type) decoded against the read API");
    for f in &families {
        assert!(
            f.name.is_some() && f.r#type.is_some(),
            "family without a name or type: {f:?}"
        );
        assert!(!f.metric.is_empty(), "family `{}` without metrics", f.name());
    }

    // Series told apart by their labels from here on.
    if global_label_collision(&after) {
        return;
    }
    let Some(want) = stable(before, &after) else { return };
    let f64s = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
    for (f, p) in want.iter().zip(&families) {
        assert_eq!(p.help, f.help, "help of `{}`", f.name);
        assert_eq!(p.metric.len(), f.series.len(), "metrics of `{}`", f.name);
        for ((labels, value), m) in f.series.iter().zip(&p.metric) {
            let got: Vec<(String, String)> = m
                .label
                .iter()
                .map(|l| (l.name().to_owned(), l.value().to_owned()))
                .collect();
            assert_eq!(&got, labels, "labels of a metric of `{}`", f.name);
            let ok = match value {
                Value::Counter(v) => m.counter.as_ref().is_some_and(|c| c.value == Some(*v as f64)),
                Value::FloatCounter(v) => m
                    .counter
                    .as_ref()
                    .is_some_and(|c| c.value.map(f64::to_bits) == Some(v.to_bits())),
                Value::Gauge(v) => m
                    .gauge
                    .as_ref()
                    .is_some_and(|g| g.value.map(f64::to_bits) == Some(v.to_bits())),
                Value::Histogram {
                    bounds,
                    cumulative,
                    sum,
                    count,
                } => m.histogram.as_ref().is_some_and(|h| {
                    let b: Vec<f64> = h.bucket.iter().map(|b| b.upper_bound()).collect();
                    let c: Vec<u64> = h.bucket.iter().map(|b| b.cumulative_count()).collect();
                    // One bucket per finite bound; `+Inf` is `sample_count`.
                    f64s(&b, bounds)
                        && c[..] == cumulative[..bounds.len()]
                        && cumulative.last() == Some(count)
                        && h.sample_count == Some(*count)
                        && h.sample_sum.map(f64::to_bits) == Some(sum.to_bits())
                }),
                Value::Summary {
                    quantiles,
                    values,
                    sum,
                    count,
                } => m.summary.as_ref().is_some_and(|s| {
                    let q: Vec<f64> = s.quantile.iter().map(|q| q.quantile()).collect();
                    let v: Vec<f64> = s.quantile.iter().map(|q| q.value()).collect();
                    f64s(&q, quantiles)
                        && f64s(&v, values)
                        && s.sample_count == Some(*count)
                        && s.sample_sum.map(f64::to_bits) == Some(sum.to_bits())
                }),
            };
            let kinds = [
                m.counter.is_some(),
                m.gauge.is_some(),
                m.histogram.is_some(),
                m.summary.is_some(),
                m.untyped.is_some(),
            ];
            assert!(
                ok && kinds.iter().filter(|k| **k).count() == 1,
                "`{}` {labels:?}: decoded {m:?}, read API {value:?}",
                f.name
            );
        }
    }
});
