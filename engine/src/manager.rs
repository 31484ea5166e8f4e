//! [`MetricsManager`]: registration and name-based recording, and typed handles.

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::time::Duration;

use crate::exemplar::{ExemplarLabels, ExemplarLabelsRef};
use crate::registry::labels::split;
use crate::registry::{self, check_buckets, check_summary, Config, HeldSeries, Registry, Series, Spec};
use crate::storage::counter::CounterCell;
use crate::storage::gauge::GaugeCell;
use crate::storage::histogram::HistogramCell;
use crate::storage::life::Held;
use crate::storage::native::{NativeCell, NativeConfig};
use crate::storage::summary::SummaryCell;
use crate::thread_cache;
use crate::{MetricKind, MetricsError};

/// Registers metrics and records them by name; cheap to clone (clones share one registry).
///
/// Recording by name (`increment_counter`, `set_gauge`, …) resolves the series through a small
/// per-thread cache, so a steady stream of the same names and label values takes no lock and does
/// not allocate; the first use of a label set on a thread takes the family's lock once. For the
/// hottest paths, resolve a handle once ([`MetricsManager::counter`] and friends) and keep it.
#[derive(Clone)]
pub struct MetricsManager {
    pub(crate) registry: Arc<Registry>,
}

impl std::fmt::Debug for MetricsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsManager")
            .field("shards", &self.registry.config.shards)
            .field("series_limit", &self.registry.config.series_limit)
            .finish_non_exhaustive()
    }
}

impl Default for MetricsManager {
    fn default() -> Self {
        Self::new()
    }
}

/// Settings for a [`MetricsManager`].
#[derive(Clone, Debug)]
pub struct MetricsManagerBuilder {
    config: Config,
}

impl Default for MetricsManagerBuilder {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get() as u32);
        Self {
            config: Config {
                shards: (cores * 2).clamp(4, 64),
                series_limit: 10_000,
                facade_family_limit: 10_000,
                summary_max_age: Duration::from_secs(600),
                summary_age_buckets: 5,
                facade_histograms: crate::compat::FacadeHistograms::new(),
                global_labels: Vec::new(),
                unit_suffixes: false,
                idle_timeouts: [None; 4],
            },
        }
    }
}

impl MetricsManagerBuilder {
    /// Shards per counter, histogram and summary series (default: twice the cores, 4 to 64). Three
    /// quarters of them are exclusive to one thread each (written without `lock`-prefixed
    /// instructions); threads beyond those share the rest. A counter series costs 8 bytes for each
    /// shard that writes it (the cells of shards no thread writes are never backed by memory).
    pub fn shards(mut self, shards: u32) -> Self {
        self.config.shards = shards.clamp(1, crate::shard::MAX_SLOTS);
        self
    }

    /// Series per metric before new label sets fold into its overflow series (default 10,000).
    pub fn series_limit(mut self, limit: usize) -> Self {
        self.config.series_limit = limit.max(1);
        self
    }

    /// Families the `metrics` facade may create (default 10,000, like the series limit: enough for
    /// every metric a game server and its crates define, a few hundred usually, while a name built
    /// from data, such as a player id, stops there at a few MiB instead of growing without end).
    ///
    /// Past it, a facade call with a name not registered yet lands in one overflow family per
    /// kind: the counter `mmo_metrics_facade_overflow_counter_total`, the gauge
    /// `mmo_metrics_facade_overflow_gauge`, the histogram `mmo_metrics_facade_overflow_histogram`
    /// (default buckets). Each such name is counted in
    /// `mmo_metrics_facade_family_overflow_total{kind}`, and reaching the limit is logged once.
    /// Families registered through the manager (`register_counter` and the others), and facade
    /// calls on them, do not count against it. 0 sends every new facade name to the overflow.
    pub fn facade_family_limit(mut self, limit: usize) -> Self {
        self.config.facade_family_limit = limit;
        self
    }

    /// The sliding window of summaries registered without one (default 10 minutes in 5 buckets).
    pub fn summary_window(mut self, max_age: Duration, age_buckets: u32) -> Self {
        self.config.summary_max_age = max_age;
        self.config.summary_age_buckets = age_buckets.max(1);
        self
    }

    /// Buckets of every `metrics` facade histogram that no [`Self::set_buckets_for_metric`] matcher
    /// matches (default [`crate::DEFAULT_BUCKETS`]), as metrics-exporter-prometheus'
    /// `PrometheusBuilder::set_buckets`; like it, this renders them as histograms (it turns
    /// [`Self::histograms_as_summaries`] off; the later call wins). Bounds must be finite and
    /// strictly increasing; a trailing `+Inf` is dropped.
    pub fn set_buckets(mut self, buckets: &[f64]) -> Result<Self, MetricsError> {
        self.config.facade_histograms.buckets = builder_buckets("every facade histogram", buckets)?;
        self.config.facade_histograms.summaries = false;
        Ok(self)
    }

    /// Buckets of the `metrics` facade histograms whose name `matcher` matches, as
    /// `PrometheusBuilder::set_buckets_for_metric`. The pattern is sanitised like the names (see
    /// [`crate::sanitize_metric_name`]). A matched histogram is a histogram with these buckets
    /// whatever [`Self::histograms_as_summaries`] says; [`Matcher`](crate::Matcher) says which of
    /// several matchers wins. Applies to families the facade creates; a histogram registered
    /// through [`MetricsManager::register_histogram`] keeps its own buckets.
    pub fn set_buckets_for_metric(mut self, matcher: crate::Matcher, buckets: &[f64]) -> Result<Self, MetricsError> {
        let b = builder_buckets(&format!("matching {matcher:?}"), buckets)?;
        crate::compat::set_matcher(&mut self.config.facade_histograms.overrides, matcher, b);
        Ok(self)
    }

