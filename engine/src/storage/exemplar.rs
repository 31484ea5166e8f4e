//! Exemplar storage: the latest exemplar of a counter series ([`ExemplarSlot`]) and of each bucket
//! of a classic histogram series ([`ExemplarRow`]), as client_golang keeps them.
//!
//! A series pays for exemplars only when it gets one: a counter series has one empty
//! [`ExemplarSlot`] (a null pointer, 8 bytes), a histogram series one empty [`ExemplarRow`] (a null
//! pointer, 8 bytes) whose slots are allocated by the first exemplar. Recording without an
//! exemplar never reads or writes either.
//!
//! A slot holds an `Arc` of an immutable [`StoredExemplar`] in an [`ArcSwapOption`]: a writer
//! replaces the whole exemplar with one pointer swap (lock-free: it never waits for a reader or
//! another writer), and a reader takes its own reference to the one it loaded, so it reads labels,
//! value and timestamp of one exemplar, never a mix of two, and never delays a writer. The price
//! is one allocation per exemplar recorded (two when the labels are given as a slice, see
//! [`crate::exemplar::ExemplarLabels`]), which client_golang pays too.
//!
//! These structures are not part of the loom models: the slot is `arc-swap`'s, and the row's
//! pointer is installed once by a compare-exchange whose orderings are given where it is used.
//! They use `std`'s atomics.

use std::ptr;
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::{AcqRel, Acquire};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::exemplar::{Exemplar, ExemplarLabels};

/// One exemplar as recorded: never changed once made (a newer exemplar replaces it whole).
pub(crate) struct StoredExemplar {
    pub(crate) labels: ExemplarLabels,
    pub(crate) value: f64,
    /// Wall clock, milliseconds since the Unix epoch.
    pub(crate) timestamp_ms: u64,
}

/// The latest exemplar of one counter series or one histogram bucket; empty until the first.
pub(crate) struct ExemplarSlot(ArcSwapOption<StoredExemplar>);

impl ExemplarSlot {
    pub(crate) fn new() -> Self {
        Self(ArcSwapOption::const_empty())
    }

    /// Replaces the latest exemplar with one of `labels` and `value`, stamped now.
    pub(crate) fn store(&self, labels: &ExemplarLabels, value: f64) {
        self.0.store(Some(Arc::new(StoredExemplar {
            labels: labels.clone(),
            value,
            timestamp_ms: super::clock::unix_ms(),
        })));
    }

    /// The latest exemplar, if any.
    pub(crate) fn load(&self) -> Option<Exemplar> {
        self.0.load_full().map(Exemplar::new)
    }
}

/// One [`ExemplarSlot`] per bucket of a histogram series, allocated by the first exemplar.
pub(crate) struct ExemplarRow {
    /// Null until the first exemplar; then a `Box<Row>` from `Box::into_raw`, owned by this row
    /// and never replaced.
    row: AtomicPtr<Row>,
}

/// The slots of a row.
struct Row(Box<[ExemplarSlot]>);

impl ExemplarRow {
    pub(crate) const fn new() -> Self {
        Self {
            row: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The slots, if allocated.
    fn get(&self) -> Option<&Row> {
        // Acquire: pairs with the AcqRel exchange in `get_or_init`, so the row's slots are seen
        // initialised.
        let p = self.row.load(Acquire);
        // SAFETY: a non-null pointer came from `Box::into_raw` in `get_or_init`, is never replaced
        // and is freed only in `drop` (which takes `&mut self`), so it outlives `&self`.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// The slots, allocated with `buckets` slots if this is the first exemplar.
    fn get_or_init(&self, buckets: usize) -> &Row {
        if let Some(row) = self.get() {
            return row;
        }
        let new = Box::into_raw(Box::new(Row((0..buckets).map(|_| ExemplarSlot::new()).collect())));
        // AcqRel: Release publishes the new row's slots to readers (`get`); Acquire, on failure,
        // sees the slots of the row another writer installed first.
        match self.row.compare_exchange(ptr::null_mut(), new, AcqRel, Acquire) {
            // SAFETY: `new` is now owned by the row, freed only in `drop`.
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

    /// Replaces bucket `b`'s latest exemplar; `buckets` is the series' bucket count (`+Inf`
    /// included), `b < buckets`.
    pub(crate) fn store(&self, buckets: usize, b: usize, labels: &ExemplarLabels, value: f64) {
        let row = self.get_or_init(buckets);
        debug_assert!(row.0.len() == buckets && b < buckets);
        if let Some(slot) = row.0.get(b) {
            slot.store(labels, value);
        }
    }

    /// Bucket `b`'s latest exemplar, if any.
    pub(crate) fn load(&self, b: usize) -> Option<Exemplar> {
        self.get()?.0.get(b)?.load()
    }
}

impl Drop for ExemplarRow {
    fn drop(&mut self) {
        let p = *self.row.get_mut();
        if !p.is_null() {
            // SAFETY: from `Box::into_raw` in `get_or_init`, freed once, here.
            drop(unsafe { Box::from_raw(p) });
        }
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
        slot.store(&labels("a"), 1.0);
        slot.store(&labels("b"), 2.0);
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
        assert!(row.load(0).is_none() && row.get().is_none(), "nothing allocated before");
        row.store(4, 1, &labels("one"), 0.5);
        row.store(4, 3, &labels("inf"), 1e9);
        row.store(4, 1, &labels("one-again"), 0.75);
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
        slot.store(&labels("old"), 1.0);
        let held = slot.load().unwrap();
        slot.store(&labels("new"), 2.0);
        assert_eq!(read(&held), (vec![("trace_id".into(), "old".into())], 1.0));
        assert_eq!(slot.load().unwrap().value(), 2.0);
    }
}
