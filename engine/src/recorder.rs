//! The `metrics` facade: a [`metrics::Recorder`] over the manager's registry.
//!
//! `counter!("x").increment(1)` calls `register_counter` and drops the returned handle on every
//! call. Handing out clones of one shared `Arc` would make every thread write its reference count,
//! one contended cache line. Instead each thread keeps its own cache from [`Key`] to a
//! *thread-owned* `Arc` (whose hot bytes never share a line with another's, see `Node`) pointing
//! at the shared series' cells. In steady state a facade call touches only the calling thread's
//! cache, its own `Arc`, and its own shard of the series. Past a few hundred counters in a
//! thread's cache, a counter hit lends the thread's one reusable handle instead of the series'
//! `Arc`, whose line would then be one more cache miss per call (see `CounterSlot`).
//!
//! The cache is an open-addressing table per kind that grows to the thread's working set (see
//! [`crate::thread_cache`]), indexed by the key's precomputed hash. An entry is one cache line
//! holding the key's name and labels as addresses and lengths (those of the key in the handle's
//! node); a hit compares each string by address, then by bytes when the addresses differ (a
//! string built at run time), so the macros' `static` keys and `&'static str` label values
//! compare without reading a string. Entries are used only at the cache epoch they were resolved
//! at.
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
use std::num::NonZeroU64;
use std::ptr::NonNull;
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

/// A facade handle's `Arc`: what it records into (`value`, which holds its series, see `Held`,
/// for as long as a thread's cache or a caller keeps the handle), then the key it was resolved
/// for, whose strings the thread's cache entry points at.
///
/// A record reads the reference count (the `metrics` API clones and drops the handle on every
/// call) and `value`, the first 32 bytes of the allocation (40 for a histogram's `Sink`); the key
/// after them is read only on a cache miss. Each thread resolves its own `Arc`, and the key (56
/// bytes) keeps the hot bytes of two allocations more than a cache line apart, so two threads'
/// reference counts never share a line.
#[repr(C)]
struct Node<V> {
    value: V,
    key: Key,
}

/// A handle made of `arc` by `wrap` (a `from_arc`), and the key in its node for the cache entry.
fn with_key<V, T>(arc: Arc<Node<V>>, wrap: fn(Arc<Node<V>>) -> T) -> (T, NonNull<Key>) {
    let key = NonNull::from(&arc.key);
    (wrap(arc), key)
}

/// A new handle node for `key`.
fn node<V>(key: &Key, value: V) -> Arc<Node<V>> {
    Arc::new(Node {
        value,
        key: key.clone(),
    })
}

struct CounterValue(Held<CounterCell>);
struct GaugeValue(Held<GaugeCell>);
enum Sink {
    Histogram(Held<HistogramCell>),
    Native(Held<NativeCell>),
    Summary(Held<SummaryCell>),
}
/// A key that cannot be recorded: every use adds one to its `mmo_metrics_facade_errors_total` series.
struct ErrorValue(Held<CounterCell>);

type FacadeCounter = Node<CounterValue>;
type FacadeGauge = Node<GaugeValue>;
type FacadeHistogram = Node<Sink>;
type FacadeError = Node<ErrorValue>;

/// What a thread's cache entry keeps of a resolved handle, and the handle it gives out.
trait Slot {
    type Handle;
    /// A handle of its own, for a caller that may outlive the entry.
    fn owned(&self) -> Self::Handle;
    /// The handle for a hit: the entry stays in the table while the handle is used. `large`: the
    /// thread's table has at least [`LEND_FROM_SLOTS`] slots.
    #[inline(always)]
    fn lend(&self, large: bool) -> Self::Handle {
        let _ = large;
        self.owned()
    }
    /// Called before the table drops entries (an insert may replace or reset them).
    fn before_drop() {}
}

impl Slot for Gauge {
    type Handle = Gauge;
    #[inline(always)]
    fn owned(&self) -> Gauge {
        self.clone()
    }
}

impl Slot for Histogram {
    type Handle = Histogram;
    #[inline(always)]
    fn owned(&self) -> Histogram {
        self.clone()
    }
}

