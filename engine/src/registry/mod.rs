//! The registry: families by name, series by label values.
//!
//! Registration and the first use of a label set take a lock (the family's series index, see
//! [`SeriesMap`]); recording on a series that is already resolved never does: handles and the
//! per-thread caches hold the series' cells directly. An encoder walks a family's series without
//! any lock ([`SeriesMap::iter`]), so a scrape delays neither a recording nor the creation of a
//! series.
//!
//! # Label sets of a facade family
//!
//! A family registered through the manager has fixed label names. A family the `metrics` facade
//! created takes every label set its name is used with, as Prometheus allows: `counter!("x",
//! "method" => "GET")`, `counter!("x", "method" => "POST", "status" => "200")` and `counter!("x")`
//! are three *variants* of one family `x`. A variant is a [`Family`] of its own label names (in
//! the order of the first call that used them; the same names in another order are the same
//! variant) and series; the family's first variant is the family itself, the others hang off it
//! in an append-only list ([`Family::variants`]) that a walk follows without a lock, like the
//! series of one variant. Name, help, unit and kind are the first variant's; every variant's
//! series count against one series limit (a counter the variants share), and each variant has
//! its own overflow series past it. Appending a variant takes the registry's write lock, so
//! appends are serialised and a walk sees a variant whole or not at all. A family has at most
//! [`MAX_LABEL_SETS`] variants.

mod expiry;
pub(crate) mod labels;
pub(crate) mod limits;
pub mod names;
mod series_map;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::Duration;

pub(crate) use limits::truncate_label_value;
use limits::LogOnce;
pub use limits::MAX_LABEL_VALUE_LEN;
pub use series_map::SeriesMap;

use arc_swap::ArcSwap;

use crate::shard::ShardLayout;
use crate::storage::counter::{CounterCell, CounterChunk, CHUNK_SERIES};
use crate::storage::gauge::GaugeCell;
use crate::storage::histogram::{Buckets, HistogramCell, HistogramCells};
use crate::storage::life::{HasLife, Held, Life};
use crate::storage::native::{NativeCell, NativeCells, NativeSpec};
use crate::storage::summary::{SummaryCell, SummaryCells, SummarySpec};
use crate::{MetricKind, MetricsError};

/// The label value every label of the overflow series has.
pub const OVERFLOW_LABEL_VALUE: &str = "__overflow__";

/// Prometheus' default histogram buckets.
pub const DEFAULT_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The most label sets (of label names, not values) one facade family may have; a further one is
/// refused (counted in `mmo_metrics_facade_errors_total`). Enough for any instrumentation; a label
/// *name* built from data is a bug this stops at a few KiB.
pub const MAX_LABEL_SETS: usize = 64;

/// Quantiles of a summary registered without any.
pub const DEFAULT_QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// Locks, ignoring poison: every critical section here leaves its map consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Settings of a registry.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) shards: u32,
    pub(crate) series_limit: usize,
    pub(crate) facade_family_limit: usize,
    pub(crate) summary_max_age: Duration,
    pub(crate) summary_age_buckets: u32,
    /// What a new facade histogram becomes.
    pub(crate) facade_histograms: crate::compat::FacadeHistograms,
    /// Labels every series is exposed with, unless it has a label of that name itself.
    pub(crate) global_labels: Vec<(String, String)>,
    /// Whether family names are exposed with their unit as a suffix.
    pub(crate) unit_suffixes: bool,
    /// Idle timeout of each kind's series, indexed by [`MetricKind::index`]; `None`: never idle.
    pub(crate) idle_timeouts: [Option<Duration>; 4],
}

/// What a family's series are.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Spec {
    Counter,
    /// A counter whose `f64` total is read from elsewhere (CPU seconds) and set by a collector.
    FloatCounter,
    Gauge,
    Histogram(Arc<Buckets>),
    /// A native histogram, with a classic part when [`NativeSpec::classic`] is set.
    Native(Arc<NativeSpec>),
    Summary(SummarySpec),
}

impl Spec {
    pub(crate) fn kind(&self) -> MetricKind {
        match self {
            Spec::Counter | Spec::FloatCounter => MetricKind::Counter,
            Spec::Gauge => MetricKind::Gauge,
            Spec::Histogram(_) | Spec::Native(_) => MetricKind::Histogram,
            Spec::Summary(_) => MetricKind::Summary,
        }
    }