    /// Makes the `metrics` facade histograms whose name `matcher` matches native histograms (see
    /// [`NativeConfig`]), with the same precedence among native matchers as
    /// [`Self::set_buckets_for_metric`]'s. A matched histogram that a
    /// [`Self::set_buckets_for_metric`] matcher matches too has those classic buckets as well
    /// (classic + native, as client_golang with both configured); otherwise it has no classic
    /// buckets (the text formats show its `_bucket{le="+Inf"}`, `_sum`, `_count`), whatever
    /// [`Self::set_buckets`] and [`Self::histograms_as_summaries`] say. Applies to families the
    /// facade creates; a histogram registered through the manager keeps its own definition.
    ///
    /// ```
    /// use mmo_metrics::{Matcher, MetricsManager, NativeConfig};
    ///
    /// let m = MetricsManager::builder()
    ///     .set_native_histogram_for_metric(Matcher::Suffix("_seconds".into()), NativeConfig::default())?
    ///     .set_buckets_for_metric(Matcher::Full("db_query_seconds".into()), &[0.01, 0.1, 1.0])?
    ///     .build();
    /// # let _ = m;
    /// # Ok::<(), mmo_metrics::MetricsError>(())
    /// ```
    pub fn set_native_histogram_for_metric(
        mut self,
        matcher: crate::Matcher,
        config: NativeConfig,
    ) -> Result<Self, MetricsError> {
        let spec = config.check(&format!("matching {matcher:?}"), None)?;
        crate::compat::set_matcher(&mut self.config.facade_histograms.native, matcher, Arc::new(spec));
        Ok(self)
    }

    /// Whether a `metrics` facade histogram that no [`Self::set_buckets_for_metric`] matcher
    /// matches is exposed as a summary (quantiles over the [`Self::summary_window`]) instead of a
    /// histogram.
    ///
    /// Off by default: such a histogram is a classic histogram with [`Self::set_buckets`]'s buckets
    /// (default [`crate::DEFAULT_BUCKETS`]). Histogram buckets add up across a fleet of game
    /// servers (`histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))`), summary quantiles do
    /// not; and a histogram records with one bucket increment. metrics-exporter-prometheus renders
    /// such histograms as summaries (its default): turn this on, with
    /// `summary_window(Duration::from_secs(60), 3)` for its window, to keep the `{quantile=...}`
    /// series its dashboards and alerts query.
    pub fn histograms_as_summaries(mut self, on: bool) -> Self {
        self.config.facade_histograms.summaries = on;
        self
    }

    /// Quantiles of the facade histograms exposed as summaries (see
    /// [`Self::histograms_as_summaries`]; default [`crate::FACADE_SUMMARY_QUANTILES`], those of
    /// metrics-exporter-prometheus), as `PrometheusBuilder::set_quantiles`. Each in `[0, 1]`,
    /// strictly increasing, at least one.
    pub fn set_quantiles(mut self, quantiles: &[f64]) -> Result<Self, MetricsError> {
        if quantiles.is_empty() {
            return Err(MetricsError::InvalidSummary {
                metric: "every facade summary".into(),
                found: "[]".into(),
                reason: "at least one quantile is needed".into(),
            });
        }
        let c = &self.config;
        let spec = registry::check_summary(
            "every facade summary",
            quantiles,
            c.summary_max_age,
            c.summary_age_buckets,
        )?;
        self.config.facade_histograms.quantiles = spec.quantiles;
        Ok(self)
    }

    /// A label every series is exposed with unless it has a label of that name itself, as
    /// `PrometheusBuilder::add_global_label` (a later value for a name replaces the earlier one).
    /// The exporter adds these to its own (`ExporterBuilder::global_label`, which win on a clash).
    /// The name must be a valid label name, not `le` or `quantile` (exposition labels of
    /// histograms and summaries).
    pub fn add_global_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Result<Self, MetricsError> {
        let (name, value) = (name.into(), value.into());
        registry::names::check_label_names("global labels", &[&name], None)?;
        if name == "le" || name == "quantile" {
            return Err(MetricsError::InvalidLabelName {
                metric: "global labels".into(),
                label: name,
                reason: "the exposition gives histogram (`le`) and summary (`quantile`) samples this label".into(),
            });
        }
        let labels = &mut self.config.global_labels;
        match labels.iter_mut().find(|(n, _)| *n == name) {
            Some(l) => l.1 = value,
            None => labels.push((name, value)),
        }
        Ok(self)
    }

    /// Whether a family described with a unit (`describe_histogram!(name, Unit::Seconds, ..)`)
    /// is exposed with the unit as a name suffix, `_seconds`, `_bytes`, `_ratio` for percent,
    /// none for a count (`rpc_latency` → `rpc_latency_seconds_bucket`), as
    /// `PrometheusBuilder::with_recommended_naming`. Off by default. Counters always end in
    /// `_total` here, whatever this says (metrics-exporter-prometheus adds it only with this on).
    /// The suffix goes before a trailing `_total`, `_count`, `_sum` or `_bucket` of the name and is
    /// not repeated when the name already ends with it. The text format 0.0.4 has no `# UNIT`
    /// line: without this the unit is not exposed.
    pub fn with_recommended_naming(mut self, on: bool) -> Self {
        self.config.unit_suffixes = on;
        self
    }

