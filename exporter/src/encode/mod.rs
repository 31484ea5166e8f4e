//! Exposition formats over one format-neutral walk of the read API.
//!
//! [`walk`] visits every family that has series, in name order, and hands a [`Format`] the
//! family's metadata once, then each series with its labels and value. A family the `metrics`
//! facade created may have series of several label sets; they all come in its one walk, so a
//! format writes one metadata block for them. The labels a format sees are the series' own, then
//! every global label (`service`, `instance`: the exporter's, then the manager's,
//! [`mmo_metrics::MetricsManagerBuilder::add_global_label`]) whose name the series does not carry
//! itself. A format only writes bytes; the number and escape helpers of the text formats are in
//! [`fmt`].

pub(crate) mod fmt;
mod negotiate;
mod openmetrics;
pub mod proto;
mod protobuf;
pub(crate) mod received;
mod text;

use std::sync::Arc;

use mmo_metrics::{Labels, MetricKind, MetricsManager, Sample};

pub use negotiate::{negotiate, ExpositionFormat};
pub use openmetrics::{
    encode_openmetrics, encode_openmetrics_with, encode_openmetrics_with_options, OpenMetricsOptions,
    OPENMETRICS_CONTENT_TYPE,
};
pub use protobuf::{encode_protobuf_with, PROTOBUF_CONTENT_TYPE};
pub use text::{encode_text, encode_text_into, encode_text_with, TEXT_CONTENT_TYPE};

/// Label names no global label may take: every histogram sample has `le`, every summary
/// quantile sample `quantile`, so a global label of that name would make those lines invalid.
pub const RESERVED_GLOBAL_LABELS: [&str; 2] = ["le", "quantile"];

/// What a format learns about a family before its series.
pub(crate) struct FamilyMeta<'a> {
    /// The family name; a counter's without `_total`.
    pub(crate) name: &'a str,
    pub(crate) kind: MetricKind,
    pub(crate) help: Option<Arc<str>>,
    /// The unit given through `describe_*!` (`metrics::Unit::as_str`: `seconds`, `bytes`, …).
    pub(crate) unit: Option<&'static str>,
}

/// The labels of one series as exposed: its own, then the global labels it does not carry.
///
/// It refers to the walk's [`Sample`] rather than holding a copy of its [`Labels`]: the walk has
/// just written the sample field by field, and a copy read back as one block is a load the CPU
/// cannot forward from those stores. That stall was about 5 of the 35 ns an OpenMetrics counter
/// line took (100,000 counter series).
#[derive(Clone, Copy)]
pub(crate) struct SeriesLabels<'a> {
    sample: &'a Sample<'a>,
    global: &'a [(String, String)],
}

impl<'a> SeriesLabels<'a> {
    /// The series' own labels.
    fn own(&self) -> Labels<'a> {
        self.sample.labels()
    }

    /// `(name, value)` pairs in exposition order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let own = self.own();
        own.iter().chain(
            self.global
                .iter()
                .filter(move |(k, _)| !own.iter().any(|(n, _)| n == k))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }
}

