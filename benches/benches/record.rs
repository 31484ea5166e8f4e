//! Recording cost, ns per operation per thread: mmo-metrics against metrics-exporter-prometheus
//! 0.18, prometheus 0.14 (tikv) and prometheus-client 0.25, in one run.
//!
//! Groups (bench ids are `<group>/<threads>/<library>`):
//!
//! - `counter_handle`: a counter series resolved once, then `increment(1)` / `inc()` per call.
//! - `counter_macro`: a counter looked up **per call** by a static name, then incremented:
//!   `counter!("…").increment(1)` for mmo and metrics-exporter-prometheus (each recorder entered
//!   with `metrics::with_local_recorder`); `MetricsManager::increment_counter(name, 1, &[])` for
//!   `mmo-manager` (our by-name API, not the facade); `IntCounterVec::with_label_values(&[])` for
//!   prometheus (tikv has no lookup by name: a vector without labels is its per-call lookup; its
//!   idiom for a static name is a held `lazy_static` counter, i.e. `counter_handle`);
//!   `Family::get_or_create(&[])` for prometheus-client (an empty label array as the key).
//! - `counter_macro_labels`: the same with two static labels (`"a" => "1", "b" => "2"`);
//!   tikv `with_label_values(&["1", "2"])`, prometheus-client
//!   `get_or_create(&[("a", "1"), ("b", "2")])` on a `Family<[(&str, &str); 2], Counter>`.
//! - `counter_dynamic_label`: one label whose value is picked at run time from 16 strings
//!   (`zone0` … `zone15`, built at start-up, not literals): `counter!("…", "zone" => zone)` with a
//!   `&'static str` value (the facade then builds its key per call, which allocates the label
//!   vector), `increment_counter(name, 1, &[zone])`, tikv `with_label_values(&[zone])`,
//!   prometheus-client `get_or_create(&[("zone", zone)])` (a borrowed `&'static str` key, the
//!   cheapest form its API allows; a `String` key would allocate per call).
//! - `working_set_16`, `working_set_500`, `working_set_5000`: a per-call lookup over a working set
//!   of 16, 500 or 5,000 two-label series, visited round-robin (series `i % n` at operation `i`),
//!   every series created before the timed region: `counter!(name, "kind" => k, "zone" => z)` with
//!   `&'static str` values for mmo and metrics-exporter-prometheus (the macro builds the key per
//!   call, which allocates the label vector), `increment_counter(name, 1, &[k, z])` for
//!   `mmo-manager`, tikv `with_label_values(&[k, z])`, prometheus-client
//!   `get_or_create(&[("kind", k), ("zone", z)])`. `noop-recorder` is the same macro call with
//!   `metrics::NoopRecorder`: what building and dropping the key costs before any recorder does
//!   anything, the floor of every facade case. `handle-floor` (1 thread) is the same macro call
//!   with a recorder that hands every key a clone of one shared counter: no lookup, only the
//!   handle's `Arc` cloned and dropped and a plain add, the least any recorder that hands out a
//!   live handle costs; what a recorder costs above it is its lookup. `2t` is both threads over
//!   the same `n` series, `2t_diff` each thread over its own `n`. Each worker first visits its
//!   series twice untimed (per-thread caches start empty on every sample's new threads).
//! - `gauge_set`: a gauge handle, `set(v)`.
//! - `histogram`: a histogram handle, `record(v)` / `observe(v)`, classic buckets, the default
//!   Prometheus buckets (0.005 … 10) for all four. `histogram_fixed` records the constant 0.042.
//! - `native_histogram`: a native histogram handle at the usual defaults (bucket factor 1.1, i.e.
//!   schema 3; 160 buckets), values as in `histogram`: ours (`register_native_histogram`),
//!   metrics-exporter-prometheus (`set_native_histogram_for_metric`), prometheus-client
//!   (`Histogram::new_native`); tikv has none. `mmo-classic` is our classic histogram in the same
//!   group, for the native/classic ratio.
//! - `exemplar_histogram`, `exemplar_counter`: recording with a `trace_id` exemplar (see
//!   [`exemplar`]); ours and prometheus-client's, the only peer with exemplars.
//! - `summary`: ours `SummaryHandle::observe`; metrics-exporter-prometheus's summary is its
//!   histogram without buckets (rendered as a summary), so its `Histogram::record`. prometheus
//!   (tikv) and prometheus-client have no summary. `summary_fixed` records 0.042.
//!
//! Threads: `1t` one thread; `2t` and `4t` two and four threads on the **same series**; `2t_diff`
//! two threads on two **different series** of the same metric (or, for `counter_macro`, two
//! names). Workers are scoped threads released by a barrier, each doing `iters` operations; the
//! sample is the slowest worker's time, so figures are time per operation per thread. The
//! machine has 2 cores: with `4t` each thread gets at most half a core, so 4t figures are at
//! least twice the per-thread cost even without contention. Each worker does 1,000 untimed
//! operations first (shard slot, per-thread caches).
//!
//! Histogram and summary values cycle through [`mmo_metrics_benches::VALUES`], spread over the default buckets, so the
//! bucket search is not always answered by the first bound.
//!
//! metrics-exporter-prometheus buffers every raw histogram sample until upkeep drains it; the
//! bench drains it (`PrometheusHandle::run_upkeep`) outside the timed region after every sample so
//! memory stays bounded. That drain is not timed.

