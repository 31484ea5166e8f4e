//! Summary cells: a mergeable log-linear sketch per shard and per age window.
//!
//! # The sketch
//!
//! A value's magnitude `2^e × (1 + m)` is placed by its exponent `e` (an *octave*) and the top
//! [`SUB_BITS`] bits of its mantissa `m`: each octave is split into 64 equal buckets, and a
//! quantile is answered with the middle of its bucket. A bucket `[l, l + 2^e/64)` has `l >= 2^e`,
//! so the answer is within `2^e/128 / l <= 1/128 ≈ 0.78 %` of any value in it: the relative error is
//! at most 0.78 % (the target is 1 %), for magnitudes in `[2^-40, 2^64)` (about `9.1e-13` to
//! `1.8e19`). Smaller magnitudes count as zero; larger finite ones land in the top bucket. A
//! summary asked for quantile 0 or 1 also keeps each window's smallest and largest value: those
//! quantiles are then exact (the minimum and maximum, as metrics-exporter-prometheus reports
//! them), and every quantile lies between them. NaN and ±∞ count in `_count` and `_sum` but in no
//! quantile, as in metrics-exporter-prometheus' summaries (whose sketch drops infinities): one
//! `+Inf` would otherwise make every high quantile 1.8e19. Sketches merge by adding counts (and
//! extremes by taking the smaller and larger), which is how shards and windows are combined at
//! scrape time.
//!
//! # Memory
//!
//! An octave's 64 counts (a *chunk*, 512 bytes) are allocated the first time a value of that
//! octave is seen by that shard in that window, and kept (zeroed on rotation) for the series'
//! life: recording allocates at most once per (shard, window, octave) and never in steady state. A
//! shard's sketch is allocated on its first observation, so shards no thread writes cost a pointer.
//!
//! # The sliding window
//!
//! `max_age` is split into `age_buckets` windows of `max_age / age_buckets`; a value goes into the
//! window of the current (coarse) time, and a scrape merges the windows of the last `age_buckets`
//! periods. A window is reused by zeroing it when its period comes round again. `_sum` and `_count`
//! are cumulative, as in every Prometheus client. On a shared shard a value recorded by one thread
//! while another thread zeroes the window may be lost from the quantiles (never from `_count`),
//! or stay the window's extreme for its next period; exclusive shards have one writer, so there
//! it cannot happen.

use std::ptr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::life::{HasLife, Life};
use super::{add_f64, add_u64};
use std::sync::Arc;

use crate::loom::{AtomicPtr, AtomicU64};
use crate::shard::{Shard, ShardLayout};

/// Mantissa bits that pick a bucket in an octave.
pub(crate) const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
const MIN_EXP: i32 = -40;
const MAX_EXP: i32 = 63;
const OCTAVES: usize = (MAX_EXP - MIN_EXP + 1) as usize;
/// Chunk slots: positive octaves, then negative ones.
const SLOTS: usize = 2 * OCTAVES;
/// Buckets in a merged sketch.
pub(crate) const BUCKETS: usize = SLOTS * SUB;

/// The largest relative error of a quantile, by construction.
pub const SUMMARY_RELATIVE_ERROR: f64 = 1.0 / 128.0;

/// Quantiles and window of a summary family.
#[derive(Clone, Debug, PartialEq)]
pub struct SummarySpec {
    pub quantiles: Arc<[f64]>,
    pub max_age: Duration,
    pub age_buckets: u32,
}

type Chunk = CachePadded<[AtomicU64; SUB]>;

struct Window {
    /// Period number + 1 of the values in this window; 0 = never used.
    tag: AtomicU64,
    zero: AtomicU64,
    /// The smallest and largest value of the window (`f64` bits; `+∞` and `-∞` when empty):
    /// quantiles 0 and 1 are these exactly, and every quantile lies between them.
    min: AtomicU64,
    max: AtomicU64,
    chunks: Box<[AtomicPtr<Chunk>]>,
}

/// Sets `cell` (`f64` bits) to `v` if `v` `beats` it: an exclusive shard stores, a shared one
/// retries a compare-exchange while `v` still beats what another thread stored meanwhile.
#[cold]
#[inline(never)]
fn set_extreme(cell: &AtomicU64, v: f64, exclusive: bool, beats: fn(f64, f64) -> bool) {
    let mut cur = cell.load(Relaxed);
    if exclusive {
        if beats(v, f64::from_bits(cur)) {
            cell.store(v.to_bits(), Relaxed);
        }
        return;
    }
    while beats(v, f64::from_bits(cur)) {
        match cell.compare_exchange_weak(cur, v.to_bits(), Relaxed, Relaxed) {
            Ok(_) => return,
            Err(now) => cur = now,
        }
    }
}