    /// Removes series of these kinds that nobody held for `timeout` (default: none expire), as
    /// metrics-exporter-prometheus' `idle_timeout` does: the zone, match or dungeon instance that
    /// ended takes its series with it, and their places under the series limit are given back.
    ///
    /// A series is held while a handle to it exists ([`MetricsManager::counter`] and the others,
    /// a `metrics` handle a caller keeps) and while a thread records into it through the facade
    /// or the by-name API (each thread's cache holds what it used since the last sweep). So
    /// nothing recorded is ever lost: a series goes only when nobody can record into it, and one
    /// recorded into again comes back, from zero (a counter reset to Prometheus). Idle series are
    /// removed by the sweep that runs before a read of the registry (every scrape; at most every
    /// 100 ms), or by [`MetricsManager::expire_idle`]. Idle time counts from when the last holder let go (a
    /// thread's cache lets go at the thread's first facade or by-name call after a sweep, or when
    /// the thread exits); a series goes at the first sweep past `timeout` after that.
    ///
    /// `MetricKind::Histogram` covers facade histograms rendered as summaries too. Timeouts are
    /// kept in milliseconds, rounded up, from 1 ms to 24.8 days (shorter and longer ones are
    /// those).
    ///
    /// ```
    /// use std::time::Duration;
    /// use mmo_metrics::{MetricKind, MetricsManager};
    ///
    /// let m = MetricsManager::builder()
    ///     .idle_timeout([MetricKind::Counter, MetricKind::Gauge], Duration::from_secs(300))
    ///     .build();
    /// # let _ = m;
    /// ```
    pub fn idle_timeout(mut self, kinds: impl IntoIterator<Item = MetricKind>, timeout: Duration) -> Self {
        for k in kinds {
            self.config.idle_timeouts[k.index()] = Some(timeout);
            if k == MetricKind::Histogram {
                self.config.idle_timeouts[MetricKind::Summary.index()] = Some(timeout);
            }
        }
        self
    }

    /// The settings, for the registry's unit tests.
    #[cfg(test)]
    pub(crate) fn config(self) -> Config {
        self.config
    }

    /// Builds the manager.
    pub fn build(self) -> MetricsManager {
        MetricsManager {
            registry: Registry::new(self.config),
        }
    }
}

/// Buckets given to a builder call: checked, and not empty.
fn builder_buckets(what: &str, buckets: &[f64]) -> Result<Arc<crate::storage::histogram::Buckets>, MetricsError> {
    if buckets.is_empty() {
        return Err(MetricsError::InvalidBuckets {
            metric: what.to_owned(),
            found: "[]".into(),
            reason: "at least one bound is needed".into(),
        });
    }
    check_buckets(what, buckets)
}

/// A resolved counter series: `increment` is one add to the current thread's shard.
#[derive(Clone)]
pub struct CounterHandle(pub(crate) Held<CounterCell>);

impl CounterHandle {
    /// Adds `v`.
    #[inline]
    pub fn increment(&self, v: u64) {
        self.0.add(v);
    }

    /// Adds `v` and makes an exemplar of `labels` and `v` the series' latest (see
    /// [`crate::exemplar`]), stamped with the wall clock. Labels that are refused (more than
    /// [`crate::MAX_EXEMPLAR_LABELS_CHARS`] characters together, an invalid name) are an error and
    /// nothing is added. [`Self::increment`] stays as fast as without exemplars: the exemplar path
    /// (checking the labels, one allocation for them and one for the exemplar) is this one's.
    ///
    /// ```
    /// use mmo_metrics::MetricsManager;
    ///
    /// let m = MetricsManager::new();
    /// m.register_counter("trades", "Trades.", &[])?;
    /// let trades = m.counter("trades", &[])?;
    /// trades.increment_with_exemplar(1, &[("trace_id", "abc")])?;
    /// let long = "x".repeat(200);
    /// let err = trades.increment_with_exemplar(1, &[("trace_id", &long)]).unwrap_err();
    /// assert!(err.to_string().starts_with("exemplar labels [trace_id] are 208 UTF-8 characters long"));
    /// assert_eq!(trades.get(), 1);
    /// # Ok::<(), mmo_metrics::MetricsError>(())
    /// ```
    pub fn increment_with_exemplar(&self, v: u64, labels: &[(&str, &str)]) -> Result<(), MetricsError> {
        ExemplarLabels::check(labels)?;
        self.0.add_with_exemplar(v, ExemplarLabelsRef::Pairs(labels));
        Ok(())
    }

    /// The current total (sum over shards).
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A resolved gauge series.
#[derive(Clone)]
pub struct GaugeHandle(pub(crate) Held<GaugeCell>);

impl GaugeHandle {
    /// Sets the value.
    #[inline]
    pub fn set(&self, v: f64) {
        self.0.set(v);
    }

    /// Adds `delta` (negative to subtract).
    #[inline]
    pub fn add(&self, delta: f64) {
        self.0.add(delta);
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        self.0.get()
    }
}

/// A resolved histogram series: classic, native, or both.
#[derive(Clone)]
pub struct HistogramHandle(pub(crate) HistogramSeries);

/// The cells of a histogram series, of either storage.
#[derive(Clone)]
pub(crate) enum HistogramSeries {
    Classic(Held<HistogramCell>),
    Native(Held<NativeCell>),
}

impl HistogramHandle {
    /// Records one observation.
    #[inline]
    pub fn record(&self, v: f64) {
        match &self.0 {
            HistogramSeries::Classic(h) => h.record(v),
            HistogramSeries::Native(h) => h.record(v),
        }
    }

    /// Records `n` observations of `v`.
    pub fn record_many(&self, v: f64, n: u64) {
        match &self.0 {
            HistogramSeries::Classic(h) => h.record_n(v, n),
            HistogramSeries::Native(h) => h.record_n(v, n),
        }
    }

    /// Records many observations (a [`crate::TickBatch`] flush).
    pub(crate) fn record_slice(&self, values: &[f64]) {
        match &self.0 {
            HistogramSeries::Classic(h) => h.record_slice(values),
            HistogramSeries::Native(h) => h.record_slice(values),
        }
    }