    fn describe(&self) -> String {
        match self {
            Spec::Histogram(b) => format!("buckets {b:?}"),
            Spec::Native(n) => n.describe(),
            Spec::FloatCounter => "a float counter".into(),
            Spec::Counter => "an integer counter".into(),
            Spec::Summary(s) => format!(
                "quantiles {:?}, max age {:?} in {} buckets",
                s.quantiles, s.max_age, s.age_buckets
            ),
            _ => String::new(),
        }
    }
}

/// One series' cells. A `Series` does not hold the series (see [`Held`]): the family's map keeps
/// these, and hands out held ones ([`Registry::series`]).
#[derive(Clone)]
pub(crate) enum Series {
    Counter(CounterCell),
    /// Monotonic `f64`, one cell (written by collectors, rarely).
    FloatCounter(GaugeCell),
    Gauge(GaugeCell),
    Histogram(HistogramCell),
    /// A native (or classic + native) histogram.
    Native(NativeCell),
    Summary(SummaryCell),
}

impl HasLife for Series {
    fn life(&self) -> &Life {
        match self {
            Series::Counter(c) => c.life(),
            Series::FloatCounter(g) | Series::Gauge(g) => g.life(),
            Series::Histogram(h) => h.life(),
            Series::Native(h) => h.life(),
            Series::Summary(s) => s.life(),
        }
    }
}

/// A series held while this value lives: recording through it is never lost to expiry.
pub(crate) type HeldSeries = Held<Series>;

/// A metric family: name, help, label names and its series.
pub(crate) struct Family {
    /// The name as exposed, without a counter's `_total`.
    pub(crate) name: Box<str>,
    pub(crate) spec: Spec,
    pub(crate) label_names: Box<[Box<str>]>,
    help: Mutex<Option<Arc<str>>>,
    unit: Mutex<Option<metrics::Unit>>,
    /// Lookups and creation lock the current map; walks do not ([`SeriesMap::iter`]). Removal
    /// builds a map of the series that stay and swaps it in under the old map's lock (see
    /// [`expiry`]); a walk goes on over the map it loaded.
    pub(crate) series: ArcSwap<SeriesMap<Series>>,
    /// Held for the family's life: the overflow series never expires.
    overflow: OnceLock<HeldSeries>,
    /// Counts only self-metrics: their own overflow is not counted again.
    is_self_metric: bool,
    /// Whether the `metrics` facade created the family: only those take other label sets.
    facade: bool,
    /// Series created in the family, every variant's, checked against the series limit (the
    /// overflow series are not counted). Shared by the variants. Relaxed: only the number matters,
    /// and each variant's series are created under its map's lock.
    created: Arc<AtomicUsize>,
    /// The next variant: the same family with another label set (see the module doc). Set once,
    /// under the registry's write lock; read without a lock.
    next: OnceLock<Arc<Family>>,
    /// Removed counter series waiting for the walks that may still reach them (see [`expiry`]).
    retiring: Mutex<expiry::Retiring>,
}

impl Family {
    pub(crate) fn kind(&self) -> MetricKind {
        self.spec.kind()
    }

    pub(crate) fn help(&self) -> Option<Arc<str>> {
        lock(&self.help).clone()
    }

    pub(crate) fn unit(&self) -> Option<metrics::Unit> {
        *lock(&self.unit)
    }

    /// The family's variants, itself first, in the order they were added. Takes no lock.
    pub(crate) fn variants(&self) -> impl Iterator<Item = &Family> {
        std::iter::successors(Some(self), |f| f.next.get().map(|n| &**n))
    }

    /// Whether this variant's label names are `labels`, in any order.
    fn has_labels(&self, labels: &[&str]) -> bool {
        self.label_names.len() == labels.len()
            && self.label_names.iter().all(|n| labels.contains(&&**n))
            && labels.iter().all(|l| self.label_names.iter().any(|n| **n == **l))
    }

