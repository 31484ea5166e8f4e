//! A counting global allocator, for `system_memory_*` gauges.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: mmo_metrics::system::CountingAllocator = mmo_metrics::system::CountingAllocator::system();
//! ```
//!
//! Every allocation adds to one of [`SHARDS`] sets of counters picked by the calling thread (by
//! the address of a thread-local), each set on its own 128 bytes, so threads allocating at once
//! rarely write the same line. Counts are `Relaxed`: they publish nothing, and a reader sums the
//! shards (a read is not one instant; the totals are exact once allocation pauses).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// Counter sets.
pub const SHARDS: usize = 32;

/// `[bytes allocated, bytes freed, allocations, frees]`, cumulative.
struct Counts([AtomicU64; 4]);

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: CachePadded<Counts> = CachePadded::new(Counts([
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
]));

static COUNTS: [CachePadded<Counts>; SHARDS] = [ZERO; SHARDS];
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Only its address is used: a const-initialised thread-local without `Drop` never allocates,
    // so it is safe to touch from inside the allocator.
    static MARK: u8 = const { 0 };
}

#[inline(always)]
fn shard() -> &'static Counts {
    let addr = MARK.try_with(|m| m as *const u8 as usize).unwrap_or(0);
    // Thread-local blocks are page-aligned or so; mix the higher bits.
    let h = (addr >> 12) ^ (addr >> 20) ^ (addr >> 6);
    &COUNTS[h % SHARDS]
}

/// Wraps an allocator (by default the system's) and counts what goes through it.
#[derive(Debug, Default)]
pub struct CountingAllocator<A = System> {
    inner: A,
}

impl CountingAllocator<System> {
    /// Counting over the system allocator.
    pub const fn system() -> Self {
        Self { inner: System }
    }
}

impl<A> CountingAllocator<A> {
    /// Counting over `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

#[inline(always)]
fn on_alloc(size: usize) {
    let c = shard();
    c.0[0].fetch_add(size as u64, Relaxed);
    c.0[2].fetch_add(1, Relaxed);
    if !INSTALLED.load(Relaxed) {
        INSTALLED.store(true, Relaxed);
    }
}

#[inline(always)]
fn on_free(size: usize) {
    let c = shard();
    c.0[1].fetch_add(size as u64, Relaxed);
    c.0[3].fetch_add(1, Relaxed);
}

// SAFETY: every method forwards to `inner` with the caller's arguments unchanged, so `inner`'s
// guarantees carry over; the counting touches only static atomics and never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (non-zero size layout, as the caller guarantees).
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract (`ptr` was allocated by this allocator with `layout`).
        unsafe { self.inner.dealloc(ptr, layout) };
        on_free(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // A move counts as a free of the old block and an allocation of the new one.
            on_free(layout.size());
            on_alloc(new_size);
        }
        p
    }
}

/// Heap statistics from the [`CountingAllocator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllocStats {
    /// Bytes allocated and not yet freed.
    pub live_bytes: u64,
    /// Bytes allocated since start (cumulative).
    pub total_allocated_bytes: u64,
    /// Allocations not yet freed.
    pub live_objects: u64,
    /// Allocations since start (cumulative).
    pub total_allocations: u64,
}

/// Current heap statistics, or `None` when no [`CountingAllocator`] is the global allocator.
pub fn alloc_stats() -> Option<AllocStats> {
    if !INSTALLED.load(Relaxed) {
        return None;
    }
    let mut t = [0u64; 4];
    for c in COUNTS.iter() {
        for (acc, cell) in t.iter_mut().zip(c.0.iter()) {
            *acc = acc.wrapping_add(cell.load(Relaxed));
        }
    }
    Some(AllocStats {
        live_bytes: t[0].saturating_sub(t[1]),
        total_allocated_bytes: t[0],
        live_objects: t[2].saturating_sub(t[3]),
        total_allocations: t[2],
    })
}
