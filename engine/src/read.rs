//! The read API: [`MetricsManager::visit`] walks every family and series; encoders are built on it.
//!
//! Every value handed to a visitor is consistent for its series: counters never go down from one
//! visit to the next, histogram buckets are cumulative and the `+Inf` bucket equals `_count`.
//! Series are read one after another while recording goes on, so a visit is not one instant
//! across series (a counter read early may lag one read late); in that it is like every
//! Prometheus client.
//!
//! A family the `metrics` facade created may have series of several label sets
//! (`counter!("x", "method" => "GET")` and `counter!("x")`): [`FamilyView::for_each_series`] walks
//! them all, each series with its own label names ([`Labels`]), so an encoder writes one
//! `# HELP`/`# TYPE` block for all of them. The walk takes no lock.
//!
//! [`FamilyView::for_each_sample`] is the same walk with more per series ([`Sample`]): when the
//! series was created (OpenMetrics `_created`, protobuf `created_timestamp`) and its exemplars
//! (a counter's latest, a classic histogram's latest per bucket; see [`crate::exemplar`]), each
//! read only when asked for, so an encoder that shows neither pays nothing for them.

use std::fmt;
use std::sync::Arc;

use crate::exemplar::Exemplar;
use crate::registry::labels::split;
use crate::registry::{Family, Series};
use crate::storage::life::HasLife;
use crate::storage::native::NativeScratch;
use crate::{MetricKind, MetricsManager};

/// The value of one series at the time it was read.
///
/// New kinds of value may be added: match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum SeriesValue<'a> {
    /// A counter's total.
    Counter(u64),
    /// The total of a counter kept as `f64` (e.g. CPU seconds, set by a collector).
    FloatCounter(f64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram: classic, native, or both.
    ///
    /// A native-only histogram has no bounds and `cumulative == [count]`, so the text formats,
    /// which show the classic part, expose `_bucket{le="+Inf"}`, `_sum` and `_count`.
    Histogram {
        /// Upper bounds of the classic buckets, ascending, without `+Inf` (empty for a
        /// native-only histogram).
        bounds: &'a [f64],
        /// Cumulative counts: one per bound, then `+Inf` (equal to `count`).
        cumulative: &'a [u64],
        /// Sum of observations.
        sum: f64,
        /// Number of observations. With native buckets, `zero_count` plus every native bucket's
        /// count plus the NaN observations (which are in no native bucket and make `sum` NaN).
        count: u64,
        /// The native (exponential) buckets, for a histogram that has them.
        native: Option<NativeBuckets<'a>>,
    },
    /// A summary.
    Summary {
        /// The quantiles asked for, ascending.
        quantiles: &'a [f64],
        /// Their values over the window, NaN when the window is empty.
        values: &'a [f64],
        /// Sum of all observations.
        sum: f64,
        /// Number of all observations.
        count: u64,
    },
}

/// A native histogram's buckets, as Prometheus' protobuf exposition lays them out
/// (`io.prometheus.client.Histogram`'s `schema`, `zero_threshold`, `zero_count`, spans; its
/// `positive_delta`/`negative_delta` are the differences of consecutive counts here).
///
/// Bucket `i` of schema `s` holds the observations `v` with `2^((i-1)·2^-s) < |v| <= 2^(i·2^-s)`,
/// positive ones in the positive buckets, negative ones in the negative buckets (by their absolute
/// value), and those with `|v| <= zero_threshold` in the zero bucket.
///
/// A histogram with no observation has no span; client_golang exposes such a histogram with a
/// zero threshold of 0 with one empty positive span (`offset 0, length 0`) so that scrapers see
/// it as native: a protobuf encoder should do the same.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NativeBuckets<'a> {
    /// Resolution, `-4..=8`: `2^s` buckets per power of two (one bucket per `2^-s` powers of two
    /// for `s < 0`). It may be below the configured one: the resolution halves when more buckets
    /// than allowed are populated.
    pub schema: i32,
    /// Observations with `|v|` at most this count in the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// Where the positive buckets are (see [`BucketSpan`]).
    pub positive_spans: &'a [BucketSpan],
    /// Counts (not deltas) of the positive buckets the spans cover, in order; a span may cover up
    /// to two empty buckets (count 0) between populated ones.
    pub positive_counts: &'a [u64],
    /// Where the negative buckets are.
    pub negative_spans: &'a [BucketSpan],
    /// Counts of the negative buckets the spans cover, in order.
    pub negative_counts: &'a [u64],
}