    /// Takes one place under the series limit `limit`, if one is left.
    fn take_place(&self, limit: usize) -> bool {
        self.created
            .fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1))
            .is_ok()
    }

    /// Gives back `n` places under the series limit (series removed).
    pub(crate) fn give_places(&self, n: usize) {
        self.created.fetch_sub(n, Relaxed);
    }

    pub(crate) fn arity_error(&self, values: &[&str]) -> MetricsError {
        MetricsError::LabelArity {
            metric: self.name.to_string(),
            expected: self.label_names.join(", "),
            expected_len: self.label_names.len(),
            found: values.len(),
            found_values: values.join(", "),
        }
    }
}

struct Families {
    by_name: BTreeMap<Box<str>, Arc<Family>>,
    /// Sample name → family exposing it.
    samples: HashMap<String, Box<str>>,
    /// Families the facade created, checked against [`Config::facade_family_limit`].
    facade_created: usize,
}

/// Who asks for a family: the facade's are counted against the facade family limit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The manager's API (`register_*`).
    Api,
    /// The registry itself.
    SelfMetric,
    /// The `metrics` facade, for a name seen for the first time.
    Facade,
}

/// Self-metrics every registry has.
pub(crate) struct SelfMetrics {
    pub(crate) overflow: Arc<Family>,
    pub(crate) facade_errors: Arc<Family>,
    pub(crate) collector_panics: Arc<Family>,
    pub(crate) label_value_truncated: Arc<Family>,
    pub(crate) facade_family_overflow: Arc<Family>,
    pub(crate) facade_renamed: Arc<Family>,
}

/// Name and values of the overflow self-metric.
pub const SERIES_OVERFLOW_METRIC: &str = "mmo_metrics_series_overflow";
/// Name of the self-metric counting facade calls that could not be recorded.
pub const FACADE_ERRORS_METRIC: &str = "mmo_metrics_facade_errors";
/// Name of the self-metric counting collector panics.
pub const COLLECTOR_PANICS_METRIC: &str = "mmo_metrics_collector_panics";

/// Name of the self-metric counting label values the facade truncated, by metric.
pub const LABEL_VALUE_TRUNCATED_METRIC: &str = "mmo_metrics_label_value_truncated";
/// Name of the self-metric counting, once each, the facade metrics whose name or label keys were
/// not valid Prometheus names and were sanitised, by original metric name.
pub const FACADE_RENAMED_METRIC: &str = "mmo_metrics_facade_renamed";
/// Name of the self-metric counting facade calls folded into an overflow family, by kind.
pub const FACADE_FAMILY_OVERFLOW_METRIC: &str = "mmo_metrics_facade_family_overflow";
/// The family facade counters with a new name land in past the facade family limit.
pub const FACADE_OVERFLOW_COUNTER_METRIC: &str = "mmo_metrics_facade_overflow_counter";
/// The family facade gauges with a new name land in past the facade family limit.
pub const FACADE_OVERFLOW_GAUGE_METRIC: &str = "mmo_metrics_facade_overflow_gauge";
/// The family facade histograms with a new name land in past the facade family limit.
pub const FACADE_OVERFLOW_HISTOGRAM_METRIC: &str = "mmo_metrics_facade_overflow_histogram";

/// Unit and help of a family described before it exists.
type Description = (Option<metrics::Unit>, Arc<str>);

/// All families of one [`crate::MetricsManager`].
pub(crate) struct Registry {
    pub(crate) id: u64,
    pub(crate) config: Config,
    pub(crate) layout: ShardLayout,
    families: RwLock<Families>,
    /// The chunk new counter series take their cells from, and the next free cell in it.
    arena: Mutex<(Option<Arc<CounterChunk>>, usize)>,
    /// `describe_*!` seen before the family exists: name → (unit, help).
    pending: Mutex<HashMap<String, Description>>,
    /// Facade problems already logged (logged once each, up to a bound).
    logged: Mutex<LogOnce>,
    self_metrics: OnceLock<SelfMetrics>,
    /// The families facade calls with a new name land in past the facade family limit: counter,
    /// gauge, histogram; made on first use.
    facade_overflow: [OnceLock<Result<Arc<Family>, MetricsError>>; 3],
    /// Whether the facade family limit was reached (and logged).
    facade_limit_reached: AtomicBool,
    /// Whether a sweep has work to do without an idle timeout: series were asked to be removed
    /// since the last sweep, or a sweep left some (asked to be removed but held, or removed
    /// counter series waiting for a walk to end before they are retired).
    sweep_pending: AtomicBool,
    /// Held by the sweep: sweeps do not overlap.
    sweeping: Mutex<()>,
    /// The [`clock`](crate::storage::life::clock) at the last sweep's start.
    last_sweep: AtomicU32,
}

