//! The `metrics` facade: a [`metrics::Recorder`] over the manager's registry.
//!
//! `counter!("x").increment(1)` calls `register_counter` and drops the returned handle on every
//! call. Handing out clones of one shared `Arc` would make every thread write its reference count,
//! one contended cache line. Instead each thread keeps its own cache from [`Key`] to a
//! *thread-owned* `Arc` (128 bytes long, so two threads' reference counts never share a line)
//! pointing at the shared series' cells. In steady state a facade call touches only the calling
//! thread's cache, its own `Arc`, and its own shard of the series.
//!
//! The cache is an open-addressing table per kind that grows to the thread's working set (see
//! [`crate::thread_cache`]), indexed by the key's precomputed hash; a hit is checked by pointer
//! first (the macros pass `static` keys for literal names and labels, so a stored clone shares
//! their name and label slices), then by value, each name and label by address before bytes.
//! Entries carry the cache epoch they were resolved at and are revalidated against it.
//!
//! Everything below happens on a cache miss only (when a key is resolved); a hit records straight
//! into the series it resolved to.
//!
//! # Names
//!
//! The facade sanitises as metrics-exporter-prometheus 0.18 does (its `formatting.rs`), so a
//! program moved from it exposes the same names ([`crate::sanitize_metric_name`],
//! [`crate::sanitize_label_key`]):
//!
//! - in a metric name, each character (a `char`, not a byte) outside `[a-zA-Z_:]` in first place
//!   or `[a-zA-Z0-9_:]` after it becomes `_`: `http.requests` → `http_requests`,
//!   `5xx_responses` → `_xx_responses`, `PrefixLayer`'s `game.tick` → `game_tick`;
//! - in a label key, each character outside `[a-zA-Z_]` first or `[a-zA-Z0-9_]` after becomes `_`:
//!   `http.method` → `http_method`, `service-name` → `service_name`;
//! - nothing else changes (no trimming, no collapsing of `_`); names that sanitise to one name
//!   share its family, as there; `describe_*!` names are sanitised alike.
//!
//! A renamed metric (its name or a label key) is counted once per original name in
//! `mmo_metrics_facade_renamed_total{metric}` ([`crate::FACADE_RENAMED_METRIC`]; past the series
//! limit, in its `__overflow__` series, once per resolution) and logged once at info level.
//! What sanitising cannot make valid is an error (below): an empty name or key, a key starting
//! with `__` (Prometheus' own; metrics-exporter-prometheus would expose it), two keys that
//! sanitise to one, `le` on a histogram and `quantile` on a summary (the exposition's own labels).
//! The manager's by-name API does not sanitise: it returns the error.
//!
//! # Label sets
//!
//! A family the facade created takes every label set its name is used with, each a variant of the
//! one family (see the registry's module doc): one `# HELP`/`# TYPE` block, one series limit. The
//! same keys in another order are the same label set; the first call with a set fixes its
//! exposition order. A family registered through the manager keeps its label names: another set
//! from the facade is a [`MetricsError::DefinitionConflict`].
//!
//! # Help
//!
//! A family the facade creates without a description gets a generated help (``"`metrics` facade
//! counter x, no description given (describe_counter! sets one)."``) until `describe_*!` gives
//! one; a description given before the first use is used from the start. So every family has a
//! `# HELP` line, which promtool's lint asks for.
//!
//! # Histograms
//!
//! A new facade histogram is a histogram with the buckets of the
//! [`crate::MetricsManagerBuilder::set_buckets_for_metric`] matcher that matches its (sanitised)
//! name (full over prefix over suffix, then the longest pattern), else, with [`crate::MetricsManagerBuilder::histograms_as_summaries`], a summary, else a
//! histogram with [`crate::MetricsManagerBuilder::set_buckets`]'s buckets (default
//! [`crate::DEFAULT_BUCKETS`]).
//!
//! # Exemplars
//!
//! While the thread has a current exemplar ([`crate::exemplar::set_current`]), each counter
//! increment and histogram observation records it too (with the increment or the observed value),
//! as the latest exemplar of the counter or of the observation's bucket; summaries and gauges have
//! none. Without one, a record pays one thread-local load for this.
//!
//! # Limits
//!
//! Facade calls cannot return errors; what cannot be recorded as asked is recorded somewhere
//! visible, counted and logged, and nothing is dropped silently:
//!
//! - a new name past the facade family limit ([`crate::MetricsManagerBuilder::facade_family_limit`],
//!   default 10,000 families created by the facade) lands in the overflow family of its kind
//!   ([`crate::FACADE_OVERFLOW_COUNTER_METRIC`] and the gauge and histogram ones), counted in
//!   `mmo_metrics_facade_family_overflow_total{kind}`;
//! - a label value longer than [`MAX_LABEL_VALUE_LEN`] is cut at a character boundary and recorded,
//!   counted in `mmo_metrics_label_value_truncated_total{metric}`;
//! - a name or label set that stays invalid after sanitising, a label set past
//!   [`crate::MAX_LABEL_SETS`] or one a manager-registered family does not have, or a type
//!   conflict, is counted in `mmo_metrics_facade_errors_total{metric}` (its `metric` label folds
//!   into `__overflow__` past the series limit).
//!
//! Counts are per resolution: once per thread and key while the key stays in the thread's cache.
//! Each distinct problem is logged once, up to 1,000 of them; past that one summary line at most
//! once a minute says how many more were not logged one by one.