/// A run of consecutive native buckets: Prometheus' `BucketSpan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpan {
    /// For the first span, the index of its first bucket; for the others, the number of empty
    /// buckets between the end of the previous span and this one's start.
    pub offset: i32,
    /// Number of buckets in the span.
    pub length: u32,
}

/// Label names and values of one series, in the order of its label set (a facade family may have
/// several, see [`FamilyView::label_sets`]).
#[derive(Clone, Copy)]
pub struct Labels<'a> {
    names: &'a [Box<str>],
    values: &'a [u8],
}

impl<'a> Labels<'a> {
    /// `(name, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.names
            .iter()
            .map(|n| &**n)
            .zip(split(self.values, self.names.len()))
    }

    /// Label names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.names.iter().map(|n| &**n)
    }

    /// Label values, in the order of [`Self::names`].
    pub fn values(&self) -> impl Iterator<Item = &'a str> + 'a {
        split(self.values, self.names.len())
    }

    /// Which label set of its family the series is of, for an encoder that renders the constant
    /// parts of a label set (its names) once: during one walk of a family, series of the same
    /// label set have the same id and series of different label sets different ids. Ids of
    /// different families or walks are not comparable.
    pub fn label_set_id(&self) -> usize {
        // Each label set of a family has its own names slice, alive for the walk; one with no
        // names (a dangling, shared address) is the family's only label set of zero names.
        self.names.as_ptr() as usize
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the series has no labels.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl fmt::Debug for Labels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// One metric family during a visit.
pub struct FamilyView<'a> {
    family: &'a Family,
    /// The name as exposed: the family's, with its unit suffix when asked for.
    name: &'a str,
    scratch: &'a mut Scratch,
}

#[derive(Default)]
struct Scratch {
    u64s: Vec<u64>,
    f64s: Vec<f64>,
    sketch: Vec<u64>,
    native: NativeScratch,
}