/// A registry that goes (its last manager and recorder dropped) makes every thread's per-thread
/// cache let go of its entries at its next insert (see [`crate::thread_cache::registry_dropped`]),
/// and with them the series of this registry they hold, which would otherwise stay allocated
/// until the thread exits or reuses their slots (a program making managers one after another, as
/// tests and fuzz targets do, grew by the series of each).
impl Drop for Registry {
    fn drop(&mut self) {
        crate::thread_cache::registry_dropped();
    }
}

/// The name a family is stored under: a counter's without `_total`.
pub(crate) fn canonical(kind: MetricKind, name: &str) -> &str {
    match kind {
        MetricKind::Counter => match name.strip_suffix("_total") {
            Some(base) if !base.is_empty() => base,
            _ => name,
        },
        _ => name,
    }
}

fn sample_names(kind: MetricKind, name: &str) -> Vec<String> {
    match kind {
        MetricKind::Counter => vec![name.to_owned(), format!("{name}_total"), format!("{name}_created")],
        MetricKind::Gauge => vec![name.to_owned()],
        MetricKind::Histogram => ["", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .map(|s| format!("{name}{s}"))
            .collect(),
        MetricKind::Summary => ["", "_sum", "_count", "_created"]
            .iter()
            .map(|s| format!("{name}{s}"))
            .collect(),
    }
}

/// The default buckets, built once and shared by every family that uses them.
pub(crate) fn default_buckets() -> Arc<Buckets> {
    static DEFAULT: OnceLock<Arc<Buckets>> = OnceLock::new();
    Arc::clone(DEFAULT.get_or_init(|| Arc::new(Buckets::new(&DEFAULT_BUCKETS))))
}

/// Checks and normalises histogram buckets: finite, strictly increasing; a trailing `+Inf` is
/// dropped (it is always there); empty means the default buckets.
pub(crate) fn check_buckets(metric: &str, buckets: &[f64]) -> Result<Arc<Buckets>, MetricsError> {
    if buckets.is_empty() {
        return Ok(default_buckets());
    }
    let b = match buckets.split_last() {
        Some((last, rest)) if *last == f64::INFINITY => rest,
        _ => buckets,
    };
    let err = |reason: &str| MetricsError::InvalidBuckets {
        metric: metric.to_owned(),
        found: format!("{buckets:?}"),
        reason: reason.to_owned(),
    };
    if b.iter().any(|v| !v.is_finite()) {
        return Err(err("every bound must be finite (+Inf is implicit)"));
    }
    if b.windows(2).any(|w| w[0] >= w[1]) {
        return Err(err("bounds must be strictly increasing"));
    }
    Ok(Arc::new(Buckets::new(b)))
}

/// Checks summary quantiles (in `[0, 1]`, strictly increasing; empty means the defaults) and window.
pub(crate) fn check_summary(
    metric: &str,
    quantiles: &[f64],
    max_age: Duration,
    age_buckets: u32,
) -> Result<SummarySpec, MetricsError> {
    let qs: &[f64] = if quantiles.is_empty() {
        &DEFAULT_QUANTILES
    } else {
        quantiles
    };
    let err = |reason: &str, found: String| MetricsError::InvalidSummary {
        metric: metric.to_owned(),
        found,
        reason: reason.to_owned(),
    };
    if qs.iter().any(|q| !(0.0..=1.0).contains(q)) {
        return Err(err("quantiles must be within [0, 1]", format!("{quantiles:?}")));
    }
    if qs.windows(2).any(|w| w[0] >= w[1]) {
        return Err(err("quantiles must be strictly increasing", format!("{quantiles:?}")));
    }
    if age_buckets == 0 || max_age.as_millis() < u128::from(age_buckets) {
        return Err(err(
            "the window needs at least one age bucket and at least 1 ms per bucket",
            format!("max age {max_age:?} in {age_buckets} buckets"),
        ));
    }
    Ok(SummarySpec {
        quantiles: qs.into(),
        max_age,
        age_buckets,
    })
}

fn next_registry_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Relaxed)
}