    /// Records `v` and makes an exemplar of `labels` and `v` the latest of `v`'s bucket (see
    /// [`crate::exemplar`]), stamped with the wall clock. Labels that are refused (more than
    /// [`crate::MAX_EXEMPLAR_LABELS_CHARS`] characters together, an invalid name) are an error and
    /// nothing is recorded. [`Self::record`] stays as fast as without exemplars.
    pub fn record_with_exemplar(&self, v: f64, labels: &[(&str, &str)]) -> Result<(), MetricsError> {
        ExemplarLabels::check(labels)?;
        let labels = ExemplarLabelsRef::Pairs(labels);
        match &self.0 {
            HistogramSeries::Classic(h) => h.record_with_exemplar(v, labels),
            HistogramSeries::Native(h) => h.record_with_exemplar(v, labels),
        }
        Ok(())
    }
}

/// A resolved summary series.
#[derive(Clone)]
pub struct SummaryHandle(pub(crate) Held<SummaryCell>);

impl SummaryHandle {
    /// Records one observation.
    #[inline]
    pub fn observe(&self, v: f64) {
        self.0.observe(v);
    }
}

impl MetricsManager {
    /// A manager with the default settings.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Settings for a manager.
    pub fn builder() -> MetricsManagerBuilder {
        MetricsManagerBuilder::default()
    }

    /// Shards per series.
    pub fn shards(&self) -> u32 {
        self.registry.layout.shards
    }

    /// Series per metric before the overflow series.
    pub fn series_limit(&self) -> usize {
        self.registry.config.series_limit
    }

    /// Families the `metrics` facade may create.
    pub fn facade_family_limit(&self) -> usize {
        self.registry.config.facade_family_limit
    }

    /// Registers a counter. Registering again with the same definition is a no-op (a non-empty
    /// help replaces the old one). `name` may end in `_total`; it is exposed with `_total` either way.
    pub fn register_counter(&self, name: &str, help: &str, labels: &[&str]) -> Result<(), MetricsError> {
        self.registry.register(name, help, labels, Spec::Counter).map(drop)
    }

    /// Registers a counter whose total is an `f64` set by a collector ([`Self::set_float_counter`]),
    /// such as `process_cpu_seconds_total`. Exposed like any counter.
    pub fn register_float_counter(&self, name: &str, help: &str, labels: &[&str]) -> Result<(), MetricsError> {
        self.registry.register(name, help, labels, Spec::FloatCounter).map(drop)
    }

    /// Registers a gauge.
    pub fn register_gauge(&self, name: &str, help: &str, labels: &[&str]) -> Result<(), MetricsError> {
        self.registry.register(name, help, labels, Spec::Gauge).map(drop)
    }

    /// Registers a histogram with these upper bounds (empty: Prometheus' default buckets).
    pub fn register_histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<(), MetricsError> {
        let b = check_buckets(name, buckets)?;
        self.registry.register(name, help, labels, Spec::Histogram(b)).map(drop)
    }

    /// Registers a native histogram (exponential buckets, see [`NativeConfig`]) without classic
    /// buckets. Recorded like any histogram ([`Self::observe_histogram`], [`Self::histogram`]).
    /// The protobuf exposition carries its native buckets; the text formats, which have no
    /// native histograms, show its `_bucket{le="+Inf"}`, `_sum` and `_count`.
    ///
    /// ```
    /// use mmo_metrics::{MetricsManager, NativeConfig, SeriesValue};
    ///
    /// let m = MetricsManager::new();
    /// m.register_native_histogram("rpc_seconds", "RPC latency.", &[], NativeConfig::default())?;
    /// for v in [0.25, 0.3, 1.0, -2.0, 0.0] {
    ///     m.observe_histogram("rpc_seconds", v, &[])?;
    /// }
    /// let mut seen = 0;
    /// m.visit(|f| f.for_each_series(|_, v| {
    ///     if let SeriesValue::Histogram { count, cumulative, native: Some(n), .. } = v {
    ///         seen += 1;
    ///         assert_eq!((count, cumulative), (5, &[5][..]));
    ///         assert_eq!((n.schema, n.zero_count), (3, 1));
    ///         // 0.25 = 2^(-16/8): key -16; 0.3: key -13; 1.0: key 0.
    ///         assert_eq!(n.positive_counts.iter().sum::<u64>(), 3);
    ///         assert_eq!(n.positive_spans[0].offset, -16);
    ///         assert_eq!(n.negative_counts, &[1]); // |-2.0| = 2^(8/8): key 8
    ///         assert_eq!(n.negative_spans[0].offset, 8);
    ///     }
    /// }));
    /// assert_eq!(seen, 1);
    /// # Ok::<(), mmo_metrics::MetricsError>(())
    /// ```
    pub fn register_native_histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        config: NativeConfig,
    ) -> Result<(), MetricsError> {
        let spec = config.check(name, None)?;
        self.registry
            .register(name, help, labels, Spec::Native(Arc::new(spec)))
            .map(drop)
    }

    /// Registers a histogram with classic buckets (empty: Prometheus' default buckets) and native
    /// buckets, as client_golang does when both are configured: every observation counts in
    /// both; the text formats show the classic part, the protobuf exposition both.
    pub fn register_histogram_with_native(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
        config: NativeConfig,
    ) -> Result<(), MetricsError> {
        let spec = config.check(name, Some(check_buckets(name, buckets)?))?;
        self.registry
            .register(name, help, labels, Spec::Native(Arc::new(spec)))
            .map(drop)
    }

    /// Registers a summary with these quantiles (empty: 0.5, 0.9, 0.95, 0.99) over the manager's
    /// default window.
    pub fn register_summary(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        quantiles: &[f64],
    ) -> Result<(), MetricsError> {
        let c = &self.registry.config;
        self.register_summary_with_window(name, help, labels, quantiles, c.summary_max_age, c.summary_age_buckets)
    }

    /// Registers a summary whose quantiles cover the last `max_age`, kept in `age_buckets` windows.
    pub fn register_summary_with_window(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        quantiles: &[f64],
        max_age: Duration,
        age_buckets: u32,
    ) -> Result<(), MetricsError> {
        let spec = check_summary(name, quantiles, max_age, age_buckets)?;
        self.registry
            .register(name, help, labels, Spec::Summary(spec))
            .map(drop)
    }

