//! Exemplar storage: the latest exemplar of a counter series ([`ExemplarSlot`]) and of each bucket
//! of a classic histogram series ([`ExemplarRow`]), as client_golang keeps them.
//!
//! A series pays for exemplars only when it gets one: a counter series has one empty
//! [`ExemplarSlot`] (a null pointer, 8 bytes), a histogram series one empty [`ExemplarRow`] (a null
//! pointer, 8 bytes); the first exemplar allocates the slot or the row's slots. Recording without
//! an exemplar never reads or writes either.
//!
//! Each slot is a [`Latest`]: the exemplar's encoded labels, value and timestamp behind a small
//! lock. A writer overwrites them in place (the label buffer's capacity is reused, so a slot
//! allocates only while its labels grow), and a reader copies them out under the lock, so a reader
//! gets labels, value and timestamp of one write, never a mix of two. Neither holds the lock for
//! more than a copy of at most a few hundred bytes (the labels are at most 128 characters).
//!
//! A writer never waits for another writer: if one holds the slot, it is storing an exemplar
//! recorded at the same time, and that one is kept as the latest while this one is dropped (the
//! two writes overlap, so either is a valid latest). A writer finding a reader in the slot waits
//! for its copy, so an exemplar recorded during a scrape is not lost.
//!
//! These structures are not part of the loom models: the lock and the lazily installed pointers
//! use `std`'s atomics with the orderings given where they are used.

use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicPtr, AtomicU8};
use std::sync::Arc;

use crate::exemplar::{Exemplar, ExemplarLabels, ExemplarLabelsRef};

/// One exemplar as read: never changed once made (a newer exemplar replaces it in the slot).
pub(crate) struct StoredExemplar {
    pub(crate) labels: ExemplarLabels,
    pub(crate) value: f64,
    /// Wall clock, milliseconds since the Unix epoch.
    pub(crate) timestamp_ms: u64,
}

/// [`Latest::state`]: nobody holds the slot.
const FREE: u8 = 0;
/// [`Latest::state`]: a writer overwrites the exemplar.
const WRITING: u8 = 1;
/// [`Latest::state`]: a reader copies the exemplar out.
const READING: u8 = 2;

/// The latest exemplar of one counter series or one histogram bucket, overwritten in place.
struct Latest {
    /// [`FREE`], [`WRITING`] or [`READING`]: who holds `data`. Taken with an Acquire
    /// compare-exchange, given back with a Release store, so each holder sees the previous
    /// holder's writes.
    state: AtomicU8,
    /// Read or written only by the holder of `state`.
    data: UnsafeCell<Data>,
}

struct Data {
    /// The labels in [`ExemplarLabels`]' encoding; empty capacity until the first exemplar.
    labels: Vec<u8>,
    value: f64,
    timestamp_ms: u64,
    /// Whether an exemplar was stored.
    set: bool,
}

// SAFETY: `data` is accessed only by the one thread holding `state` (see `store` and `load`).
unsafe impl Sync for Latest {}

impl Latest {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(FREE),
            data: UnsafeCell::new(Data {
                labels: Vec::new(),
                value: 0.0,
                timestamp_ms: 0,
                set: false,
            }),
        }
    }

    /// Makes an exemplar of `labels` and `value`, stamped now, the latest; dropped if another
    /// writer holds the slot (see the module documentation).
    fn store(&self, labels: ExemplarLabelsRef<'_>, value: f64) {
        // Read before taking the slot, to hold it for the copy only.
        let timestamp_ms = super::clock::unix_ms();
        let mut spins = 0u32;
        loop {
            // Acquire: sees the previous holder's writes (pairs with the Release stores below and
            // in `load`).
            match self.state.compare_exchange_weak(FREE, WRITING, Acquire, Relaxed) {
                Ok(_) => break,
                Err(WRITING) => return,
                // A reader, copying out (or a spurious failure): a short wait.
                Err(_) => backoff(&mut spins),
            }
        }
        // SAFETY: this thread holds the slot (`state` is WRITING, set by it) until the store below.
        let data = unsafe { &mut *self.data.get() };
        data.labels.clear();
        labels.encode_into(&mut data.labels);
        data.value = value;
        data.timestamp_ms = timestamp_ms;
        data.set = true;
        // Release: publishes the exemplar to the next holder.
        self.state.store(FREE, Release);
    }

    /// The latest exemplar, if any: copied out whole.
    fn load(&self) -> Option<Exemplar> {
        let mut spins = 0u32;
        // Acquire: sees the last writer's exemplar (pairs with the Release store in `store`).
        while self
            .state
            .compare_exchange_weak(FREE, READING, Acquire, Relaxed)
            .is_err()
        {
            backoff(&mut spins);
        }
        // SAFETY: this thread holds the slot (`state` is READING, set by it) until the store below.
        let data = unsafe { &*self.data.get() };
        let got = data.set.then(|| StoredExemplar {
            labels: ExemplarLabels::from_encoded(&data.labels),
            value: data.value,
            timestamp_ms: data.timestamp_ms,
        });
        // Release: the next writer overwrites only after this copy.
        self.state.store(FREE, Release);
        got.map(|e| Exemplar::new(Arc::new(e)))
    }
}