use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use metrics::Recorder;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use mmo_metrics::{MetricsManager, NativeConfig, DEFAULT_BUCKETS};
use mmo_metrics_benches::{value, MEP, MMO, MMO_MANAGER, PCLIENT, TIKV};

/// Bench id of the `metrics` macros over `metrics::NoopRecorder` (the facade's own cost).
const NOOP: &str = "noop-recorder";
/// Bench id of the `metrics` macros over [`HandleFloor`]: the least any recorder that hands out a
/// live handle costs.
const HANDLE_FLOOR: &str = "handle-floor";

use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PcGauge;
use prometheus_client::metrics::histogram::Histogram as PcHistogram;

/// Untimed operations per worker before the timed region.
const WARM_OPS: u64 = 1_000;

/// The fixed value of the `*_fixed` groups.
#[inline(always)]
fn fixed(_i: u64) -> f64 {
    0.042
}

/// Thread configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Threads {
    One,
    Two,
    Four,
    TwoDiff,
}

impl Threads {
    fn id(self) -> &'static str {
        match self {
            Threads::One => "1t",
            Threads::Two => "2t",
            Threads::Four => "4t",
            Threads::TwoDiff => "2t_diff",
        }
    }

    fn count(self) -> usize {
        match self {
            Threads::One => 1,
            Threads::Two | Threads::TwoDiff => 2,
            Threads::Four => 4,
        }
    }
}

const ALL: &[Threads] = &[Threads::One, Threads::Two, Threads::Four, Threads::TwoDiff];
const ONE_TWO: &[Threads] = &[Threads::One, Threads::Two];
const ONE_TWO_DIFF: &[Threads] = &[Threads::One, Threads::Two, Threads::TwoDiff];

type Rec<'a> = Option<&'a (dyn Recorder + Sync)>;

/// `&a[t]` for thread 0 or 1 without a bounds check (a panic path can keep the operation from
/// being inlined into the timed loop).
#[inline(always)]
fn pick<T>(a: &[T; 2], t: usize) -> &T {
    if t == 0 {
        &a[0]
    } else {
        &a[1]
    }
}

/// Runs `op(thread, i)` for `i in 0..iters` on `threads` threads (the calling one when 1),
/// released together by a barrier after `warm` untimed operations each, each inside `rec` as the
/// local recorder when given; returns the slowest thread's time.
fn run<F: Fn(usize, u64) + Sync>(threads: usize, iters: u64, warm: u64, rec: Rec<'_>, op: &F) -> Duration {
    let body = |t: usize, barrier: Option<&Barrier>| {
        let work = || {
            for i in 0..warm {
                op(t, i);
            }
            if let Some(b) = barrier {
                b.wait();
            }
            let start = Instant::now();
            for i in 0..iters {
                op(t, i);
            }
            start.elapsed()
        };
        match rec {
            Some(r) => metrics::with_local_recorder(r, work),
            None => work(),
        }
    };
    if threads == 1 {
        return body(0, None);
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (body, barrier) = (&body, &barrier);
                s.spawn(move || body(t, Some(barrier)))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("bench worker panicked"))
            .max()
            .expect("workers")
    })
}

type Job<'a> = Box<dyn Fn(u64) -> Duration + 'a>;

/// The cases of one criterion group, run thread configuration by thread configuration (all
/// libraries of `1t`, then of `2t`, …) so the libraries of one row are measured close in time.
struct Group<'a> {
    name: &'static str,
    /// Untimed operations per worker before its timed region.
    warm: u64,
    jobs: Vec<(Threads, &'static str, Job<'a>)>,
}

