//! The encoder's walk of a family (`visit` → `for_each_series`) and the creation of series of the
//! same family on other threads: creation never waits for a walk, and a walk sees every series
//! created before it began and each series created meanwhile whole or not at all.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mmo_metrics::{MetricsManager, SeriesValue};

/// A label value whose length varies with `j` (0 to 299 bytes past the prefix), so the values
/// created during a walk cross the label arena's segments in every way.
fn created_value(j: usize) -> String {
    format!("c{j}:{}", "x".repeat(j * 37 % 300))
}

/// A walk blocked inside its `for_each_series` callback does not stop another thread from
/// creating a series of the same family, by name or through a handle lookup.
#[test]
fn series_creation_does_not_wait_for_a_walk() {
    let manager = MetricsManager::new();
    manager
        .register_counter("walked", "Walked family.", &["player"])
        .unwrap();
    manager
        .register_gauge("walked_gauge", "Walked gauge.", &["player"])
        .unwrap();
    for i in 0..100 {
        manager.increment_counter("walked", 1, &[&format!("p{i}")]).unwrap();
        manager.set_gauge("walked_gauge", 1.0, &[&format!("p{i}")]).unwrap();
    }

    let (in_walk_tx, in_walk_rx) = mpsc::channel::<String>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let visitor = {
        let manager = manager.clone();
        thread::spawn(move || {
            let mut seen = 0;
            manager.visit(|family| {
                if !family.name().starts_with("walked") {
                    return;
                }
                let name = family.name().to_owned();
                let mut blocked = false;
                family.for_each_series(|_, _| {
                    seen += 1;
                    if !blocked {
                        blocked = true;
                        in_walk_tx.send(name.clone()).unwrap();
                        release_rx.recv().unwrap();
                    }
                });
            });
            seen
        })
    };

    for family in ["walked", "walked_gauge"] {
        assert_eq!(in_walk_rx.recv_timeout(Duration::from_secs(10)).unwrap(), family);
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let creator = {
            let manager = manager.clone();
            thread::spawn(move || {
                if family == "walked" {
                    manager.increment_counter("walked", 1, &["new_by_name"]).unwrap();
                    manager.counter("walked", &["new_by_handle"]).unwrap().increment(2);
                } else {
                    manager.set_gauge("walked_gauge", 3.0, &["new_by_name"]).unwrap();
                    manager.gauge("walked_gauge", &["new_by_handle"]).unwrap().set(4.0);
                }
                done_tx.send(()).unwrap();
            })
        };
        // Bounded, so that a creation that waits for the walk fails the test instead of hanging it.
        let created = done_rx.recv_timeout(Duration::from_secs(10));
        release_tx.send(()).unwrap();
        creator.join().unwrap();
        assert!(
            created.is_ok(),
            "creating a series of `{family}` waited for a walk of the family blocked in its callback"
        );
    }
    // Each walk saw at least the 100 series created before it began.
    assert!(visitor.join().unwrap() >= 200);
    assert_eq!(manager.counter("walked", &["new_by_name"]).unwrap().get(), 1);
    assert_eq!(manager.counter("walked", &["new_by_handle"]).unwrap().get(), 2);
}

/// Walks run in a loop while another thread creates series: each walk sees every series created
/// before it began, sees the series created meanwhile as a prefix of their creation order, and
/// never a torn label set or a value that series cannot have.
#[test]
fn walks_see_earlier_series_and_never_torn_ones() {
    const BEFORE: usize = 2000;
    const DURING: usize = 3000;
    let manager = MetricsManager::builder().series_limit(BEFORE + DURING + 1).build();
    manager
        .register_counter("grown", "Growing family.", &["player", "zone"])
        .unwrap();
    for i in 0..BEFORE {
        manager
            .increment_counter("grown", i as u64 + 1, &[&format!("p{i}"), "north"])
            .unwrap();
    }
    let created = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let creator = {
        let (manager, created, done) = (manager.clone(), Arc::clone(&created), Arc::clone(&done));
        thread::spawn(move || {
            for j in 0..DURING {
                manager
                    .increment_counter("grown", j as u64 + 1, &[&created_value(j), "south"])
                    .unwrap();
                created.store(j + 1, Ordering::Release);
            }
            done.store(true, Ordering::Release);
        })
    };

    let mut walks = 0;
    loop {
        let finished = done.load(Ordering::Acquire);
        // Every series created before the walk begins must be seen.
        let created_before = created.load(Ordering::Acquire);
        let (mut old, mut new) = (0, 0);
        manager.visit(|family| {
            if family.name() != "grown" {
                return;
            }
            family.for_each_series(|labels, value| {
                let pairs: Vec<(&str, &str)> = labels.iter().collect();
                let SeriesValue::Counter(v) = value else {
                    panic!("not a counter: {value:?}");
                };
                match pairs.as_slice() {
                    [("player", p), ("zone", "north")] if p.starts_with('p') => {
                        let i: usize = p[1..].parse().expect("p{i}");
                        assert_eq!(i, old, "series created before the walk out of order");
                        assert_eq!(v, i as u64 + 1);
                        old += 1;
                    }
                    [("player", c), ("zone", "south")] => {
                        assert_eq!(*c, created_value(new), "torn or out-of-order label value");
                        // Created at zero, then incremented.
                        assert!(v == 0 || v == new as u64 + 1, "series {new} has {v}");
                        new += 1;
                    }
                    other => panic!("torn label set {other:?}"),
                }
            });
        });
        assert_eq!(old, BEFORE, "a walk missed series created before the manager's walk");
        assert!(
            new >= created_before,
            "a walk saw {new} series of the {created_before} created before it began"
        );
        walks += 1;
        if finished {
            assert_eq!(new, DURING);
            break;
        }
    }
    creator.join().unwrap();
    assert!(walks >= 1);
}
