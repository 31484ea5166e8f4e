//! Exemplars (handles, by name, the facade's current exemplar) and creation times, through the
//! read API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mmo_metrics::{Exemplar, MetricsError, MetricsManager, SeriesValue};

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// An exemplar as plain data: labels, value, timestamp in ms.
type Plain = (Vec<(String, String)>, f64, u64);

fn plain(e: &Exemplar) -> Plain {
    (
        e.labels().map(|(n, v)| (n.to_owned(), v.to_owned())).collect(),
        e.value(),
        e.timestamp_ms(),
    )
}

/// Per series of `name` (labels as `k=v,...`): value, creation time (ms), the counter exemplar
/// and the bucket exemplars.
#[allow(clippy::type_complexity)]
fn samples(m: &MetricsManager, name: &str) -> Vec<(String, String, u64, Option<Plain>, Vec<Option<Plain>>)> {
    let mut out = Vec::new();
    m.visit(|f| {
        if f.name() != name {
            return;
        }
        f.for_each_sample(|s| {
            let labels: Vec<String> = s.labels().iter().map(|(n, v)| format!("{n}={v}")).collect();
            let buckets = match s.value() {
                SeriesValue::Histogram { cumulative, .. } => (0..=cumulative.len())
                    .map(|i| s.bucket_exemplar(i).as_ref().map(plain))
                    .collect(),
                _ => Vec::new(),
            };
            assert_eq!(s.created(), s.created_ms() as f64 / 1e3);
            out.push((
                labels.join(","),
                format!("{:?}", s.value()),
                s.created_ms(),
                s.exemplar().as_ref().map(plain),
                buckets,
            ));
        })
    });
    out
}

fn trace(id: &str) -> Vec<(String, String)> {
    vec![("trace_id".to_owned(), id.to_owned())]
}

#[test]
fn counter_keeps_its_latest_exemplar() {
    let m = MetricsManager::new();
    m.register_counter("trades", "Trades.", &["zone"]).unwrap();
    let h = m.counter("trades", &["north"]).unwrap();
    h.increment(5);
    assert_eq!(samples(&m, "trades")[0].3, None, "no exemplar before one is recorded");
    let t0 = unix_ms();
    h.increment_with_exemplar(2, &[("trace_id", "first")]).unwrap();
    m.increment_counter_with_exemplar("trades", 3, &["north"], &[("trace_id", "second"), ("span_id", "7")])
        .unwrap();
    h.increment(100); // without an exemplar: the latest one stays
    let t1 = unix_ms();
    let s = &samples(&m, "trades")[0];
    assert_eq!(s.1, "Counter(110)");
    let (labels, value, ts) = s.3.clone().expect("an exemplar");
    assert_eq!(
        labels,
        [("trace_id".into(), "second".into()), ("span_id".into(), "7".into())]
    );
    assert_eq!(value, 3.0);
    assert!((t0..=t1).contains(&ts), "{ts} outside [{t0}, {t1}]");
}

#[test]
fn histogram_keeps_the_latest_exemplar_of_each_bucket() {
    let m = MetricsManager::new();
    m.register_histogram("latency", "Seconds.", &[], &[0.1, 1.0]).unwrap();
    let h = m.histogram("latency", &[]).unwrap();
    h.record_with_exemplar(0.05, &[("trace_id", "a")]).unwrap();
    h.record_with_exemplar(0.07, &[("trace_id", "b")]).unwrap();
    h.record(0.08);
    m.observe_histogram_with_exemplar("latency", 1.0, &[], &[("trace_id", "c")])
        .unwrap();
    h.record_with_exemplar(f64::INFINITY, &[("trace_id", "d")]).unwrap();
    let s = &samples(&m, "latency")[0];
    assert!(s.1.contains("cumulative: [3, 4, 5]"), "{}", s.1);
    type LabelsAndValue = (Vec<(String, String)>, f64);
    let got: Vec<Option<LabelsAndValue>> = s.4.iter().map(|e| e.clone().map(|(l, v, _)| (l, v))).collect();
    assert_eq!(
        got,
        [
            Some((trace("b"), 0.07)),
            Some((trace("c"), 1.0)), // a value equal to a bound is in that bound's bucket
            Some((trace("d"), f64::INFINITY)),
            None, // past the buckets
        ]
    );
}

