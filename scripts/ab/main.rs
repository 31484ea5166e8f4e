//! The paired A/B harness of `scripts/ab.sh`: one binary linking two builds of the engine (`a`,
//! `b`) and tikv's `prometheus`, timing each per-call lookup case in alternation, so that both
//! sides see the same machine from one moment to the next. Criterion runs of two binaries one
//! after the other see a 2-core shared machine whose speed drifts by more than the change being
//! measured.
//!
//! Usage: `h [ROUNDS] [FILTER]`. Each round times `CALLS` calls of A and of B (in alternating
//! order), of tikv, and for the facade cases of the same macro call under `metrics::NoopRecorder`
//! (the floor); the report is per case: median and minimum ns per call of each, and the median
//! over the rounds of B/A.

use std::hint::black_box;
use std::time::Instant;

const CALLS: u64 = 100_000;
const METRIC: &str = "bench_ws_total";
const STATIC: &str = "bench_static_total";
const SUMMARY: &str = "bench_summary";
const SUMMARY_MINMAX: &str = "bench_summary_minmax";

/// The `i`-th value a summary case records: spread over 0.001 to 10 as a latency would be.
fn spread(i: usize) -> f64 {
    0.001 * (1 + (i * 7919) % 10_000) as f64
}

/// `n` label pairs made at run time, as in the record bench's working-set groups.
fn pairs(n: usize) -> &'static [[&'static str; 2]] {
    Box::leak(
        (0..n)
            .map(|i| {
                let leak = |s: String| &*Box::leak(s.into_boxed_str());
                [leak(format!("kind{}", i / 64)), leak(format!("zone{}", i % 64))]
            })
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

/// ns per call of `f(i)` over `CALLS` calls.
fn time(mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..CALLS as usize {
        f(black_box(i));
    }
    t.elapsed().as_nanos() as f64 / CALLS as f64
}

/// One side's timed closure for a case: `facade` (`counter!` with two dynamic labels over `n`
/// series), `by-name` (`increment_counter` over `n` series), `static-facade` (`counter!` of a
/// static key) and `static-by-name` (`increment_counter` of a name without labels), each a table
/// of one entry; `summary`, `summary-minmax` and `summary-fixed` (a held summary handle's
/// `observe`: of spread values at the default quantiles, of spread values with quantiles 0 and 1
/// asked for, of one constant).
macro_rules! side {
    ($krate:ident, $mode:expr, $n:expr, $p:expr) => {{
        let m = $krate::MetricsManager::new();
        m.register_counter(METRIC, "h", &["kind", "zone"]).unwrap();
        m.register_counter(STATIC, "h", &[]).unwrap();
        m.register_summary(SUMMARY, "h", &[], &[]).unwrap();
        m.register_summary(SUMMARY_MINMAX, "h", &[], &[0.0, 0.5, 1.0]).unwrap();
        let rec = m.recorder();
        let (p, n) = ($p, $n);
        let f: Box<dyn Fn() -> f64> = match $mode {
            "facade" => Box::new(move || {
                metrics::with_local_recorder(&rec, || {
                    time(|i| {
                        let [k, z] = &p[i % n];
                        metrics::counter!(METRIC, "kind" => *k, "zone" => *z).increment(1);
                    })
                })
            }),
            "by-name" => Box::new(move || {
                time(|i| {
                    let [k, z] = &p[i % n];
                    m.increment_counter(METRIC, 1, &[k, z]).unwrap();
                })
            }),
            "static-facade" => Box::new(move || {
                metrics::with_local_recorder(&rec, || time(|_| metrics::counter!(STATIC).increment(1)))
            }),
            "static-by-name" => Box::new(move || time(|_| m.increment_counter(STATIC, 1, &[]).unwrap())),
            "summary" => {
                let h = m.summary(SUMMARY, &[]).unwrap();
                Box::new(move || time(|i| h.observe(spread(i))))
            }
            "summary-minmax" => {
                let h = m.summary(SUMMARY_MINMAX, &[]).unwrap();
                Box::new(move || time(|i| h.observe(spread(i))))
            }
            "summary-fixed" => {
                let h = m.summary(SUMMARY, &[]).unwrap();
                Box::new(move || time(|_| h.observe(0.042)))
            }
            other => unreachable!("no case {other}"),
        };
        f
    }};
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).map_or(150, |s| s.parse().expect("ROUNDS: a number"));
    let filter = args.get(2).map(String::as_str);
    let cases = [
        ("static-facade", 1),
        ("static-by-name", 1),
        ("facade", 16),
        ("facade", 500),
        ("facade", 5000),
        ("by-name", 16),
        ("by-name", 500),
        ("by-name", 5000),
        ("summary", 1),
        ("summary-minmax", 1),
        ("summary-fixed", 1),
    ];
    for (mode, n) in cases {
        let case = format!("{mode}/{n}");
        if filter.is_some_and(|f| !case.contains(f)) {
            continue;
        }
        let p = pairs(n);
        let fa = side!(a, mode, n, p);
        let fb = side!(b, mode, n, p);
        let tv = prometheus::IntCounterVec::new(prometheus::Opts::new(METRIC, "h"), &["kind", "zone"]).unwrap();
        let ft = move || {
            time(|i| {
                let [k, z] = &p[i % n];
                tv.with_label_values(&[k, z]).inc();
            })
        };
        // The facade cases' floor: the same macro call under `metrics::NoopRecorder`, which
        // builds and drops the key (allocating its label vector) and records nothing. No
        // recorder's facade case can be faster.
        let floor: Option<Box<dyn Fn() -> f64>> = match mode {
            "facade" => Some(Box::new(move || {
                metrics::with_local_recorder(&metrics::NoopRecorder, || {
                    time(|i| {
                        let [k, z] = &p[i % n];
                        metrics::counter!(METRIC, "kind" => *k, "zone" => *z).increment(1);
                    })
                })
            })),
            "static-facade" => Some(Box::new(|| {
                metrics::with_local_recorder(&metrics::NoopRecorder, || {
                    time(|_| metrics::counter!(STATIC).increment(1))
                })
            })),
            _ => None,
        };
        // Every series and cache entry exists before the first timed round.
        for _ in 0..3 {
            fa();
            fb();
            ft();
        }
        let (mut ra, mut rb, mut rt, mut rf, mut ratio) = (vec![], vec![], vec![], vec![], vec![]);
        for r in 0..rounds {
            let (x, y) = if r % 2 == 0 {
                let x = fa();
                (x, fb())
            } else {
                let y = fb();
                (fa(), y)
            };
            ra.push(x);
            rb.push(y);
            rt.push(ft());
            if let Some(f) = &floor {
                rf.push(f());
            }
            ratio.push(y / x);
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let min = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
        let floor = if rf.is_empty() {
            String::new()
        } else {
            format!(" | floor med {:6.2} min {:6.2}", med(&mut rf.clone()), min(&rf))
        };
        println!(
            "{case:<18} A med {:6.2} min {:6.2} | B med {:6.2} min {:6.2} | tikv med {:6.2} min {:6.2} | B/A {:.3}{floor}",
            med(&mut ra.clone()),
            min(&ra),
            med(&mut rb.clone()),
            min(&rb),
            med(&mut rt.clone()),
            min(&rt),
            med(&mut ratio)
        );
    }
}