impl Registry {
    pub(crate) fn new(config: Config) -> Arc<Self> {
        let layout = ShardLayout::new(config.shards);
        let registry = Arc::new(Self {
            id: next_registry_id(),
            config,
            layout,
            families: RwLock::new(Families {
                by_name: BTreeMap::new(),
                samples: HashMap::new(),
                facade_created: 0,
            }),
            arena: Mutex::new((None, CHUNK_SERIES)),
            pending: Mutex::new(HashMap::new()),
            logged: Mutex::new(LogOnce::default()),
            self_metrics: OnceLock::new(),
            facade_overflow: Default::default(),
            facade_limit_reached: AtomicBool::new(false),
            sweep_pending: AtomicBool::new(false),
            sweeping: Mutex::new(()),
            last_sweep: AtomicU32::new(crate::storage::life::clock().wrapping_sub(expiry::READ_SWEEP_INTERVAL_MS)),
        });
        let counter = |name: &str, help: &str, label: &str| {
            registry
                .register_family(name, help, &[label], Spec::Counter, Origin::SelfMetric)
                .ok()
                .flatten()
                .expect("self-metric names are valid")
        };
        let sm = SelfMetrics {
            overflow: counter(
                SERIES_OVERFLOW_METRIC,
                "Label sets folded into a metric's overflow series because it reached its series limit.",
                "metric",
            ),
            facade_errors: counter(
                FACADE_ERRORS_METRIC,
                "`metrics` facade calls that could not be recorded (invalid name or labels, type conflict).",
                "metric",
            ),
            collector_panics: counter(
                COLLECTOR_PANICS_METRIC,
                "Custom collector runs that panicked.",
                "collector",
            ),
            label_value_truncated: counter(
                LABEL_VALUE_TRUNCATED_METRIC,
                "`metrics` facade label values cut to the maximum label value length.",
                "metric",
            ),
            facade_family_overflow: counter(
                FACADE_FAMILY_OVERFLOW_METRIC,
                "`metrics` facade names folded into an overflow family because the facade family limit was reached.",
                "kind",
            ),
            facade_renamed: counter(
                FACADE_RENAMED_METRIC,
                "`metrics` facade metrics whose name or label keys were not valid Prometheus names and were \
                 sanitised (invalid characters replaced by `_`), each counted once, by original name.",
                "metric",
            ),
        };
        let _ = registry.self_metrics.set(sm);
        registry
    }

    pub(crate) fn self_metrics(&self) -> &SelfMetrics {
        self.self_metrics.get().expect("set in Registry::new")
    }

    fn families(&self) -> std::sync::RwLockReadGuard<'_, Families> {
        self.families.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The family stored under `name` (for a counter, with or without `_total`).
    pub(crate) fn find(&self, kind: MetricKind, name: &str) -> Option<Arc<Family>> {
        let f = self.families();
        f.by_name
            .get(name)
            .or_else(|| f.by_name.get(canonical(kind, name)))
            .cloned()
    }

    /// Looks a family up for recording, checking its type.
    pub(crate) fn lookup(&self, kind: MetricKind, name: &str) -> Result<Arc<Family>, MetricsError> {
        match self.find(kind, name) {
            Some(f) if f.kind() == kind => Ok(f),
            Some(f) => Err(MetricsError::TypeConflict {
                metric: name.to_owned(),
                registered: f.kind(),
                requested: kind,
            }),
            None => Err(MetricsError::NotRegistered {
                metric: name.to_owned(),
                requested: kind,
            }),
        }
    }

    /// All families, in name order.
    pub(crate) fn all(&self) -> Vec<Arc<Family>> {
        self.families().by_name.values().cloned().collect()
    }

    /// Registers a family, or returns the one registered with the same definition.
    pub(crate) fn register(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        spec: Spec,
    ) -> Result<Arc<Family>, MetricsError> {
        self.register_family(name, help, labels, spec, Origin::Api)
            .map(|f| f.expect("only the facade's families are limited"))
    }

