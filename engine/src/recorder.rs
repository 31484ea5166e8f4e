//! The `metrics` facade: a [`metrics::Recorder`] over the manager's registry.
//!
//! `counter!("x").increment(1)` calls `register_counter` and drops the returned handle on every
//! call. Handing out clones of one shared `Arc` would make every thread write its reference count,
//! one contended cache line. Instead each thread keeps its own cache from [`Key`] to a
//! *thread-owned* `Arc` (padded to 128 bytes, so two threads' reference counts never share a line)
//! pointing at the shared series' cells. In steady state a facade call touches only the calling
//! thread's cache, its own `Arc`, and its own shard of the series.
//!
//! The cache is direct-mapped by the key's precomputed hash; a hit is checked by pointer first
//! (the macros pass `static` keys for literal names and labels, so a stored clone shares their
//! name and label slices), then by value.
//!
//! # Limits
//!
//! Facade calls cannot return errors; what the by-name API refuses, the facade records somewhere
//! visible, counts and logs, and drops nothing silently:
//!
//! - a new name past the facade family limit ([`crate::MetricsManagerBuilder::facade_family_limit`],
//!   default 10,000 families created by the facade) lands in the overflow family of its kind
//!   ([`crate::FACADE_OVERFLOW_COUNTER_METRIC`] and the gauge and histogram ones), counted in
//!   `mmo_metrics_facade_family_overflow_total{kind}`;
//! - a label value longer than [`MAX_LABEL_VALUE_LEN`] is cut at a character boundary and recorded,
//!   counted in `mmo_metrics_label_value_truncated_total{metric}`;
//! - an invalid name or label set, or a type conflict, is counted in
//!   `mmo_metrics_facade_errors_total{metric}` (its `metric` label folds into `__overflow__` past
//!   the series limit).
//!
//! Counts are per resolution: once per thread and key while the key stays in the thread's cache.
//! Each distinct problem is logged once, up to 1,000 of them; past that one summary line at most
//! once a minute says how many more were not logged one by one.

use std::cell::Cell;
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};

use crate::registry::{truncate_label_value, HeldSeries, Registry, Series, Spec};
use crate::storage::counter::CounterCell;
use crate::storage::gauge::GaugeCell;
use crate::storage::histogram::HistogramCell;
use crate::storage::life::Held;
use crate::storage::summary::SummaryCell;
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
struct FacadeCounter(CachePadded<Held<CounterCell>>);
struct FacadeGauge(CachePadded<Held<GaugeCell>>);
enum Sink {
    Histogram(Held<HistogramCell>),
    Summary(Held<SummaryCell>),
}
struct FacadeHistogram(CachePadded<Sink>);
/// A key that cannot be recorded: every use adds one to its `mmo_metrics_facade_errors_total` series.
struct FacadeError(CachePadded<Held<CounterCell>>);

impl CounterFn for FacadeCounter {
    #[inline]
    fn increment(&self, value: u64) {
        self.0.add(value);
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
        match &*self.0 {
            Sink::Histogram(h) => h.record(value),
            Sink::Summary(s) => s.observe(value),
        }
    }