/// A thread's cached counter: its node (an `Arc<FacadeCounter>`, or an `Arc<FacadeError>` with
/// [`ERROR_NODE`] set, as a raw pointer the slot owns a count of) and the cell this thread adds
/// to, when it has an exclusive shard (else 0).
///
/// A hit hands out the thread's [`Lent`] counter pointed at that cell, when nobody else holds the
/// `Lent`: its reference count is in a line the thread keeps hot, where cloning the node's `Arc`
/// would write a line of the node, one more cache miss per call over a working set larger than
/// L1: `counter!` over 5,000 two-label series, 30.0–30.9 against 34.3–35.5 ns a call.
struct CounterSlot {
    node: usize,
    cell: usize,
}

/// The table size from which a counter hit lends the thread's [`Lent`]: from 193 series, when the
/// entries and nodes of a working set (two lines a series) no longer fit in a 48 KiB L1. Below it,
/// the node's line is in L1 and cloning its `Arc` is cheaper than lending (which first reads the
/// `Lent`'s count, after the last call's locked decrement of it): a static key, 12.2 against
/// 14.8 ns per `counter!` call.
const LEND_FROM_SLOTS: usize = 512;

/// [`CounterSlot::node`]'s tag for an error node (an `Arc` is at least 8-aligned).
const ERROR_NODE: usize = 1;

impl CounterSlot {
    fn counter(node: Arc<FacadeCounter>) -> Self {
        let cell = node
            .value
            .0
            .exclusive_cell()
            .map_or(0, |c| std::ptr::from_ref(c) as usize);
        Self {
            node: Arc::into_raw(node) as usize,
            cell,
        }
    }

    fn error(node: Arc<FacadeError>) -> Self {
        Self {
            node: Arc::into_raw(node) as usize | ERROR_NODE,
            cell: 0,
        }
    }
}

impl Drop for CounterSlot {
    fn drop(&mut self) {
        let p = self.node & !ERROR_NODE;
        // SAFETY: `p` is from `Arc::into_raw` of the type the tag says; the slot's count is given
        // back once, here.
        unsafe {
            if self.node & ERROR_NODE == 0 {
                drop(Arc::from_raw(p as *const FacadeCounter));
            } else {
                drop(Arc::from_raw(p as *const FacadeError));
            }
        }
    }
}

impl Slot for CounterSlot {
    type Handle = Counter;

    #[inline(always)]
    fn lend(&self, large: bool) -> Counter {
        if large && self.cell != 0 {
            if let Some(lent) = Lent::lend(self) {
                return lent;
            }
        }
        self.owned()
    }

    fn owned(&self) -> Counter {
        let p = self.node & !ERROR_NODE;
        // SAFETY: as in `drop`; the count taken here is the new `Arc`'s.
        unsafe {
            if self.node & ERROR_NODE == 0 {
                Arc::increment_strong_count(p as *const FacadeCounter);
                Counter::from_arc(Arc::from_raw(p as *const FacadeCounter))
            } else {
                Arc::increment_strong_count(p as *const FacadeError);
                Counter::from_arc(Arc::from_raw(p as *const FacadeError))
            }
        }
    }

    fn before_drop() {
        Lent::let_go(false);
    }
}

/// The counter a thread lends out on a cache hit (see [`CounterSlot`]): it records into the
/// series of the entry it was last pointed at. The thread points it at another entry only while
/// it holds the only reference (the caller of the last hit dropped its handle, as `counter!(..)
/// .increment(..)` does); a caller that keeps the handle makes the thread hand out nodes' `Arc`s
/// instead. Before the thread's table drops entries, a `Lent` someone still holds is given its
/// target's node to keep, and the thread makes a new one: a kept handle never outlives its series.
struct Lent {
    /// Written by the owning thread only while it holds the only reference (see `lend`), read by
    /// the holders of the handles it lent.
    target: UnsafeCell<Target>,
    /// The owning thread's slot (`shard::raw_slot`), whose exclusive shard `target.cell` is in:
    /// a `cell` is set only once the thread holds its slot, which it keeps until it ends.
    slot: u32,
    /// The target's node, once the `Lent` outlives the entry it points at (see `let_go`).
    keep: std::sync::OnceLock<Arc<FacadeCounter>>,
}