struct ShardSketch {
    /// `[count, sum bits]`, cumulative.
    totals: CachePadded<[AtomicU64; 2]>,
    windows: Box<[Window]>,
}

/// The cells of one summary series.
pub struct SummaryCells {
    layout: ShardLayout,
    spec: SummarySpec,
    /// Whether the windows keep their extremes: when quantile 0 or 1 is asked for. They cost a
    /// record 6–8 % (`scripts/ab.sh`, `summary-minmax/1`), which a summary that never shows them
    /// does not pay ([`Self::observe_at`] picks the record without them up front: 1–3 %).
    extremes: bool,
    window_ms: u64,
    shards: Box<[AtomicPtr<ShardSketch>]>,
    life: Life,
    /// Wall clock at creation, milliseconds since the Unix epoch.
    created_ms: u64,
}

impl HasLife for SummaryCell {
    fn life(&self) -> &Life {
        &self.life
    }
}

/// One summary series. Cloning shares the cells.
pub type SummaryCell = Arc<SummaryCells>;

/// Bucket of a value: `(slot, sub)`, or `None` for zero (and tiny magnitudes) and NaN.
#[inline(always)]
fn index(v: f64) -> Option<(usize, usize)> {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
    if exp < MIN_EXP || v.is_nan() {
        return None;
    }
    let (octave, sub) = if exp > MAX_EXP {
        (OCTAVES - 1, SUB - 1)
    } else {
        (
            (exp - MIN_EXP) as usize,
            ((bits >> (52 - SUB_BITS)) as usize) & (SUB - 1),
        )
    };
    let slot = if bits >> 63 == 1 { OCTAVES + octave } else { octave };
    Some((slot, sub))
}

/// The value a bucket answers with: the middle of its range.
fn value_of(slot: usize, sub: usize) -> f64 {
    let (neg, octave) = if slot >= OCTAVES {
        (true, slot - OCTAVES)
    } else {
        (false, slot)
    };
    let base = 2f64.powi(octave as i32 + MIN_EXP);
    let v = base * (1.0 + (sub as f64 + 0.5) / SUB as f64);
    if neg {
        -v
    } else {
        v
    }
}

impl Window {
    fn new() -> Self {
        Self {
            tag: AtomicU64::new(0),
            zero: AtomicU64::new(0),
            min: AtomicU64::new(f64::INFINITY.to_bits()),
            max: AtomicU64::new(f64::NEG_INFINITY.to_bits()),
            chunks: (0..SLOTS).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
        }
    }

    fn chunk(&self, slot: usize) -> &Chunk {
        // Acquire pairs with the AcqRel of the compare_exchange that installed the chunk, so its
        // zeroed cells are visible before we use them.
        let p = self.chunks[slot].load(Acquire);
        if !p.is_null() {
            // SAFETY:
            // - a non-null pointer here came from `Box::into_raw` in the install below;
            // - it is freed only in `Drop for Window`, which needs `&mut self`, so it outlives `&self`.
            return unsafe { &*p };
        }
        let new = Box::into_raw(Box::new(CachePadded::new(std::array::from_fn(|_| AtomicU64::new(0)))));
        match self.chunks[slot].compare_exchange(ptr::null_mut(), new, AcqRel, Acquire) {
            // SAFETY: `new` is ours and now owned by the window, freed only in `Drop`.
            Ok(_) => unsafe { &*new },
            Err(existing) => {
                // SAFETY: `new` was never shared (the exchange failed), so we still own it.
                drop(unsafe { Box::from_raw(new) });
                // SAFETY: as for a non-null load above; Acquire on failure pairs with its install.
                unsafe { &*existing }
            }
        }
    }