    fn resolve(&self, kind: MetricKind, name: &str, values: &[&str]) -> Result<HeldSeries, MetricsError> {
        let family = self.registry.lookup(kind, name)?;
        self.registry.series(&family, values)
    }

    /// Removes the series of metric `name` with these label values (in the metric's label order):
    /// at once if nobody holds it, else as soon as its last holder lets go (a handle dropped, or a
    /// thread's cache letting go at its next facade or by-name call); recording into it before
    /// that keeps it. `false` when there is no such series.
    pub fn remove_series(&self, name: &str, values: &[&str]) -> Result<bool, MetricsError> {
        let family = self.family(name)?;
        if values.len() != family.label_names.len() {
            return Err(family.arity_error(values));
        }
        let mut want = Vec::new();
        registry::labels::encode(values, &mut want);
        Ok(self.registry.remove(&family, |v| v == want.as_slice()) > 0)
    }

    /// Removes every series of metric `name` whose labels have the given values (for example every
    /// series of a zone that shut down: `remove_matching("zone_players", &[("zone", "7")])`), as
    /// [`Self::remove_series`] does for one. Returns how many series matched. A label the metric
    /// does not have is an error.
    ///
    /// ```
    /// use mmo_metrics::MetricsManager;
    ///
    /// let m = MetricsManager::new();
    /// m.register_gauge("zone_players", "Players per zone and faction.", &["zone", "faction"])?;
    /// m.gauge("zone_players", &["7", "red"])?.set(40.0);
    /// m.gauge("zone_players", &["8", "red"])?.set(12.0);
    /// // Zone 7 shut down: its series go (the handle above was dropped, nobody holds it).
    /// assert_eq!(m.remove_matching("zone_players", &[("zone", "7")])?, 1);
    /// assert!(!mmo_metrics_text(&m).contains("zone=\"7\""));
    /// # fn mmo_metrics_text(m: &MetricsManager) -> String {
    /// #     let mut out = String::new();
    /// #     m.visit(|f| f.for_each_series(|l, _| out.push_str(&format!("{:?}\n", l.iter().collect::<Vec<_>>()))));
    /// #     out.replace("(\"zone\", \"7\")", "zone=\"7\"")
    /// # }
    /// # Ok::<(), mmo_metrics::MetricsError>(())
    /// ```
    pub fn remove_matching(&self, name: &str, labels: &[(&str, &str)]) -> Result<usize, MetricsError> {
        let family = self.family(name)?;
        let mut wanted = Vec::with_capacity(labels.len());
        for (label, value) in labels {
            match family.label_names.iter().position(|n| &**n == *label) {
                Some(i) => wanted.push((i, *value)),
                None => {
                    return Err(MetricsError::DefinitionConflict {
                        metric: name.to_owned(),
                        registered: format!("labels [{}]", family.label_names.join(", ")),
                        requested: format!("a match on label `{label}`"),
                    })
                }
            }
        }
        let n = family.label_names.len();
        Ok(self.registry.remove(&family, |v| {
            let values: Vec<&str> = split(v, n).collect();
            wanted.iter().all(|(i, want)| values[*i] == *want)
        }))
    }

    /// Runs the sweep now: removes the series idle past their kind's timeout
    /// ([`MetricsManagerBuilder::idle_timeout`]) and those asked to be removed that nobody holds
    /// any more. A read of the registry ([`Self::visit`], so every scrape) runs it first when the
    /// last sweep is 100 ms old or more; call this where nothing scrapes. Returns the number of
    /// series removed.
    pub fn expire_idle(&self) -> usize {
        self.registry.sweep()
    }

    /// The family named `name`, of any kind.
    fn family(&self, name: &str) -> Result<Arc<registry::Family>, MetricsError> {
        [
            MetricKind::Counter,
            MetricKind::Gauge,
            MetricKind::Histogram,
            MetricKind::Summary,
        ]
        .into_iter()
        .find_map(|k| self.registry.find(k, name).filter(|f| f.kind() == k))
        .ok_or_else(|| MetricsError::UnknownMetric {
            metric: name.to_owned(),
        })
    }

    /// A handle to a counter series (registered with [`Self::register_counter`]).
    pub fn counter(&self, name: &str, values: &[&str]) -> Result<CounterHandle, MetricsError> {
        match self.resolve(MetricKind::Counter, name, values)?.try_map(|s| match s {
            Series::Counter(c) => Ok(c),
            s => Err(s),
        }) {
            Ok(c) => Ok(CounterHandle(c)),
            Err(_) => Err(MetricsError::DefinitionConflict {
                metric: name.to_owned(),
                registered: "a float counter (use set_float_counter)".into(),
                requested: "an integer counter handle".into(),
            }),
        }
    }

    /// A handle to a gauge series.
    pub fn gauge(&self, name: &str, values: &[&str]) -> Result<GaugeHandle, MetricsError> {
        match self.resolve(MetricKind::Gauge, name, values)?.try_map(|s| match s {
            Series::Gauge(x) => Ok(x),
            s => Err(s),
        }) {
            Ok(x) => Ok(GaugeHandle(x)),
            Err(_) => unreachable!("a gauge family holds gauge series"),
        }
    }

    /// A handle to a histogram series.
    pub fn histogram(&self, name: &str, values: &[&str]) -> Result<HistogramHandle, MetricsError> {
        match histogram_series(self.resolve(MetricKind::Histogram, name, values)?) {
            Ok(x) => Ok(HistogramHandle(x)),
            Err(_) => unreachable!("a histogram family holds histogram series"),
        }
    }