impl<'a> Group<'a> {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            warm: WARM_OPS,
            jobs: Vec::new(),
        }
    }

    /// Adds `lib` on `configs`: `same(thread, i)` for the same-series configurations,
    /// `diff(thread, i)` (thread 0 and 1 on different series) for `2t_diff`. `after` runs after
    /// every sample, untimed.
    #[allow(clippy::too_many_arguments)]
    fn lib<S, D>(
        &mut self,
        configs: &[Threads],
        lib: &'static str,
        rec: Rec<'a>,
        after: Option<&'a (dyn Fn() + 'a)>,
        same: S,
        diff: D,
    ) where
        S: Fn(usize, u64) + Sync + 'a,
        D: Fn(usize, u64) + Sync + 'a,
    {
        let (same, diff) = (Rc::new(same), Rc::new(diff));
        let warm = self.warm;
        for &th in configs {
            let (same, diff) = (Rc::clone(&same), Rc::clone(&diff));
            let job: Job<'a> = Box::new(move |iters| {
                let t = if th == Threads::TwoDiff {
                    run(th.count(), iters, warm, rec, &*diff)
                } else {
                    run(th.count(), iters, warm, rec, &*same)
                };
                if let Some(a) = after {
                    a();
                }
                t
            });
            self.jobs.push((th, lib, job));
        }
    }

    /// [`Group::lib`] for a pair of held handles: the one-series configurations run `op` on
    /// `pair[0]`, `2t_diff` thread `t` on `pair[t]`, each handle passed through `black_box`.
    fn handles<H, F>(
        &mut self,
        configs: &[Threads],
        lib: &'static str,
        after: Option<&'a (dyn Fn() + 'a)>,
        pair: &'a [H; 2],
        op: F,
    ) where
        H: Sync,
        F: Fn(&H, u64) + Copy + Sync + 'a,
    {
        self.lib(
            configs,
            lib,
            None,
            after,
            move |_, i| op(black_box(&pair[0]), i),
            move |t, i| op(black_box(pick(pair, t)), i),
        );
    }

    fn finish(mut self, c: &mut Criterion) {
        self.jobs.sort_by_key(|(th, _, _)| *th);
        let mut g = c.benchmark_group(self.name);
        g.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_millis(1500))
            .sample_size(15);
        for (th, lib, job) in &self.jobs {
            g.bench_function(format!("{}/{lib}", th.id()), |b| b.iter_custom(job));
        }
        g.finish();
    }
}

fn mep_plain() -> (PrometheusRecorder, PrometheusHandle) {
    let rec = PrometheusBuilder::new().build_recorder();
    let handle = rec.handle();
    (rec, handle)
}

fn mep_buckets() -> (PrometheusRecorder, PrometheusHandle) {
    let rec = PrometheusBuilder::new()
        .set_buckets(&DEFAULT_BUCKETS)
        .expect("valid buckets")
        .build_recorder();
    let handle = rec.handle();
    (rec, handle)
}

type PcFamily<const N: usize, M> = Family<[(&'static str, &'static str); N], M>;
type PcHistFamily = Family<[(&'static str, &'static str); 1], PcHistogram, fn() -> PcHistogram>;

fn pc_histogram() -> PcHistogram {
    PcHistogram::new(DEFAULT_BUCKETS.iter().copied())
}

fn counter_handle(c: &mut Criterion) {
    let m = MetricsManager::new();
    m.register_counter("bench_counter", "Bench counter.", &["s"])
        .expect("register");
    let ours = [
        m.counter("bench_counter", &["a"]).unwrap(),
        m.counter("bench_counter", &["b"]).unwrap(),
    ];
    let (mep, _h) = mep_plain();
    let peer = metrics::with_local_recorder(&mep, || {
        [
            metrics::counter!("bench_counter", "s" => "a"),
            metrics::counter!("bench_counter", "s" => "b"),
        ]
    });
    let tv = prometheus::IntCounterVec::new(prometheus::Opts::new("bench_counter", "Bench counter."), &["s"]).unwrap();
    let tikv = [tv.with_label_values(&["a"]), tv.with_label_values(&["b"])];
    let pf = PcFamily::<1, PcCounter>::default();
    let pc = [
        pf.get_or_create_owned(&[("s", "a")]),
        pf.get_or_create_owned(&[("s", "b")]),
    ];

    let mut g = Group::new("counter_handle");
    g.handles(ALL, MMO, None, &ours, |h, _| {
        h.increment(1);
    });
    g.handles(ALL, MEP, None, &peer, |h, _| {
        h.increment(1);
    });
    g.handles(ALL, TIKV, None, &tikv, |h, _| {
        h.inc();
    });
    g.handles(ALL, PCLIENT, None, &pc, |h, _| {
        h.inc();
    });
    g.finish(c);
}