#[test]
fn refused_exemplars_record_nothing_and_say_why() {
    let m = MetricsManager::new();
    m.register_counter("c", "", &[]).unwrap();
    m.register_histogram("h", "", &[], &[]).unwrap();
    m.register_float_counter("cpu_seconds", "", &[]).unwrap();
    let ok = "a".repeat(120); // "trace_id" + 120 = 128 characters
    let long = "a".repeat(121);
    let c = m.counter("c", &[]).unwrap();
    c.increment_with_exemplar(1, &[("trace_id", &ok)]).unwrap();
    let err = c.increment_with_exemplar(1, &[("trace_id", &long)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "exemplar labels [trace_id] are 129 UTF-8 characters long (label names and values together), \
         over OpenMetrics' limit of 128; the exemplar is refused, not truncated"
    );
    let err = m
        .increment_counter_with_exemplar("c", 1, &[], &[("trace_id", &long)])
        .unwrap_err();
    assert_eq!(
        err,
        MetricsError::ExemplarLabelsTooLong {
            metric: "c".into(),
            names: "trace_id".into(),
            found: 129,
            limit: 128
        }
    );
    assert!(err
        .to_string()
        .starts_with("metric `c`: exemplar labels [trace_id] are 129"));
    let err = m
        .observe_histogram_with_exemplar("h", 1.0, &[], &[("trace.id", "x")])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "metric `h`: exemplar label name `trace.id` is invalid: it contains '.' (expected [a-zA-Z_][a-zA-Z0-9_]*)"
    );
    let h = m.histogram("h", &[]).unwrap();
    assert!(h.record_with_exemplar(1.0, &[("a", "1"), ("a", "2")]).is_err());
    let err = m
        .increment_counter_with_exemplar("cpu_seconds", 1, &[], &[("trace_id", "x")])
        .unwrap_err();
    assert!(err.to_string().contains("float counter"), "{err}");
    // Only the accepted exemplar's increment counted, and it is the one kept.
    let s = &samples(&m, "c")[0];
    assert_eq!(
        (s.1.as_str(), s.3.as_ref().map(|e| e.0[0].1.len())),
        ("Counter(1)", Some(120))
    );
    assert!(samples(&m, "h")[0].1.contains("count: 0"));
    assert!(samples(&m, "cpu_seconds")[0].1.contains("FloatCounter(0.0)"));
}

#[test]
fn characters_are_counted_not_bytes() {
    let m = MetricsManager::new();
    m.register_counter("c", "", &[]).unwrap();
    let c = m.counter("c", &[]).unwrap();
    // 8 + 120 characters of 3 bytes: 368 bytes, 128 characters.
    let wide = "界".repeat(120);
    c.increment_with_exemplar(1, &[("trace_id", &wide)]).unwrap();
    assert_eq!(samples(&m, "c")[0].3.as_ref().unwrap().0, trace(&wide));
    let err = c
        .increment_with_exemplar(1, &[("trace_id", &"é".repeat(121))])
        .unwrap_err();
    assert!(
        matches!(err, MetricsError::ExemplarLabelsTooLong { found: 129, .. }),
        "{err}"
    );
}

