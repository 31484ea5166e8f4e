//! Per-tick batch recording ([`mmo_metrics::TickBatch`]), ns per record on one thread, against
//! the closest thing a peer has: prometheus 0.14's (tikv) thread-local metrics
//! (`IntCounter::local()`, `Histogram::local()`, flushed by hand); metrics-exporter-prometheus and
//! prometheus-client have no batch API. The direct handles (`mmo-handle`) are given for
//! reference.
//!
//! - `tick_batch/add/*`: `TickBatch::add(c, 1)` (tikv: `LocalIntCounter::inc()`), one flush per
//!   sample (timed, amortised over the sample's iterations).
//! - `tick_batch/record/*`: `TickBatch::record(h, v)` (tikv: `LocalHistogram::observe(v)`), `v`
//!   cycling through 64 values over the default buckets; ours buffers values and buckets them when
//!   its buffer (`BATCH_HISTOGRAM_BUFFER`, 512) fills (that flush is timed: the figure is the full
//!   amortised cost).
//! - `tick_batch/record_reload/*`: the same with the state's address read from memory for every
//!   record (see below).
//! - `tick_batch/tick_mixed/*`: game ticks of 1,000 records, alternately an add to one of 8
//!   counters and a record to one of 4 histograms, each tick ended by a flush (of everything:
//!   tikv's locals flushed one by one): ns per record, flushes included.
//! - `tick_batch/loop/harness`: the harness alone, for scale: the loop, a value, and an xor of it
//!   into the state.
//!
//! Each library's state (the batch, the local metric, the handle) is passed through `black_box`
//! once per sample, then held as a game loop over its entities holds its batch: the compiler may
//! keep its address in a register and, as it would in such a loop, check the batch once before the
//! loop. Each record still does its whole work: its buffer's fill level is loaded and stored every
//! time, and the flush is an opaque call. `record_reload` reads the state's address with a volatile
//! load for every record instead, as when records are spread over calls into other code: the check
//! then runs every time. The `add` cases put a compiler fence after each add (see there). Passing
//! the state through `black_box` on every call instead would add a store and a dependent reload of
//! its address to each (~0.5 ns here, the size of the append itself), and running a tick's flush
//! from inside the per-record closure would keep that closure from being inlined (a call per
//! record).