fn counter_macro(c: &mut Criterion) {
    let m = MetricsManager::new();
    for name in ["bench_macro_total", "bench_macro_a_total", "bench_macro_b_total"] {
        m.register_counter(name, "Bench counter.", &[]).expect("register");
    }
    let ours = m.recorder();
    let (mep, _h) = mep_plain();
    let opts = |name: &str| prometheus::Opts::new(name, "Bench counter.");
    let tv = [
        prometheus::IntCounterVec::new(opts("bench_macro_total"), &[]).unwrap(),
        prometheus::IntCounterVec::new(opts("bench_macro_a_total"), &[]).unwrap(),
        prometheus::IntCounterVec::new(opts("bench_macro_b_total"), &[]).unwrap(),
    ];
    let pf: [PcFamily<0, PcCounter>; 3] = Default::default();

    let facade_same = |_: usize, _: u64| metrics::counter!("bench_macro_total").increment(1);
    let facade_diff = |t: usize, _: u64| {
        if t == 0 {
            metrics::counter!("bench_macro_a_total").increment(1)
        } else {
            metrics::counter!("bench_macro_b_total").increment(1)
        }
    };
    let mut g = Group::new("counter_macro");
    g.lib(ALL, MMO, Some(&ours), None, facade_same, facade_diff);
    g.lib(
        ALL,
        MMO_MANAGER,
        None,
        None,
        |_, _| m.increment_counter(black_box("bench_macro_total"), 1, &[]).unwrap(),
        |t, _| {
            let name = if t == 0 {
                "bench_macro_a_total"
            } else {
                "bench_macro_b_total"
            };
            m.increment_counter(black_box(name), 1, &[]).unwrap()
        },
    );
    g.lib(ALL, MEP, Some(&mep), None, facade_same, facade_diff);
    g.lib(
        ALL,
        TIKV,
        None,
        None,
        |_, _| black_box(&tv[0]).with_label_values::<&str>(&[]).inc(),
        |t, _| {
            black_box(if t == 0 { &tv[1] } else { &tv[2] })
                .with_label_values::<&str>(&[])
                .inc()
        },
    );
    g.lib(
        ALL,
        PCLIENT,
        None,
        None,
        |_, _| {
            black_box(&pf[0]).get_or_create(&[]).inc();
        },
        |t, _| {
            black_box(if t == 0 { &pf[1] } else { &pf[2] }).get_or_create(&[]).inc();
        },
    );
    g.finish(c);
}

fn counter_macro_labels(c: &mut Criterion) {
    let m = MetricsManager::new();
    m.register_counter("bench_labels_total", "Bench counter.", &["a", "b"])
        .expect("register");
    let ours = m.recorder();
    let (mep, _h) = mep_plain();
    let tv = prometheus::IntCounterVec::new(
        prometheus::Opts::new("bench_labels_total", "Bench counter."),
        &["a", "b"],
    )
    .unwrap();
    let pf = PcFamily::<2, PcCounter>::default();

    let facade_same = |_: usize, _: u64| metrics::counter!("bench_labels_total", "a" => "1", "b" => "2").increment(1);
    let facade_diff = |t: usize, _: u64| {
        if t == 0 {
            metrics::counter!("bench_labels_total", "a" => "1", "b" => "2").increment(1)
        } else {
            metrics::counter!("bench_labels_total", "a" => "1", "b" => "3").increment(1)
        }
    };
    let b_of = |t: usize| if t == 0 { "2" } else { "3" };
    let mut g = Group::new("counter_macro_labels");
    g.lib(ALL, MMO, Some(&ours), None, facade_same, facade_diff);
    g.lib(
        ALL,
        MMO_MANAGER,
        None,
        None,
        |_, _| {
            m.increment_counter("bench_labels_total", 1, black_box(&["1", "2"]))
                .unwrap()
        },
        |t, _| {
            m.increment_counter("bench_labels_total", 1, black_box(&["1", b_of(t)]))
                .unwrap()
        },
    );
    g.lib(ALL, MEP, Some(&mep), None, facade_same, facade_diff);
    g.lib(
        ALL,
        TIKV,
        None,
        None,
        |_, _| black_box(&tv).with_label_values(&["1", "2"]).inc(),
        |t, _| black_box(&tv).with_label_values(&["1", b_of(t)]).inc(),
    );
    g.lib(
        ALL,
        PCLIENT,
        None,
        None,
        |_, _| {
            black_box(&pf).get_or_create(&[("a", "1"), ("b", "2")]).inc();
        },
        |t, _| {
            black_box(&pf).get_or_create(&[("a", "1"), ("b", b_of(t))]).inc();
        },
    );
    g.finish(c);
}