    /// A handle to a summary series.
    pub fn summary(&self, name: &str, values: &[&str]) -> Result<SummaryHandle, MetricsError> {
        match self.resolve(MetricKind::Summary, name, values)?.try_map(|s| match s {
            Series::Summary(x) => Ok(x),
            s => Err(s),
        }) {
            Ok(x) => Ok(SummaryHandle(x)),
            Err(_) => unreachable!("a summary family holds summary series"),
        }
    }

    /// Adds `value` to a counter series.
    pub fn increment_counter(&self, name: &str, value: u64, values: &[&str]) -> Result<(), MetricsError> {
        self.with_series(MetricKind::Counter, name, values, |s| match s {
            Series::Counter(c) => c.add(value),
            Series::FloatCounter(g) => g.add(value as f64),
            _ => {}
        })
    }

    /// Adds `value` to a counter series and makes an exemplar of `exemplar` (label pairs such as
    /// `("trace_id", id)`) and `value` its latest, as [`CounterHandle::increment_with_exemplar`]
    /// does. Refused exemplar labels are an error naming the metric, and nothing is added; so is a
    /// counter registered with [`Self::register_float_counter`], which keeps no exemplars.
    pub fn increment_counter_with_exemplar(
        &self,
        name: &str,
        value: u64,
        values: &[&str],
        exemplar: &[(&str, &str)],
    ) -> Result<(), MetricsError> {
        ExemplarLabels::check(exemplar).map_err(|e| e.for_metric(name))?;
        let labels = ExemplarLabelsRef::Pairs(exemplar);
        let mut float = false;
        self.with_series(MetricKind::Counter, name, values, |s| match s {
            Series::Counter(c) => c.add_with_exemplar(value, labels),
            _ => float = true,
        })?;
        if float {
            return Err(MetricsError::DefinitionConflict {
                metric: name.to_owned(),
                registered: "a float counter (set by a collector, without exemplars)".into(),
                requested: "an increment with an exemplar".into(),
            });
        }
        Ok(())
    }

    /// Raises a counter series to `total` if it is larger: for counters kept elsewhere and read by
    /// a collector (CPU seconds, bytes from the OS). A counter never goes down, so a smaller
    /// `total` is ignored. Works on counters from [`Self::register_float_counter`] (exact `f64`)
    /// and [`Self::register_counter`] (truncated to `u64`).
    pub fn set_float_counter(&self, name: &str, total: f64, values: &[&str]) -> Result<(), MetricsError> {
        self.with_series(MetricKind::Counter, name, values, |s| match s {
            Series::FloatCounter(g) => g.raise(total),
            Series::Counter(c) if total.is_finite() && total >= 0.0 => {
                c.absolute_at(crate::shard::current(c.layout()), total as u64)
            }
            _ => {}
        })
    }

    /// Sets a gauge series.
    pub fn set_gauge(&self, name: &str, value: f64, values: &[&str]) -> Result<(), MetricsError> {
        self.with_series(MetricKind::Gauge, name, values, |s| {
            if let Series::Gauge(g) = s {
                g.set(value);
            }
        })
    }

    /// Adds `delta` to a gauge series (negative to subtract).
    pub fn add_gauge(&self, name: &str, delta: f64, values: &[&str]) -> Result<(), MetricsError> {
        self.with_series(MetricKind::Gauge, name, values, |s| {
            if let Series::Gauge(g) = s {
                g.add(delta);
            }
        })
    }

    /// Records an observation in a histogram series.
    pub fn observe_histogram(&self, name: &str, value: f64, values: &[&str]) -> Result<(), MetricsError> {
        self.with_series(MetricKind::Histogram, name, values, |s| match s {
            Series::Histogram(h) => h.record(value),
            Series::Native(h) => h.record(value),
            _ => {}
        })
    }

    /// Records an observation in a histogram series and makes an exemplar of `exemplar` (label
    /// pairs such as `("trace_id", id)`) and `value` the latest of its bucket, as
    /// [`HistogramHandle::record_with_exemplar`] does. Refused exemplar labels are an error naming
    /// the metric, and nothing is recorded.
    pub fn observe_histogram_with_exemplar(
        &self,
        name: &str,
        value: f64,
        values: &[&str],
        exemplar: &[(&str, &str)],
    ) -> Result<(), MetricsError> {
        ExemplarLabels::check(exemplar).map_err(|e| e.for_metric(name))?;
        let labels = ExemplarLabelsRef::Pairs(exemplar);
        self.with_series(MetricKind::Histogram, name, values, |s| match s {
            Series::Histogram(h) => h.record_with_exemplar(value, labels),
            Series::Native(h) => h.record_with_exemplar(value, labels),
            _ => {}
        })
    }

    /// Records an observation in a summary series.
    pub fn observe_summary(&self, name: &str, value: f64, values: &[&str]) -> Result<(), MetricsError> {
        self.with_series(MetricKind::Summary, name, values, |s| {
            if let Series::Summary(h) = s {
                h.observe(value);
            }
        })
    }

    fn with_series(
        &self,
        kind: MetricKind,
        name: &str,
        values: &[&str],
        f: impl FnOnce(&Series),
    ) -> Result<(), MetricsError> {
        let id = self.registry.id;
        let hash = key_hash(name, values);
        let epoch = thread_cache::cache_epoch();
        let mut f = Some(f);
        let hit = CACHE
            .try_with(|c| {
                // SAFETY: the only reference to this thread's cache while it lives; nothing
                // in this block reaches the cache again (`matches` compares bytes, `f` records
                // into cells and calls no code of the caller's).
                let c = unsafe { &*c.get() };
                // Every entry is of the table's epoch (an insert at another first drops them all).
                if c.table.epoch() != epoch {
                    return false;
                }
                let arena = &c.arena;
                let is = |e: &Entry| e.matches(arena, id, kind, hash, name, values);
                // The home slot first, inline: where a key of a working set below 3/4 of the
                // table's slots mostly is; the probe loop past it.
                match c.table.home(hash).filter(|e| is(e)).or_else(|| c.table.find(hash, is)) {
                    Some(e) => {
                        if let Some(f) = f.take() {
                            f(&e.series);
                        }
                        true
                    }
                    None => false,
                }
            })
            .unwrap_or(false);
        match f {
            Some(f) if !hit => self.with_series_miss(kind, name, values, hash, epoch, f),
            _ => Ok(()),
        }
    }