use std::sync::atomic::{compiler_fence, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mmo_metrics::{MetricsManager, TickBatch, DEFAULT_BUCKETS};
use mmo_metrics_benches::{value, MMO, TIKV};

const MMO_HANDLE: &str = "mmo-handle";
/// Records per tick in `tick_mixed`.
const TICK: u64 = 1_000;

/// Runs `op(state, i)` 1,000 times untimed, then `iters` times and `flush(state)` once, timed.
fn timed<S: ?Sized>(
    iters: u64,
    state: &mut S,
    mut op: impl FnMut(&mut S, u64),
    flush: impl FnOnce(&mut S),
) -> Duration {
    // Nothing of the state is known to the loop at its start.
    let state = std::hint::black_box(state);
    for i in 0..1_000 {
        op(state, i);
    }
    let start = Instant::now();
    for i in 0..iters {
        op(state, i);
    }
    flush(state);
    start.elapsed()
}

/// [`timed`] with the state's address read anew (a volatile load) for every call, as when records
/// are spread over calls into other code: the compiler can keep nothing of the state, not even
/// the batch check, across calls.
fn timed_reload<S: ?Sized>(
    iters: u64,
    state: &mut S,
    mut op: impl FnMut(&mut S, u64),
    flush: impl FnOnce(&mut S),
) -> Duration {
    let slot: *mut S = state;
    // SAFETY: `slot` is `state`, borrowed for this whole function, and each `&mut` made from it
    // ends before the next one is made.
    let state = || unsafe { &mut *std::ptr::read_volatile(&slot) };
    for i in 0..1_000 {
        op(state(), i);
    }
    let start = Instant::now();
    for i in 0..iters {
        op(state(), i);
    }
    flush(state());
    start.elapsed()
}

/// [`timed`] in ticks: `op` for records `0..iters` in runs of [`TICK`], each run (the last one
/// maybe short) followed by `flush`, all timed.
fn ticks<S: ?Sized>(
    iters: u64,
    state: &mut S,
    mut op: impl FnMut(&mut S, u64),
    mut flush: impl FnMut(&mut S),
) -> Duration {
    let state = std::hint::black_box(state);
    let start = Instant::now();
    let mut done = 0;
    while done < iters {
        let end = iters.min(done + TICK);
        for i in done..end {
            op(state, i);
        }
        flush(state);
        done = end;
    }
    start.elapsed()
}

fn tick_batch(c: &mut Criterion) {
    let m = MetricsManager::new();
    m.register_counter("bench_batch_total", "Bench counter.", &["k"])
        .unwrap();
    m.register_histogram("bench_batch_seconds", "Bench histogram.", &["k"], &[])
        .unwrap();
    let counters: Vec<_> = (0..8)
        .map(|k| m.counter("bench_batch_total", &[&k.to_string()]).unwrap())
        .collect();
    let histograms: Vec<_> = (0..4)
        .map(|k| m.histogram("bench_batch_seconds", &[&k.to_string()]).unwrap())
        .collect();

    let tc =
        prometheus::IntCounterVec::new(prometheus::Opts::new("bench_batch_total", "Bench counter."), &["k"]).unwrap();
    let th = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new("bench_batch_seconds", "Bench histogram.").buckets(DEFAULT_BUCKETS.to_vec()),
        &["k"],
    )
    .unwrap();
    let tikv_counters: Vec<_> = (0..8).map(|k| tc.with_label_values(&[k.to_string()]).local()).collect();
    let tikv_histograms: Vec<_> = (0..4).map(|k| th.with_label_values(&[k.to_string()]).local()).collect();

    // Nothing is lost: a dropped batch flushes.
    let before = counters[0].get();
    {
        let mut b = TickBatch::new();
        let c0 = b.counter(&counters[0]);
        b.add(c0, 5);
    }
    assert_eq!(counters[0].get(), before + 5, "a dropped TickBatch flushes");

    let mut g = c.benchmark_group("tick_batch");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);

    // One batch for the whole bench (a game thread keeps one); flushed at the end of each sample.
    // Boxed: on this function's stack its address moved with every edit of the bench, and with
    // it the timing of `add` (0.28 against 0.6 ns for the same instructions, once a 4 KiB alias
    // of the batch's id and the pending sum, our reading); on the heap it stays put.
    let batch = Box::new(std::cell::RefCell::new(TickBatch::new()));
    let (bc, bh): (Vec<_>, Vec<_>) = {
        let mut b = batch.borrow_mut();
        (
            counters.iter().map(|h| b.counter(h)).collect(),
            histograms.iter().map(|h| b.histogram(h)).collect(),
        )
    };

    // An add loop has no call in it, so the compiler could keep a plain (non-atomic) sum in a
    // register and store it once: a compiler fence (no instruction) after each add makes every
    // add reach memory, as it does between a game loop's other work.
    let fence = || compiler_fence(Ordering::SeqCst);
    g.bench_function(format!("add/{MMO}"), |bn| {
        bn.iter_custom(|iters| {
            let c0 = bc[0];
            timed(
                iters,
                &mut *batch.borrow_mut(),
                |b, _| {
                    b.add(c0, 1);
                    fence()
                },
                |b| b.flush(),
            )
        })
    });
    g.bench_function(format!("add/{TIKV}"), |bn| {
        bn.iter_custom(|iters| {
            timed(
                iters,
                &mut &tikv_counters[0],
                |c, _| {
                    c.inc();
                    fence()
                },
                |c| c.flush(),
            )
        })
    });
    g.bench_function(format!("add/{MMO_HANDLE}"), |bn| {
        bn.iter_custom(|iters| {
            timed(
                iters,
                &mut &counters[0],
                |c, _| {
                    c.increment(1);
                    fence()
                },
                |_| (),
            )
        })
    });

    // `record` with the state held, `record_reload` with its address reloaded per record.
    for (case, reload) in [("record", false), ("record_reload", true)] {
        g.bench_function(format!("{case}/{MMO}"), |bn| {
            bn.iter_custom(|iters| {
                let h0 = bh[0];
                let (b, op, flush) = (
                    &mut *batch.borrow_mut(),
                    |b: &mut TickBatch, i| b.record(h0, value(i)),
                    |b: &mut TickBatch| b.flush(),
                );
                if reload {
                    timed_reload(iters, b, op, flush)
                } else {
                    timed(iters, b, op, flush)
                }
            })
        });
        g.bench_function(format!("{case}/{TIKV}"), |bn| {
            bn.iter_custom(|iters| {
                let (h, op, flush) = (
                    &mut &tikv_histograms[0],
                    |h: &mut &prometheus::local::LocalHistogram, i| h.observe(value(i)),
                    |h: &mut &prometheus::local::LocalHistogram| h.flush(),
                );
                if reload {
                    timed_reload(iters, h, op, flush)
                } else {
                    timed(iters, h, op, flush)
                }
            })
        });
    }
    g.bench_function(format!("record/{MMO_HANDLE}"), |bn| {
        bn.iter_custom(|iters| timed(iters, &mut &histograms[0], |h, i| h.record(value(i)), |_| ()))
    });

    g.bench_function("loop/harness", |bn| {
        bn.iter_custom(|iters| timed(iters, &mut 0u64, |a, i| *a ^= value(i).to_bits(), |_| ()))
    });

    g.bench_function(format!("tick_mixed/{MMO}"), |bn| {
        bn.iter_custom(|iters| {
            ticks(
                iters,
                &mut *batch.borrow_mut(),
                |b, i| {
                    if i & 1 == 0 {
                        b.add(bc[((i >> 1) & 7) as usize], 1);
                    } else {
                        b.record(bh[((i >> 1) & 3) as usize], value(i));
                    }
                },
                |b| b.flush(),
            )
        })
    });
    g.bench_function(format!("tick_mixed/{TIKV}"), |bn| {
        bn.iter_custom(|iters| {
            ticks(
                iters,
                &mut (&tikv_counters[..], &tikv_histograms[..]),
                |(cs, hs), i| {
                    if i & 1 == 0 {
                        cs[((i >> 1) & 7) as usize].inc();
                    } else {
                        hs[((i >> 1) & 3) as usize].observe(value(i));
                    }
                },
                |(cs, hs)| {
                    cs.iter().for_each(|c| c.flush());
                    hs.iter().for_each(|h| h.flush());
                },
            )
        })
    });
    g.finish();
}
criterion_group!(benches, tick_batch);
criterion_main!(benches);
