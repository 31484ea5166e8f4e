//! Where values live: sharded cells for counters, histograms and summaries, one cell for gauges.
//!
//! # Memory ordering
//!
//! Every cell is a plain statistic: nothing else is published through it, so every load, store and
//! read-modify-write on a cell is `Relaxed`. A scrape is therefore not one instant across series;
//! within one series each cell only grows, which is all the exposition needs (counters never go
//! down, cumulative buckets never go down, `+Inf` is computed from the buckets so it equals
//! `_count`). The few non-`Relaxed` orderings (slot hand-over, lazily installed summary chunks) are
//! justified where they are used.
//!
//! # Layout
//!
//! Cells are grouped in 128-byte [`Line`]s (two 64-byte cache lines, the unit adjacent-line
//! prefetchers pull in together). A shard's cells never share a line with another shard's, so two
//! threads writing different shards never write the same cache line.

#[cfg_attr(loom, allow(dead_code))]
pub(crate) mod clock;
pub(crate) mod counter;
pub(crate) mod exemplar;
pub(crate) mod gauge;
pub(crate) mod histogram;
pub(crate) mod life;
pub(crate) mod native;
pub(crate) mod summary;

use std::sync::atomic::Ordering::Relaxed;

use crate::loom::AtomicU64;

/// Cells per [`Line`].
pub(crate) const LINE_CELLS: usize = 16;

/// Sixteen cells on their own 128 bytes. `repr(C)` with nothing but the cells, so consecutive
/// lines are one run of cells (see [`flat`]).
#[repr(C, align(128))]
pub struct Line([AtomicU64; LINE_CELLS]);

// `flat` relies on a line being exactly its cells, without padding.
const _: () = assert!(std::mem::size_of::<Line>() == LINE_CELLS * std::mem::size_of::<AtomicU64>());

impl Line {
    pub fn new() -> Self {
        Line(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// `n` zeroed lines.
pub fn lines(n: usize) -> Box<[Line]> {
    (0..n).map(|_| Line::new()).collect()
}

/// The cells of consecutive lines as one slice: cell `i` of the result is cell `i % 16` of line
/// `i / 16`. Lets a row that spans lines be indexed with one add.
#[inline(always)]
pub fn flat(lines: &[Line]) -> &[AtomicU64] {
    // SAFETY: `Line` is `repr(C)` holding only `[AtomicU64; LINE_CELLS]`, and the assertion above
    // shows it has no padding, so `lines.len()` lines are `lines.len() * LINE_CELLS` contiguous,
    // initialised `AtomicU64`s; the slice borrows `lines` and so lives no longer than they do.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<AtomicU64>(), lines.len() * LINE_CELLS) }
}

/// Adds to a `u64` cell, saturating at `u64::MAX`: a counter or bucket count that wrapped would
/// read as a reset. `exclusive`: the caller is the cell's only writer, so a load and a store
/// suffice (readers still see whole values: the cell is an atomic). There the overflow check is a
/// branch on the add's carry to an out-of-line store of `u64::MAX`, not a conditional move: the
/// cmov sits in the load-add-store chain of back-to-back adds to one cell and measured +0.2 ns
/// per add (`counter_handle/1t/mmo`, 2.60–2.64 → 2.81–2.84 ns on a loaded 2-core machine), the
/// never-taken branch measured the same as the wrapping add.
///
/// A shared cell is updated with a compare-exchange loop rather than `fetch_add` and a fix-up
/// after overflow: between a wrapping `fetch_add` and its fix-up a scrape could read the wrapped
/// value, exactly the reset saturation exists to prevent, and once saturated every add would wrap
/// and be fixed again. Uncontended, the loop is one load and one `lock cmpxchg`, the price of a
/// `lock xadd`; it only retries when another thread wrote the same shared shard in between.
#[inline(always)]
pub fn add_u64(cell: &AtomicU64, v: u64, exclusive: bool) {
    if exclusive {
        match cell.load(Relaxed).checked_add(v) {
            Some(new) => cell.store(new, Relaxed),
            None => saturate(cell),
        }
    } else {
        let mut cur = cell.load(Relaxed);
        loop {
            let new = cur.saturating_add(v);
            if new == cur {
                // Adding 0, or already saturated: nothing to write.
                break;
            }
            match cell.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
    }
}

/// Stores `u64::MAX` in a cell whose only writer is the caller, whose add would pass it.
#[cold]
#[inline(never)]
fn saturate(cell: &AtomicU64) {
    cell.store(u64::MAX, Relaxed);
}

/// The sum of `u64` cells, saturating at `u64::MAX` like each cell.
#[inline]
pub fn sum_u64<'a>(cells: impl IntoIterator<Item = &'a AtomicU64>) -> u64 {
    cells
        .into_iter()
        .fold(0u64, |acc, c| acc.saturating_add(c.load(Relaxed)))
}

/// Adds to a cell holding an `f64`'s bits.
#[inline(always)]
pub fn add_f64(cell: &AtomicU64, v: f64, exclusive: bool) {
    if exclusive {
        let cur = f64::from_bits(cell.load(Relaxed));
        cell.store((cur + v).to_bits(), Relaxed);
    } else {
        let mut cur = cell.load(Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            match cell.compare_exchange_weak(cur, new, Relaxed, Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
    }
}