    /// Makes this window hold period `tag`, zeroing what it held.
    #[cold]
    fn rotate(&self, tag: u64) {
        let old = self.tag.load(Relaxed);
        if old < tag && self.tag.compare_exchange(old, tag, Relaxed, Relaxed).is_ok() {
            self.zero.store(0, Relaxed);
            self.min.store(f64::INFINITY.to_bits(), Relaxed);
            self.max.store(f64::NEG_INFINITY.to_bits(), Relaxed);
            for c in self.chunks.iter() {
                let p = c.load(Acquire);
                if !p.is_null() {
                    // SAFETY: installed chunks live until `Drop` (see `chunk`).
                    for cell in unsafe { &*p }.iter() {
                        cell.store(0, Relaxed);
                    }
                }
            }
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        for c in self.chunks.iter() {
            let p = c.swap(ptr::null_mut(), Acquire);
            if !p.is_null() {
                // SAFETY: `p` came from `Box::into_raw` and, with `&mut self`, nobody else holds it.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

impl SummaryCells {
    pub fn new(layout: ShardLayout, spec: SummarySpec) -> Self {
        let window_ms = (spec.max_age.as_millis() as u64 / u64::from(spec.age_buckets.max(1))).max(1);
        #[cfg(not(loom))]
        super::clock::ensure_running();
        Self {
            layout,
            extremes: spec.quantiles.iter().any(|&q| q == 0.0 || q == 1.0),
            spec,
            window_ms,
            shards: (0..layout.shards).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
            life: Life::new(),
            created_ms: super::clock::unix_ms(),
        }
    }

    /// When the series was created: wall clock, milliseconds since the Unix epoch.
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    pub fn quantiles(&self) -> &[f64] {
        &self.spec.quantiles
    }

    fn sketch(&self, shard: usize) -> &ShardSketch {
        // Acquire pairs with the AcqRel install below (the sketch's initialised fields).
        let p = self.shards[shard].load(Acquire);
        if !p.is_null() {
            // SAFETY: non-null pointers come from `Box::into_raw` below and are freed only in
            // `Drop`, which needs `&mut self`.
            return unsafe { &*p };
        }
        self.install(shard)
    }

    #[cold]
    fn install(&self, shard: usize) -> &ShardSketch {
        let windows = (0..self.spec.age_buckets.max(1)).map(|_| Window::new()).collect();
        let sketch = ShardSketch {
            totals: CachePadded::new([AtomicU64::new(0), AtomicU64::new(0f64.to_bits())]),
            windows,
        };
        let new = Box::into_raw(Box::new(sketch));
        match self.shards[shard].compare_exchange(ptr::null_mut(), new, AcqRel, Acquire) {
            // SAFETY: `new` is now owned by `self.shards`, freed only in `Drop`.
            Ok(_) => unsafe { &*new },
            Err(existing) => {
                // SAFETY: the exchange failed, so `new` was never shared.
                drop(unsafe { Box::from_raw(new) });
                // SAFETY: as in `sketch`.
                unsafe { &*existing }
            }
        }
    }

    #[inline]
    pub fn observe_at(&self, shard: Shard, v: f64, now_ms: u64) {
        // Chosen once per record, before any of its work: a summary without extremes runs the
        // record it ran before they existed.
        if self.extremes {
            self.observe_in::<true>(shard, v, now_ms)
        } else {
            self.observe_in::<false>(shard, v, now_ms)
        }
    }

    #[inline(always)]
    fn observe_in<const EXTREMES: bool>(&self, shard: Shard, v: f64, now_ms: u64) {
        let sk = self.sketch(shard.index);
        add_u64(&sk.totals[0], 1, shard.exclusive);
        add_f64(&sk.totals[1], v, shard.exclusive);
        if !v.is_finite() {
            return;
        }
        let period = now_ms / self.window_ms;
        let w = &sk.windows[(period % sk.windows.len() as u64) as usize];
        if w.tag.load(Relaxed) != period + 1 {
            w.rotate(period + 1);
        }
        match index(v) {
            Some((slot, sub)) => add_u64(&w.chunk(slot)[sub], 1, shard.exclusive),
            None => add_u64(&w.zero, 1, shard.exclusive),
        }
        // One branch for both extremes: most values are neither.
        if EXTREMES && (v < f64::from_bits(w.min.load(Relaxed))) | (v > f64::from_bits(w.max.load(Relaxed))) {
            set_extreme(&w.min, v, shard.exclusive, |v, cur| v < cur);
            set_extreme(&w.max, v, shard.exclusive, |v, cur| v > cur);
        }
    }

    /// Observes from the current thread.
    #[inline]
    pub fn observe(&self, v: f64) {
        self.observe_at(crate::shard::current(self.layout), v, super::clock::coarse_ms());
    }

    /// `(count, sum)` and the quantiles (NaN when the window is empty) into `out`, merging every
    /// shard and the windows of the last `age_buckets` periods before `now_ms`.
    pub fn snapshot_at(&self, now_ms: u64, scratch: &mut Vec<u64>, out: &mut Vec<f64>) -> (u64, f64) {
        scratch.clear();
        scratch.resize(BUCKETS, 0);
        let (mut count, mut sum, mut zero) = (0u64, 0f64, 0u64);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        let period = now_ms / self.window_ms;
        for p in self.shards.iter() {
            let p = p.load(Acquire);
            if p.is_null() {
                continue;
            }
            // SAFETY: as in `sketch`.
            let sk = unsafe { &*p };
            count = count.saturating_add(sk.totals[0].load(Relaxed));
            sum += f64::from_bits(sk.totals[1].load(Relaxed));
            for w in sk.windows.iter() {
                let tag = w.tag.load(Relaxed);
                if tag == 0 || tag > period + 1 || period + 1 - tag >= sk.windows.len() as u64 {
                    continue;
                }
                zero += w.zero.load(Relaxed);
                min = min.min(f64::from_bits(w.min.load(Relaxed)));
                max = max.max(f64::from_bits(w.max.load(Relaxed)));
                for (slot, c) in w.chunks.iter().enumerate() {
                    let c = c.load(Acquire);
                    if c.is_null() {
                        continue;
                    }
                    // SAFETY: as in `Window::chunk`.
                    for (sub, cell) in unsafe { &*c }.iter().enumerate() {
                        scratch[slot * SUB + sub] += cell.load(Relaxed);
                    }
                }
            }
        }
        quantiles_of(scratch, zero, &self.spec.quantiles, out);
        if self.extremes && min <= max {
            // The sketch answers with a bucket's middle; the extremes are known exactly.
            for (v, &q) in out.iter_mut().zip(self.spec.quantiles.iter()) {
                *v = if q == 0.0 {
                    min
                } else if q == 1.0 {
                    max
                } else {
                    v.clamp(min, max)
                };
            }
        }
        (count, sum)
    }

    /// Like [`Self::snapshot_at`] at the current time.
    pub fn snapshot(&self, scratch: &mut Vec<u64>, out: &mut Vec<f64>) -> (u64, f64) {
        self.snapshot_at(super::clock::refresh(), scratch, out)
    }
}

/// Buckets in value order: negative octaves from the largest magnitude down, then zero, then
/// positive octaves up.
fn ordered(counts: &[u64], zero: u64) -> impl Iterator<Item = (f64, u64)> + '_ {
    let neg = (0..OCTAVES)
        .rev()
        .flat_map(move |o| (0..SUB).rev().map(move |s| (OCTAVES + o, s)));
    let pos = (0..OCTAVES).flat_map(|o| (0..SUB).map(move |s| (o, s)));
    neg.map(|(slot, sub)| (slot, sub, counts[slot * SUB + sub]))
        .chain(std::iter::once((usize::MAX, 0, zero)))
        .chain(pos.map(|(slot, sub)| (slot, sub, counts[slot * SUB + sub])))
        .filter(|&(_, _, c)| c > 0)
        .map(|(slot, sub, c)| (if slot == usize::MAX { 0.0 } else { value_of(slot, sub) }, c))
}

/// The value of rank `q × (n - 1)` for each `q` (ascending), NaN when there are no values.
fn quantiles_of(counts: &[u64], zero: u64, qs: &[f64], out: &mut Vec<f64>) {
    out.clear();
    let total: u64 = counts.iter().sum::<u64>() + zero;
    if total == 0 {
        out.extend(qs.iter().map(|_| f64::NAN));
        return;
    }
    let mut it = ordered(counts, zero);
    let (mut cum, mut cur) = (0u64, f64::NAN);
    for &q in qs {
        let rank = (q * (total - 1) as f64).floor() as u64;
        while cum <= rank {
            match it.next() {
                Some((v, c)) => {
                    cum += c;
                    cur = v;
                }
                None => break,
            }
        }
        out.push(cur);
    }
}

impl Drop for SummaryCells {
    fn drop(&mut self) {
        for p in self.shards.iter() {
            let p = p.swap(ptr::null_mut(), Acquire);
            if !p.is_null() {
                // SAFETY: `p` came from `Box::into_raw` in `install`; `&mut self` means no reader.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn spec(qs: &[f64]) -> SummarySpec {
        SummarySpec {
            quantiles: qs.into(),
            max_age: Duration::from_secs(600),
            age_buckets: 5,
        }
    }

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    #[test]
    fn quantiles_within_relative_error() {
        let qs = [0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0];
        let s = SummaryCells::new(ShardLayout::new(4), spec(&qs));
        let mut vals = Vec::new();
        let mut x = 0x1234_5678_u64;
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x % 1_000_000) as f64 / 997.0 - if i % 10 == 0 { 300.0 } else { 0.0 };
            vals.push(v);
            let shard = ShardLayout::new(4).pick(i % 5);
            s.observe_at(shard, v, 1000);
        }
        vals.sort_by(f64::total_cmp);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let (count, sum) = s.snapshot_at(1000, &mut scratch, &mut out);
        assert_eq!(count, 20_000);
        assert!((sum - vals.iter().sum::<f64>()).abs() < 1e-6 * sum.abs().max(1.0));
        for (q, got) in qs.iter().zip(&out) {
            let want = exact(&vals, *q);
            assert!(
                (got - want).abs() <= want.abs() * SUMMARY_RELATIVE_ERROR + 1e-12,
                "q={q} got={got} want={want}"
            );
        }
    }

    #[test]
    fn window_slides_out() {
        let s = SummaryCells::new(
            ShardLayout::new(1),
            SummarySpec {
                age_buckets: 5,
                max_age: Duration::from_secs(5),
                ..spec(&[0.5])
            },
        );
        let sh = ShardLayout::new(1).pick(0);
        s.observe_at(sh, 10.0, 0);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        s.snapshot_at(4_999, &mut scratch, &mut out);
        assert!((out[0] - 10.0).abs() < 0.1);
        let (count, _) = s.snapshot_at(5_000, &mut scratch, &mut out);
        assert!(out[0].is_nan(), "old window must have slid out, got {}", out[0]);
        assert_eq!(count, 1, "_count stays cumulative");
        s.observe_at(sh, 20.0, 5_000);
        s.snapshot_at(5_000, &mut scratch, &mut out);
        assert!((out[0] - 20.0).abs() < 0.2);
    }

    #[test]
    fn zero_nan_and_extremes() {
        let s = SummaryCells::new(ShardLayout::new(1), spec(&[0.0, 0.5, 1.0]));
        let sh = ShardLayout::new(1).pick(0);
        for v in [0.0, f64::NAN, -1e30, 1e30, 1e-300] {
            s.observe_at(sh, v, 0);
        }
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let (count, _) = s.snapshot_at(0, &mut scratch, &mut out);
        assert_eq!(count, 5);
        assert!(out[0] <= -1e19);
        assert_eq!(out[1], 0.0);
        assert!(out[2] >= 1e19);
    }

    /// With quantile 0 or 1 asked for, those are the smallest and largest value exactly, and the
    /// others stay within the sketch's error and between the two.
    #[test]
    fn the_extremes_are_exact() {
        let s = SummaryCells::new(ShardLayout::new(2), spec(&[0.0, 0.5, 1.0]));
        let layout = ShardLayout::new(2);
        for (i, v) in [0.020, 0.250, 0.010, 0.020].into_iter().enumerate() {
            s.observe_at(layout.pick(i as u32 % 2), v, 0);
        }
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        s.snapshot_at(0, &mut scratch, &mut out);
        assert_eq!(out[0], 0.010);
        assert!((out[1] - 0.020).abs() <= 0.020 * SUMMARY_RELATIVE_ERROR, "{out:?}");
        assert_eq!(out[2], 0.250);
        // One value: every quantile is that value, not its bucket's middle.
        let one = SummaryCells::new(ShardLayout::new(1), spec(&[0.0, 0.5, 0.99, 1.0]));
        one.observe_at(ShardLayout::new(1).pick(0), -3.3, 0);
        one.snapshot_at(0, &mut scratch, &mut out);
        assert_eq!(out, [-3.3; 4]);
        // Without quantile 0 or 1 no extremes are kept: the bucket's middle, within the error.
        let mid = SummaryCells::new(ShardLayout::new(1), spec(&[0.5]));
        mid.observe_at(ShardLayout::new(1).pick(0), 2.0, 0);
        mid.snapshot_at(0, &mut scratch, &mut out);
        assert_eq!(out, [2.015625]);
    }

    /// ±∞ count and add to the sum, as NaN does, but move no quantile.
    #[test]
    fn infinities_count_but_move_no_quantile() {
        let s = SummaryCells::new(ShardLayout::new(1), spec(&[0.0, 0.5, 1.0]));
        let sh = ShardLayout::new(1).pick(0);
        for v in [f64::INFINITY, 1.0, f64::NEG_INFINITY, 1.0, f64::INFINITY] {
            s.observe_at(sh, v, 0);
        }
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let (count, sum) = s.snapshot_at(0, &mut scratch, &mut out);
        assert_eq!(count, 5);
        assert!(sum.is_nan(), "+Inf and -Inf in the sum: {sum}");
        for q in &out {
            assert!((q - 1.0).abs() < 0.01, "{out:?}");
        }
    }
}