    /// Registers a family for a facade name not seen before; `None` past the facade family limit.
    /// `help` serves until a description (`describe_*!`) is given, and not when one was given
    /// before.
    pub(crate) fn register_facade(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        spec: Spec,
    ) -> Result<Option<Arc<Family>>, MetricsError> {
        self.register_family(name, help, labels, spec, Origin::Facade)
    }

    /// The variant of the facade family `head` with label names `labels` (any order), added when
    /// new. A family the manager registered has only its own label set: another is a
    /// [`MetricsError::DefinitionConflict`].
    pub(crate) fn facade_variant(&self, head: &Arc<Family>, labels: &[&str]) -> Result<Arc<Family>, MetricsError> {
        let conflict = |head: &Family, reason: &str| MetricsError::DefinitionConflict {
            metric: head.name.to_string(),
            registered: format!("labels [{}]{reason}", head.label_names.join(", ")),
            requested: format!("labels [{}]", labels.join(", ")),
        };
        let variants = || std::iter::successors(Some(head), |f| f.next.get());
        if let Some(v) = variants().find(|v| v.has_labels(labels)) {
            return Ok(Arc::clone(v));
        }
        if !head.facade {
            return Err(conflict(head, ""));
        }
        let reserved = match head.kind() {
            MetricKind::Histogram => Some("le"),
            MetricKind::Summary => Some("quantile"),
            _ => None,
        };
        names::check_label_names(&head.name, labels, reserved)?;
        // The write lock serialises appends: the list is searched again under it.
        let _fams = self.families.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = variants().find(|v| v.has_labels(labels)) {
            return Ok(Arc::clone(v));
        }
        let n = variants().count();
        let tail = variants().last().expect("the head is a variant");
        if n >= MAX_LABEL_SETS {
            return Err(conflict(
                head,
                &format!(
                    " and {} more label sets, the most one name may have",
                    MAX_LABEL_SETS - 1
                ),
            ));
        }
        let variant = Arc::new(Family {
            name: head.name.clone(),
            spec: head.spec.clone(),
            label_names: labels.iter().map(|&l| l.into()).collect(),
            help: Mutex::new(None),
            unit: Mutex::new(None),
            series: ArcSwap::from_pointee(SeriesMap::new()),
            overflow: OnceLock::new(),
            is_self_metric: false,
            facade: true,
            created: Arc::clone(&head.created),
            next: OnceLock::new(),
            retiring: Mutex::default(),
        });
        let _ = tail.next.set(Arc::clone(&variant));
        Ok(variant)
    }