fn counter_dynamic_label(c: &mut Criterion) {
    // Label values made at run time (not literals), leaked so every library can borrow them.
    let zones: &'static [&'static str] = Box::leak(
        (0..16)
            .map(|i| &*Box::leak(format!("zone{i}").into_boxed_str()))
            .collect::<Vec<&'static str>>()
            .into_boxed_slice(),
    );
    // Same series: every thread cycles through the 16 values; different series: thread t uses
    // its own 8.
    let same = |i: u64| zones[black_box(i & 15) as usize];
    let diff = |t: usize, i: u64| zones[black_box((i & 7) as usize + 8 * t)];

    let m = MetricsManager::new();
    m.register_counter("bench_dynamic_total", "Bench counter.", &["zone"])
        .expect("register");
    let ours = m.recorder();
    let (mep, _h) = mep_plain();
    let tv = prometheus::IntCounterVec::new(
        prometheus::Opts::new("bench_dynamic_total", "Bench counter."),
        &["zone"],
    )
    .unwrap();
    let pf = PcFamily::<1, PcCounter>::default();

    let facade_same = |_: usize, i: u64| metrics::counter!("bench_dynamic_total", "zone" => same(i)).increment(1);
    let facade_diff = |t: usize, i: u64| metrics::counter!("bench_dynamic_total", "zone" => diff(t, i)).increment(1);
    let mut g = Group::new("counter_dynamic_label");
    g.lib(ALL, MMO, Some(&ours), None, facade_same, facade_diff);
    g.lib(
        ALL,
        MMO_MANAGER,
        None,
        None,
        |_, i| m.increment_counter("bench_dynamic_total", 1, &[same(i)]).unwrap(),
        |t, i| m.increment_counter("bench_dynamic_total", 1, &[diff(t, i)]).unwrap(),
    );
    g.lib(ALL, MEP, Some(&mep), None, facade_same, facade_diff);
    g.lib(
        ALL,
        TIKV,
        None,
        None,
        |_, i| tv.with_label_values(&[same(i)]).inc(),
        |t, i| tv.with_label_values(&[diff(t, i)]).inc(),
    );
    g.lib(
        ALL,
        PCLIENT,
        None,
        None,
        |_, i| {
            pf.get_or_create(&[("zone", same(i))]).inc();
        },
        |t, i| {
            pf.get_or_create(&[("zone", diff(t, i))]).inc();
        },
    );
    g.finish(c);
}

/// A recorder that answers every counter key with a clone of one shared counter: no lookup at all,
/// only what the `metrics` API asks of any recorder that hands out a live handle (its `Arc` cloned
/// for the call and dropped after it) and the cheapest add (one writer, no locked instruction).
/// Not a metrics library: every key lands in one counter. It bounds what a lookup can save.
struct HandleFloor(std::sync::Arc<FloorCounter>);

struct FloorCounter(AtomicU64);

impl metrics::CounterFn for FloorCounter {
    fn increment(&self, v: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        // Only the bench's single timed thread writes (the floor runs on 1 thread only).
        self.0.store(self.0.load(Relaxed).wrapping_add(v), Relaxed);
    }