#[derive(Clone, Copy)]
struct Target {
    /// The cell of the owner's exclusive shard in the target series.
    cell: *const crate::loom::AtomicU64,
    node: *const FacadeCounter,
}

// SAFETY: `target` is written only by the owning thread while no other reference to the `Lent`
// exists (`Arc::strong_count` 1 and an Acquire fence, so the last other holder's reads happen
// before), and read through shared references after that; the pointers are to a node and a cell
// the entry or `keep` keeps alive while any reference to the `Lent` is held (see `let_go`).
unsafe impl Send for Lent {}
// SAFETY: as for `Send`.
unsafe impl Sync for Lent {}

thread_local! {
    /// This thread's `Lent`, from `Arc::into_raw`, or null. Const-initialised and without `Drop`;
    /// given back by [`CachesGuard`].
    static LENT: std::cell::Cell<*const Lent> = const { std::cell::Cell::new(std::ptr::null()) };
}

impl Lent {
    /// The thread's `Lent` pointed at `slot`'s series, or `None` when someone else holds it.
    #[inline(always)]
    fn lend(slot: &CounterSlot) -> Option<Counter> {
        let p = LENT.with(std::cell::Cell::get);
        if p.is_null() {
            return Self::first(slot);
        }
        // SAFETY: `p` is this thread's count of its `Lent` (`first`), alive until `let_go`.
        let lent = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(p) });
        if Arc::strong_count(&lent) != 1 {
            return None;
        }
        // Pairs with the Release decrement of the last other holder's drop.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        // Cloned before the target is written: a locked add waits for the stores before it, and
        // the clone is not anyone else's until it is returned.
        let handle = Arc::clone(&lent);
        // SAFETY: the references are this thread's: its own and `handle` (see `Lent`'s `Sync`).
        unsafe {
            let t = &mut *lent.target.get();
            t.cell = slot.cell as *const _;
            t.node = slot.node as *const FacadeCounter;
        }
        Some(Counter::from_arc(handle))
    }

    /// The thread's first `Lent`, once its tables exist (their guard gives it back).
    #[cold]
    fn first(slot: &CounterSlot) -> Option<Counter> {
        if CACHES_GUARD.try_with(|_| ()).is_err() {
            return None;
        }
        let lent = Arc::new(Lent {
            target: UnsafeCell::new(Target {
                cell: std::ptr::null(),
                node: std::ptr::null(),
            }),
            slot: crate::shard::raw_slot(),
            keep: std::sync::OnceLock::new(),
        });
        LENT.with(|l| l.set(Arc::into_raw(lent)));
        Self::lend(slot)
    }

    /// Before the thread's table drops entries (`exiting`: all of them, the thread ends): a `Lent`
    /// someone still holds keeps its target's node and is left to them; the thread makes a new one
    /// at its next hit. One nobody else holds stays the thread's (its target is rewritten before
    /// it is lent again), unless the thread ends.
    fn let_go(exiting: bool) {
        let Ok(p) = LENT.try_with(std::cell::Cell::get) else {
            return;
        };
        if p.is_null() {
            return;
        }
        // SAFETY: `p` is this thread's count of its `Lent` (`first`).
        let lent = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(p) });
        let shared = Arc::strong_count(&lent) > 1;
        if shared {
            // SAFETY: the thread wrote the target when it last lent it (a `Lent` is shared only
            // once lent), and never writes it again once it lets go of it below.
            let node = unsafe { (*lent.target.get()).node };
            if !node.is_null() {
                // The node is the entry's, still in the table: a count of its own for `keep`.
                // SAFETY: from `Arc::into_raw` of a live `FacadeCounter` (`CounterSlot`).
                let _ = lent.keep.set(unsafe {
                    Arc::increment_strong_count(node);
                    Arc::from_raw(node)
                });
            }
        }
        if shared || exiting {
            LENT.with(|l| l.set(std::ptr::null()));
            drop(std::mem::ManuallyDrop::into_inner(lent));
        }
    }
}

