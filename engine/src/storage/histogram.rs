//! Classic histogram cells.
//!
//! Each shard has a row of `n + 2` cells: one count per bucket (the `n` upper bounds, then `+Inf`),
//! then the sum's `f64` bits. Counts are per bucket, not cumulative: a record writes one count and
//! the sum, and `_count` is the sum of the bucket counts, so the `+Inf` bucket always equals
//! `_count`. Rows start on their own [`Line`], so shards never share a line.

use std::sync::atomic::Ordering::Relaxed;

use super::{add_f64, add_u64, lines, Line, LINE_CELLS};
use crate::shard::{Shard, ShardLayout};
use std::sync::Arc;

/// The cells of one histogram series.
pub struct HistogramCells {
    layout: ShardLayout,
    /// Finite, strictly increasing upper bounds; `+Inf` is implicit.
    bounds: Arc<[f64]>,
    lines_per_row: usize,
    lines: Box<[Line]>,
}

/// One histogram series. Cloning shares the cells.
pub type HistogramCell = Arc<HistogramCells>;

impl HistogramCells {
    pub fn new(layout: ShardLayout, bounds: Arc<[f64]>) -> Self {
        let cells = bounds.len() + 2;
        let lines_per_row = cells.div_ceil(LINE_CELLS);
        Self {
            layout,
            bounds,
            lines_per_row,
            lines: lines(lines_per_row * layout.shards as usize),
        }
    }

    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    #[inline(always)]
    fn cell(&self, shard: usize, i: usize) -> &crate::loom::AtomicU64 {
        self.lines[shard * self.lines_per_row + i / LINE_CELLS].cell(i % LINE_CELLS)
    }

    /// The bucket `v` counts in: the first bound `>= v` (a value equal to a bound counts in that
    /// bucket), else `+Inf` (also for NaN).
    #[inline(always)]
    pub fn bucket(&self, v: f64) -> usize {
        let b = &*self.bounds;
        if b.len() <= 32 {
            // Branch-free (vectorised) count of the bounds below `v`; `!(v <= u)` also counts every
            // bound for NaN, which sends it to +Inf. A search whose exit depends on the value
            // mispredicts when values vary.
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            b.iter().filter(|&&u| !(v <= u)).count()
        } else {
            let i = b.partition_point(|&u| u < v);
            // NaN compares false everywhere: partition_point returns 0, so send it to +Inf.
            if v.is_nan() {
                b.len()
            } else {
                i
            }
        }
    }

    #[inline(always)]
    pub fn record_at(&self, shard: Shard, v: f64) {
        self.record_n_at(shard, v, 1);
    }

    #[inline(always)]
    pub fn record_n_at(&self, shard: Shard, v: f64, n: u64) {
        let i = self.bucket(v);
        add_u64(self.cell(shard.index, i), n, shard.exclusive);
        let sum = if n == 1 { v } else { v * n as f64 };
        add_f64(self.cell(shard.index, self.bounds.len() + 1), sum, shard.exclusive);
    }

    /// Records from the current thread.
    #[inline(always)]
    pub fn record(&self, v: f64) {
        self.record_at(crate::shard::current(self.layout), v);
    }

    /// Records `n` observations of `v` from the current thread.
    pub fn record_n(&self, v: f64, n: u64) {
        self.record_n_at(crate::shard::current(self.layout), v, n);
    }

    /// Records many observations from the current thread: one pass of bucket adds, one sum add.
    pub fn record_slice(&self, values: &[f64]) {
        let shard = crate::shard::current(self.layout);
        let mut sum = 0.0;
        for &v in values {
            add_u64(self.cell(shard.index, self.bucket(v)), 1, shard.exclusive);
            sum += v;
        }
        add_f64(self.cell(shard.index, self.bounds.len() + 1), sum, shard.exclusive);
    }

    /// Cumulative bucket counts (the last one is `+Inf` and equals the count) and the sum.
    pub fn snapshot(&self, cumulative: &mut Vec<u64>) -> f64 {
        let n = self.bounds.len() + 1;
        cumulative.clear();
        cumulative.resize(n, 0);
        let mut sum = 0.0;
        for s in 0..self.layout.shards as usize {
            for (i, c) in cumulative.iter_mut().enumerate() {
                *c = c.wrapping_add(self.cell(s, i).load(Relaxed));
            }
            sum += f64::from_bits(self.cell(s, n).load(Relaxed));
        }
        let mut acc = 0u64;
        for c in cumulative.iter_mut() {
            acc = acc.wrapping_add(*c);
            *c = acc;
        }
        sum
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn bucket_search_agrees_short_and_long() {
        for n in [0usize, 1, 3, 11, 32, 33, 100] {
            let bounds: Arc<[f64]> = (0..n).map(|i| i as f64 * 0.5).collect();
            let h = HistogramCells::new(ShardLayout::new(1), bounds.clone());
            for v in [
                -1.0,
                0.0,
                0.25,
                0.5,
                0.75,
                3.0,
                49.5,
                1e9,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
            ] {
                let want = if v.is_nan() {
                    n
                } else {
                    bounds.iter().position(|&u| v <= u).unwrap_or(n)
                };
                assert_eq!(h.bucket(v), want, "n={n} v={v}");
            }
        }
    }
}
