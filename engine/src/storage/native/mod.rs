//! Native (sparse, exponential) histogram cells, as Prometheus defines native histograms: buckets
//! whose bounds grow by `2^(2^-schema)` (see [`index`]), a zero bucket for `|v| <=` a threshold,
//! positive and negative buckets, and a bucket limit past which the resolution halves.
//!
//! # Layout
//!
//! Each shard has one row of cells, whole [`Line`]s of its own (as the classic histogram):
//!
//! | cells | what |
//! |---|---|
//! | `SEQ`, `GATE` | the move protocol (below) |
//! | `SCHEMA` | the shard's schema (its shifts and itself, `index::schema_word`) |
//! | `POS`, `NEG` | each sign's window: key of its first cell, length, index of its first cell |
//! | `SUM`, `ZERO`, `NAN` | sum (`f64` bits), zero-bucket count, NaN observations |
//! | `MUL`, `OCT` | the schema as the fast path uses it: `2^s` (0 for `s < 0`), `max(s, 0)` |
//! | then `nb` cells | the classic part's counts, one per finite bound, when there is one |
//! | then `cap` cells | native bucket counts: the negative window, then the positive one |
//!
//! The native cells cover a contiguous range of keys per sign (a *window*), so a record into a
//! bucket inside it is the classic record plus a few shifts: the key from the value's bits (a
//! table load, an add and a shift, [`index::key_fast`]), a subtraction and an unsigned compare
//! against the window, one add to the bucket's count, one to the sum. That path takes positive
//! values at schemas `>= 0` (latencies and sizes at any useful resolution); negative values and
//! schemas below 0 take the same steps out of line. No lock, no allocation, no
//! shared write. The windows of one shard together span at most `max_buckets` keys (at schema
//! −4, the lowest, `cap` keys: enough for every value above the zero threshold, so a value always
//! finds a place). Memory never grows: a value outside its sign's window *moves* the shard (the
//! slow path, under a per-histogram mutex): the windows are re-centred on the populated range
//! plus the new key, and when that range no longer fits in `max_buckets` keys, the schema drops
//! by one (or more) and each pair of buckets merges into one (`ceil(k / 2)`), as client_golang's
//! `doubleBucketWidth` does. Client_golang limits the number of *populated* buckets; here a
//! shard limits the span of its populated keys, which is the same for the dense ranges latencies
//! and sizes give, and halves sooner for values that leave wide empty gaps.
//!
//! Each shard moves on its own (at its own schema); a read merges the shards at the lowest schema
//! among them, then halves further while more than `max_buckets` buckets are populated, so an
//! exposition never has more. Shard schemas only go down, so the exposed schema only goes down.
//!
//! # Moves and readers
//!
//! A shard that one thread owns (an exclusive shard) is moved by that thread itself, so no record
//! races with its move. A shared shard's writers announce themselves in `GATE` (one
//! read-modify-write in, one out); its mover sets `GATE`'s `MOVING` bit, waits until no writer is
//! inside, moves, and clears the bit; a writer that finds the bit set steps out and waits for the
//! mutex. Readers never block a mover: `SEQ` is a sequence lock, odd while a move rewrites the
//! row, and a reader that saw it change reads the shard again. So a read sees each shard either
//! before or after a move, never half-moved: its count is always `zero + Σ buckets + NaN
//! observations`, and no observation is lost or counted twice.
//!
//! NaN is counted in the count and makes the sum NaN, but is in no bucket (as in client_golang,
//! and as Prometheus' validation allows only when the sum is NaN). ±Inf counts in the bucket above
//! `±f64::MAX`'s.
//!
//! # Classic and native together
//!
//! With classic buckets too, a record adds its native count first and its classic count last with
//! `Release`; a read loads the classic counts first with `Acquire`, then the native ones. So
//! every observation whose classic count a read saw is in its native counts too, and the read
//! reports the native count as `_count` and as the classic `+Inf` bucket: the classic buckets stay
//! cumulative and at most the count (an observation in flight during a read may show in `+Inf`
//! only, for that read). Values above the last classic bound and NaN need no classic cell.
//!
//! # Memory
//!
//! A series takes `shards × ceil((14 + classic bounds + cap) / 16) × 128` bytes of cells plus
//! 144 bytes for the struct in its `Arc` (and its entry in the family's map, as every series),
//! whether or not a shard is written. At the defaults (`max_buckets` 160, zero threshold
//! `2^-128`, so `cap` = 160) a native-only series has 11 lines per shard, 1,408 bytes: 5,632
//! bytes of cells with the 4 shards the default gives this 2-core machine
//! (`native_memory_per_series` measures it), 90 KiB with 64 shards (32 cores or more). A zero
//! threshold of 0 lets subnormals in and raises `cap` to 266 (2,304 bytes per shard).
//!
//! # Cost
//!
//! The fast path is about 45 instructions against the classic record's 35; a 1-thread loop of 50
//! million records on this machine (2-core Xeon, default buckets against the default native
//! config, values in order and scattered) measured the native record at 1.2× the classic one,
//! and a classic + native record at about 2× (it does both lookups).