/// Waits a little for the holder of a slot: a busy loop, then yielding the CPU (a holder that was
/// preempted holds the slot until it runs again).
fn backoff(spins: &mut u32) {
    if *spins < 64 {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// A `Box<T>` made on first use, published with a compare-exchange: a null pointer until then.
struct LazyBox<T> {
    /// Null until the first use; then from `Box::into_raw`, owned here and never replaced.
    ptr: AtomicPtr<T>,
}

impl<T> LazyBox<T> {
    const fn new() -> Self {
        Self {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The value, if made.
    fn get(&self) -> Option<&T> {
        // Acquire: pairs with the AcqRel exchange in `get_or_init`, so the value is seen
        // initialised.
        let p = self.ptr.load(Acquire);
        // SAFETY: a non-null pointer came from `Box::into_raw` in `get_or_init`, is never replaced
        // and is freed only in `drop` (which takes `&mut self`), so it outlives `&self`.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The value, made with `make` if this is the first use.
    fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        if let Some(v) = self.get() {
            return v;
        }
        let new = Box::into_raw(Box::new(make()));
        // AcqRel: Release publishes the new value to readers (`get`); Acquire, on failure, sees
        // the value another thread installed first.
        match self.ptr.compare_exchange(ptr::null_mut(), new, AcqRel, Acquire) {
            // SAFETY: `new` is now owned here, freed only in `drop`.
            Ok(_) => unsafe { &*new },
            Err(installed) => {
                // SAFETY: `new` was not published; it is ours to free. `installed` is non-null
                // (the exchange failed) and lives as in `get`.
                unsafe {
                    drop(Box::from_raw(new));
                    &*installed
                }
            }
        }
    }
}

impl<T> Drop for LazyBox<T> {
    fn drop(&mut self) {
        let p = *self.ptr.get_mut();
        if !p.is_null() {
            // SAFETY: from `Box::into_raw` in `get_or_init`, freed once, here.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// The latest exemplar of one counter series; empty (a null pointer) until the first.
pub(crate) struct ExemplarSlot(LazyBox<Latest>);

impl ExemplarSlot {
    pub(crate) const fn new() -> Self {
        Self(LazyBox::new())
    }

    /// Replaces the latest exemplar with one of `labels` and `value`, stamped now.
    pub(crate) fn store(&self, labels: ExemplarLabelsRef<'_>, value: f64) {
        self.0.get_or_init(Latest::new).store(labels, value);
    }

    /// The latest exemplar, if any.
    pub(crate) fn load(&self) -> Option<Exemplar> {
        self.0.get()?.load()
    }

    /// Whether an exemplar was ever stored (the slot then owns an allocation).
    #[cfg_attr(not(all(target_os = "linux", not(any(loom, miri)))), allow(dead_code))]
    pub(crate) fn is_set(&self) -> bool {
        self.0.get().is_some()
    }
}

/// One [`Latest`] per bucket of a histogram series, allocated by the first exemplar.
pub(crate) struct ExemplarRow(LazyBox<Box<[Latest]>>);

impl ExemplarRow {
    pub(crate) const fn new() -> Self {
        Self(LazyBox::new())
    }

    /// Replaces bucket `b`'s latest exemplar; `buckets` is the series' bucket count (`+Inf`
    /// included), `b < buckets`.
    pub(crate) fn store(&self, buckets: usize, b: usize, labels: ExemplarLabelsRef<'_>, value: f64) {
        let row = self.0.get_or_init(|| (0..buckets).map(|_| Latest::new()).collect());
        debug_assert!(row.len() == buckets && b < buckets);
        if let Some(slot) = row.get(b) {
            slot.store(labels, value);
        }
    }

    /// Bucket `b`'s latest exemplar, if any.
    pub(crate) fn load(&self, b: usize) -> Option<Exemplar> {
        self.0.get()?.get(b)?.load()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn labels(id: &str) -> ExemplarLabels {
        ExemplarLabels::new(&[("trace_id", id)]).unwrap()
    }

    fn read(e: &Exemplar) -> (Vec<(String, String)>, f64) {
        (
            e.labels().map(|(n, v)| (n.to_owned(), v.to_owned())).collect(),
            e.value(),
        )
    }

    #[test]
    fn the_latest_exemplar_wins() {
        let slot = ExemplarSlot::new();
        assert!(slot.load().is_none(), "empty until the first");
        let before = super::super::clock::unix_ms();
        slot.store((&labels("a")).into(), 1.0);
        slot.store((&labels("b")).into(), 2.0);
        let after = super::super::clock::unix_ms();
        let e = slot.load().expect("stored");
        assert_eq!(read(&e), (vec![("trace_id".into(), "b".into())], 2.0));
        let ts = e.timestamp();
        assert!(
            before as f64 / 1e3 <= ts && ts <= after as f64 / 1e3,
            "{ts} outside [{before}, {after}] ms"
        );
        assert_eq!(ts * 1e3, (ts * 1e3).round(), "millisecond precision");
    }

    #[test]
    fn one_exemplar_per_bucket() {
        let row = ExemplarRow::new();
        assert!(
            row.load(0).is_none() && row.0.get().is_none(),
            "nothing allocated before"
        );
        row.store(4, 1, (&labels("one")).into(), 0.5);
        row.store(4, 3, (&labels("inf")).into(), 1e9);
        row.store(4, 1, (&labels("one-again")).into(), 0.75);
        assert!(row.load(0).is_none());
        assert_eq!(
            read(&row.load(1).unwrap()),
            (vec![("trace_id".into(), "one-again".into())], 0.75)
        );
        assert!(row.load(2).is_none());
        assert_eq!(
            read(&row.load(3).unwrap()),
            (vec![("trace_id".into(), "inf".into())], 1e9)
        );
        assert!(row.load(4).is_none(), "past the row");
    }

    #[test]
    fn a_reader_keeps_the_exemplar_it_loaded() {
        let slot = ExemplarSlot::new();
        slot.store((&labels("old")).into(), 1.0);
        let held = slot.load().unwrap();
        slot.store((&labels("new")).into(), 2.0);
        assert_eq!(read(&held), (vec![("trace_id".into(), "old".into())], 1.0));
        assert_eq!(slot.load().unwrap().value(), 2.0);
    }

    #[test]
    fn a_slot_reuses_its_label_buffer() {
        let slot = ExemplarSlot::new();
        assert!(slot.0.get().is_none(), "nothing allocated before the first exemplar");
        slot.store(ExemplarLabelsRef::Pairs(&[("trace_id", "0123456789abcdef")]), 1.0);
        let latest = slot.0.get().expect("allocated by the first exemplar");
        // SAFETY: no other thread uses the slot.
        let buffer = || unsafe { (*latest.data.get()).labels.as_ptr() };
        let first = buffer();
        for (i, id) in ["fedcba9876543210", "short", "0000000000000000"]
            .into_iter()
            .enumerate()
        {
            slot.store(ExemplarLabelsRef::Pairs(&[("trace_id", id)]), i as f64);
            assert_eq!(buffer(), first, "labels no longer than the first are written in place");
            let e = slot.load().unwrap();
            assert_eq!(read(&e), (vec![("trace_id".into(), id.into())], i as f64));
        }
    }

    #[test]
    fn a_writer_drops_its_exemplar_while_another_writes() {
        let slot = ExemplarSlot::new();
        slot.store((&labels("first")).into(), 1.0);
        let latest = slot.0.get().unwrap();
        latest.state.store(WRITING, Relaxed);
        slot.store((&labels("concurrent")).into(), 2.0);
        latest.state.store(FREE, Relaxed);
        assert_eq!(
            read(&slot.load().unwrap()),
            (vec![("trace_id".into(), "first".into())], 1.0)
        );
    }

    #[test]
    fn a_writer_waits_for_a_reader() {
        let slot = ExemplarSlot::new();
        slot.store((&labels("first")).into(), 1.0);
        let latest = slot.0.get().unwrap();
        latest.state.store(READING, Relaxed);
        std::thread::scope(|s| {
            let writer = s.spawn(|| slot.store((&labels("second")).into(), 2.0));
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!writer.is_finished(), "the writer waits while a reader holds the slot");
            latest.state.store(FREE, Release);
            writer.join().unwrap();
        });
        assert_eq!(
            read(&slot.load().unwrap()),
            (vec![("trace_id".into(), "second".into())], 2.0)
        );
    }

    #[test]
    fn concurrent_readers_see_whole_exemplars() {
        let slot = ExemplarSlot::new();
        let ids: Vec<String> = (0..64).map(|i| format!("{i}").repeat(i % 7 + 1)).collect();
        std::thread::scope(|s| {
            for w in 0..2 {
                let (slot, ids) = (&slot, &ids);
                s.spawn(move || {
                    for round in 0..2_000 {
                        let i = (round * 2 + w) % ids.len();
                        slot.store(ExemplarLabelsRef::Pairs(&[("trace_id", &ids[i])]), i as f64);
                    }
                });
            }
            for _ in 0..2_000 {
                if let Some(e) = slot.load() {
                    let (labels, value) = read(&e);
                    assert_eq!(
                        labels,
                        vec![("trace_id".to_owned(), ids[value as usize].clone())],
                        "whole"
                    );
                }
            }
        });
    }
}