/// One exposition format: told each family, then each of its series.
pub(crate) trait Format {
    /// A family with at least one series begins.
    fn family(&mut self, family: &FamilyMeta<'_>);
    /// One series of the family last begun: its labels as exposed, and its value, creation time
    /// and exemplars (`sample.labels()` are the series' own, without the global ones).
    fn series(&mut self, labels: SeriesLabels<'_>, sample: &Sample<'_>);
}

/// About how many bytes a text exposition (Prometheus text or OpenMetrics) of `manager` takes, for
/// the encoders to reserve before the walk: an output `String` that starts empty then grows once
/// instead of doubling per power of two (for 100k counters about 7 MB of copies and fresh pages
/// less). Per sample its name, each label's name, quotes and an 8-byte value (values are unknown
/// until the walk) and an 8-byte sample value; a histogram or summary series has at least three
/// samples (`+Inf` or a quantile, `_count`, `_sum`). A quarter more on top: an estimate that
/// falls short makes the output double once more, to twice what it needs, as it would without
/// the estimate.
pub(crate) fn text_size_estimate(manager: &MetricsManager) -> usize {
    let mut bytes = 0;
    manager.visit(|family| {
        let samples = match family.kind() {
            MetricKind::Histogram | MetricKind::Summary => 3,
            _ => 1,
        };
        let labels: usize = family.label_names().map(|l| l.len() + 4 + 8).sum();
        bytes += family.series_count() * samples * (family.name().len() + labels + 8);
    });
    bytes + bytes / 4
}

/// Walks every family of `manager` that has series into `format`, adding `global` labels and
/// then the manager's global labels of other names.
pub(crate) fn walk(manager: &MetricsManager, global: &[(String, String)], format: &mut impl Format) {
    let merged: Vec<(String, String)>;
    let global = match manager.global_labels() {
        [] => global,
        own => {
            merged = global
                .iter()
                .chain(own.iter().filter(|(k, _)| !global.iter().any(|(g, _)| g == k)))
                .cloned()
                .collect();
            &merged
        }
    };
    manager.visit(|family| {
        if family.series_count() == 0 {
            return;
        }
        format.family(&FamilyMeta {
            name: family.name(),
            kind: family.kind(),
            help: family.help(),
            unit: family.unit().map(|u| u.as_str()),
        });
        family.for_each_sample(|sample| {
            let labels = SeriesLabels { sample, global };
            format.series(labels, sample);
        });
    });
}

/// A native histogram's bucket counts as both Prometheus protobuf formats (exposition and remote
/// write) carry them: each the difference from the previous bucket's count, the first from zero.
pub(crate) fn count_deltas(counts: &[u64]) -> impl Iterator<Item = i64> + '_ {
    let mut previous = 0i64;
    counts.iter().map(move |&c| {
        let c = c as i64;
        let delta = c.wrapping_sub(previous);
        previous = c;
        delta
    })
}

#[cfg(test)]
mod tests {
    use mmo_metrics::SeriesValue;
    use proptest::prelude::*;

    use super::fmt::{push_f64, push_sample_head, push_u64};
    use super::*;

    /// The sample lines of text 0.0.4 written the plain way: each series' labels formatted and
    /// escaped from [`SeriesLabels::iter`], every sample line from its pieces. The encoders render
    /// the constant parts of a label set once ([`fmt::SampleHead`]) and a histogram's bucket head
    /// once per series; their lines must be these, byte for byte.
    #[derive(Default)]
    struct Plain {
        out: String,
        name: String,
    }

    impl Format for Plain {
        fn family(&mut self, family: &FamilyMeta<'_>) {
            self.name = family.name.to_owned();
            if family.kind == MetricKind::Counter {
                self.name.push_str("_total");
            }
        }

        fn series(&mut self, labels: SeriesLabels<'_>, sample: &Sample<'_>) {
            // Escaped here without the encoders' helpers, so that they are checked too.
            let l = labels
                .iter()
                .map(|(k, v)| {
                    let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                    format!("{k}=\"{v}\"")
                })
                .collect::<Vec<_>>()
                .join(",");
            let out = &mut self.out;
            match sample.value() {
                SeriesValue::Counter(v) => {
                    push_sample_head(out, &self.name, "", &l, None);
                    push_u64(out, v);
                }
                SeriesValue::Gauge(v) => {
                    push_sample_head(out, &self.name, "", &l, None);
                    push_f64(out, v);
                }
                SeriesValue::Histogram {
                    bounds,
                    cumulative,
                    sum,
                    count,
                    ..
                } => {
                    for (i, c) in cumulative.iter().enumerate() {
                        let mut le = String::new();
                        match bounds.get(i) {
                            Some(b) => push_f64(&mut le, *b),
                            None => le.push_str("+Inf"),
                        }
                        push_sample_head(out, &self.name, "_bucket", &l, Some(("le", &le)));
                        push_u64(out, *c);
                        out.push('\n');
                    }
                    push_sample_head(out, &self.name, "_sum", &l, None);
                    push_f64(out, sum);
                    out.push('\n');
                    push_sample_head(out, &self.name, "_count", &l, None);
                    push_u64(out, count);
                }
                other => panic!("not in these registries: {other:?}"),
            }
            out.push('\n');
        }
    }