use std::borrow::Cow;
use std::cell::UnsafeCell;
use std::sync::Arc;
use std::thread::LocalKey;

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};

use crate::manager::HistogramSeries;
use crate::registry::names::{sanitize_label_key, sanitize_metric_name};
use crate::registry::{truncate_label_value, HeldSeries, Registry, Series, Spec, FACADE_RENAMED_METRIC};
use crate::storage::counter::CounterCell;
use crate::storage::gauge::GaugeCell;
use crate::storage::histogram::HistogramCell;
use crate::storage::life::Held;
use crate::storage::native::NativeCell;
use crate::storage::summary::SummaryCell;
use crate::thread_cache::{self, cache_epoch};
use crate::{MetricKind, MetricsError, MetricsManager, LABEL_VALUE_TRUNCATED_METRIC, MAX_LABEL_VALUE_LEN};

/// The `metrics` recorder of a [`MetricsManager`]; [`MetricsManager::install`] makes it global.
#[derive(Clone)]
pub struct MetricsRecorder {
    registry: Arc<Registry>,
    /// `registry.id`, kept here so a cache hit does not follow the `Arc`.
    id: u64,
}

impl std::fmt::Debug for MetricsRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRecorder").finish_non_exhaustive()
    }
}

impl MetricsManager {
    /// A `metrics` recorder landing in this manager's registry, for `metrics::with_local_recorder`
    /// or a recorder layer.
    pub fn recorder(&self) -> MetricsRecorder {
        MetricsRecorder {
            registry: Arc::clone(&self.registry),
            id: self.registry.id,
        }
    }

    /// Makes this manager the `metrics` facade's global recorder: `counter!`, `gauge!`,
    /// `histogram!` and `describe_*!` then land in this registry. Succeeds once per process.
    pub fn install(&self) -> Result<(), MetricsError> {
        metrics::set_global_recorder(self.recorder()).map_err(|_| MetricsError::AlreadyInstalled)
    }
}