mod index;
#[cfg(all(test, not(loom)))]
mod tests;

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, PoisonError};

use super::exemplar::ExemplarRow;
use super::life::{HasLife, Life};
use super::{add_f64, add_u64, flat, lines, Line, LINE_CELLS};
use crate::exemplar::{Exemplar, ExemplarLabelsRef};
use crate::loom::{fence, yield_now, AtomicU64, Mutex};
use crate::shard::{Shard, ShardLayout};
use crate::storage::histogram::{Buckets, Index};
use crate::{BucketSpan, MetricsError};
use index::{MIN_NORMAL_BITS, MIN_SCHEMA};

/// Most buckets a native histogram may be configured with (32 KiB of cells per shard).
pub const MAX_NATIVE_BUCKETS: u32 = 4096;

/// Settings of a native histogram (see [`crate::MetricsManager::register_native_histogram`]).
///
/// ```
/// use mmo_metrics::NativeConfig;
///
/// let fine = NativeConfig { bucket_factor: 1.05, ..NativeConfig::default() };
/// assert_eq!(fine.schema(), 4);
/// assert_eq!(NativeConfig::default().schema(), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NativeConfig {
    /// The largest growth from one bucket's upper bound to the next one's, `> 1`: the schema is
    /// the largest `s` in `-4..=8` with `2^(2^-s) <= bucket_factor` (as client_golang's
    /// `NativeHistogramBucketFactor`). Default 1.1: schema 3, 8 buckets per power of two.
    pub bucket_factor: f64,
    /// Observations with `|v| <=` this count in the zero bucket; finite and `>= 0` (0: only
    /// exact zeros). Default `2^-128`, client_golang's `DefNativeHistogramZeroThreshold`, a bucket
    /// bound at every schema.
    pub zero_threshold: f64,
    /// Most buckets (both signs together) before the resolution halves, `1..=4096`. Default 160,
    /// the value client_golang's users and Prometheus' docs use for
    /// `NativeHistogramMaxBucketNumber`.
    pub max_buckets: u32,
}

impl Default for NativeConfig {
    fn default() -> Self {
        Self {
            bucket_factor: 1.1,
            zero_threshold: DEFAULT_ZERO_THRESHOLD,
            max_buckets: 160,
        }
    }
}

/// `2^-128`.
const DEFAULT_ZERO_THRESHOLD: f64 = 2.938735877055719e-39;

impl NativeConfig {
    /// The schema [`Self::bucket_factor`] gives (see there); a factor `<= 1` or NaN gives 8.
    pub fn schema(&self) -> i32 {
        if self.bucket_factor > 1.0 {
            index::pick_schema(self.bucket_factor)
        } else {
            index::MAX_SCHEMA
        }
    }