    fn record_many(&self, value: f64, count: usize) {
        match &*self.0 {
            Sink::Histogram(h) => h.record_n(value, count as u64),
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

struct Entry<T> {
    registry: u64,
    /// The cache epoch when resolved: an older entry lets go of its series and resolves again.
    epoch: u64,
    key: Key,
    handle: T,
}

/// Direct-mapped by the key's hash (see [`slot`]). A fixed-size array, so indexing needs no check.
struct Table<T>([Option<Entry<T>>; SLOTS]);

const SLOTS: usize = 1024;

/// The cache slot of `key`.
#[inline(always)]
fn slot(key: &Key) -> usize {
    key.get_hash() as usize & (SLOTS - 1)
}

/// One thread's resolved facade handles, the three tables inline in one allocation (about
/// 250 KiB), so a hit follows one pointer (the thread-local one) to its entry.
struct Caches {
    counters: Table<Counter>,
    gauges: Table<Gauge>,
    histograms: Table<Histogram>,
    /// The cache epoch of the entries; when it moves on, every entry is dropped (letting go of
    /// its series, see `registry::expiry`).
    epoch: u64,
}

impl Caches {
    /// Empty caches, built in place on the heap (too big for a thread's stack).
    fn new() -> Box<Self> {
        let mut b = Box::<Self>::new_uninit();
        let p = b.as_mut_ptr();
        for i in 0..SLOTS {
            // SAFETY: `p` points to the allocation of an uninitialised `Caches`; each write
            // initialises one entry in place, and the loop writes every entry of every table.
            unsafe {
                std::ptr::addr_of_mut!((*p).counters.0[i]).write(None);
                std::ptr::addr_of_mut!((*p).gauges.0[i]).write(None);
                std::ptr::addr_of_mut!((*p).histograms.0[i]).write(None);
            }
        }
        // SAFETY: `p` points to the allocation; this initialises the last field.
        unsafe { std::ptr::addr_of_mut!((*p).epoch).write(crate::registry::cache_epoch()) };
        // SAFETY: every field (the three tables, all their entries, the epoch) was initialised above.
        unsafe { b.assume_init() }
    }
}

/// `CACHES` after the thread's caches were freed (thread teardown): resolve without caching.
const DEAD: *mut Caches = std::ptr::dangling_mut();

thread_local! {
    /// This thread's caches: null until first use, [`DEAD`] once freed. Const-initialised and
    /// without `Drop`, so the hot path reads it with one thread-local load and no state check.
    static CACHES: Cell<*mut Caches> = const { Cell::new(std::ptr::null_mut()) };
    /// Frees the caches when the thread exits.
    static CACHES_GUARD: CachesGuard = const { CachesGuard };
}

struct CachesGuard;

impl Drop for CachesGuard {
    fn drop(&mut self) {
        let p = CACHES.replace(DEAD);
        if !p.is_null() && p != DEAD {
            // SAFETY: `p` came from `Box::into_raw` in `caches`, and is no longer reachable through
            // `CACHES`; no reference into it is held across calls (see `MetricsRecorder::cached`).
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// This thread's caches, allocating them on first use; null during thread teardown. Called by every
/// cache miss (the hit path reads `CACHES` itself).
fn caches() -> *mut Caches {
    let p = CACHES.get();
    if p == DEAD || !p.is_null() {
        return if p == DEAD { std::ptr::null_mut() } else { p };
    }
    if CACHES_GUARD.try_with(|_| ()).is_err() {
        return std::ptr::null_mut();
    }
    let p = Box::into_raw(Caches::new());
    CACHES.set(p);
    p
}

/// Whether two keys are the same `static` key: their hashes, and their name and label slices by
/// address. Equal keys built apart compare by value, on the miss path ([`same_key`]).
#[inline(always)]
fn same_static_key(a: &Key, b: &Key) -> bool {
    a.get_hash() == b.get_hash()
        && std::ptr::eq(a.name(), b.name())
        && std::ptr::eq(a.labels().as_slice(), b.labels().as_slice())
}

/// Whether two keys are equal, each part compared by address first: a key built per call (a
/// dynamic label) usually still has a `static` name, whose bytes need no compare.
fn same_key(a: &Key, b: &Key) -> bool {
    if a.get_hash() != b.get_hash() {
        return false;
    }
    let (an, bn) = (a.name(), b.name());
    let (al, bl) = (a.labels().as_slice(), b.labels().as_slice());
    (std::ptr::eq(an, bn) || an == bn) && (std::ptr::eq(al, bl) || al == bl)
}

impl MetricsRecorder {
    /// The handle cached for `key` in `t`, when the entry in its slot is from this registry and
    /// `same` finds it the same key.
    #[inline(always)]
    fn lookup<T: Clone>(&self, t: &Table<T>, key: &Key, same: fn(&Key, &Key) -> bool) -> Option<T> {
        match &t.0[slot(key)] {
            Some(e) if e.registry == self.id && e.epoch == crate::registry::cache_epoch() && same(&e.key, key) => {
                Some(e.handle.clone())
            }
            _ => None,
        }
    }

    /// The handle for `key` from this thread's cache, resolving (and caching) it on a miss. Only the
    /// hit of a `static` key is inlined, a few loads and compares and the handle's `clone`, so it
    /// calls nothing and saves no registers; everything else is the out-of-line `miss`.
    #[inline(always)]
    fn cached<T: Clone>(&self, key: &Key, table: fn(&mut Caches) -> &mut Table<T>, resolve: fn(&Self, &Key) -> T) -> T {
        let p = CACHES.get();
        if !p.is_null() && p != DEAD {
            // SAFETY:
            // - `p` is this thread's live `Box<Caches>` (not null, not DEAD), freed only by this
            //   thread's `CachesGuard` after `CACHES` stops pointing at it;
            // - no other reference into it exists: every use is a short block like this one that
            //   calls no code which could re-enter the cache (only key comparison and `clone`).
            if let Some(handle) = self.lookup(table(unsafe { &mut *p }), key, same_static_key) {
                return handle;
            }
        }
        self.miss(key, table, resolve)
    }

    /// [`MetricsRecorder::cached`] past its fast hit: a cached key equal by value (a key built at
    /// run time, e.g. with a dynamic label), a key not cached, or a thread with no cache (yet, or
    /// any more).
    #[inline(never)]
    fn miss<T: Clone>(&self, key: &Key, table: fn(&mut Caches) -> &mut Table<T>, resolve: fn(&Self, &Key) -> T) -> T {
        let p = caches();
        if p.is_null() {
            return resolve(self, key);
        }
        let epoch = crate::registry::cache_epoch();
        // SAFETY: as in `cached`; dropping entries runs no code that uses the cache.
        let c = unsafe { &mut *p };
        if c.epoch != epoch {
            c.counters.0.iter_mut().for_each(|e| *e = None);
            c.gauges.0.iter_mut().for_each(|e| *e = None);
            c.histograms.0.iter_mut().for_each(|e| *e = None);
            c.epoch = epoch;
        }
        // SAFETY: as in `cached`.
        if let Some(handle) = self.lookup(table(unsafe { &mut *p }), key, same_key) {
            return handle;
        }
        // Resolving may log, and a logger may record through the facade: no reference into the
        // cache is held meanwhile.
        let handle = resolve(self, key);
        let entry = Entry {
            registry: self.id,
            epoch,
            key: key.clone(),
            handle: handle.clone(),
        };
        // SAFETY: as in `cached`; the re-entrant calls during `resolve` have ended.
        let old = table(unsafe { &mut *p }).0[slot(key)].replace(entry);
        drop(old);
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
            Ok(Ok(c)) => Arc::new(FacadeError(CachePadded::new(c))),
            _ => unreachable!("the facade error self-metric is a one-label counter"),
        }
    }

    fn resolve_counter(&self, key: &Key) -> Counter {
        match self.resolve(MetricKind::Counter, key).map(counter_cell) {
            Ok(Ok(c)) => Counter::from_arc(Arc::new(FacadeCounter(CachePadded::new(c)))),
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
            Ok(Ok(g)) => Gauge::from_arc(Arc::new(FacadeGauge(CachePadded::new(g)))),
            Ok(Err(_)) => unreachable!("a gauge family holds gauge series"),
            Err(e) => Gauge::from_arc(self.error(key, e)),
        }
    }

    fn resolve_histogram(&self, key: &Key) -> Histogram {
        let held = match self.resolve(MetricKind::Histogram, key) {
            Ok(held) => held,
            Err(e) => return Histogram::from_arc(self.error(key, e)),
        };
        let sink = match held.try_map(|s| match s {
            Series::Histogram(h) => Ok(h),
            s => Err(s),
        }) {
            Ok(h) => Sink::Histogram(h),
            Err(held) => match held.try_map(|s| match s {
                Series::Summary(q) => Ok(q),
                s => Err(s),
            }) {
                Ok(q) => Sink::Summary(q),
                Err(_) => unreachable!("histogram families hold histogram or summary series"),
            },
        };
        Histogram::from_arc(Arc::new(FacadeHistogram(CachePadded::new(sink))))
    }

    /// The series a facade key names, registering its family with defaults when it is new; past
    /// the facade family limit, a new name's series is the overflow family's. Label values longer
    /// than [`MAX_LABEL_VALUE_LEN`] are cut to it (counted, logged once per metric).
    fn resolve(&self, kind: MetricKind, key: &Key) -> Result<HeldSeries, MetricsError> {
        let name = key.name();
        let label_names: Vec<&str> = key.labels().map(|l| l.key()).collect();
        let family = match self.registry.find(kind, name) {
            Some(f) => f,
            None => {
                let spec = match kind {
                    MetricKind::Counter => Spec::Counter,
                    MetricKind::Gauge => Spec::Gauge,
                    _ => Spec::Histogram(crate::registry::default_buckets()),
                };
                match self.registry.register_facade(name, &label_names, spec)? {
                    Some(f) => f,
                    None => return self.registry.facade_overflow(kind),
                }
            }
        };
        let compatible =
            family.kind() == kind || (kind == MetricKind::Histogram && family.kind() == MetricKind::Summary);
        if !compatible {
            return Err(MetricsError::TypeConflict {
                metric: name.to_owned(),
                registered: family.kind(),
                requested: kind,
            });
        }
        // Label values in the family's label order; the key must carry exactly those names.
        let mut values = Vec::with_capacity(family.label_names.len());
        for n in family.label_names.iter() {
            match key.labels().find(|l| l.key() == &**n) {
                Some(l) => values.push(l.value()),
                None => break,
            }
        }
        if values.len() != family.label_names.len() || label_names.len() != family.label_names.len() {
            return Err(MetricsError::DefinitionConflict {
                metric: name.to_owned(),
                registered: format!("labels [{}]", family.label_names.join(", ")),
                requested: format!("labels [{}]", label_names.join(", ")),
            });
        }
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
        self.registry
            .describe(MetricKind::Counter, key.as_str(), unit, &description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.registry
            .describe(MetricKind::Gauge, key.as_str(), unit, &description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.registry
            .describe(MetricKind::Histogram, key.as_str(), unit, &description);
    }

    #[inline]
    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        self.cached(key, |c| &mut c.counters, Self::resolve_counter)
    }

    #[inline]
    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        self.cached(key, |c| &mut c.gauges, Self::resolve_gauge)
    }

    #[inline]
    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        self.cached(key, |c| &mut c.histograms, Self::resolve_histogram)
    }
}