/// Writers with and without exemplars (handles and by name) and readers at once: totals exact,
/// every exemplar read one that was written, whole (its labels say which value and bucket it was
/// recorded with), stamped within the test.
#[test]
fn concurrent_writers_and_readers() {
    const BOUNDS: [f64; 3] = [1.0, 2.0, 3.0];
    const N: u64 = 20_000;
    let m = MetricsManager::new();
    m.register_counter("ops", "", &[]).unwrap();
    m.register_histogram("lat", "", &[], &BOUNDS).unwrap();
    let t0 = unix_ms();
    let done = AtomicBool::new(false);
    let writers = 4;
    let start = Barrier::new(writers + 3); // writers, two readers, this thread
    let check = |e: &Exemplar, bucket: Option<usize>| {
        let labels: Vec<(&str, &str)> = e.labels().collect();
        assert_eq!(labels.len(), 3, "{e:?}");
        assert_eq!(labels[0].0, "trace_id");
        let (writer, i) = labels[0].1.split_once('-').expect("w-i");
        assert!(["w0", "w1"].contains(&writer), "{e:?}: written by an exemplar writer");
        let i: u64 = i.parse().unwrap();
        assert!(i < N);
        assert_eq!(labels[1], ("value", &*format!("{}", e.value())), "whole: {e:?}");
        assert_eq!(labels[2], ("n", &*i.to_string()));
        assert!((t0..=unix_ms()).contains(&e.timestamp_ms()), "{e:?}");
        if let Some(b) = bucket {
            let lo = if b == 0 { f64::NEG_INFINITY } else { BOUNDS[b - 1] };
            let hi = BOUNDS.get(b).copied().unwrap_or(f64::INFINITY);
            assert!(lo < e.value() && e.value() <= hi, "{e:?} in bucket {b}");
        }
    };
    let seen: u64 = std::thread::scope(|s| {
        let ws: Vec<_> = (0..writers)
            .map(|w| {
                let (m, start) = (&m, &start);
                s.spawn(move || {
                    let c = m.counter("ops", &[]).unwrap();
                    let h = m.histogram("lat", &[]).unwrap();
                    start.wait();
                    for i in 0..N {
                        let inc = 1 + i % 3;
                        let v = (i % 5) as f64 * 0.9;
                        match w {
                            // Exemplars through handles, then by name.
                            0 | 1 => {
                                let id = format!("w{w}-{i}");
                                let (vs, is, n) = (format!("{inc}"), format!("{v}"), i.to_string());
                                if w == 0 {
                                    c.increment_with_exemplar(inc, &[("trace_id", &id), ("value", &vs), ("n", &n)])
                                        .unwrap();
                                    h.record_with_exemplar(v, &[("trace_id", &id), ("value", &is), ("n", &n)])
                                        .unwrap();
                                } else {
                                    let l = [("trace_id", &*id), ("value", &vs), ("n", &n)];
                                    m.increment_counter_with_exemplar("ops", inc, &[], &l).unwrap();
                                    let l = [("trace_id", &*id), ("value", &is), ("n", &n)];
                                    m.observe_histogram_with_exemplar("lat", v, &[], &l).unwrap();
                                }
                            }
                            _ => {
                                c.increment(inc);
                                h.record(v);
                            }
                        }
                    }
                })
            })
            .collect();
        let rs: Vec<_> = (0..2)
            .map(|_| {
                let (m, start, done) = (&m, &start, &done);
                s.spawn(move || {
                    start.wait();
                    let mut last = 0;
                    let mut seen = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        m.visit(|f| {
                            f.for_each_sample(|s| match s.value() {
                                SeriesValue::Counter(v) => {
                                    assert!(v >= last, "counter went down: {last} -> {v}");
                                    last = v;
                                    if let Some(e) = s.exemplar() {
                                        check(&e, None);
                                        seen += 1;
                                    }
                                }
                                SeriesValue::Histogram { cumulative, count, .. } => {
                                    assert_eq!(cumulative.last(), Some(&count));
                                    for b in 0..cumulative.len() {
                                        if let Some(e) = s.bucket_exemplar(b) {
                                            check(&e, Some(b));
                                            seen += 1;
                                        }
                                    }
                                }
                                _ => {}
                            })
                        });
                    }
                    seen
                })
            })
            .collect();
        start.wait();
        ws.into_iter().for_each(|w| w.join().unwrap());
        done.store(true, Ordering::Relaxed);
        rs.into_iter().map(|r| r.join().unwrap()).sum()
    });
    assert!(seen > 0, "the readers saw exemplars while they were written");
    let per_writer: u64 = (0..N).map(|i| 1 + i % 3).sum();
    let s = &samples(&m, "ops")[0];
    assert_eq!(s.1, format!("Counter({})", writers as u64 * per_writer));
    let last = s.3.clone().expect("exemplars were written");
    assert!(
        last.0[0].1 == format!("w0-{}", N - 1) || last.0[0].1 == format!("w1-{}", N - 1),
        "{last:?}"
    );
    let h = &samples(&m, "lat")[0];
    // Values 0, 0.9, 1.8, 2.7, 3.6 in turn: buckets 0, 0, 1, 2, 3.
    let per = writers as u64 * N / 5;
    assert!(
        h.1.contains(&format!(
            "cumulative: [{}, {}, {}, {}]",
            2 * per,
            3 * per,
            4 * per,
            5 * per
        )),
        "{}",
        h.1
    );
    for (b, want) in [(0, 0.9), (1, 1.8), (2, 2.7), (3, 3.6)] {
        let e = h.4[b].as_ref().expect("an exemplar in every bucket");
        assert_eq!(e.1, want, "bucket {b}: the last value written there");
    }
}