    /// Checks the settings for `metric` and turns them into a family's spec.
    pub(crate) fn check(&self, metric: &str, classic: Option<Arc<Buckets>>) -> Result<NativeSpec, MetricsError> {
        let err = |setting: &str, found: String, expected: &str| MetricsError::InvalidNativeHistogram {
            metric: metric.to_owned(),
            setting: setting.to_owned(),
            found,
            expected: expected.to_owned(),
        };
        if !(self.bucket_factor.is_finite() && self.bucket_factor > 1.0) {
            return Err(err(
                "bucket_factor",
                self.bucket_factor.to_string(),
                "a finite factor above 1",
            ));
        }
        if !(self.zero_threshold.is_finite() && self.zero_threshold >= 0.0) {
            return Err(err(
                "zero_threshold",
                self.zero_threshold.to_string(),
                "a finite value >= 0",
            ));
        }
        if !(1..=MAX_NATIVE_BUCKETS).contains(&self.max_buckets) {
            return Err(err(
                "max_buckets",
                self.max_buckets.to_string(),
                &format!("1 to {MAX_NATIVE_BUCKETS}"),
            ));
        }
        Ok(NativeSpec {
            classic,
            schema: self.schema(),
            // -0.0 is stored as +0.0, so its bits order below every positive value's.
            zero_threshold: self.zero_threshold + 0.0,
            max_buckets: self.max_buckets,
        })
    }
}

/// A native (or classic + native) histogram family's definition.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NativeSpec {
    /// The classic part's buckets, when the histogram has one.
    pub(crate) classic: Option<Arc<Buckets>>,
    pub(crate) schema: i32,
    pub(crate) zero_threshold: f64,
    pub(crate) max_buckets: u32,
}

impl NativeSpec {
    pub(crate) fn describe(&self) -> String {
        let classic = match &self.classic {
            Some(b) => format!("buckets {b:?} and "),
            None => String::new(),
        };
        format!(
            "{classic}native buckets (schema {}, zero threshold {:e}, at most {} buckets)",
            self.schema, self.zero_threshold, self.max_buckets
        )
    }
}

// Cells of a row's header.
const SEQ: usize = 0;
const GATE: usize = 1;
const SCHEMA: usize = 2;
/// The positive window: key of its first cell, its length, the row index of its first cell.
const POS: usize = 3;
/// The negative window, as [`POS`].
const NEG: usize = 6;
const SUM: usize = 9;
const ZERO: usize = 10;
const NAN: usize = 11;
/// `2^s` for a schema `s >= 0`, 0 below (which the fast path leaves to the slow one).
const MUL: usize = 12;
/// `max(s, 0)`: the octave of the key lookup.
const OCT: usize = 13;
/// The classic counts start here.
const CLASSIC: usize = 14;

/// `GATE` bit: a move of the shard is under way; the other bits count writers inside.
const MOVING: u64 = 1 << 63;
const SIGN: u64 = 1 << 63;

/// The cells of one native histogram series (see the module docs).
pub struct NativeCells {
    layout: ShardLayout,
    spec: Arc<NativeSpec>,
    /// `spec.classic`, here so a record reaches it through one pointer fewer, and its lookup's
    /// [`Index`] (as the classic histogram keeps it beside its cells).
    classic: Option<Arc<Buckets>>,
    classic_index: Option<Index>,
    /// Classic finite bounds (0 without a classic part).
    nb: usize,
    /// Native cells per row.
    cap: usize,
    /// The most keys a row's windows span above the lowest schema.
    max_buckets: usize,
    /// Bits of the fast path: `fast_lo <= bits < fast_lo + fast_len` is a positive, normal,
    /// finite value above the zero threshold.
    fast_lo: u64,
    fast_len: u64,
    stride: usize,
    lines: Box<[Line]>,
    /// Held by a move.
    moving: Mutex<()>,
    life: Life,
    /// Wall clock at creation, milliseconds since the Unix epoch.
    created_ms: u64,
    /// The latest exemplar of each classic bucket (`nb + 1` of them: one `+Inf` bucket for a
    /// native-only series), allocated by the first (never read by a record).
    exemplars: ExemplarRow,
}

/// One native histogram series. Cloning shares the cells.
pub type NativeCell = Arc<NativeCells>;

impl HasLife for NativeCell {
    fn life(&self) -> &Life {
        &self.life
    }
}

/// What a read of a native histogram found besides its buckets (in [`NativeScratch`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NativeRead {
    pub(crate) schema: i32,
    pub(crate) zero_count: u64,
    pub(crate) count: u64,
    pub(crate) sum: f64,
}