    /// Registers a family, or returns the one registered with the same definition; `None` when a
    /// new facade family would pass the facade family limit.
    fn register_family(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        spec: Spec,
        origin: Origin,
    ) -> Result<Option<Arc<Family>>, MetricsError> {
        names::check_metric_name(name)?;
        let kind = spec.kind();
        let reserved = match kind {
            MetricKind::Histogram => Some("le"),
            MetricKind::Summary => Some("quantile"),
            _ => None,
        };
        names::check_label_names(name, labels, reserved)?;
        let base = canonical(kind, name);
        let mut fams = self.families.write().unwrap_or_else(PoisonError::into_inner);
        let existing = fams.by_name.get(base).or_else(|| fams.by_name.get(name)).cloned();
        if let Some(f) = existing {
            // The facade asks only for names it did not find: another thread made the family
            // meanwhile, maybe with another label set or kind, which the facade sorts out.
            if origin == Origin::Facade {
                return Ok(Some(f));
            }
            if f.kind() != kind {
                return Err(MetricsError::TypeConflict {
                    metric: name.to_owned(),
                    registered: f.kind(),
                    requested: kind,
                });
            }
            if f.label_names.iter().map(|s| &**s).ne(labels.iter().copied()) {
                return Err(MetricsError::DefinitionConflict {
                    metric: name.to_owned(),
                    registered: format!("labels [{}]", f.label_names.join(", ")),
                    requested: format!("labels [{}]", labels.join(", ")),
                });
            }
            if f.spec != spec {
                return Err(MetricsError::DefinitionConflict {
                    metric: name.to_owned(),
                    registered: f.spec.describe(),
                    requested: spec.describe(),
                });
            }
            if !help.is_empty() {
                *lock(&f.help) = Some(help.into());
            }
            return Ok(Some(f));
        }
        let samples = sample_names(kind, base);
        for s in &samples {
            if let Some(other) = fams.samples.get(s) {
                return Err(MetricsError::NameCollision {
                    metric: name.to_owned(),
                    sample: s.clone(),
                    other: format!("metric `{other}`"),
                });
            }
        }
        if origin == Origin::Facade {
            if fams.facade_created >= self.config.facade_family_limit {
                return Ok(None);
            }
            fams.facade_created += 1;
        }
        let (pending_unit, pending_help) = lock(&self.pending)
            .remove(base)
            .map_or((None, None), |(u, h)| (u, Some(h)));
        let family = Arc::new(Family {
            name: base.into(),
            spec,
            label_names: labels.iter().map(|&l| l.into()).collect(),
            help: Mutex::new(match (origin, pending_help) {
                // A description given before the first use wins over the facade's generated help.
                (Origin::Facade, Some(pending)) => Some(pending),
                (_, pending) if help.is_empty() => pending,
                _ => Some(help.into()),
            }),
            unit: Mutex::new(pending_unit),
            series: ArcSwap::from_pointee(SeriesMap::new()),
            overflow: OnceLock::new(),
            is_self_metric: origin == Origin::SelfMetric,
            facade: origin == Origin::Facade,
            created: Arc::new(AtomicUsize::new(0)),
            next: OnceLock::new(),
            retiring: Mutex::default(),
        });
        for s in samples {
            fams.samples.insert(s, base.into());
        }
        fams.by_name.insert(base.into(), Arc::clone(&family));
        drop(fams);
        if labels.is_empty() {
            // A metric without labels has exactly one series: expose it from the start (at zero).
            self.series(&family, &[])?;
        }
        Ok(Some(family))
    }

    /// Sets help and unit of a family, now or when it is registered (`describe_*!`).
    pub(crate) fn describe(&self, kind: MetricKind, name: &str, unit: Option<metrics::Unit>, help: &str) {
        if let Some(f) = self.find(kind, name) {
            *lock(&f.help) = Some(help.into());
            if unit.is_some() {
                *lock(&f.unit) = unit;
            }
        } else {
            lock(&self.pending).insert(canonical(kind, name).to_owned(), (unit, help.into()));
        }
    }

    fn new_series(&self, family: &Family) -> Series {
        match &family.spec {
            Spec::Counter => {
                let mut arena = lock(&self.arena);
                if arena.1 == CHUNK_SERIES || arena.0.is_none() {
                    *arena = (Some(Arc::new(CounterChunk::new(self.layout))), 0);
                }
                let k = arena.1;
                arena.1 += 1;
                let cell = CounterCell::new(Arc::clone(arena.0.as_ref().expect("set above")), k);
                // The creating thread's shard cell is written now (a page of the chunk is backed
                // at its first write): its first records then take no page fault.
                cell.add(0);
                Series::Counter(cell)
            }
            Spec::Gauge => Series::Gauge(GaugeCell::new()),
            Spec::FloatCounter => Series::FloatCounter(GaugeCell::new()),
            Spec::Histogram(b) => Series::Histogram(Arc::new(HistogramCells::new(self.layout, Arc::clone(b)))),
            Spec::Native(n) => Series::Native(Arc::new(NativeCells::new(self.layout, Arc::clone(n)))),
            Spec::Summary(s) => Series::Summary(Arc::new(SummaryCells::new(self.layout, s.clone()))),
        }
    }