#[test]
fn facade_records_carry_the_current_exemplar() {
    let m = MetricsManager::new();
    m.register_histogram("msg_time", "", &["msg_type"], &[0.1, 1.0])
        .unwrap();
    metrics::with_local_recorder(&m.recorder(), || {
        metrics::counter!("msgs").increment(1);
        metrics::histogram!("msg_time", "msg_type" => "move").record(0.5);
        {
            let _trace = mmo_metrics::exemplar::set_current(&[("trace_id", "t-1")]).unwrap();
            metrics::counter!("msgs").increment(2);
            metrics::histogram!("msg_time", "msg_type" => "move").record(0.05);
            metrics::histogram!("msg_time", "msg_type" => "move").record_many(5.0, 3);
            metrics::gauge!("players").set(3.0); // gauges have no exemplars
        }
        // No current exemplar any more: records leave the latest ones as they are.
        metrics::counter!("msgs").increment(4);
        metrics::histogram!("msg_time", "msg_type" => "move").record(0.06);
    });
    let c = &samples(&m, "msgs")[0];
    assert_eq!(c.1, "Counter(7)");
    let e = c.3.as_ref().expect("the counter's exemplar");
    assert_eq!((e.0.clone(), e.1), (trace("t-1"), 2.0));
    let h = &samples(&m, "msg_time")[0];
    assert!(h.1.contains("count: 6"), "{}", h.1);
    let got: Vec<Option<f64>> = h.4.iter().map(|e| e.as_ref().map(|e| e.1)).collect();
    assert_eq!(got, [Some(0.05), None, Some(5.0), None]);
    assert_eq!(h.4[0].as_ref().unwrap().0, trace("t-1"));
    assert!(samples(&m, "players")[0].3.is_none());
}

#[test]
fn facade_summaries_ignore_the_current_exemplar() {
    let m = MetricsManager::builder().histograms_as_summaries(true).build();
    metrics::with_local_recorder(&m.recorder(), || {
        let _trace = mmo_metrics::exemplar::set_current(&[("trace_id", "t")]).unwrap();
        metrics::histogram!("q").record(1.0);
    });
    let s = &samples(&m, "q")[0];
    assert!(s.1.starts_with("Summary") && s.1.contains("count: 1"), "{}", s.1);
    assert!(s.3.is_none() && s.4.is_empty());
}

#[test]
fn creation_times_follow_creation_order() {
    let m = MetricsManager::new();
    let t0 = unix_ms();
    let pause = || std::thread::sleep(Duration::from_millis(3));
    m.register_counter("a", "", &[]).unwrap(); // label-less: its series is made now
    pause();
    m.register_gauge("b", "", &[]).unwrap();
    pause();
    m.register_histogram("c", "", &[], &[]).unwrap();
    pause();
    m.register_summary("d", "", &[], &[]).unwrap();
    pause();
    m.register_counter("e", "", &["k"]).unwrap();
    m.increment_counter("e", 1, &["first"]).unwrap();
    pause();
    m.increment_counter("e", 1, &["second"]).unwrap();
    let t1 = unix_ms();
    let created: Vec<u64> = ["a", "b", "c", "d", "e"]
        .iter()
        .flat_map(|n| samples(&m, n).into_iter().map(|s| s.2))
        .collect();
    assert_eq!(created.len(), 6);
    assert!(created.windows(2).all(|w| w[0] < w[1]), "{created:?} in creation order");
    assert!(t0 <= created[0] && created[5] <= t1, "{created:?} within [{t0}, {t1}]");
    // Recording does not change it.
    m.increment_counter("a", 1, &[]).unwrap();
    assert_eq!(samples(&m, "a")[0].2, created[0]);
    // A series removed and made again is a new one, created then. (Made through a handle: a
    // by-name call would keep it in this thread's cache, which holds it.)
    let before = m.counter("e", &["gone"]).unwrap();
    before.increment(1);
    drop(before);
    let created_before = samples(&m, "e").iter().find(|s| s.0 == "k=gone").unwrap().2;
    assert!(m.remove_series("e", &["gone"]).unwrap());
    assert!(samples(&m, "e").iter().all(|s| s.0 != "k=gone"), "removed");
    pause();
    m.counter("e", &["gone"]).unwrap().increment(1);
    let again = samples(&m, "e");
    let gone = again.iter().find(|s| s.0 == "k=gone").unwrap();
    assert_eq!(gone.1, "Counter(1)", "from zero");
    assert!(gone.2 > created_before, "{} after {created_before}", gone.2);
}