/// A bucket count as read from a shard.
#[derive(Clone, Copy)]
struct Raw {
    schema: i32,
    neg: bool,
    key: i32,
    count: u64,
}

/// Buffers of a read, reused from series to series.
#[derive(Default)]
pub(crate) struct NativeScratch {
    raw: Vec<Raw>,
    merged: [Vec<(i32, u64)>; 2],
    /// Classic cumulative counts, `+Inf` (the count) last.
    pub(crate) cumulative: Vec<u64>,
    pub(crate) positive_spans: Vec<BucketSpan>,
    pub(crate) positive_counts: Vec<u64>,
    pub(crate) negative_spans: Vec<BucketSpan>,
    pub(crate) negative_counts: Vec<u64>,
}

/// What a bucket add found.
enum Try {
    Added,
    /// The key is outside its window: the shard must move.
    Outside,
    /// A move of the (shared) shard is under way.
    Moving,
}

impl NativeCells {
    pub(crate) fn new(layout: ShardLayout, spec: Arc<NativeSpec>) -> Self {
        let nb = spec.classic.as_ref().map_or(0, |b| b.bounds().len());
        // At the lowest schema every key from the lowest above the threshold to +Inf's, per sign.
        let lowest = index::lowest_key(spec.zero_threshold, MIN_SCHEMA);
        let highest = index::key(index::INF_BITS, MIN_SCHEMA);
        let need = 2 * (highest - lowest + 1) as usize;
        let max_buckets = spec.max_buckets as usize;
        let cap = max_buckets.max(need);
        let lines_per_row = (CLASSIC + nb + cap).div_ceil(LINE_CELLS);
        let stride = lines_per_row * LINE_CELLS;
        let lines = lines(lines_per_row * layout.shards as usize);
        let fast_lo = (spec.zero_threshold.to_bits() + 1).max(MIN_NORMAL_BITS);
        let cells = Self {
            layout,
            classic: spec.classic.clone(),
            classic_index: spec.classic.as_ref().map(|b| b.index()),
            nb,
            cap,
            max_buckets,
            fast_lo,
            fast_len: index::INF_BITS - fast_lo,
            stride,
            lines,
            moving: Mutex::new(()),
            life: Life::new(),
            created_ms: super::clock::unix_ms(),
            exemplars: ExemplarRow::new(),
            spec,
        };
        for s in 0..layout.shards as usize {
            let row = cells.row(s);
            Self::store_schema(row, cells.spec.schema);
            // Empty windows: the first bucket of each shard places them.
            row[POS + 2].store((CLASSIC + nb) as u64, Relaxed);
            row[NEG + 2].store((CLASSIC + nb) as u64, Relaxed);
        }
        cells
    }

    /// When the series was created: wall clock, milliseconds since the Unix epoch.
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// Records `v` and makes an exemplar of `labels` with value `v` the latest of `v`'s classic
    /// bucket (the `+Inf` one for a native-only series).
    pub(crate) fn record_with_exemplar(&self, v: f64, labels: ExemplarLabelsRef<'_>) {
        self.record(v);
        self.set_exemplar(v, labels);
    }

    /// Makes `labels` (with value `v`) the latest exemplar of `v`'s classic bucket.
    pub(crate) fn set_exemplar(&self, v: f64, labels: ExemplarLabelsRef<'_>) {
        let b = match (&self.classic, self.classic_index) {
            (Some(buckets), Some(index)) => buckets.bucket_in(index, v),
            _ => 0,
        };
        self.exemplars.store(self.nb + 1, b, labels, v);
    }

    /// The latest exemplar of classic bucket `b` (`b == nb`: `+Inf`), if any.
    pub(crate) fn exemplar(&self, b: usize) -> Option<Exemplar> {
        self.exemplars.load(b)
    }

    /// A native-only series of `config` (for the loom models).
    #[cfg(loom)]
    pub fn for_model(layout: ShardLayout, config: NativeConfig) -> Self {
        Self::new(layout, Arc::new(config.check("model", None).expect("valid config")))
    }