impl FamilyView<'_> {
    /// The family name as exposed; for a counter without `_total` (the samples carry `_total`).
    /// With [`crate::MetricsManagerBuilder::with_recommended_naming`], a family with a unit has
    /// it as a suffix (`rpc_latency_seconds`).
    pub fn name(&self) -> &str {
        self.name
    }

    /// The type.
    pub fn kind(&self) -> MetricKind {
        self.family.kind()
    }

    /// Help text, if any was given.
    pub fn help(&self) -> Option<Arc<str>> {
        self.family.help()
    }

    /// Unit given through `describe_*!`, if any.
    pub fn unit(&self) -> Option<metrics::Unit> {
        self.family.unit()
    }

    /// Label names of the family's first label set, in order (for a family registered through the
    /// manager, its only one).
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.family.label_names.iter().map(|s| &**s)
    }

    /// Every label set of the family, in the order they were first used: one for a family
    /// registered through the manager, one or more for a family the `metrics` facade created.
    pub fn label_sets(&self) -> impl Iterator<Item = impl Iterator<Item = &str>> {
        self.family.variants().map(|v| v.label_names.iter().map(|s| &**s))
    }

    /// Number of series when called, of every label set (series may be created meanwhile).
    pub fn series_count(&self) -> usize {
        self.family.variants().map(|v| v.series.load().len()).sum()
    }

    /// Calls `f` for each series, label set after label set ([`Self::label_sets`]), each in the
    /// order its series were created. Takes no lock: recording and the creation of series and label
    /// sets go on meanwhile, on other threads and inside `f`. Every series created before the call
    /// is visited; one created during it is visited whole or not at all.
    ///
    /// [`Self::for_each_sample`] with only labels and value.
    pub fn for_each_series(&mut self, mut f: impl FnMut(Labels<'_>, SeriesValue<'_>)) {
        self.for_each_sample(|s| f(s.labels(), s.value()));
    }

    /// Calls `f` for each series as [`Self::for_each_series`] does (same order, same guarantees),
    /// with its creation time and exemplars at hand ([`Sample`]).
    ///
    /// ```
    /// use mmo_metrics::{MetricsManager, SeriesValue};
    ///
    /// let m = MetricsManager::new();
    /// m.register_counter("logins", "Logins.", &["zone"])?;
    /// m.increment_counter_with_exemplar("logins", 2, &["north"], &[("trace_id", "abc")])?;
    /// m.visit(|family| {
    ///     family.for_each_sample(|s| {
    ///         assert_eq!(s.value(), SeriesValue::Counter(2));
    ///         assert!(s.created() > 1.7e9, "Unix seconds");
    ///         let e = s.exemplar().expect("recorded with one");
    ///         assert_eq!(e.labels().collect::<Vec<_>>(), [("trace_id", "abc")]);
    ///         assert_eq!(e.value(), 2.0);
    ///         assert!(e.timestamp() >= s.created());
    ///     })
    /// });
    /// # Ok::<(), mmo_metrics::MetricsError>(())
    /// ```
    pub fn for_each_sample(&mut self, mut f: impl FnMut(&Sample<'_>)) {
        for variant in self.family.variants() {
            Self::walk(variant, self.scratch, &mut f);
        }
    }

    fn walk(family: &Family, s: &mut Scratch, visit: &mut impl FnMut(&Sample<'_>)) {
        let names = &*family.label_names;
        let map = family.series.load_full();
        for (values, series) in map.iter() {
            if series.life().is_removed() {
                continue;
            }
            let labels = Labels { names, values };
            let mut f = |labels, value| visit(&Sample { labels, value, series });
            match series {
                Series::Counter(c) => f(labels, SeriesValue::Counter(c.get())),
                Series::Gauge(g) => f(labels, SeriesValue::Gauge(g.get())),
                Series::FloatCounter(g) => f(labels, SeriesValue::FloatCounter(g.get())),
                Series::Histogram(h) => {
                    let sum = h.snapshot(&mut s.u64s);
                    let count = *s.u64s.last().expect("+Inf bucket");
                    f(
                        labels,
                        SeriesValue::Histogram {
                            bounds: h.bounds(),
                            cumulative: &s.u64s,
                            sum,
                            count,
                            native: None,
                        },
                    );
                }
                Series::Native(h) => {
                    let r = h.snapshot(&mut s.native);
                    let n = &s.native;
                    f(
                        labels,
                        SeriesValue::Histogram {
                            bounds: h.bounds(),
                            cumulative: &n.cumulative,
                            sum: r.sum,
                            count: r.count,
                            native: Some(NativeBuckets {
                                schema: r.schema,
                                zero_threshold: h.zero_threshold(),
                                zero_count: r.zero_count,
                                positive_spans: &n.positive_spans,
                                positive_counts: &n.positive_counts,
                                negative_spans: &n.negative_spans,
                                negative_counts: &n.negative_counts,
                            }),
                        },
                    );
                }
                Series::Summary(q) => {
                    let (count, sum) = q.snapshot(&mut s.sketch, &mut s.f64s);
                    f(
                        labels,
                        SeriesValue::Summary {
                            quantiles: q.quantiles(),
                            values: &s.f64s,
                            sum,
                            count,
                        },
                    );
                }
            }
        }
    }
}

/// One series during a walk ([`FamilyView::for_each_sample`]): its labels and value, and on
/// demand when it was created and its exemplars.
pub struct Sample<'a> {
    labels: Labels<'a>,
    value: SeriesValue<'a>,
    series: &'a Series,
}