    /// [`Self::with_series`] past a cache hit: resolves the series (registering nothing: the
    /// family must exist), records, and caches it. Out of line, so the hit path stays small.
    #[inline(never)]
    fn with_series_miss(
        &self,
        kind: MetricKind,
        name: &str,
        values: &[&str],
        hash: u64,
        epoch: u64,
        f: impl FnOnce(&Series),
    ) -> Result<(), MetricsError> {
        thread_cache::count_resolve();
        let series = self.resolve(kind, name, values)?;
        f(&series);
        let id = self.registry.id;
        // SAFETY: the only reference to this thread's cache while it lives: `resolve` (which
        // may log, and a logger may record by name) has returned, and inserting drops only
        // series holds, which run no code of the caller's.
        let _ = CACHE.try_with(|c| unsafe { &mut *c.get() }.insert(id, epoch, kind, hash, name, values, series));
        Ok(())
    }
}

/// The histogram cells of a held series, or the series back when it is not a histogram.
pub(crate) fn histogram_series(held: HeldSeries) -> Result<HistogramSeries, HeldSeries> {
    let held = match held.try_map(|s| match s {
        Series::Histogram(h) => Ok(h),
        s => Err(s),
    }) {
        Ok(h) => return Ok(HistogramSeries::Classic(h)),
        Err(held) => held,
    };
    held.try_map(|s| match s {
        Series::Native(h) => Ok(h),
        s => Err(s),
    })
    .map(HistogramSeries::Native)
}

/// A series resolved by name, in this thread's [`NameCache`].
struct Entry {
    hash: u64,
    /// The registry it was resolved in (its cache epoch is the table's).
    registry: u64,
    kind: MetricKind,
    /// Values (label count).
    n: u32,
    /// Its name and encoded label values in the cache's arena: `[start, start + name_len)` the
    /// name, then the values up to `end`.
    start: u32,
    name_len: u32,
    end: u32,
    series: HeldSeries,
}

impl thread_cache::Entry for Entry {
    fn hash(&self) -> u64 {
        self.hash
    }
}

/// Encoded label values are joined by this byte, which no UTF-8 string holds.
const SEP: u8 = 0xFF;

impl Entry {
    #[inline(always)]
    fn matches(&self, arena: &[u8], registry: u64, kind: MetricKind, hash: u64, name: &str, values: &[&str]) -> bool {
        if self.hash != hash || self.registry != registry || self.kind != kind || self.n as usize != values.len() {
            return false;
        }
        let stored = &arena[self.start as usize..self.end as usize];
        let (stored_name, mut rest) = stored.split_at(self.name_len as usize);
        if !same_bytes(stored_name, name.as_bytes()) {
            return false;
        }
        // `rest` is the values joined by `SEP` (see `labels::encode`).
        for (i, v) in values.iter().enumerate() {
            let v = v.as_bytes();
            if i > 0 {
                match rest.split_first() {
                    Some((&SEP, r)) => rest = r,
                    _ => return false,
                }
            }
            match rest.get(..v.len()) {
                Some(head) if same_bytes(head, v) => rest = &rest[v.len()..],
                _ => return false,
            }
        }
        rest.is_empty()
    }
}

/// `a == b` without a call to `memcmp` for the short strings names and label values are: up to
/// 32 bytes, a few overlapping loads per side, branch-free within a length class. A cache hit
/// compares its whole key; with `memcmp` (a call through the PLT and a length dispatch per
/// string) the compares took 30 % of the by-name hit (perf, a 17-byte name).
#[inline(always)]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // Each class reads its first and last bytes (and for 17..=32 the two words between), which
    // together cover every byte of a length in the class.
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => (half(a, 0) ^ half(b, 0)) | (half(a, n - 4) ^ half(b, n - 4)) == 0,
        8..=16 => (word(a, 0) ^ word(b, 0)) | (word(a, n - 8) ^ word(b, n - 8)) == 0,
        17..=32 => {
            (word(a, 0) ^ word(b, 0))
                | (word(a, 8) ^ word(b, 8))
                | (word(a, n - 16) ^ word(b, n - 16))
                | (word(a, n - 8) ^ word(b, n - 8))
                == 0
        }
        _ => a == b,
    }
}

/// The 8 bytes of `s` from `at`, little-endian (the compares and the key hash read by words).
#[inline(always)]
fn word(s: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"))
}

/// The 4 bytes of `s` from `at`, little-endian.
#[inline(always)]
fn half(s: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"))
}

/// One thread's cache of name-based recording: entries in a table that grows to the working set
/// (see [`crate::thread_cache`]), their names and label values in one byte arena, so caching a
/// series allocates only when the arena or the table grows. An entry is 64 bytes, its key bytes
/// as long as its name and values: at most 32,768 entries at the cap, 2 MiB plus the bytes (and
/// 128 KiB of index).
struct NameCache {
    table: thread_cache::Table<Entry>,
    arena: Vec<u8>,
    /// Arena bytes of entries dropped or replaced, reclaimed by compaction.
    garbage: usize,
}