    fn sample_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    /// A registry of every label shape: no labels, one, several; values to escape (`\`, `"`, line
    /// feed, each and together, at either end), empty and multi-byte ones; a facade family with
    /// several label sets; global labels, one of them a name some series carry themselves.
    fn registry(values: &[String], global: bool) -> MetricsManager {
        let mut builder = MetricsManager::builder().series_limit(10_000);
        if global {
            builder = builder
                .add_global_label("zone", "global \"zone\"\n")
                .unwrap()
                .add_global_label("service", "gate\\way")
                .unwrap();
        }
        let m = builder.build();
        m.register_counter("plain_total", "No labels.", &[]).unwrap();
        m.increment_counter("plain_total", 7, &[]).unwrap();
        m.register_counter("one_total", "One label.", &["zone"]).unwrap();
        m.register_gauge("two", "Two labels.", &["a", "zone"]).unwrap();
        m.register_histogram("lat_seconds", "Histogram.", &["path"], &[0.5, 1.0])
            .unwrap();
        for (i, v) in values.iter().enumerate() {
            m.increment_counter("one_total", i as u64 + 1, &[v]).unwrap();
            m.set_gauge("two", i as f64 - 0.5, &[v, &format!("{v}{i}")]).unwrap();
            m.observe_histogram("lat_seconds", i as f64 * 0.3, &[v]).unwrap();
        }
        metrics::with_local_recorder(&m.recorder(), || {
            metrics::counter!("facade_total").increment(1);
            metrics::counter!("facade_total", "zone" => "n\"1").increment(2);
            metrics::counter!("facade_total", "method" => "GET", "code" => "2\\00").increment(3);
            metrics::counter!("facade_total", "zone" => "n2").increment(4);
        });
        m
    }

    fn check(values: &[String]) {
        for global in [false, true] {
            let m = registry(values, global);
            for exporter_global in [&[][..], &[("instance".to_owned(), "host:9\"1".to_owned())][..]] {
                let mut plain = Plain::default();
                walk(&m, exporter_global, &mut plain);
                let mut text = String::new();
                encode_text_with(&m, exporter_global, &mut text);
                assert_eq!(sample_lines(&text), sample_lines(&plain.out), "text 0.0.4");
                // OpenMetrics writes the same counter and gauge lines, and the same histogram
                // lines but for the canonical `le` values and its order of `_count` and `_sum`.
                let mut om = String::new();
                encode_openmetrics_with(&m, exporter_global, &mut om);
                let want: Vec<&str> = sample_lines(&plain.out)
                    .into_iter()
                    .filter(|l| !l.starts_with("lat_seconds"))
                    .collect();
                let got: Vec<&str> = sample_lines(&om)
                    .into_iter()
                    .filter(|l| !l.starts_with("lat_seconds"))
                    .collect();
                assert_eq!(got, want, "OpenMetrics");
                let buckets = |text: &str, le: &str| {
                    sample_lines(text)
                        .into_iter()
                        .filter(|l| l.starts_with("lat_seconds_bucket") && l.contains(le))
                        .map(|l| l.replace(le, "le=\"X\""))
                        .collect::<Vec<_>>()
                };
                for (text_le, om_le) in [
                    ("le=\"0.5\"", "le=\"0.5\""),
                    ("le=\"1\"", "le=\"1.0\""),
                    ("le=\"+Inf\"", "le=\"+Inf\""),
                ] {
                    assert_eq!(buckets(&om, om_le), buckets(&plain.out, text_le), "OpenMetrics {om_le}");
                }
            }
        }
    }

    #[test]
    fn label_values_to_escape() {
        let values: Vec<String> = [
            "plain",
            "",
            "a\\b",
            "say \"hi\"",
            "two\nlines",
            "\\\"\n",
            "\"",
            "end\\",
            "ünïcödé ✓",
            "ü\"\\\n€",
        ]
        .map(str::to_owned)
        .to_vec();
        check(&values);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_label_values(values in prop::collection::hash_set("(\\PC|[\\\\\"\n]){0,12}", 1..8)) {
            check(&values.into_iter().collect::<Vec<_>>());
        }
    }
}