impl<'a> Sample<'a> {
    /// Label names and values.
    pub fn labels(&self) -> Labels<'a> {
        self.labels
    }

    /// The value, read when the walk reached the series.
    pub fn value(&self) -> SeriesValue<'a> {
        self.value
    }

    /// When the series was created: wall clock, seconds since the Unix epoch, to the millisecond
    /// (OpenMetrics `_created`, protobuf `created_timestamp`). A series removed (expired) and
    /// recorded into again is a new series, created then, from zero. Every kind has one; the
    /// formats show it for counters, histograms and summaries.
    pub fn created(&self) -> f64 {
        self.created_ms() as f64 / 1e3
    }

    /// When the series was created: wall clock, milliseconds since the Unix epoch.
    pub fn created_ms(&self) -> u64 {
        match self.series {
            Series::Counter(c) => c.created_ms(),
            Series::FloatCounter(g) | Series::Gauge(g) => g.created_ms(),
            Series::Histogram(h) => h.created_ms(),
            Series::Native(h) => h.created_ms(),
            Series::Summary(q) => q.created_ms(),
        }
    }

    /// A counter's latest exemplar (see [`crate::exemplar`]); `None` for a counter that has none,
    /// a float counter and every other kind. Read now: it may be newer than [`Self::value`].
    pub fn exemplar(&self) -> Option<Exemplar> {
        match self.series {
            Series::Counter(c) => c.exemplar(),
            _ => None,
        }
    }

    /// The latest exemplar of a classic histogram's bucket `i` (as in
    /// [`SeriesValue::Histogram`]'s `cumulative`: one per bound, the last, `i == bounds.len()`,
    /// `+Inf`), whose value lies in that bucket: above bound `i - 1`, at most bound `i`. `None`
    /// for a bucket without one, an `i` past the buckets and every other kind. Read now: it may
    /// be newer than [`Self::value`].
    pub fn bucket_exemplar(&self, i: usize) -> Option<Exemplar> {
        match self.series {
            Series::Histogram(h) => h.exemplar(i),
            Series::Native(h) => h.exemplar(i),
            _ => None,
        }
    }
}

impl fmt::Debug for Sample<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sample")
            .field("labels", &self.labels)
            .field("value", &self.value)
            .field("created", &self.created())
            .finish_non_exhaustive()
    }
}

impl MetricsManager {
    /// Calls `f` for each metric family, in name order (families with no series too).
    ///
    /// ```
    /// use mmo_metrics::{MetricsManager, SeriesValue};
    ///
    /// let m = MetricsManager::new();
    /// m.register_counter("hits", "Hits.", &["zone"]).unwrap();
    /// m.increment_counter("hits", 3, &["north"]).unwrap();
    /// let mut seen = Vec::new();
    /// m.visit(|family| {
    ///     let name = family.name().to_owned();
    ///     family.for_each_series(|labels, value| {
    ///         if let SeriesValue::Counter(v) = value {
    ///             seen.push((name.clone(), format!("{labels:?}"), v));
    ///         }
    ///     });
    /// });
    /// assert!(seen.contains(&("hits".to_owned(), r#"{"zone": "north"}"#.to_owned(), 3)));
    /// ```
    pub fn visit(&self, mut f: impl FnMut(&mut FamilyView<'_>)) {
        self.registry.sweep_due();
        let mut scratch = Scratch::default();
        let mut name = String::new();
        let suffixes = self.registry.config.unit_suffixes;
        for family in self.registry.all() {
            name.clear();
            name.push_str(&family.name);
            if let Some(unit) = family.unit().filter(|_| suffixes) {
                crate::compat::push_unit_suffix(&mut name, unit);
            }
            let mut view = FamilyView {
                family: &family,
                name: &name,
                scratch: &mut scratch,
            };
            f(&mut view);
        }
    }

    /// Labels every series is exposed with unless it has a label of that name itself
    /// ([`crate::MetricsManagerBuilder::add_global_label`]); encoders add them.
    pub fn global_labels(&self) -> &[(String, String)] {
        &self.registry.config.global_labels
    }
}
