//! Counter cells, packed across series.
//!
//! A [`CounterBlock`] holds the cells of [`BLOCK_SERIES`] series for every shard: shard `s` owns
//! line `s`, and series `k` of the block owns cell `k` of each line. One series therefore costs
//! `8 bytes × shards` (128 bytes with 16 shards), and a thread only ever writes its own shard's
//! line, shared with other series but not with other writers.

use std::sync::atomic::Ordering::Relaxed;

use super::{add_u64, lines, Line, LINE_CELLS};
use crate::shard::{Shard, ShardLayout};
use std::sync::Arc;

/// Series per block.
pub(crate) const BLOCK_SERIES: usize = LINE_CELLS;

/// Cells of up to [`BLOCK_SERIES`] counters.
pub struct CounterBlock {
    layout: ShardLayout,
    lines: Box<[Line]>,
}

impl CounterBlock {
    pub fn new(layout: ShardLayout) -> Self {
        Self {
            layout,
            lines: lines(layout.shards as usize),
        }
    }
}

/// One counter series: a block and its index in it. Cloning shares the cells.
#[derive(Clone)]
pub struct CounterCell {
    block: Arc<CounterBlock>,
    k: u8,
}

impl CounterCell {
    pub fn new(block: Arc<CounterBlock>, k: usize) -> Self {
        // `add_at` relies on it.
        assert!(k < BLOCK_SERIES, "cell {k} of a block of {BLOCK_SERIES}");
        Self { block, k: k as u8 }
    }

    pub fn layout(&self) -> ShardLayout {
        self.block.layout
    }

    /// Adds `v` to `shard`'s cell; `shard` comes from this series' layout.
    #[inline(always)]
    pub fn add_at(&self, shard: Shard, v: u64) {
        let lines = &self.block.lines;
        debug_assert!(shard.index < lines.len());
        // SAFETY: a `Shard` of this series' layout has `index < layout.shards == lines.len()`
        // (`ShardLayout::pick`, `shard::current`), and `new` asserted `k < BLOCK_SERIES`, the
        // cells of a line.
        let cell = unsafe { lines.get_unchecked(shard.index).0.get_unchecked(usize::from(self.k)) };
        add_u64(cell, v, shard.exclusive);
    }

    /// Adds `v` from the current thread.
    #[inline(always)]
    pub fn add(&self, v: u64) {
        match crate::shard::current_exclusive(self.block.layout) {
            Some(index) => self.add_at(Shard { index, exclusive: true }, v),
            None => self.add_shared(v),
        }
    }

    /// [`CounterCell::add`] from a thread without an exclusive shard (or not known yet).
    #[inline(never)]
    fn add_shared(&self, v: u64) {
        self.add_at(crate::shard::current(self.block.layout), v);
    }

    /// The sum over shards.
    pub fn get(&self) -> u64 {
        self.block
            .lines
            .iter()
            .fold(0u64, |acc, l| acc.wrapping_add(l.cell(self.k as usize).load(Relaxed)))
    }

    /// Raises the counter to at least `v` (the facade's `absolute`). Meant for one writer mirroring
    /// an external counter; concurrent callers may overshoot by the difference they both saw.
    pub fn absolute_at(&self, shard: Shard, v: u64) {
        let cur = self.get();
        if v > cur {
            self.add_at(shard, v - cur);
        }
    }
}