    fn absolute(&self, v: u64) {
        self.0.store(v, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Recorder for HandleFloor {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.0.clone())
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}
fn working_set(c: &mut Criterion) {
    working_set_group::<16>(c, "working_set_16");
    working_set_group::<500>(c, "working_set_500");
    working_set_group::<5000>(c, "working_set_5000");
}

/// The `working_set_<N>` group: `N` series per thread, round-robin (`N` a constant, so `i % N` is
/// a multiply, not a division).
fn working_set_group<const N: usize>(c: &mut Criterion, name: &'static str) {
    // 2N distinct label pairs made at run time, leaked so every library can borrow them: thread
    // `t` of `2t_diff` uses pairs `[t * N, (t + 1) * N)`, the other configurations the first N.
    let pairs: &'static [[&'static str; 2]] = Box::leak(
        (0..2 * N)
            .map(|i| {
                let leak = |s: String| &*Box::leak(s.into_boxed_str());
                [leak(format!("kind{}", i / 64)), leak(format!("zone{}", i % 64))]
            })
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let same = move |i: u64| &pairs[black_box(i as usize % N)];
    let diff = move |t: usize, i: u64| &pairs[black_box(t * N + i as usize % N)];

    const METRIC: &str = "bench_ws_total";
    let m = MetricsManager::new();
    m.register_counter(METRIC, "Bench counter.", &["kind", "zone"])
        .expect("register");
    let ours = m.recorder();
    let (mep, _h) = mep_plain();
    let tv =
        prometheus::IntCounterVec::new(prometheus::Opts::new(METRIC, "Bench counter."), &["kind", "zone"]).unwrap();
    let pf = PcFamily::<2, PcCounter>::default();
    let noop = metrics::NoopRecorder;
    let floor = HandleFloor(std::sync::Arc::new(FloorCounter(AtomicU64::new(0))));
    // Every series exists before the timed region, in every library.
    for [k, z] in pairs {
        m.counter(METRIC, &[k, z]).expect("series");
        metrics::with_local_recorder(&mep, || {
            metrics::counter!(METRIC, "kind" => *k, "zone" => *z).absolute(0)
        });
        tv.with_label_values(&[k, z]);
        drop(pf.get_or_create(&[("kind", k), ("zone", z)]));
    }

    let facade = |[k, z]: &[&'static str; 2]| metrics::counter!(METRIC, "kind" => *k, "zone" => *z).increment(1);
    let facade_same = move |_: usize, i: u64| facade(same(i));
    let facade_diff = move |t: usize, i: u64| facade(diff(t, i));
    let mut g = Group::new(name);
    g.warm = 2 * N as u64;
    g.lib(ONE_TWO_DIFF, MMO, Some(&ours), None, facade_same, facade_diff);
    let by_name = |[k, z]: &[&'static str; 2]| m.increment_counter(METRIC, 1, &[k, z]).unwrap();
    g.lib(
        ONE_TWO_DIFF,
        MMO_MANAGER,
        None,
        None,
        move |_, i| by_name(same(i)),
        move |t, i| by_name(diff(t, i)),
    );
    g.lib(ONE_TWO_DIFF, MEP, Some(&mep), None, facade_same, facade_diff);
    let tikv = |[k, z]: &[&'static str; 2]| tv.with_label_values(&[k, z]).inc();
    g.lib(
        ONE_TWO_DIFF,
        TIKV,
        None,
        None,
        move |_, i| tikv(same(i)),
        move |t, i| tikv(diff(t, i)),
    );
    let pc = |[k, z]: &[&'static str; 2]| {
        pf.get_or_create(&[("kind", k), ("zone", z)]).inc();
    };
    g.lib(
        ONE_TWO_DIFF,
        PCLIENT,
        None,
        None,
        move |_, i| pc(same(i)),
        move |t, i| pc(diff(t, i)),
    );
    g.lib(ONE_TWO_DIFF, NOOP, Some(&noop), None, facade_same, facade_diff);
    g.lib(
        &[Threads::One],
        HANDLE_FLOOR,
        Some(&floor),
        None,
        facade_same,
        facade_diff,
    );
    g.finish(c);
}

fn gauge_set(c: &mut Criterion) {
    let m = MetricsManager::new();
    m.register_gauge("bench_gauge", "Bench gauge.", &["s"])
        .expect("register");
    let ours = [
        m.gauge("bench_gauge", &["a"]).unwrap(),
        m.gauge("bench_gauge", &["b"]).unwrap(),
    ];
    let (mep, _h) = mep_plain();
    let peer = metrics::with_local_recorder(&mep, || {
        [
            metrics::gauge!("bench_gauge", "s" => "a"),
            metrics::gauge!("bench_gauge", "s" => "b"),
        ]
    });
    let tv = prometheus::GaugeVec::new(prometheus::Opts::new("bench_gauge", "Bench gauge."), &["s"]).unwrap();
    let tikv = [tv.with_label_values(&["a"]), tv.with_label_values(&["b"])];
    let pf = PcFamily::<1, PcGauge<f64, AtomicU64>>::default();
    let pc = [
        pf.get_or_create_owned(&[("s", "a")]),
        pf.get_or_create_owned(&[("s", "b")]),
    ];

    let mut g = Group::new("gauge_set");
    g.handles(ALL, MMO, None, &ours, |h, i| {
        h.set(value(i));
    });
    g.handles(ALL, MEP, None, &peer, |h, i| {
        h.set(value(i));
    });
    g.handles(ALL, TIKV, None, &tikv, |h, i| {
        h.set(value(i));
    });
    g.handles(ALL, PCLIENT, None, &pc, |h, i| {
        h.set(value(i));
    });
    g.finish(c);
}

fn histogram(c: &mut Criterion) {
    histogram_group(c, "histogram", ALL, value);
    histogram_group(c, "histogram_fixed", ONE_TWO, fixed);
}

fn histogram_group<V>(c: &mut Criterion, name: &'static str, configs: &[Threads], value: V)
where
    V: Fn(u64) -> f64 + Copy + Sync,
{
    let m = MetricsManager::new();
    m.register_histogram("bench_histogram", "Bench histogram.", &["s"], &[])
        .expect("register");
    let ours = [
        m.histogram("bench_histogram", &["a"]).unwrap(),
        m.histogram("bench_histogram", &["b"]).unwrap(),
    ];
    let (mep, mep_handle) = mep_buckets();
    let peer = metrics::with_local_recorder(&mep, || {
        [
            metrics::histogram!("bench_histogram", "s" => "a"),
            metrics::histogram!("bench_histogram", "s" => "b"),
        ]
    });
    let upkeep = move || mep_handle.run_upkeep();
    let tv = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("bench_histogram", "Bench histogram.").buckets(DEFAULT_BUCKETS.to_vec()),
        &["s"],
    )
    .unwrap();
    let tikv = [tv.with_label_values(&["a"]), tv.with_label_values(&["b"])];
    let pf = PcHistFamily::new_with_constructor(pc_histogram);
    let pc = [
        pf.get_or_create_owned(&[("s", "a")]),
        pf.get_or_create_owned(&[("s", "b")]),
    ];

    let mut g = Group::new(name);
    g.handles(configs, MMO, None, &ours, |h, i| {
        h.record(value(black_box(i)));
    });
    g.handles(configs, MEP, Some(&upkeep), &peer, |h, i| {
        h.record(value(black_box(i)));
    });
    g.handles(configs, TIKV, None, &tikv, |h, i| {
        h.observe(value(black_box(i)));
    });
    g.handles(configs, PCLIENT, None, &pc, |h, i| {
        h.observe(value(black_box(i)));
    });
    g.finish(c);
}

/// Bench id of our classic histogram inside the native groups, for the native/classic ratio
/// measured in the same run.
const MMO_CLASSIC: &str = "mmo-classic";

fn native_histogram(c: &mut Criterion) {
    native_histogram_group(c, "native_histogram", ALL, value);
}

/// Native histograms at the usual defaults (bucket factor 1.1, i.e. schema 3; zero threshold
/// 2^-128; 160 buckets): ours native-only, metrics-exporter-prometheus'
/// `set_native_histogram_for_metric` (raw samples buffered until upkeep, as its classic
/// histogram), prometheus-client's `Histogram::new_native`; tikv has none. `mmo-classic` is our
/// classic histogram with the default buckets, for the native/classic ratio.
fn native_histogram_group<V>(c: &mut Criterion, name: &'static str, configs: &[Threads], value: V)
where
    V: Fn(u64) -> f64 + Copy + Sync,
{
    let m = MetricsManager::new();
    m.register_native_histogram(
        "bench_native",
        "Bench native histogram.",
        &["s"],
        NativeConfig::default(),
    )
    .expect("register");
    m.register_histogram("bench_classic", "Bench histogram.", &["s"], &[])
        .expect("register");
    let ours = [
        m.histogram("bench_native", &["a"]).unwrap(),
        m.histogram("bench_native", &["b"]).unwrap(),
    ];
    let classic = [
        m.histogram("bench_classic", &["a"]).unwrap(),
        m.histogram("bench_classic", &["b"]).unwrap(),
    ];
    let mep = PrometheusBuilder::new()
        .set_native_histogram_for_metric(
            metrics_exporter_prometheus::Matcher::Full("bench_native".into()),
            metrics_exporter_prometheus::NativeHistogramConfig::new(1.1, 160, 2f64.powi(-128)).expect("valid"),
        )
        .build_recorder();
    let mep_handle = mep.handle();
    let peer = metrics::with_local_recorder(&mep, || {
        [
            metrics::histogram!("bench_native", "s" => "a"),
            metrics::histogram!("bench_native", "s" => "b"),
        ]
    });
    let upkeep = move || mep_handle.run_upkeep();
    let pf = PcHistFamily::new_with_constructor(pc_native);
    let pc = [
        pf.get_or_create_owned(&[("s", "a")]),
        pf.get_or_create_owned(&[("s", "b")]),
    ];

    let mut g = Group::new(name);
    g.handles(configs, MMO, None, &ours, |h, i| {
        h.record(value(black_box(i)));
    });
    g.handles(configs, MMO_CLASSIC, None, &classic, |h, i| {
        h.record(value(black_box(i)));
    });
    g.handles(configs, MEP, Some(&upkeep), &peer, |h, i| {
        h.record(value(black_box(i)));
    });
    g.handles(configs, PCLIENT, None, &pc, |h, i| {
        h.observe(value(black_box(i)));
    });
    g.finish(c);
}

fn pc_native() -> PcHistogram {
    PcHistogram::new_native(prometheus_client::metrics::histogram::NativeHistogramConfig::new(1.1))
}

/// Trace ids of the exemplar groups: 16 built at start-up (not literals), picked per call.
fn trace_ids() -> &'static [String] {
    static IDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    IDS.get_or_init(|| {
        (0..16u64)
            .map(|i| format!("{:032x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect()
    })
}

type PcExemplarLabels = [(&'static str, &'static str); 1];

/// Recording with an exemplar (`trace_id` picked per call from 16): ours
/// `HistogramHandle::record_with_exemplar` (default buckets) and
/// `CounterHandle::increment_with_exemplar`, which stamp the wall clock; prometheus-client's
/// `HistogramWithExemplars::observe` and `CounterWithExemplar::inc_by` with the label set and no
/// timestamp (its cheapest form; it then has none). metrics-exporter-prometheus and tikv have no
/// exemplars.
fn exemplar(c: &mut Criterion) {
    let ids = trace_ids();
    let m = MetricsManager::new();
    m.register_histogram("bench_exemplar", "Bench histogram.", &["s"], &[])
        .expect("register");
    m.register_counter("bench_exemplar_counter", "Bench counter.", &["s"])
        .expect("register");
    let ours = [
        m.histogram("bench_exemplar", &["a"]).unwrap(),
        m.histogram("bench_exemplar", &["b"]).unwrap(),
    ];
    let ours_counter = [
        m.counter("bench_exemplar_counter", &["a"]).unwrap(),
        m.counter("bench_exemplar_counter", &["b"]).unwrap(),
    ];
    let pc_ids: &'static [&'static str] = ids.iter().map(|s| &*s.clone().leak()).collect::<Vec<_>>().leak();
    let pc = [
        prometheus_client::metrics::exemplar::HistogramWithExemplars::<PcExemplarLabels>::new(
            DEFAULT_BUCKETS.iter().copied(),
        ),
        prometheus_client::metrics::exemplar::HistogramWithExemplars::<PcExemplarLabels>::new(
            DEFAULT_BUCKETS.iter().copied(),
        ),
    ];
    let pc_counter: [prometheus_client::metrics::exemplar::CounterWithExemplar<PcExemplarLabels>; 2] =
        Default::default();

    let mut g = Group::new("exemplar_histogram");
    g.handles(ONE_TWO_DIFF, MMO, None, &ours, move |h, i| {
        let id = &ids[(i & 15) as usize];
        let _ = h.record_with_exemplar(value(black_box(i)), &[("trace_id", id)]);
    });
    g.handles(ONE_TWO_DIFF, PCLIENT, None, &pc, move |h, i| {
        let id = pc_ids[(i & 15) as usize];
        h.observe(value(black_box(i)), Some([("trace_id", id)]), None);
    });
    g.finish(c);

    let mut g = Group::new("exemplar_counter");
    g.handles(ONE_TWO_DIFF, MMO, None, &ours_counter, move |h, i| {
        let id = &ids[(i & 15) as usize];
        let _ = h.increment_with_exemplar(1, &[("trace_id", id)]);
    });
    g.handles(ONE_TWO_DIFF, PCLIENT, None, &pc_counter, move |h, i| {
        let id = pc_ids[(i & 15) as usize];
        h.inc_by(1, Some([("trace_id", id)]), None);
    });
    g.finish(c);
}

fn summary(c: &mut Criterion) {
    summary_group(c, "summary", ALL, value);
    summary_group(c, "summary_fixed", ONE_TWO, fixed);
}

fn summary_group<V>(c: &mut Criterion, name: &'static str, configs: &[Threads], value: V)
where
    V: Fn(u64) -> f64 + Copy + Sync,
{
    let m = MetricsManager::new();
    m.register_summary("bench_summary", "Bench summary.", &["s"], &[])
        .expect("register");
    let ours = [
        m.summary("bench_summary", &["a"]).unwrap(),
        m.summary("bench_summary", &["b"]).unwrap(),
    ];
    let (mep, mep_handle) = mep_plain();
    let peer = metrics::with_local_recorder(&mep, || {
        [
            metrics::histogram!("bench_summary", "s" => "a"),
            metrics::histogram!("bench_summary", "s" => "b"),
        ]
    });
    let upkeep = move || mep_handle.run_upkeep();

    let mut g = Group::new(name);
    g.handles(configs, MMO, None, &ours, |h, i| {
        h.observe(value(black_box(i)));
    });
    g.handles(configs, MEP, Some(&upkeep), &peer, |h, i| {
        h.record(value(black_box(i)));
    });
    g.finish(c);
}

criterion_group!(
    benches,
    counter_handle,
    counter_macro,
    counter_macro_labels,
    counter_dynamic_label,
    working_set,
    gauge_set,
    histogram,
    native_histogram,
    exemplar,
    summary
);
criterion_main!(benches);