    /// A read as `(schema, count, zero bucket, sum of the native buckets)` (for the loom models).
    #[cfg(loom)]
    pub fn model_read(&self) -> (i32, u64, u64, u64) {
        let mut scratch = NativeScratch::default();
        let r = self.snapshot(&mut scratch);
        let buckets = scratch.positive_counts.iter().chain(&scratch.negative_counts).sum();
        (r.schema, r.count, r.zero_count, buckets)
    }

    /// The classic part's finite bounds (empty without one).
    pub(crate) fn bounds(&self) -> &[f64] {
        self.spec.classic.as_ref().map_or(&[], |b| b.bounds())
    }

    /// Bytes of cells (for the memory figures).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn cell_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.lines)
    }

    #[inline(always)]
    fn row(&self, shard: usize) -> &[AtomicU64] {
        debug_assert!(shard < self.layout.shards as usize);
        let cells = flat(&self.lines);
        // SAFETY: there are `layout.shards` rows of `stride` cells, and `shard` is one of them:
        // every `Shard` of this layout is (`ShardLayout::pick` and the exclusive slots are below
        // `layout.shards`).
        unsafe { cells.get_unchecked(shard * self.stride..(shard + 1) * self.stride) }
    }

    /// Records from the current thread.
    #[inline(always)]
    pub fn record(&self, v: f64) {
        match crate::shard::current_exclusive(self.layout) {
            Some(index) => self.record_n_at(Shard { index, exclusive: true }, v, 1),
            None => self.record_shared(v),
        }
    }

    /// [`NativeCells::record`] from a thread without an exclusive shard (or not known yet).
    #[inline(never)]
    fn record_shared(&self, v: f64) {
        self.record_n_at(crate::shard::current(self.layout), v, 1);
    }

    /// Records `n` observations of `v` from the current thread.
    pub fn record_n(&self, v: f64, n: u64) {
        self.record_n_at(crate::shard::current(self.layout), v, n);
    }

    /// Records many observations from the current thread.
    pub fn record_slice(&self, values: &[f64]) {
        let shard = crate::shard::current(self.layout);
        for &v in values {
            self.record_n_at(shard, v, 1);
        }
    }

    /// Records `n` observations of `v` in `shard`. The common case (an exclusive shard, a normal
    /// value above the zero threshold, its key inside its window) is inline; the rest is not.
    #[inline(always)]
    pub fn record_n_at(&self, shard: Shard, v: f64, n: u64) {
        let bits = v.to_bits();
        if shard.exclusive && bits.wrapping_sub(self.fast_lo) < self.fast_len {
            let row = self.row(shard.index);
            // SAFETY: a row has `stride >= CLASSIC` cells. (The header indexes below are then
            // known in range.)
            let head = unsafe { row.get_unchecked(..CLASSIC) };
            let mul = head[MUL].load(Relaxed) as i32;
            if mul != 0 {
                let key = index::key_fast(bits, mul, head[OCT].load(Relaxed) as usize);
                let d = i64::from(key).wrapping_sub(head[POS].load(Relaxed) as i64) as u64;
                if d < head[POS + 1].load(Relaxed) {
                    let i = head[POS + 2].load(Relaxed) as usize + d as usize;
                    debug_assert!(i < row.len());
                    // SAFETY: a window's cells lie inside the row (`relayout` places both windows
                    // in the `cap` native cells), and `d` is below the window's length. The owner
                    // of an exclusive shard reads its own header, which only it writes: never torn.
                    add_u64(unsafe { row.get_unchecked(i) }, n, true);
                    self.finish(row, v, n, true);
                    return;
                }
            }
        }
        self.record_other(shard, v, n);
    }

    /// The sum, then the classic count (last, with `Release`: see the module docs).
    #[inline(always)]
    fn finish(&self, row: &[AtomicU64], v: f64, n: u64, exclusive: bool) {
        // SAFETY: a row has `stride >= CLASSIC` cells.
        let head = unsafe { row.get_unchecked(..CLASSIC) };
        add_f64(&head[SUM], if n == 1 { v } else { v * n as f64 }, exclusive);
        if let (Some(classic), Some(ix)) = (&self.classic, self.classic_index) {
            let b = classic.bucket_in(ix, v);
            if b < self.nb {
                add_u64_release(&row[CLASSIC + b], n, exclusive);
            }
        }
    }

    /// [`NativeCells::record_n_at`] off its common path: NaN, the zero bucket, subnormals, ±Inf,
    /// shared shards, keys outside their window.
    #[inline(never)]
    fn record_other(&self, shard: Shard, v: f64, n: u64) {
        let row = self.row(shard.index);
        if v.is_nan() {
            add_u64(&row[NAN], n, shard.exclusive);
        } else if v.abs() <= self.spec.zero_threshold {
            add_u64(&row[ZERO], n, shard.exclusive);
        } else {
            let (abs, neg) = (v.to_bits() & !SIGN, v < 0.0);
            loop {
                match self.try_add(shard, row, abs, neg, n) {
                    Try::Added => break,
                    // The mover holds the mutex until the move is done.
                    Try::Moving => drop(self.lock()),
                    Try::Outside => self.make_room(shard, row, abs, neg),
                }
            }
        }
        self.finish(row, v, n, shard.exclusive);
    }

    fn lock(&self) -> crate::loom::MutexGuard<'_, ()> {
        self.moving.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds to the bucket of `abs` if it is inside its window; a shared shard's writer goes
    /// through the gate.
    fn try_add(&self, shard: Shard, row: &[AtomicU64], abs: u64, neg: bool, n: u64) -> Try {
        if shard.exclusive {
            return Self::add_in_window(row, abs, neg, n, true);
        }
        // Acquire: pairs with the `Release` that ends a move, so the layout read is the moved one.
        let gate = row[GATE].fetch_add(1, Acquire);
        let r = if gate & MOVING != 0 {
            Try::Moving
        } else {
            Self::add_in_window(row, abs, neg, n, false)
        };
        // Release: a mover that sees this writer gone (`Acquire`) sees its add.
        row[GATE].fetch_sub(1, Release);
        r
    }

    fn add_in_window(row: &[AtomicU64], abs: u64, neg: bool, n: u64, exclusive: bool) -> Try {
        let s = index::word_schema(row[SCHEMA].load(Relaxed));
        match Self::slot(row, index::key(abs, s), neg) {
            Some(cell) => {
                add_u64(&row[cell], n, exclusive);
                Try::Added
            }
            None => Try::Outside,
        }
    }

    /// The row index of key `k`'s cell, if `k` is inside its sign's window.
    fn slot(row: &[AtomicU64], k: i32, neg: bool) -> Option<usize> {
        let w = if neg { NEG } else { POS };
        let d = i64::from(k).wrapping_sub(row[w].load(Relaxed) as i64) as u64;
        (d < row[w + 1].load(Relaxed)).then(|| row[w + 2].load(Relaxed) as usize + d as usize)
    }

    /// Moves `shard` so that the bucket of `abs` has a cell (see the module docs). Only the
    /// shard's owner calls this for an exclusive shard; any of its writers for a shared one.
    #[cold]
    fn make_room(&self, shard: Shard, row: &[AtomicU64], abs: u64, neg: bool) {
        let _moving = self.lock();
        if !shard.exclusive {
            // Acquire (the wait's loads): pairs with each writer's `Release` on the way out, so
            // the move sees every add made inside the gate.
            row[GATE].fetch_or(MOVING, Acquire);
            while row[GATE].load(Acquire) & !MOVING != 0 {
                yield_now();
            }
        }
        let s = index::word_schema(row[SCHEMA].load(Relaxed));
        let k = index::key(abs, s);
        // Another writer of a shared shard may have made room meanwhile.
        if Self::slot(row, k, neg).is_none() {
            self.relayout(row, s, k, neg);
        }
        if !shard.exclusive {
            // Release: pairs with the writers' `Acquire` on the way in.
            row[GATE].fetch_and(!MOVING, Release);
        }
    }

    /// Rewrites a quiet row (no writer inside) at the schema and windows that hold its buckets
    /// and key `k` (of sign `neg`) at schema `s`.
    fn relayout(&self, row: &[AtomicU64], s: i32, k: i32, neg: bool) {
        let mut buckets: [Vec<(i32, u64)>; 2] = [Vec::new(), Vec::new()];
        for (side, w) in [POS, NEG].into_iter().enumerate() {
            let (base, len, start) = Self::window(row, w);
            for i in 0..len {
                let c = row[start + i].load(Relaxed);
                if c != 0 {
                    buckets[side].push((base + i as i32, c));
                }
            }
        }
        // The key to make room for, with no count (it is added by the caller's retry).
        buckets[usize::from(neg)].push((k, 0));
        let range = |b: &[(i32, u64)], d: u32| -> Option<(i32, i32)> {
            let lo = b.iter().map(|e| e.0).min()?;
            let hi = b.iter().map(|e| e.0).max()?;
            Some((index::reduce(lo, d), index::reduce(hi, d)))
        };
        let width = |r: Option<(i32, i32)>| r.map_or(0, |(lo, hi)| (hi - lo + 1) as usize);
        let mut d = 0;
        while s - (d as i32) > MIN_SCHEMA
            && width(range(&buckets[0], d)) + width(range(&buckets[1], d)) > self.max_buckets
        {
            d += 1;
        }
        let ns = s - d as i32;
        let (rp, rn) = (range(&buckets[0], d), range(&buckets[1], d));
        let (wp, wn) = (width(rp), width(rn));
        // Windows span at most `max_buckets` keys, `cap` at the lowest schema (where every key
        // fits); the slack goes half to each sign that has buckets, centred on them.
        let total = if ns == MIN_SCHEMA { self.cap } else { self.max_buckets };
        let slack = total - wp - wn;
        let (lp, ln) = match (wp, wn) {
            (_, 0) => (total, 0),
            (0, _) => (0, total),
            _ => (wp + slack / 2, wn + slack - slack / 2),
        };
        let first = CLASSIC + self.nb;
        let place = |r: Option<(i32, i32)>, w: usize, len: usize| r.map_or(0, |(lo, _)| lo - ((len - w) / 2) as i32);
        let (bp, bn) = (place(rp, wp, lp), place(rn, wn, ln));
        // A reader that saw the old sequence number and sees another one after reading reads
        // again: the row is never read half-moved.
        let seq = row[SEQ].load(Relaxed);
        row[SEQ].store(seq + 1, Relaxed);
        fence(Release);
        for c in &row[first..first + self.cap] {
            c.store(0, Relaxed);
        }
        Self::store_schema(row, ns);
        let windows = [(POS, bp, lp, first + ln), (NEG, bn, ln, first)];
        for (w, base, len, start) in windows {
            row[w].store(base as i64 as u64, Relaxed);
            row[w + 1].store(len as u64, Relaxed);
            row[w + 2].store(start as u64, Relaxed);
        }
        for (side, (_, base, _, start)) in windows.into_iter().enumerate() {
            for &(key, c) in &buckets[side] {
                if c != 0 {
                    let cell = &row[start + (index::reduce(key, d) - base) as usize];
                    cell.store(cell.load(Relaxed).saturating_add(c), Relaxed);
                }
            }
        }
        // Release: pairs with the readers' `Acquire` load of the sequence number.
        row[SEQ].store(seq + 2, Release);
    }

    /// Sets a row's schema cells.
    fn store_schema(row: &[AtomicU64], s: i32) {
        row[SCHEMA].store(index::schema_word(s), Relaxed);
        row[MUL].store(if s >= 0 { 1 << s } else { 0 }, Relaxed);
        row[OCT].store(s.max(0) as u64, Relaxed);
    }

    /// A window's first key, length and first cell, as stored (a reader may see a torn one
    /// during a move, and then reads again: callers check the range).
    fn window(row: &[AtomicU64], w: usize) -> (i32, usize, usize) {
        (
            row[w].load(Relaxed) as i64 as i32,
            row[w + 1].load(Relaxed) as usize,
            row[w + 2].load(Relaxed) as usize,
        )
    }

    /// Reads the series into `out` (classic cumulative counts, spans and counts of each sign) and
    /// returns the rest (see the module docs for what is consistent with what).
    pub(crate) fn snapshot(&self, out: &mut NativeScratch) -> NativeRead {
        let shards = self.layout.shards as usize;
        out.cumulative.clear();
        out.cumulative.resize(self.nb + 1, 0);
        // The classic counts first (see the module docs).
        for s in 0..shards {
            let row = self.row(s);
            for (c, cell) in out.cumulative.iter_mut().zip(&row[CLASSIC..CLASSIC + self.nb]) {
                // Acquire: pairs with the `Release` add in `finish`.
                *c = c.saturating_add(cell.load(Acquire));
            }
        }
        out.raw.clear();
        let (mut zero, mut nan, mut sum) = (0u64, 0u64, 0.0);
        let mut schema = self.spec.schema;
        for s in 0..shards {
            let row = self.row(s);
            let mark = out.raw.len();
            let shard_schema = loop {
                // Acquire: pairs with the `Release` that ends a move.
                let seq = row[SEQ].load(Acquire);
                if seq & 1 == 1 {
                    yield_now();
                    continue;
                }
                out.raw.truncate(mark);
                let ss = index::word_schema(row[SCHEMA].load(Relaxed));
                let mut torn = !(MIN_SCHEMA..=index::MAX_SCHEMA).contains(&ss);
                for (w, neg) in [(POS, false), (NEG, true)] {
                    let (base, len, start) = Self::window(row, w);
                    match row.get(start..start.saturating_add(len)) {
                        Some(cells) => {
                            for (i, c) in cells.iter().enumerate() {
                                let count = c.load(Relaxed);
                                if count != 0 {
                                    out.raw.push(Raw {
                                        schema: ss,
                                        neg,
                                        key: base.wrapping_add(i as i32),
                                        count,
                                    });
                                }
                            }
                        }
                        None => torn = true,
                    }
                }
                // Acquire: the loads above happen before the sequence number is read again.
                fence(Acquire);
                if !torn && row[SEQ].load(Relaxed) == seq {
                    break ss;
                }
            };
            schema = schema.min(shard_schema);
            zero = zero.saturating_add(row[ZERO].load(Relaxed));
            nan = nan.saturating_add(row[NAN].load(Relaxed));
            sum += f64::from_bits(row[SUM].load(Relaxed));
        }
        let mut count = zero.saturating_add(nan);
        for side in &mut out.merged {
            side.clear();
        }
        for r in &out.raw {
            out.merged[usize::from(r.neg)].push((index::reduce(r.key, (r.schema - schema) as u32), r.count));
            count = count.saturating_add(r.count);
        }
        for side in &mut out.merged {
            merge(side);
        }
        // Halve the resolution further while more buckets are populated than allowed.
        while schema > MIN_SCHEMA && out.merged[0].len() + out.merged[1].len() > self.max_buckets {
            for side in &mut out.merged {
                side.iter_mut().for_each(|e| e.0 = index::reduce(e.0, 1));
                merge(side);
            }
            schema -= 1;
        }
        index::spans(&out.merged[0], &mut out.positive_spans, &mut out.positive_counts);
        index::spans(&out.merged[1], &mut out.negative_spans, &mut out.negative_counts);
        let mut acc = 0u64;
        for c in &mut out.cumulative[..self.nb] {
            acc = acc.saturating_add(*c);
            *c = acc.min(count);
        }
        out.cumulative[self.nb] = count;
        NativeRead {
            schema,
            zero_count: zero,
            count,
            sum,
        }
    }

    /// The zero threshold.
    pub(crate) fn zero_threshold(&self) -> f64 {
        self.spec.zero_threshold
    }
}

/// Sorts `(key, count)` buckets by key and adds up those with equal keys.
fn merge(b: &mut Vec<(i32, u64)>) {
    b.sort_unstable_by_key(|e| e.0);
    b.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 = kept.1.saturating_add(later.1);
            true
        } else {
            false
        }
    });
}

/// [`add_u64`] with `Release` on the store: the classic count of a histogram that has both parts.
#[inline(always)]
fn add_u64_release(cell: &AtomicU64, v: u64, exclusive: bool) {
    if exclusive {
        cell.store(cell.load(Relaxed).saturating_add(v), Release);
    } else {
        let mut cur = cell.load(Relaxed);
        loop {
            match cell.compare_exchange_weak(cur, cur.saturating_add(v), Release, Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
    }
}
