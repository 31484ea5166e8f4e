//! Shared pieces of the benchmark suite: the library names used in bench ids, a switchable
//! counting allocator (allocations per scrape), and the process' resident memory.
//!
//! The benches themselves are in `benches/benches/` (criterion), the memory measurement in
//! `src/bin/memory_peers.rs`; `scripts/bench.sh` runs them all.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Bench id of mmo-metrics.
pub const MMO: &str = "mmo";
/// Bench id of mmo-metrics recorded by name through `MetricsManager` (not the facade).
pub const MMO_MANAGER: &str = "mmo-manager";
/// Bench id of metrics-exporter-prometheus 0.18 (through the `metrics` facade).
pub const MEP: &str = "metrics-exporter-prometheus";
/// Bench id of `prometheus` 0.14 (tikv/rust-prometheus).
pub const TIKV: &str = "prometheus";
/// Bench id of `prometheus-client` 0.25 (prometheus/client_rust).
pub const PCLIENT: &str = "prometheus-client";

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
static FREED_BYTES: AtomicU64 = AtomicU64::new(0);

/// A global allocator over the system allocator that counts allocations (and reallocations)
/// while counting is switched on ([`count_allocations`], [`start_counting`]). Switched off, it
/// costs one relaxed load per call, so the timed benches in the same binary are not slowed.
///
/// ```ignore
/// #[global_allocator]
/// static ALLOC: mmo_metrics_benches::CountingAlloc = mmo_metrics_benches::CountingAlloc;
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

#[inline(always)]
fn on_alloc(size: usize) {
    if COUNTING.load(Relaxed) {
        ALLOCS.fetch_add(1, Relaxed);
        ALLOC_BYTES.fetch_add(size as u64, Relaxed);
    }
}

#[inline(always)]
fn on_free(size: usize) {
    if COUNTING.load(Relaxed) {
        FREED_BYTES.fetch_add(size as u64, Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so its
// guarantees carry over; the counting touches only static atomics and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (non-zero size layout, as the caller guarantees).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract (`ptr` was allocated by this allocator with `layout`).
        unsafe { System.dealloc(ptr, layout) };
        on_free(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // A reallocation is one allocation call; the old block counts as freed.
            on_free(layout.size());
            on_alloc(new_size);
        }
        p
    }
}

/// Allocation counts over a stretch of code (all threads of the process).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AllocCount {
    /// Calls to `alloc`, `alloc_zeroed` and `realloc`.
    pub allocations: u64,
    /// Bytes requested by those calls.
    pub bytes: u64,
    /// Bytes allocated minus bytes freed (what the stretch of code left live on the heap).
    pub live_bytes: i64,
}

/// Switches counting on from zero (needs [`CountingAlloc`] as the global allocator).
pub fn start_counting() {
    ALLOCS.store(0, Relaxed);
    ALLOC_BYTES.store(0, Relaxed);
    FREED_BYTES.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
}

/// The counts since [`start_counting`] (counting goes on).
pub fn counted() -> AllocCount {
    let bytes = ALLOC_BYTES.load(Relaxed);
    AllocCount {
        allocations: ALLOCS.load(Relaxed),
        bytes,
        live_bytes: bytes as i64 - FREED_BYTES.load(Relaxed) as i64,
    }
}

/// Runs `f` with counting on and returns its result and what it allocated. Meaningful only with
/// [`CountingAlloc`] as the global allocator and no other thread allocating meanwhile.
pub fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, AllocCount) {
    start_counting();
    let r = f();
    let c = counted();
    COUNTING.store(false, Relaxed);
    (r, c)
}

/// Resident memory of this process in bytes (`mmo_metrics::system::process_stats`), or `None`
/// where it cannot be read (not Linux).
pub fn resident_bytes() -> Option<u64> {
    mmo_metrics::system::process_stats()
        .ok()
        .map(|p| p.resident_memory_bytes as u64)
}

/// Observation values: 64 values spread (log-uniformly) from 0.001 to 20, i.e. over every default
/// bucket and `+Inf`, in scattered order so consecutive calls land in different buckets.
pub static VALUES: [f64; 64] = values();

/// [`VALUES`] as the bits [`value`] reads. Atomics, so the compiler cannot know what a load returns
/// and fold anything about the values into the code it measures (a constant array let it drop a
/// library's NaN check, for one).
static VALUE_BITS: [AtomicU64; 64] = {
    let v = values();
    let mut out = [const { AtomicU64::new(0) }; 64];
    let mut i = 0;
    while i < 64 {
        out[i] = AtomicU64::new(v[i].to_bits());
        i += 1;
    }
    out
};

const fn values() -> [f64; 64] {
    // 0.001 * 1.17^k for k = 0..64 (≈ 0.001 … 19.7); const fn cannot call powf, so multiply.
    let mut out = [0.0; 64];
    let mut v = 0.001;
    let mut i = 0;
    while i < 64 {
        out[(i * 37) % 64] = v;
        v *= 1.17;
        i += 1;
    }
    out
}

/// The `i`-th observation value.
#[inline(always)]
pub fn value(i: u64) -> f64 {
    f64::from_bits(VALUE_BITS[(i & 63) as usize].load(Relaxed))
}

/// CPU time (user + system) of the calling thread so far.
pub fn thread_cpu() -> std::time::Duration {
    // SAFETY: `getrusage` writes into the zeroed struct we pass; RUSAGE_THREAD is valid on Linux.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_THREAD)");
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The recording side of the interference benches: two threads call `op(t, i)` (`t` the thread,
/// 0 or 1) `iters` times each after 1,000 warm-up calls and a barrier; returns the slower
/// thread's CPU time (`cpu`) or wall time.
pub fn two_recorders<F: Fn(usize, u64) + Sync>(iters: u64, cpu: bool, op: &F) -> std::time::Duration {
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    for i in 0..1000 {
                        op(t, i);
                    }
                    barrier.wait();
                    let (c0, w0) = (thread_cpu(), std::time::Instant::now());
                    for i in 0..iters {
                        op(t, i);
                    }
                    if cpu {
                        thread_cpu() - c0
                    } else {
                        w0.elapsed()
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).max().unwrap()
    })
}

/// The two recording threads' own series in `m`: counter `hot{t}` and histogram
/// `hot_seconds{t}` (no bounds) for `t` = 0 and 1.
pub fn hot_series(m: &mmo_metrics::MetricsManager) -> Vec<(mmo_metrics::CounterHandle, mmo_metrics::HistogramHandle)> {
    m.register_counter("hot", "", &["t"]).unwrap();
    m.register_histogram("hot_seconds", "", &["t"], &[]).unwrap();
    (0..2)
        .map(|t| {
            (
                m.counter("hot", &[&t.to_string()]).unwrap(),
                m.histogram("hot_seconds", &[&t.to_string()]).unwrap(),
            )
        })
        .collect()
}
