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

use std::cell::RefCell;
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};

use crate::registry::{Registry, Series, Spec};
use crate::storage::counter::CounterCell;
use crate::storage::gauge::GaugeCell;
use crate::storage::histogram::HistogramCell;
use crate::storage::summary::SummaryCell;
use crate::{MetricKind, MetricsError, MetricsManager};

/// The `metrics` recorder of a [`MetricsManager`]; [`MetricsManager::install`] makes it global.
#[derive(Clone)]
pub struct MetricsRecorder {
    registry: Arc<Registry>,
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
        }
    }

    /// Makes this manager the `metrics` facade's global recorder: `counter!`, `gauge!`,
    /// `histogram!` and `describe_*!` then land in this registry. Succeeds once per process.
    pub fn install(&self) -> Result<(), MetricsError> {
        metrics::set_global_recorder(self.recorder()).map_err(|_| MetricsError::AlreadyInstalled)
    }
}

struct FacadeCounter(CachePadded<CounterCell>);
struct FacadeGauge(CachePadded<GaugeCell>);
enum Sink {
    Histogram(HistogramCell),
    Summary(SummaryCell),
}
struct FacadeHistogram(CachePadded<Sink>);

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

/// What a cached key resolved to.
#[derive(Clone)]
enum Resolved {
    Counter(Arc<FacadeCounter>),
    Gauge(Arc<FacadeGauge>),
    Histogram(Arc<FacadeHistogram>),
    /// The key cannot be recorded: each use counts in this self-metric series.
    Error(CounterCell),
}

struct Entry {
    registry: u64,
    kind: MetricKind,
    key: Key,
    resolved: Resolved,
}

const SLOTS: usize = 1024;

thread_local! {
    static CACHE: RefCell<Vec<Option<Entry>>> = const { RefCell::new(Vec::new()) };
}

#[inline(always)]
fn same_key(a: &Key, b: &Key) -> bool {
    if a.get_hash() != b.get_hash() {
        return false;
    }
    let (an, bn) = (a.name(), b.name());
    let (al, bl) = (a.labels().as_slice(), b.labels().as_slice());
    let same_name = std::ptr::eq(an, bn) || an == bn;
    same_name && (std::ptr::eq(al, bl) || al == bl)
}

impl MetricsRecorder {
    #[inline(always)]
    fn cached(&self, kind: MetricKind, key: &Key) -> Option<Resolved> {
        CACHE
            .try_with(|c| {
                let c = c.borrow();
                match c.get(key.get_hash() as usize & (SLOTS - 1)) {
                    Some(Some(e)) if e.registry == self.registry.id && e.kind == kind && same_key(&e.key, key) => {
                        Some(e.resolved.clone())
                    }
                    _ => None,
                }
            })
            .ok()
            .flatten()
    }

    #[cold]
    fn resolve_and_cache(&self, kind: MetricKind, key: &Key) -> Resolved {
        let resolved = match self.resolve(kind, key) {
            Ok(r) => r,
            Err(e) => {
                self.registry.log_once(format!("`metrics` facade call dropped: {e}"));
                let sm = &self.registry.self_metrics().facade_errors;
                match self.registry.series(sm, &[key.name()]) {
                    Ok(Series::Counter(c)) => Resolved::Error(c),
                    _ => unreachable!("the facade error self-metric is a one-label counter"),
                }
            }
        };
        let entry = Entry {
            registry: self.registry.id,
            kind,
            key: key.clone(),
            resolved: resolved.clone(),
        };
        let _ = CACHE.try_with(|c| {
            let mut c = c.borrow_mut();
            if c.is_empty() {
                c.resize_with(SLOTS, || None);
            }
            c[key.get_hash() as usize & (SLOTS - 1)] = Some(entry);
        });
        resolved
    }

    fn resolve(&self, kind: MetricKind, key: &Key) -> Result<Resolved, MetricsError> {
        let name = key.name();
        let label_names: Vec<&str> = key.labels().map(|l| l.key()).collect();
        let family = match self.registry.find(kind, name) {
            Some(f) => f,
            None => {
                let spec = match kind {
                    MetricKind::Counter => Spec::Counter,
                    MetricKind::Gauge => Spec::Gauge,
                    _ => Spec::Histogram(crate::registry::DEFAULT_BUCKETS.as_slice().into()),
                };
                self.registry.register(name, "", &label_names, spec)?
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
        Ok(match self.registry.series(&family, &values)? {
            Series::Counter(c) => Resolved::Counter(Arc::new(FacadeCounter(CachePadded::new(c)))),
            Series::FloatCounter(_) => {
                return Err(MetricsError::DefinitionConflict {
                    metric: name.to_owned(),
                    registered: "a float counter set by a collector".into(),
                    requested: "an integer counter from the `metrics` facade".into(),
                })
            }
            Series::Gauge(g) => Resolved::Gauge(Arc::new(FacadeGauge(CachePadded::new(g)))),
            Series::Histogram(h) => {
                Resolved::Histogram(Arc::new(FacadeHistogram(CachePadded::new(Sink::Histogram(h)))))
            }
            Series::Summary(s) => Resolved::Histogram(Arc::new(FacadeHistogram(CachePadded::new(Sink::Summary(s))))),
        })
    }

    #[inline(always)]
    fn get(&self, kind: MetricKind, key: &Key) -> Resolved {
        match self.cached(kind, key) {
            Some(r) => r,
            None => self.resolve_and_cache(kind, key),
        }
    }
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
        match self.get(MetricKind::Counter, key) {
            Resolved::Counter(c) => Counter::from_arc(c),
            Resolved::Error(e) => {
                e.add(1);
                Counter::noop()
            }
            _ => unreachable!("cached by kind"),
        }
    }

    #[inline]
    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        match self.get(MetricKind::Gauge, key) {
            Resolved::Gauge(g) => Gauge::from_arc(g),
            Resolved::Error(e) => {
                e.add(1);
                Gauge::noop()
            }
            _ => unreachable!("cached by kind"),
        }
    }

    #[inline]
    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        match self.get(MetricKind::Histogram, key) {
            Resolved::Histogram(h) => Histogram::from_arc(h),
            Resolved::Error(e) => {
                e.add(1);
                Histogram::noop()
            }
            _ => unreachable!("cached by kind"),
        }
    }
}