// Each holds its series (see `Held`) for as long as a thread's cache or a caller keeps it.
struct FacadeCounter(
    Held<CounterCell>,
    #[allow(dead_code)] Apart<{ apart::<Held<CounterCell>>() }>,
);
struct FacadeGauge(
    Held<GaugeCell>,
    #[allow(dead_code)] Apart<{ apart::<Held<GaugeCell>>() }>,
);
enum Sink {
    Histogram(Held<HistogramCell>),
    Native(Held<NativeCell>),
    Summary(Held<SummaryCell>),
}
struct FacadeHistogram(Sink, #[allow(dead_code)] Apart<{ apart::<Sink>() }>);
/// A key that cannot be recorded: every use adds one to its `mmo_metrics_facade_errors_total` series.
struct FacadeError(
    Held<CounterCell>,
    #[allow(dead_code)] Apart<{ apart::<Held<CounterCell>>() }>,
);

/// Bytes after a facade handle's value that make its `Arc` allocation [`APART`] bytes long.
///
/// Each thread resolves its own `Arc` and writes its reference count on every call (the `metrics`
/// API clones and drops the handle), so two threads' `Arc`s must not share a cache line where it
/// matters: the count and the value at the start of each. With the allocation 128 bytes long,
/// the hot first bytes of one allocation (32 for a counter) and those of the next are at least 96
/// bytes apart, never on one line, while the count and value of a counter stay on one line in
/// three of four 16-byte-aligned placements. Aligning the value to 128 instead put the count and
/// the value on two lines: over a working set of 5,000 series on one thread a facade lookup took
/// 86 ns aligned, 61 ns padded this way and 52 ns unpadded (`working_set_5000/1t/mmo`, one
/// criterion run each on the same machine).
struct Apart<const N: usize>([u8; N]);

impl<const N: usize> Apart<N> {
    const NEW: Self = Self([0; N]);
}

/// Length of an `Arc<T>`'s allocation with its padding.
const APART: usize = 128;

/// Bytes of padding after a `T` in an `Arc` (whose counts take 16 bytes).
const fn apart<T>() -> usize {
    APART.saturating_sub(16 + std::mem::size_of::<T>())
}

impl CounterFn for FacadeCounter {
    #[inline]
    fn increment(&self, value: u64) {
        self.0.add(value);
        crate::exemplar::with_current(|labels| self.0.set_exemplar(value, labels.into()));
    }

    fn absolute(&self, value: u64) {
        self.0.absolute_at(crate::shard::current(self.0.layout()), value);
    }
}

impl GaugeFn for FacadeGauge {
    #[inline]
    fn increment(&self, value: f64) {
        self.0.add(value);
    }

    #[inline]
    fn decrement(&self, value: f64) {
        self.0.add(-value);
    }

    #[inline]
    fn set(&self, value: f64) {
        self.0.set(value);
    }
}

impl HistogramFn for FacadeHistogram {
    #[inline]
    fn record(&self, value: f64) {
        match &self.0 {
            Sink::Histogram(h) => {
                h.record(value);
                crate::exemplar::with_current(|labels| h.set_exemplar(value, labels.into()));
            }
            Sink::Native(h) => {
                h.record(value);
                crate::exemplar::with_current(|labels| h.set_exemplar(value, labels.into()));
            }
            Sink::Summary(s) => s.observe(value),
        }
    }

    fn record_many(&self, value: f64, count: usize) {
        match &self.0 {
            Sink::Histogram(h) => {
                h.record_n(value, count as u64);
                crate::exemplar::with_current(|labels| h.set_exemplar(value, labels.into()));
            }
            Sink::Native(h) => {
                h.record_n(value, count as u64);
                crate::exemplar::with_current(|labels| h.set_exemplar(value, labels.into()));
            }
            Sink::Summary(s) => (0..count).for_each(|_| s.observe(value)),
        }
    }
}

impl CounterFn for FacadeError {
    fn increment(&self, _: u64) {
        self.0.add(1);
    }

    fn absolute(&self, _: u64) {
        self.0.add(1);
    }
}

impl GaugeFn for FacadeError {
    fn increment(&self, _: f64) {
        self.0.add(1);
    }

    fn decrement(&self, _: f64) {
        self.0.add(1);
    }

    fn set(&self, _: f64) {
        self.0.add(1);
    }
}

impl HistogramFn for FacadeError {
    fn record(&self, _: f64) {
        self.0.add(1);
    }
}

/// A resolved facade key, in this thread's table for its kind.
struct Entry<T> {
    /// The registry it was resolved in, and the [`cache_epoch`] loaded before.
    registry: u64,
    epoch: u64,
    key: Key,
    handle: T,
}

impl<T> thread_cache::Entry for Entry<T> {
    fn hash(&self) -> u64 {
        self.key.get_hash()
    }
}

impl<T> Entry<T> {
    /// Whether it is valid for a lookup of registry `id` at `epoch`: one compare and branch.
    #[inline(always)]
    fn valid(&self, id: u64, epoch: u64) -> bool {
        (self.registry ^ id) | (self.epoch ^ epoch) == 0
    }
}

/// One thread's resolved facade handles of one kind, by the key's precomputed hash (see
/// [`thread_cache`]). An entry is about 90 bytes: 2.8 MiB at the cap of 32,768 slots.
type Table<T> = thread_cache::Table<Entry<T>>;

thread_local! {
    /// This thread's tables. Const-initialised and without `Drop` (plain data): a hit reads its
    /// table's slot pointer and mask with thread-local loads and no state check. Freed by
    /// [`CACHES_GUARD`] when the thread exits.
    static COUNTERS: UnsafeCell<Table<Counter>> = const { UnsafeCell::new(Table::new()) };
    static GAUGES: UnsafeCell<Table<Gauge>> = const { UnsafeCell::new(Table::new()) };
    static HISTOGRAMS: UnsafeCell<Table<Histogram>> = const { UnsafeCell::new(Table::new()) };
    /// Frees the tables when the thread exits; registered by the first insert.
    static CACHES_GUARD: CachesGuard = const { CachesGuard };
}

/// One of the thread-local tables.
type Local<T> = &'static LocalKey<UnsafeCell<Table<T>>>;

struct CachesGuard;

impl Drop for CachesGuard {
    fn drop(&mut self) {
        fn free<T>(table: Local<T>) {
            // Another thread-local's destructor may run after this one and record through the
            // facade: it finds the table unallocated and `CACHES_GUARD` gone, and resolves without
            // caching (`MetricsRecorder::miss`).
            let _ = table.try_with(|t| {
                // SAFETY: no reference into the table is held across calls (see `table`).
                unsafe { &mut *t.get() }.free()
            });
        }
        free(&COUNTERS);
        free(&GAUGES);
        free(&HISTOGRAMS);
    }
}

/// This thread's table behind `local`.
///
/// # Safety
///
/// The caller holds no other reference into the table while it uses this one: every use is a
/// short block that calls no code which could reach the table again (key compares, a handle's
/// `clone`, dropping entries whose handles drop no facade state), never `resolve`.
#[inline(always)]
unsafe fn table<T>(local: Local<T>) -> &'static mut Table<T> {
    // SAFETY: the pointer is to this thread's live thread-local (const-initialised, no
    // destructor: it is never torn down while the thread runs); exclusivity is the caller's.
    unsafe { &mut *local.with(UnsafeCell::get) }
}

