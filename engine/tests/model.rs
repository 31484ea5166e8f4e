//! Property test: random operation sequences from several threads, through the manager and the
//! facade, against a naive `Mutex<HashMap>` model; the final exposition must equal the model's.

use std::collections::HashMap;
use std::sync::Mutex;

use mmo_metrics::MetricsManager;
use proptest::prelude::*;

const LABELS: [&str; 3] = ["a", "b\"q", "c\\n\nü"];
const BOUNDS: [f64; 3] = [0.5, 1.0, 2.0];
const VALUES: [f64; 6] = [0.0, 0.5, 1.0, 1.5, 2.0, 7.25];

#[derive(Debug, Clone)]
enum Op {
    Count {
        family: usize,
        label: usize,
        v: u64,
        facade: bool,
    },
    GaugeAdd {
        label: usize,
        d: i32,
        facade: bool,
    },
    GaugeSet {
        v: i32,
    },
    Observe {
        label: usize,
        value: usize,
        facade: bool,
    },
    Summary {
        value: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 0..3usize, 1..1000u64, any::<bool>()).prop_map(|(family, label, v, facade)| Op::Count {
            family,
            label,
            v,
            facade
        }),
        (0..3usize, -50..50i32, any::<bool>()).prop_map(|(label, d, facade)| Op::GaugeAdd { label, d, facade }),
        (-1000..1000i32).prop_map(|v| Op::GaugeSet { v }),
        (0..3usize, 0..VALUES.len(), any::<bool>()).prop_map(|(label, value, facade)| Op::Observe {
            label,
            value,
            facade
        }),
        (0..VALUES.len()).prop_map(|value| Op::Summary { value }),
    ]
}

const COUNTERS: [&str; 2] = ["c0_total", "c1"];

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn apply(m: &MetricsManager, thread: usize, op: &Op) {
    match *op {
        Op::Count {
            family,
            label,
            v,
            facade: true,
        } => metrics::counter!(COUNTERS[family], "l" => LABELS[label]).increment(v),
        Op::Count { family, label, v, .. } => m.increment_counter(COUNTERS[family], v, &[LABELS[label]]).unwrap(),
        Op::GaugeAdd { label, d, facade: true } => metrics::gauge!("g", "l" => LABELS[label]).increment(f64::from(d)),
        Op::GaugeAdd { label, d, .. } => m.add_gauge("g", f64::from(d), &[LABELS[label]]).unwrap(),
        Op::GaugeSet { v } => m.set_gauge("g_set", f64::from(v), &[&thread.to_string()]).unwrap(),
        Op::Observe {
            label,
            value,
            facade: true,
        } => metrics::histogram!("h", "l" => LABELS[label]).record(VALUES[value]),
        Op::Observe { label, value, .. } => m.observe_histogram("h", VALUES[value], &[LABELS[label]]).unwrap(),
        Op::Summary { value } => m.observe_summary("s", VALUES[value], &[]).unwrap(),
    }
}

/// What the exposition must contain, computed naively.
fn model(threads: &[Vec<Op>]) -> HashMap<String, f64> {
    // A metric without labels is exposed from registration on, at zero.
    let state = Mutex::new(HashMap::from([("s_sum".to_owned(), 0.0), ("s_count".to_owned(), 0.0)]));
    let add = |k: String, v: f64| *state.lock().unwrap().entry(k).or_insert(0.0) += v;
    for (t, ops) in threads.iter().enumerate() {
        for op in ops {
            match *op {
                Op::Count { family, label, v, .. } => {
                    let base = COUNTERS[family].trim_end_matches("_total");
                    add(format!("{base}_total{{l=\"{}\"}}", escape(LABELS[label])), v as f64)
                }
                Op::GaugeAdd { label, d, .. } => add(format!("g{{l=\"{}\"}}", escape(LABELS[label])), f64::from(d)),
                Op::GaugeSet { v } => {
                    state
                        .lock()
                        .unwrap()
                        .insert(format!("g_set{{thread=\"{t}\"}}"), f64::from(v));
                }
                Op::Observe { label, value, .. } => {
                    let l = escape(LABELS[label]);
                    let v = VALUES[value];
                    for b in BOUNDS {
                        add(
                            format!("h_bucket{{l=\"{l}\",le=\"{b}\"}}"),
                            if v <= b { 1.0 } else { 0.0 },
                        );
                    }
                    add(format!("h_bucket{{l=\"{l}\",le=\"+Inf\"}}"), 1.0);
                    add(format!("h_sum{{l=\"{l}\"}}"), v);
                    add(format!("h_count{{l=\"{l}\"}}"), 1.0);
                }
                Op::Summary { value } => {
                    add("s_sum".into(), VALUES[value]);
                    add("s_count".into(), 1.0);
                }
            }
        }
    }
    state.into_inner().unwrap()
}

fn exposition(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("mmo_metrics_") && !l.contains("quantile="))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn exposition_matches_model(threads in prop::collection::vec(prop::collection::vec(op(), 0..60), 1..4)) {
        let m = MetricsManager::builder().shards(2).build();
        for c in COUNTERS {
            m.register_counter(c, "", &["l"]).unwrap();
        }
        m.register_gauge("g", "", &["l"]).unwrap();
        m.register_gauge("g_set", "", &["thread"]).unwrap();
        m.register_histogram("h", "", &["l"], &BOUNDS).unwrap();
        m.register_summary("s", "", &[], &[]).unwrap();
        let recorder = m.recorder();
        std::thread::scope(|s| {
            for (t, ops) in threads.iter().enumerate() {
                let (m, recorder) = (&m, &recorder);
                s.spawn(move || metrics::with_local_recorder(recorder, || ops.iter().for_each(|op| apply(m, t, op))));
            }
        });
        let got = exposition(&mmo_metrics_exporter::encode_text(&m));
        let want = model(&threads);
        prop_assert_eq!(got, want);
    }
}