impl CounterFn for Lent {
    #[inline]
    fn increment(&self, value: u64) {
        // SAFETY: see `Lent`'s `Sync`: the target and what it points at are alive while `self` is.
        let t = unsafe { *self.target.get() };
        // SAFETY: the target's node, alive while `self` is (its entry, or `keep`).
        let node = unsafe { &*t.node };
        if crate::shard::raw_slot() == self.slot {
            // SAFETY: the cell of the shard this thread holds exclusively (its slot), of the node's
            // series, alive with the node.
            crate::storage::add_u64(unsafe { &*t.cell }, value, true);
            node.exemplar(value);
        } else {
            node.increment(value);
        }
    }

    fn absolute(&self, value: u64) {
        // SAFETY: as in `increment`.
        unsafe { &*(*self.target.get()).node }.absolute(value);
    }
}

impl FacadeCounter {
    /// Records the thread's current exemplar, if any, for an increment by `value`.
    #[inline(always)]
    fn exemplar(&self, value: u64) {
        crate::exemplar::with_current(|labels| self.value.0.set_exemplar(value, labels.into()));
    }
}

impl CounterFn for FacadeCounter {
    #[inline]
    fn increment(&self, value: u64) {
        self.value.0.add(value);
        self.exemplar(value);
    }

    fn absolute(&self, value: u64) {
        self.value
            .0
            .absolute_at(crate::shard::current(self.value.0.layout()), value);
    }
}

impl GaugeFn for FacadeGauge {
    #[inline]
    fn increment(&self, value: f64) {
        self.value.0.add(value);
    }

    #[inline]
    fn decrement(&self, value: f64) {
        self.value.0.add(-value);
    }

    #[inline]
    fn set(&self, value: f64) {
        self.value.0.set(value);
    }
}