    /// The series of `family` with these label values (in label-name order), held, created on
    /// first use; past the series limit, the family's overflow series.
    pub(crate) fn series(&self, family: &Family, values: &[&str]) -> Result<HeldSeries, MetricsError> {
        if values.len() != family.label_names.len() {
            return Err(family.arity_error(values));
        }
        if let Some(i) = values.iter().position(|v| v.len() > MAX_LABEL_VALUE_LEN) {
            return Err(MetricsError::LabelValueTooLong {
                metric: family.name.to_string(),
                label: family.label_names[i].to_string(),
                limit: MAX_LABEL_VALUE_LEN,
                found: values[i].len(),
            });
        }
        // A series that exists is found without a lock or an allocation.
        if let Some(s) = family.series.load().get(values) {
            if let Ok(held) = Held::new(s.clone()) {
                return Ok(held);
            }
        }
        let mut buf = Vec::with_capacity(values.iter().map(|v| v.len() + 1).sum());
        labels::encode(values, &mut buf);
        loop {
            match self.find_or_create(family, &buf) {
                Some(Ok(s)) => return Ok(s),
                // Removed by a sweep between the lookup and the hold, or the map was swapped: the
                // sweep is swapping in the map without it; look again there.
                Some(Err(())) => std::thread::yield_now(),
                None => break,
            }
        }
        if !family.is_self_metric {
            self.count_self(&self.self_metrics().overflow, &family.name);
        }
        let overflow = family.overflow.get_or_init(|| {
            let values: Vec<&str> = family.label_names.iter().map(|_| OVERFLOW_LABEL_VALUE).collect();
            labels::encode(&values, &mut buf);
            // The overflow series is exposed with the others; it does not count against the limit.
            // A series that already has the overflow values (made by hand) serves as it.
            let held = loop {
                let map = family.series.load_full();
                let mut w = map.lock();
                if !Arc::ptr_eq(&map, &family.series.load()) {
                    continue;
                }
                let s = match w.get(&buf) {
                    Some(existing) => existing.clone(),
                    None => {
                        let s = self.new_series(family);
                        w.insert(&buf, s.clone());
                        s
                    }
                };
                drop(w);
                match Held::new(s) {
                    Ok(h) => break h,
                    Err(_) => std::thread::yield_now(),
                }
            };
            if !family.is_self_metric {
                tracing::warn!(
                    metric = &*family.name,
                    limit = self.config.series_limit,
                    "metric `{}` reached its limit of {} series; new label sets fold into the `{}` series",
                    family.name,
                    self.config.series_limit,
                    OVERFLOW_LABEL_VALUE
                );
            }
            held
        });
        Ok(overflow.clone())
    }

    /// The series with encoded label values `buf` in the family's current map, created if the
    /// series limit allows, and held: `None` past the limit, `Some(Err(()))` when the series found
    /// was removed before it could be held.
    fn find_or_create(&self, family: &Family, buf: &[u8]) -> Option<Result<HeldSeries, ()>> {
        let map = family.series.load_full();
        let mut w = map.lock();
        // A sweep swaps the map under the old map's lock: a map that is no longer current takes
        // no new series.
        if !Arc::ptr_eq(&map, &family.series.load()) {
            return Some(Err(()));
        }
        let s = match w.get(buf) {
            Some(s) => s.clone(),
            None if family.take_place(self.config.series_limit) => {
                let s = self.new_series(family);
                if !w.insert(buf, s.clone()) {
                    family.give_places(1);
                    return None;
                }
                s
            }
            None => return None,
        };
        drop(w);
        Some(Held::new(s).map_err(drop))
    }

    /// Adds one to a self-metric counter with one label (a metric name, cut to
    /// [`MAX_LABEL_VALUE_LEN`] bytes) only when its series does not exist yet: each label is
    /// counted once (past the series limit, every call is counted in the overflow series).
    pub(crate) fn count_self_once(&self, family: &Family, label: &str) {
        let label = truncate_label_value(label);
        let mut buf = Vec::with_capacity(label.len());
        labels::encode(&[label], &mut buf);
        // Self-metrics never expire: their map is never swapped.
        let map = family.series.load();
        let mut map = map.lock();
        if map.get(&buf).is_some() {
            return;
        }
        if family.take_place(self.config.series_limit) {
            let s = self.new_series(family);
            if let Series::Counter(c) = &s {
                c.add(1);
            }
            if map.insert(&buf, s) {
                return;
            }
            family.created.fetch_sub(1, Relaxed);
        }
        drop(map);
        self.count_self(family, label);
    }

    /// Adds one to a self-metric counter with one label (a metric name, cut to
    /// [`MAX_LABEL_VALUE_LEN`] bytes).
    pub(crate) fn count_self(&self, family: &Family, label: &str) {
        if let Ok(s) = self.series(family, &[truncate_label_value(label)]) {
            if let Series::Counter(c) = &*s {
                c.add(1);
            }
        }
    }
}