impl NameCache {
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        registry: u64,
        epoch: u64,
        kind: MetricKind,
        hash: u64,
        name: &str,
        values: &[&str],
        series: HeldSeries,
    ) {
        if self.table.stale(epoch) {
            self.table.reset(epoch);
            self.arena.clear();
            self.garbage = 0;
        }
        let len = name.len() + values.iter().map(|v| v.len() + 1).sum::<usize>();
        if self.arena.len() + len > u32::MAX as usize {
            return;
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(name.as_bytes());
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.arena.push(SEP);
            }
            self.arena.extend_from_slice(v.as_bytes());
        }
        let entry = Entry {
            hash,
            registry,
            kind,
            n: values.len() as u32,
            start: start as u32,
            name_len: name.len() as u32,
            end: self.arena.len() as u32,
            series,
        };
        if let Some(old) = self.table.insert(epoch, entry) {
            self.garbage += (old.end - old.start) as usize;
            if self.garbage * 2 > self.arena.len() {
                self.compact();
            }
        }
    }

    /// Copies the key bytes of the cached entries to a new arena (when more than half of the old
    /// one belongs to entries replaced at the table's cap).
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for e in self.table.entries_mut() {
            let start = arena.len();
            arena.extend_from_slice(&self.arena[e.start as usize..e.end as usize]);
            e.start = start as u32;
            e.end = arena.len() as u32;
        }
        self.arena = arena;
        self.garbage = 0;
    }
}

impl Drop for NameCache {
    fn drop(&mut self) {
        self.table.free();
    }
}

thread_local! {
    static CACHE: UnsafeCell<NameCache> = const {
        UnsafeCell::new(NameCache {
            table: thread_cache::Table::new(),
            arena: Vec::new(),
            garbage: 0,
        })
    };
}

/// Entries in this thread's by-name cache (tests only).
#[cfg(test)]
pub(crate) fn cached_by_name() -> usize {
    // SAFETY: as in `with_series`: no other reference to the cache while this one lives.
    CACHE.with(|c| unsafe { &*c.get() }.table.len())
}

/// The by-name cache's hash of a key: its name and values read word by word, every byte once
/// (overlapping loads for the tails, no copy), each word folded in with a multiply, each string's
/// length in front of it (so `["ab", "c"]` and `["a", "bc"]` differ), then the bits mixed down
/// into the low ones the table indexes by. The registry and kind are not hashed: an entry
/// compares them ([`Entry::matches`]), and one registry with one kind per name is the common case.
/// About 20 instructions for a 17-byte name where `FxHasher`'s byte-slice path took 65
/// (cachegrind), a third of a by-name hit.
#[inline(always)]
fn key_hash(name: &str, values: &[&str]) -> u64 {
    let mut h = hash_str(0, name.as_bytes());
    for v in values {
        h = hash_str(h, v.as_bytes());
    }
    let p = u128::from(h) * u128::from(HASH_FOLD);
    (p as u64) ^ ((p >> 64) as u64)
}

const HASH_MUL: u64 = 0xf135_7aea_2e62_a9c5;
const HASH_FOLD: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline(always)]
fn hash_word(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(HASH_MUL).rotate_left(26)
}

/// Folds `s`, after its length, into `h`.
#[inline(always)]
fn hash_str(h: u64, s: &[u8]) -> u64 {
    let n = s.len();
    let mut h = hash_word(h, n as u64);
    match n {
        0 => h,
        1..=3 => hash_word(
            h,
            u64::from(s[0]) | u64::from(s[n / 2]) << 8 | u64::from(s[n - 1]) << 16,
        ),
        4..=7 => hash_word(h, u64::from(half(s, 0)) | u64::from(half(s, n - 4)) << 32),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                h = hash_word(h, word(s, at));
                at += 8;
            }
            // The last 8 bytes, overlapping the word before when `n` is not a multiple of 8.
            hash_word(h, word(s, n - 8))
        }
    }
}

macro_rules! opaque_debug {
    ($($t:ident),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t)).finish_non_exhaustive()
            }
        }
    )*};
}

opaque_debug!(CounterHandle, GaugeHandle, HistogramHandle, SummaryHandle);

#[cfg(test)]
mod tests {
    use super::{key_hash, same_bytes};

    /// The low bits the cache indexes by spread keys that differ in one label value's digits, in
    /// its length, or by where the values split, as a random function would: 10,000 keys in
    /// 16,384 slots fill about 7,500.
    #[test]
    fn key_hash_spreads_similar_keys_over_the_low_bits() {
        let values: Vec<String> = (0..10_000).map(|i| format!("zone-{i}")).collect();
        let mut hashes: Vec<u64> = values.iter().map(|v| key_hash("kills_total", &["eu", v])).collect();
        let slots: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 16_383).collect();
        assert!(slots.len() > 7_000, "{} of 16,384 slots filled", slots.len());
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), 10_000, "distinct keys with equal hashes");
        assert_ne!(key_hash("n", &["ab", "c"]), key_hash("n", &["a", "bc"]));
        assert_ne!(key_hash("n", &["a"]), key_hash("na", &[]));
        for n in 0..40 {
            let a = "x".repeat(n);
            let b = format!("{}y", "x".repeat(n.saturating_sub(1)));
            if n > 0 {
                assert_ne!(key_hash(&a, &[]), key_hash(&b, &[]), "last byte of a {n}-byte name");
            }
        }
    }

    /// Against `==` for every length of each class and past them, equal and with one byte
    /// changed at every position, and for slices of different lengths.
    #[test]
    fn same_bytes_is_slice_equality() {
        for n in 0..=48usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37) ^ 0x5A).collect();
            assert!(same_bytes(&a, &a.clone()), "equal, {n} bytes");
            for at in 0..n {
                for flip in [1u8, 0x80, 0xFF] {
                    let mut b = a.clone();
                    b[at] ^= flip;
                    assert!(!same_bytes(&a, &b), "{n} bytes, byte {at} ^ {flip:#x}");
                }
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(
                !same_bytes(&a, &longer) && !same_bytes(&longer, &a),
                "{n} against {} bytes",
                n + 1
            );
        }
    }
}
