//! [`MetricsManager`]: registration and name-based recording, and typed handles.

use std::cell::RefCell;
use std::hash::Hasher;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHasher;

use crate::registry::labels::split;
use crate::registry::{self, check_buckets, check_summary, Config, HeldSeries, Registry, Series, Spec};
use crate::storage::counter::CounterCell;
use crate::storage::gauge::GaugeCell;
use crate::storage::histogram::HistogramCell;
use crate::storage::life::Held;
use crate::storage::summary::SummaryCell;
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

    /// Removes series of these kinds that nobody held for `timeout` (default: none expire), as
    /// metrics-exporter-prometheus' `idle_timeout` does: the zone, match or dungeon instance that
    /// ended takes its series with it, and their places under the series limit are given back.
    ///
    /// A series is held while a handle to it exists ([`MetricsManager::counter`] and the others,
    /// a `metrics` handle a caller keeps) and while a thread records into it through the facade
    /// or the by-name API (each thread's cache holds what it used since the last sweep). So
    /// nothing recorded is ever lost: a series goes only when nobody can record into it, and one
    /// recorded into again comes back, from zero (a counter reset to Prometheus). Idle series are
    /// removed by the sweep that runs before every read of the registry (every scrape), or by
    /// [`MetricsManager::expire_idle`]; a series is idle from the sweep after its last use, so it
    /// goes between `timeout` and `timeout` plus one scrape interval after it.
    ///
    /// `MetricKind::Histogram` covers facade histograms rendered as summaries too. Timeouts are
    /// kept in milliseconds, rounded up, at most 24.8 days (longer ones are that).
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

/// A resolved counter series: `increment` is one add to the current thread's shard.
#[derive(Clone)]
pub struct CounterHandle(pub(crate) Held<CounterCell>);

impl CounterHandle {
    /// Adds `v`.
    #[inline]
    pub fn increment(&self, v: u64) {
        self.0.add(v);
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

/// A resolved histogram series.
#[derive(Clone)]
pub struct HistogramHandle(pub(crate) Held<HistogramCell>);

impl HistogramHandle {
    /// Records one observation.
    #[inline]
    pub fn record(&self, v: f64) {
        self.0.record(v);
    }

    /// Records `n` observations of `v`.
    pub fn record_many(&self, v: f64, n: u64) {
        self.0.record_n(v, n);
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
        registry::encode_labels(values, &mut want);
        Ok(self.registry.remove(&family, |v| v == want.as_slice()) > 0)
    }

    /// Removes every series of metric `name` whose labels have the given values (for example every
    /// series of a zone that shut down: `remove_matching("zone_players", &[("zone", "7")])`), as
    /// [`Self::remove_series`] does for one. Returns how many series matched. A label the metric
    /// does not have is an error.
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
    /// any more. Every read of the registry ([`Self::visit`], so every scrape) runs it first; call
    /// it where nothing scrapes. Returns the number of series removed.
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
        match self.resolve(MetricKind::Histogram, name, values)?.try_map(|s| match s {
            Series::Histogram(x) => Ok(x),
            s => Err(s),
        }) {
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
        self.with_series(MetricKind::Histogram, name, values, |s| {
            if let Series::Histogram(h) = s {
                h.record(value);
            }
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
        let hash = key_hash(id, kind, name, values);
        let mut f = Some(f);
        let hit = CACHE
            .try_with(|c| {
                let c = c.borrow();
                match c.get(hash as usize & (CACHE_SLOTS - 1)) {
                    Some(Some(e)) if e.matches(id, kind, hash, name, values) => {
                        if let Some(f) = f.take() {
                            f(&e.series);
                        }
                        true
                    }
                    _ => false,
                }
            })
            .unwrap_or(false);
        if hit {
            return Ok(());
        }
        let epoch = registry::cache_epoch();
        let series = self.resolve(kind, name, values)?;
        if let Some(f) = f.take() {
            f(&series);
        }
        let mut encoded = Vec::new();
        registry::encode_labels(values, &mut encoded);
        let entry = Entry {
            registry: id,
            epoch,
            kind,
            hash,
            name: name.into(),
            values: encoded.into(),
            n: values.len(),
            series,
        };
        let _ = CACHE.try_with(|c| {
            let mut c = c.borrow_mut();
            if c.is_empty() {
                c.resize_with(CACHE_SLOTS, || None);
            }
            // Entries of an older epoch let go of their series (see `registry::expiry`).
            if CACHE_EPOCH_SEEN.replace(epoch) != epoch {
                c.iter_mut().for_each(|e| *e = None);
            }
            c[hash as usize & (CACHE_SLOTS - 1)] = Some(entry);
        });
        Ok(())
    }
}

/// Entries of the per-thread cache of name-based recording (direct-mapped).
const CACHE_SLOTS: usize = 512;

struct Entry {
    registry: u64,
    /// The cache epoch when resolved: an older entry lets go of its series and resolves again.
    epoch: u64,
    kind: MetricKind,
    hash: u64,
    name: Box<str>,
    values: Box<[u8]>,
    n: usize,
    series: HeldSeries,
}

impl Entry {
    fn matches(&self, registry: u64, kind: MetricKind, hash: u64, name: &str, values: &[&str]) -> bool {
        self.hash == hash
            && self.registry == registry
            && self.epoch == registry::cache_epoch()
            && self.kind == kind
            && self.n == values.len()
            && *self.name == *name
            && split(&self.values, self.n).eq(values.iter().copied())
    }
}

thread_local! {
    static CACHE: RefCell<Vec<Option<Entry>>> = const { RefCell::new(Vec::new()) };
    /// The cache epoch of `CACHE`'s entries.
    static CACHE_EPOCH_SEEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn key_hash(registry: u64, kind: MetricKind, name: &str, values: &[&str]) -> u64 {
    let mut h = FxHasher::default();
    h.write_u64(registry);
    h.write_u8(kind as u8);
    h.write(name.as_bytes());
    for v in values {
        h.write_u8(0xFF);
        h.write(v.as_bytes());
    }
    h.finish()
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
