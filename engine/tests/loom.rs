//! Loom models of the lock-free structures. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p mmo-metrics --test loom --release`.
#![cfg(loom)]

use std::sync::Arc;
use std::time::Duration;

use loom::thread;
use mmo_metrics::__loom::*;

/// A slot's next owner sees every non-atomic add the previous owner made to the exclusive shard.
#[test]
fn slot_handover_keeps_exclusive_adds() {
    loom::model(|| {
        let pool = Arc::new(SlotPool::new());
        let layout = ShardLayout::new(4);
        let cell = CounterCell::new(Arc::new(CounterChunk::new(layout)), 0);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (pool, cell) = (Arc::clone(&pool), cell.clone());
                thread::spawn(move || {
                    let slot = pool.claim().expect("free slot");
                    let shard = layout.pick(slot);
                    cell.add_at(shard, 1);
                    cell.add_at(shard, 2);
                    pool.release(slot);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(cell.get(), 6);
    });
}

/// Two writers (one exclusive, one on a shared shard) and a reader: the reader never sees the
/// total go down, and the final total is exact.
#[test]
fn counter_reads_are_monotonic() {
    loom::model(|| {
        let layout = ShardLayout::new(4);
        let cell = CounterCell::new(Arc::new(CounterChunk::new(layout)), 3);
        let a = {
            let c = cell.clone();
            thread::spawn(move || {
                c.add_at(layout.pick(0), 1);
                c.add_at(layout.pick(0), 1);
            })
        };
        let b = {
            let c = cell.clone();
            thread::spawn(move || c.add_at(layout.pick(100), 5))
        };
        let first = cell.get();
        let second = cell.get();
        assert!(second >= first);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(cell.get(), 7);
    });
}

/// Two threads on one shared shard: atomic adds lose nothing; a concurrent snapshot is cumulative
/// with `+Inf` equal to the count.
#[test]
fn histogram_shared_shard() {
    loom::model(|| {
        let layout = ShardLayout::new(1);
        let h = Arc::new(HistogramCells::new(layout, Arc::new(Buckets::new(&[1.0, 2.0]))));
        let ts: Vec<_> = [0.5, 2.0]
            .into_iter()
            .map(|v| {
                let h = Arc::clone(&h);
                thread::spawn(move || h.record_at(layout.pick(7), v))
            })
            .collect();
        let mut cum = Vec::new();
        h.snapshot(&mut cum);
        assert!(cum.windows(2).all(|w| w[0] <= w[1]));
        for t in ts {
            t.join().unwrap();
        }
        let sum = h.snapshot(&mut cum);
        assert_eq!(cum, vec![1, 2, 2]);
        assert_eq!(sum, 2.5);
    });
}

/// Gauge adds from two threads (compare-exchange loop) lose nothing.
#[test]
fn gauge_adds() {
    loom::model(|| {
        let g = GaugeCell::new();
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                thread::spawn(move || g.add(1.5))
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(g.get(), 3.0);
    });
}

/// Two threads racing to install the same shard sketch and chunk: one wins, nothing is lost.
#[test]
fn summary_lazy_install() {
    // Every window has a few hundred chunk pointers, each an atomic loom tracks.
    let mut model = loom::model::Builder::new();
    model.max_branches = 1_000_000;
    model.check(|| {
        let layout = ShardLayout::new(1);
        let spec = SummarySpec {
            quantiles: vec![0.5].into(),
            max_age: Duration::from_secs(10),
            age_buckets: 2,
        };
        let s = Arc::new(SummaryCells::new(layout, spec));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let s = Arc::clone(&s);
                thread::spawn(move || s.observe_at(layout.pick(9), 3.0, 100))
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let (count, sum) = s.snapshot_at(100, &mut scratch, &mut out);
        assert_eq!((count, sum), (2, 6.0));
        assert!((out[0] - 3.0).abs() <= 3.0 / 128.0);
    });
}

/// A model thread with an 8 MiB stack: the series map's models go deeper than loom's default
/// stack allows.
fn spawn_large<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::Builder::new().stack_size(8 << 20).spawn(f).unwrap()
}

/// One thread creates series (the mutex holder, as `Registry::series`) while another walks the
/// family: the walk sees a prefix of the creations, each whole (label bytes and handle), with no
/// lock. Under loom the first entry segment holds one entry and the first byte segment four
/// bytes, so the writes cross entry segments (after entries 1 and 3) and a byte segment (the
/// third value does not fit after the first two and starts the next one). Both sides run on
/// spawned threads with large stacks: on the model's main thread (a small generator stack) the
/// hashing and formatting overflowed the stack, and with the walk there loom explored one
/// execution only. With the `len` store made `Relaxed`, this model fails.
#[test]
fn series_map_walk_during_creation() {
    const VALUES: [&[u8]; 4] = [b"a", b"bc", b"def", b""];
    loom::model(|| {
        let map = Arc::new(SeriesMap::<String>::new());
        let reader = {
            let map = Arc::clone(&map);
            spawn_large(move || {
                let mut seen = 0;
                for (i, (values, series)) in map.iter().enumerate() {
                    assert_eq!(values, VALUES[i]);
                    assert_eq!(*series, format!("series{i}"));
                    seen += 1;
                }
                seen
            })
        };
        let writer = {
            let map = Arc::clone(&map);
            spawn_large(move || {
                for (i, v) in VALUES.iter().enumerate() {
                    let mut locked = map.lock();
                    assert!(locked.get(v).is_none());
                    assert!(locked.insert(v, format!("series{i}")));
                }
            })
        };
        writer.join().unwrap();
        let seen = reader.join().unwrap();
        let all: Vec<(Vec<u8>, String)> = map.iter().map(|(v, s)| (v.to_vec(), s.clone())).collect();
        assert_eq!(all.len(), VALUES.len());
        assert!(seen <= all.len());
        let locked = map.lock();
        for (i, v) in VALUES.iter().enumerate() {
            assert_eq!(all[i].0, *v);
            assert_eq!(locked.get(v), Some(&format!("series{i}")));
        }
    });
}

/// One thread creates series (crossing two growths of the index table: under loom it starts with
/// two slots and holds at most 3/4 of them) while another looks each of them up without the
/// mutex: a lookup finds the right series or none (created too recently), never another one or a
/// partly written one; afterwards every lookup finds its series.
#[test]
fn series_map_lock_free_get_during_creation() {
    const VALUES: [&str; 4] = ["a", "bc", "def", ""];
    loom::model(|| {
        let map = Arc::new(SeriesMap::<String>::new());
        let reader = {
            let map = Arc::clone(&map);
            spawn_large(move || {
                let mut found = 0;
                for (i, v) in VALUES.iter().enumerate().rev() {
                    if let Some(s) = map.get(&[v]) {
                        assert_eq!(*s, format!("series{i}"));
                        found += 1;
                    }
                }
                found
            })
        };
        let writer = {
            let map = Arc::clone(&map);
            spawn_large(move || {
                let mut buf = Vec::new();
                for (i, v) in VALUES.iter().enumerate() {
                    buf.clear();
                    buf.extend_from_slice(v.as_bytes());
                    assert!(map.lock().insert(&buf, format!("series{i}")));
                }
            })
        };
        writer.join().unwrap();
        assert!(reader.join().unwrap() <= VALUES.len());
        for (i, v) in VALUES.iter().enumerate() {
            assert_eq!(map.get(&[v]), Some(&format!("series{i}")));
        }
        assert_eq!(map.get(&["x"]), None);
    });
}

/// A shared shard whose second key does not fit its window: one writer moves the shard (halving
/// the resolution) while the other records into it and a reader reads it. The reader sees the
/// shard before or after the move, never between (count = zero bucket + buckets), and nothing is
/// lost or counted twice.
#[test]
fn native_move_on_a_shared_shard() {
    let mut model = loom::model::Builder::new();
    model.max_branches = 1_000_000;
    model.check(|| {
        let layout = ShardLayout::new(1);
        let config = NativeConfig {
            max_buckets: 1,
            ..NativeConfig::default()
        };
        let h = Arc::new(NativeCells::for_model(layout, config));
        let shared = Shard {
            index: 0,
            exclusive: false,
        };
        let writers: Vec<_> = [1.0, 1000.0]
            .into_iter()
            .map(|v| {
                let h = Arc::clone(&h);
                spawn_large(move || h.record_n_at(shared, v, 1))
            })
            .collect();
        let (_, count, zero, buckets) = h.model_read();
        assert_eq!(count, zero + buckets, "a read between the two halves of a move");
        for w in writers {
            w.join().unwrap();
        }
        let (schema, count, zero, buckets) = h.model_read();
        assert_eq!((count, zero, buckets), (2, 0, 2));
        assert!(schema < 3, "the second key halved the resolution");
    });
}