/// Whether two keys are the same `static` key: their hashes, and their name and label slices by
/// address. Equal keys built apart compare by value, on the miss path ([`same_key`]).
#[inline(always)]
fn same_static_key(a: &Key, b: &Key) -> bool {
    a.get_hash() == b.get_hash()
        && std::ptr::eq(a.name(), b.name())
        && std::ptr::eq(a.labels().as_slice(), b.labels().as_slice())
}

/// Whether two strings are equal, by address first: a key built per call (a dynamic label)
/// usually still has `static` names and often `static` values, whose bytes need no compare.
#[inline(always)]
fn same_str(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// Whether two keys are equal, each part compared by address first.
fn same_key(a: &Key, b: &Key) -> bool {
    if a.get_hash() != b.get_hash() || !same_str(a.name(), b.name()) {
        return false;
    }
    let (al, bl) = (a.labels().as_slice(), b.labels().as_slice());
    std::ptr::eq(al, bl)
        || al.len() == bl.len()
            && al
                .iter()
                .zip(bl)
                .all(|(x, y)| same_str(x.key(), y.key()) && same_str(x.value(), y.value()))
}

impl MetricsRecorder {
    /// The handle for `key` from this thread's cache, resolving (and caching) it on a miss. Only the
    /// hit of a `static` key in its home slot is inlined, a few loads and compares and the
    /// handle's `clone`, so it calls nothing and saves no registers; everything else is the
    /// out-of-line `miss`.
    #[inline(always)]
    fn cached<T: Clone>(&self, key: &Key, local: Local<T>, resolve: fn(&Self, &Key) -> T) -> T {
        // SAFETY: the reference lives for this block only, which calls no code that reaches the
        // table (compares and `clone`).
        if let Some(e) = unsafe { table(local) }.home(key.get_hash()) {
            if e.valid(self.id, cache_epoch()) && same_static_key(&e.key, key) {
                return e.handle.clone();
            }
        }
        self.miss(key, local, resolve)
    }

    /// [`MetricsRecorder::cached`] past its fast hit: a cached key equal by value (a key built at
    /// run time, e.g. with a dynamic label), one past its home slot, a key not cached, or a thread
    /// whose tables are gone (thread teardown).
    #[inline(never)]
    fn miss<T: Clone>(&self, key: &Key, local: Local<T>, resolve: fn(&Self, &Key) -> T) -> T {
        let epoch = cache_epoch();
        let hash = key.get_hash();
        // SAFETY: as in `cached`.
        let hit = unsafe { table(local) }.find(hash, |e| e.valid(self.id, epoch) && same_key(&e.key, key));
        if let Some(e) = hit {
            return e.handle.clone();
        }
        // Resolving may log, and a logger may record through the facade: no reference into the
        // table is held meanwhile.
        thread_cache::count_resolve();
        let handle = resolve(self, key);
        // SAFETY: as in `cached`; the re-entrant calls during `resolve` have ended. Dropping the
        // entries `insert` replaces drops handles only.
        let t = unsafe { table(local) };
        // The first entry registers the guard that frees the table; during thread teardown (the
        // guard gone) nothing is cached.
        if t.is_allocated() || CACHES_GUARD.try_with(|_| ()).is_ok() {
            let entry = Entry {
                registry: self.id,
                epoch,
                key: key.clone(),
                handle: handle.clone(),
            };
            t.insert(epoch, entry);
        }
        handle
    }

    /// The error handle for `key`, after logging the problem once.
    fn error(&self, key: &Key, e: MetricsError) -> Arc<FacadeError> {
        self.registry.log_once(&format!("`metrics` facade call dropped: {e}"));
        let sm = &self.registry.self_metrics().facade_errors;
        match self
            .registry
            .series(sm, &[truncate_label_value(key.name())])
            .map(counter_cell)
        {
            Ok(Ok(c)) => Arc::new(FacadeError(c, Apart::NEW)),
            _ => unreachable!("the facade error self-metric is a one-label counter"),
        }
    }

    fn resolve_counter(&self, key: &Key) -> Counter {
        match self.resolve(MetricKind::Counter, key).map(counter_cell) {
            Ok(Ok(c)) => Counter::from_arc(Arc::new(FacadeCounter(c, Apart::NEW))),
            Ok(Err(_)) => Counter::from_arc(self.error(
                key,
                MetricsError::DefinitionConflict {
                    metric: key.name().to_owned(),
                    registered: "a float counter set by a collector".into(),
                    requested: "an integer counter from the `metrics` facade".into(),
                },
            )),
            Err(e) => Counter::from_arc(self.error(key, e)),
        }
    }

    fn resolve_gauge(&self, key: &Key) -> Gauge {
        let gauge = |s| match s {
            Series::Gauge(g) => Ok(g),
            s => Err(s),
        };
        match self.resolve(MetricKind::Gauge, key).map(|s| s.try_map(gauge)) {
            Ok(Ok(g)) => Gauge::from_arc(Arc::new(FacadeGauge(g, Apart::NEW))),
            Ok(Err(_)) => unreachable!("a gauge family holds gauge series"),
            Err(e) => Gauge::from_arc(self.error(key, e)),
        }
    }

    fn resolve_histogram(&self, key: &Key) -> Histogram {
        let held = match self.resolve(MetricKind::Histogram, key) {
            Ok(held) => held,
            Err(e) => return Histogram::from_arc(self.error(key, e)),
        };
        let sink = match crate::manager::histogram_series(held) {
            Ok(HistogramSeries::Classic(h)) => Sink::Histogram(h),
            Ok(HistogramSeries::Native(h)) => Sink::Native(h),
            Err(held) => match held.try_map(|s| match s {
                Series::Summary(q) => Ok(q),
                s => Err(s),
            }) {
                Ok(q) => Sink::Summary(q),
                Err(_) => unreachable!("histogram families hold histogram or summary series"),
            },
        };
        Histogram::from_arc(Arc::new(FacadeHistogram(sink, Apart::NEW)))
    }

    /// The series a facade key names, registering its family when it is new (see the module doc);
    /// past the facade family limit, a new name's series is the overflow family's. The name and
    /// label keys are sanitised, a new label set of a facade family becomes a variant of it, and
    /// label values longer than [`MAX_LABEL_VALUE_LEN`] are cut to it (counted, logged once per
    /// metric).
    fn resolve(&self, kind: MetricKind, key: &Key) -> Result<HeldSeries, MetricsError> {
        let raw = key.name();
        let name = sanitize_metric_name(raw);
        let labels: Vec<(Cow<'_, str>, &str)> =
            key.labels().map(|l| (sanitize_label_key(l.key()), l.value())).collect();
        if matches!(name, Cow::Owned(_)) || labels.iter().any(|(k, _)| matches!(k, Cow::Owned(_))) {
            self.renamed(key, &name, &labels);
        }
        let label_names: Vec<&str> = labels.iter().map(|(k, _)| &**k).collect();
        let family = match self.registry.find(kind, &name) {
            Some(f) => f,
            None => {
                let c = &self.registry.config;
                let spec = match kind {
                    MetricKind::Counter => Spec::Counter,
                    MetricKind::Gauge => Spec::Gauge,
                    _ => c
                        .facade_histograms
                        .spec(&name, (c.summary_max_age, c.summary_age_buckets))?,
                };
                let help = generated_help(kind, raw);
                match self.registry.register_facade(&name, &help, &label_names, spec)? {
                    Some(f) => f,
                    None => return self.registry.facade_overflow(kind),
                }
            }
        };
        let compatible =
            family.kind() == kind || (kind == MetricKind::Histogram && family.kind() == MetricKind::Summary);
        if !compatible {
            return Err(MetricsError::TypeConflict {
                metric: name.into_owned(),
                registered: family.kind(),
                requested: kind,
            });
        }
        let family = self.registry.facade_variant(&family, &label_names)?;
        // Label values in the variant's label order (it has exactly the key's label names).
        let mut values: Vec<&str> = family
            .label_names
            .iter()
            .filter_map(|n| labels.iter().find(|(k, _)| **k == **n).map(|(_, v)| *v))
            .collect();
        if values.iter().any(|v| v.len() > MAX_LABEL_VALUE_LEN) {
            let r = &self.registry;
            r.count_self(&r.self_metrics().label_value_truncated, &family.name);
            r.log_once_at(
                tracing::Level::WARN,
                &format!(
                    "metric `{}`: label values longer than {MAX_LABEL_VALUE_LEN} bytes are truncated to \
                     {MAX_LABEL_VALUE_LEN} bytes (counted in `{LABEL_VALUE_TRUNCATED_METRIC}_total`)",
                    family.name
                ),
            );
            values.iter_mut().for_each(|v| *v = truncate_label_value(v));
        }
        self.registry.series(&family, &values)
    }

    /// Counts (once) and logs (once) a key whose name or label keys were sanitised.
    fn renamed(&self, key: &Key, name: &str, labels: &[(Cow<'_, str>, &str)]) {
        let r = &self.registry;
        r.count_self_once(&r.self_metrics().facade_renamed, key.name());
        let mut what = Vec::new();
        if key.name() != name {
            what.push(format!("metric `{}` is recorded as `{name}`", key.name()));
        }
        for (l, (k, _)) in key.labels().zip(labels) {
            if l.key() != &**k {
                what.push(format!("label `{}` of `{name}` is recorded as `{k}`", l.key()));
            }
        }
        let what = what.join(", ");
        r.log_once_at(
            tracing::Level::INFO,
            &format!(
                "`metrics` facade: {what} (Prometheus names are [a-zA-Z_:][a-zA-Z0-9_:]*, label names \
                 [a-zA-Z_][a-zA-Z0-9_]*; other characters become `_`, as metrics-exporter-prometheus does; \
                 counted in `{FACADE_RENAMED_METRIC}_total`)"
            ),
        );
    }
}

/// The help of a facade family until `describe_*!` gives one: what it is and where it comes from,
/// so every family has a `# HELP` line (promtool's lint asks for one).
fn generated_help(kind: MetricKind, raw: &str) -> String {
    let kind = match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        _ => "histogram",
    };
    format!("`metrics` facade {kind} {raw}, no description given (describe_{kind}! sets one).")
}

/// The counter cells of a held series, or the series back when it is not an integer counter.
fn counter_cell(s: HeldSeries) -> Result<Held<CounterCell>, HeldSeries> {
    s.try_map(|s| match s {
        Series::Counter(c) => Ok(c),
        s => Err(s),
    })
}

impl metrics::Recorder for MetricsRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.registry.describe(
            MetricKind::Counter,
            &sanitize_metric_name(key.as_str()),
            unit,
            &description,
        );
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.registry.describe(
            MetricKind::Gauge,
            &sanitize_metric_name(key.as_str()),
            unit,
            &description,
        );
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.registry.describe(
            MetricKind::Histogram,
            &sanitize_metric_name(key.as_str()),
            unit,
            &description,
        );
    }

    #[inline]
    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        self.cached(key, &COUNTERS, Self::resolve_counter)
    }

    #[inline]
    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        self.cached(key, &GAUGES, Self::resolve_gauge)
    }

    #[inline]
    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        self.cached(key, &HISTOGRAMS, Self::resolve_histogram)
    }
}