impl HistogramFn for FacadeHistogram {
    #[inline]
    fn record(&self, value: f64) {
        match &self.value {
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
        match &self.value {
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
        self.value.0.add(1);
    }

    fn absolute(&self, _: u64) {
        self.value.0.add(1);
    }
}

impl GaugeFn for FacadeError {
    fn increment(&self, _: f64) {
        self.value.0.add(1);
    }

    fn decrement(&self, _: f64) {
        self.value.0.add(1);
    }

    fn set(&self, _: f64) {
        self.value.0.add(1);
    }
}

impl HistogramFn for FacadeError {
    fn record(&self, _: f64) {
        self.value.0.add(1);
    }
}

/// A resolved facade key, in this thread's table for its kind: one cache line holding the key's
/// strings as addresses and lengths (of the strings of the key in the handle's node, which the
/// handle keeps alive), so a hit reads this line, then the handle's node for its reference count
/// and cells, and nothing else. A cloned `Key` in the entry (its label array an allocation of its
/// own) would make a hit read four or five lines: over a working set of 5,000 two-label series
/// per thread that no longer fits in a 2 MiB L2 cache (cachegrind, simulating one: 0.38 misses
/// per hit, against 0.006 with this entry; see BENCHMARKS.md).
///
/// Every entry of a table was resolved at the table's epoch ([`thread_cache::Table::epoch`]).
#[repr(C, align(64))]
struct Entry<T> {
    /// The registry's id; a registry whose id does not fit in 32 bits is not cached.
    registry: u32,
    /// The low half of the key's hash: the table's index bits.
    hash: u32,
    /// The name, [`pack`]ed; or [`SPILLED`] for a key compared through the node's `Key`, whose
    /// address `pairs[0][0]` then holds: more than two labels, or a string [`pack`] cannot hold.
    name: NonZeroU64,
    /// Each label's key and value, [`pack`]ed, in the key's order; `[0, 0]` past its labels.
    pairs: [[u64; 2]; 2],
    handle: T,
}

const _: () = assert!(std::mem::size_of::<Option<Entry<CounterSlot>>>() == 64);
const _: () = assert!(std::mem::size_of::<Option<Entry<Histogram>>>() == 64);

/// [`Entry::name`] of a key compared through its `Key`; never a packed string (their address
/// is not 0, so they are at least `1 << 16`).
const SPILLED: NonZeroU64 = NonZeroU64::MIN;

/// A string as its address (48 bits: user-space addresses on x86-64 and AArch64 Linux, unless a
/// mapping asks for more) and length (16 bits), or `None` when it does not fit (its entry is then
/// [`SPILLED`]).
fn pack(s: &str) -> Option<u64> {
    let ptr = s.as_ptr() as u64;
    (ptr >> 48 == 0 && s.len() >> 16 == 0 && ptr != 0).then_some(ptr << 16 | s.len() as u64)
}

/// Whether `s` is the [`pack`]ed string `packed`: by address first (a `static` name, label key or
/// value, and every string of a `static` key, is the very string the cached key holds), then by
/// bytes (a string built at run time).
///
/// # Safety
///
/// `packed` is 0 or the packing of a string that is alive while the call runs.
#[inline(always)]
unsafe fn is_packed(packed: u64, s: &str) -> bool {
    let (ptr, len) = ((packed >> 16) as *const u8, (packed & 0xFFFF) as usize);
    len == s.len()
        && (std::ptr::eq(ptr, s.as_ptr())
            || packed != 0 && {
                // SAFETY: as the caller promises.
                let stored = unsafe { std::slice::from_raw_parts(ptr, len) };
                crate::manager::same_bytes(stored, s.as_bytes())
            })
}

impl<T> thread_cache::Entry for Entry<T> {
    fn hash(&self) -> u64 {
        u64::from(self.hash)
    }
}

impl<T> Entry<T> {
    /// The entry caching `handle` for `key` (the key in the handle's node, alive as long as the
    /// handle) in registry `registry`, or `None` when the registry's id does not fit.
    fn new(registry: u64, key: &Key, handle: T) -> Option<Self> {
        let registry = u32::try_from(registry).ok()?;
        let labels = key.labels().as_slice();
        let packed = || -> Option<(NonZeroU64, [[u64; 2]; 2])> {
            let name = NonZeroU64::new(pack(key.name())?)?;
            let mut pairs = [[0; 2]; 2];
            if labels.len() > pairs.len() {
                return None;
            }
            for (p, l) in pairs.iter_mut().zip(labels) {
                *p = [pack(l.key())?, pack(l.value())?];
            }
            Some((name, pairs))
        };
        let (name, pairs) = packed().unwrap_or((SPILLED, [[std::ptr::from_ref(key) as u64, 0], [0; 2]]));
        Some(Self {
            registry,
            hash: key.get_hash() as u32,
            name,
            pairs,
            handle,
        })
    }

    /// Whether it is the entry of `key` (hash `hash`) in registry `registry`.
    #[inline(always)]
    fn is(&self, hash: u64, registry: u64, key: &Key) -> bool {
        if u64::from(self.registry) != registry || self.hash != hash as u32 {
            return false;
        }
        if self.name == SPILLED {
            return self.is_spilled(key);
        }
        let [p, q] = &self.pairs;
        // SAFETY: the packed strings are those of the key in the node `handle` holds, alive with
        // `self` (`Entry::new`); an absent label's pair is 0.
        unsafe {
            is_packed(self.name.get(), key.name())
                && match key.labels().as_slice() {
                    [] => p[0] == 0,
                    [a] => q[0] == 0 && is_packed(p[0], a.key()) && is_packed(p[1], a.value()),
                    [a, b] => {
                        is_packed(p[0], a.key())
                            && is_packed(p[1], a.value())
                            && is_packed(q[0], b.key())
                            && is_packed(q[1], b.value())
                    }
                    _ => false,
                }
        }
    }

    /// [`Entry::is`] for a [`SPILLED`] entry: compares the whole key.
    #[inline(never)]
    fn is_spilled(&self, key: &Key) -> bool {
        // SAFETY: `pairs[0][0]` of a spilled entry is the address of the key in the node `handle`
        // holds, alive with `self` (`Entry::new`).
        same_key(unsafe { &*(self.pairs[0][0] as *const Key) }, key)
    }
}

/// One thread's resolved facade handles of one kind, by the key's precomputed hash (see
/// [`thread_cache`]): at most 32,768 entries (2 MiB) and 128 KiB of index at the cap, plus a
/// node of 88 bytes per entry.
type Table<T> = thread_cache::Table<Entry<T>>;

thread_local! {
    /// This thread's tables. Const-initialised and without `Drop` (plain data): a hit reads its
    /// table's slot pointer and mask with thread-local loads and no state check. Freed by
    /// [`CACHES_GUARD`] when the thread exits.
    static COUNTERS: UnsafeCell<Table<CounterSlot>> = const { UnsafeCell::new(Table::new()) };
    static GAUGES: UnsafeCell<Table<Gauge>> = const { UnsafeCell::new(Table::new()) };
    static HISTOGRAMS: UnsafeCell<Table<Histogram>> = const { UnsafeCell::new(Table::new()) };
    /// Frees the tables when the thread exits; registered by the first insert.
    static CACHES_GUARD: CachesGuard = const { CachesGuard };
}

/// One of the thread-local tables.
type Local<T> = &'static LocalKey<UnsafeCell<Table<T>>>;

/// What resolves a key of one kind on a cache miss: the handle, and the key in its node.
type Resolve<T> = fn(&MetricsRecorder, &Key) -> (T, NonNull<Key>);

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
        Lent::let_go(true);
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
/// `clone` or a lend (`Slot::lend`), dropping entries whose handles drop no facade state), never
/// `resolve`.
#[inline(always)]
unsafe fn table<T>(local: Local<T>) -> &'static mut Table<T> {
    // SAFETY: the pointer is to this thread's live thread-local (const-initialised, no
    // destructor: it is never torn down while the thread runs); exclusivity is the caller's.
    unsafe { &mut *local.with(UnsafeCell::get) }
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
    /// The handle for `key` from this thread's cache, resolving (and caching) it on a miss. The
    /// hit in the key's home slot (most keys are in theirs) is inlined: the table's epoch, then
    /// the entry's registry, hash and the key's strings by address (by bytes for those built at
    /// run time), all in the entry's one line. Everything else is the out-of-line `miss`.
    #[inline(always)]
    fn cached<T: Slot>(&self, key: &Key, local: Local<T>, resolve: Resolve<T>) -> T::Handle {
        let hash = key.get_hash();
        // SAFETY: the reference lives for this block only, which calls no code that reaches the
        // table (compares, and a handle's `clone` or lend).
        let t = unsafe { table(local) };
        if let Some(e) = t.home(hash) {
            if t.epoch() == cache_epoch() && e.is(hash, self.id, key) {
                return e.handle.lend(t.slots() >= LEND_FROM_SLOTS);
            }
        }
        self.miss(key, local, resolve)
    }

    /// [`MetricsRecorder::cached`] past its fast hit: a key past its home slot, a key not cached
    /// (or cached at an older epoch), or a thread whose tables are gone (thread teardown).
    #[inline(never)]
    fn miss<T: Slot>(&self, key: &Key, local: Local<T>, resolve: Resolve<T>) -> T::Handle {
        let epoch = cache_epoch();
        let hash = key.get_hash();
        // SAFETY: as in `cached`.
        let t = unsafe { table(local) };
        if t.epoch() == epoch {
            if let Some(e) = t.find(hash, |e| e.is(hash, self.id, key)) {
                return e.handle.lend(t.slots() >= LEND_FROM_SLOTS);
            }
        }
        // Resolving may log, and a logger may record through the facade: no reference into the
        // table is held meanwhile.
        thread_cache::count_resolve();
        let (slot, cached) = resolve(self, key);
        let handle = slot.owned();
        T::before_drop();
        // SAFETY: as in `cached`; the re-entrant calls during `resolve` have ended. Dropping the
        // entries `insert` replaces drops handles only.
        let t = unsafe { table(local) };
        // The first entry registers the guard that frees the table; during thread teardown (the
        // guard gone) nothing is cached.
        if t.is_allocated() || CACHES_GUARD.try_with(|_| ()).is_ok() {
            // SAFETY: `cached` is the key in the node `slot` holds (`node`).
            if let Some(entry) = Entry::new(self.id, unsafe { cached.as_ref() }, slot) {
                t.insert(epoch, entry);
            }
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
            Ok(Ok(c)) => node(key, ErrorValue(c)),
            _ => unreachable!("the facade error self-metric is a one-label counter"),
        }
    }

    fn resolve_counter(&self, key: &Key) -> (CounterSlot, NonNull<Key>) {
        match self.resolve(MetricKind::Counter, key).map(counter_cell) {
            Ok(Ok(c)) => with_key(node(key, CounterValue(c)), CounterSlot::counter),
            Ok(Err(_)) => with_key(
                self.error(
                    key,
                    MetricsError::DefinitionConflict {
                        metric: key.name().to_owned(),
                        registered: "a float counter set by a collector".into(),
                        requested: "an integer counter from the `metrics` facade".into(),
                    },
                ),
                CounterSlot::error,
            ),
            Err(e) => with_key(self.error(key, e), CounterSlot::error),
        }
    }

    fn resolve_gauge(&self, key: &Key) -> (Gauge, NonNull<Key>) {
        let gauge = |s| match s {
            Series::Gauge(g) => Ok(g),
            s => Err(s),
        };
        match self.resolve(MetricKind::Gauge, key).map(|s| s.try_map(gauge)) {
            Ok(Ok(g)) => with_key(node(key, GaugeValue(g)), Gauge::from_arc),
            Ok(Err(_)) => unreachable!("a gauge family holds gauge series"),
            Err(e) => with_key(self.error(key, e), Gauge::from_arc),
        }
    }

    fn resolve_histogram(&self, key: &Key) -> (Histogram, NonNull<Key>) {
        let held = match self.resolve(MetricKind::Histogram, key) {
            Ok(held) => held,
            Err(e) => return with_key(self.error(key, e), Histogram::from_arc),
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
        with_key(node(key, sink), Histogram::from_arc)
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use metrics::Label;

    /// Keys that differ in one part each, and equal keys built apart: `Entry::is` says what
    /// `same_key` says for every pair, whichever way the entry holds its key (packed, spilled).
    #[test]
    fn an_entry_matches_exactly_the_keys_equal_to_its_own() {
        let long = "v".repeat(70_000);
        let owned = |name: &str, labels: &[(&str, &str)]| {
            let labels: Vec<Label> = labels
                .iter()
                .map(|(k, v)| Label::new(k.to_string(), v.to_string()))
                .collect();
            Key::from_parts(name.to_string(), labels)
        };
        static STATIC_LABELS: [Label; 2] = [Label::from_static_parts("a", "1"), Label::from_static_parts("b", "2")];
        let mut keys = vec![Key::from_static_parts("m", &STATIC_LABELS)];
        for name in ["m", "n", "mm"] {
            keys.push(owned(name, &[]));
            keys.push(owned(name, &[("a", "1")]));
            keys.push(owned(name, &[("a", "2")]));
            keys.push(owned(name, &[("b", "1")]));
            keys.push(owned(name, &[("a", "1"), ("b", "2")]));
            keys.push(owned(name, &[("a", "1"), ("b", "3")]));
            keys.push(owned(name, &[("b", "2"), ("a", "1")]));
            keys.push(owned(name, &[("a", "1"), ("b", "2"), ("c", "3")]));
            keys.push(owned(name, &[("a", "1"), ("b", "2"), ("c", "4")]));
            keys.push(owned(name, &[("a", &long)]));
            keys.push(owned(name, &[("a", &long[1..])]));
        }
        let nodes: Vec<Arc<Node<()>>> = keys.iter().map(|k| node(k, ())).collect();
        for (i, n) in nodes.iter().enumerate() {
            let e = Entry::new(7, &n.key, ()).expect("a registry id that fits");
            let spilled = e.name == SPILLED;
            assert_eq!(
                spilled,
                n.key.labels().len() > 2 || n.key.labels().any(|l| l.value().len() > 0xFFFF)
            );
            for (j, k) in keys.iter().enumerate() {
                // A clone of the probe, so the owned strings compare by bytes, not by address.
                let probe = k.clone();
                let want = same_key(&n.key, &probe);
                // The same name and labels in the same order (`Key`'s `==` ignores the order).
                let equal = keys[i].name() == keys[j].name() && keys[i].labels().eq(keys[j].labels());
                assert_eq!(want, equal, "keys {i} and {j}");
                assert_eq!(
                    e.is(probe.get_hash(), 7, &probe),
                    want,
                    "entry {i} ({spilled}), key {j}"
                );
                assert!(!e.is(probe.get_hash(), 8, &probe), "another registry");
            }
            // The node's own key matches by address.
            assert!(e.is(n.key.get_hash(), 7, &n.key));
        }
        assert!(
            Entry::new(1 << 32, &nodes[0].key, ()).is_none(),
            "an id past u32 is not cached"
        );
    }
}