#[test]
fn for_each_series_sees_what_for_each_sample_sees() {
    let m = MetricsManager::new();
    m.register_counter("a", "", &["k"]).unwrap();
    m.increment_counter("a", 3, &["x"]).unwrap();
    m.register_histogram("h", "", &[], &[1.0]).unwrap();
    m.observe_histogram("h", 0.5, &[]).unwrap();
    let (mut series, mut samples) = (Vec::new(), Vec::new());
    m.visit(|f| f.for_each_series(|l, v| series.push(format!("{l:?} {v:?}"))));
    m.visit(|f| f.for_each_sample(|s| samples.push(format!("{:?} {:?}", s.labels(), s.value()))));
    assert_eq!(series.len(), 2, "{series:?}");
    assert_eq!(series, samples);
}

#[cfg(feature = "tracing")]
#[test]
fn entered_spans_with_a_trace_id_are_the_current_exemplar() {
    use mmo_metrics::exemplar::ExemplarLayer;
    use tracing_subscriber::prelude::*;

    let m = MetricsManager::new();
    m.register_histogram("work", "", &[], &[1.0, 2.0, 3.0]).unwrap();
    let layer = ExemplarLayer::with_fields(&["trace_id", "span_id"]).unwrap();
    let subscriber = tracing_subscriber::registry().with(layer.clone());
    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&m.recorder(), || {
            let record = |v: f64| metrics::histogram!("work").record(v);
            let outer = tracing::info_span!("message", trace_id = "t-outer");
            outer.in_scope(|| {
                record(0.5);
                tracing::info_span!("step", span_id = 7u64).in_scope(|| record(1.5));
                tracing::info_span!("untraced").in_scope(|| record(2.5)); // the outer one still
            });
            record(3.5); // outside every span: no exemplar
            let long = "x".repeat(200);
            tracing::info_span!("too_long", trace_id = long.as_str()).in_scope(|| record(3.6));
            assert!(ExemplarLayer::with_fields(&["bad-name"]).is_err());
        })
    });
    assert_eq!(layer.refused(), 1);
    let h = &samples(&m, "work")[0];
    let got: Vec<Option<Vec<(String, String)>>> = h.4.iter().map(|e| e.as_ref().map(|e| e.0.clone())).collect();
    assert_eq!(
        got,
        [
            Some(trace("t-outer")),
            Some(vec![("span_id".into(), "7".into())]), // the inner span's fields only
            Some(trace("t-outer")),
            None,
            None,
        ]
    );
}

/// A native histogram keeps exemplars on its classic buckets: the one `v` falls in when it has
/// classic bounds, the `+Inf` one (the only classic bucket it shows) when it is native-only.
#[test]
fn native_histograms_keep_exemplars_on_their_classic_buckets() {
    let m = MetricsManager::new();
    let config = mmo_metrics::NativeConfig::default();
    m.register_histogram_with_native("both_seconds", "Both.", &[], &[0.01, 0.1], config)
        .unwrap();
    m.register_native_histogram("native_seconds", "Native.", &[], config)
        .unwrap();
    m.observe_histogram_with_exemplar("both_seconds", 0.05, &[], &[("trace_id", "b1")])
        .unwrap();
    let native = m.histogram("native_seconds", &[]).unwrap();
    native.record_with_exemplar(0.05, &[("trace_id", "n1")]).unwrap();
    native.record_with_exemplar(7.0, &[("trace_id", "n2")]).unwrap();

    let both = samples(&m, "both_seconds");
    let buckets = &both[0].4;
    assert!(buckets[0].is_none() && buckets[2].is_none(), "{buckets:?}");
    let (labels, value, _) = buckets[1].clone().expect("the (0.01, 0.1] bucket's exemplar");
    assert_eq!((labels, value), (trace("b1"), 0.05));

    let native = samples(&m, "native_seconds");
    let (labels, value, _) = native[0].4[0].clone().expect("the +Inf bucket's exemplar");
    assert_eq!((labels, value), (trace("n2"), 7.0), "the latest");
    assert!(native[0].2 > 0, "a creation time");
}
