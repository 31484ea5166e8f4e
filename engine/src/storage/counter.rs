//! Counter cells, packed across series, in memory that only the shards that write take.
//!
//! A [`CounterChunk`] holds the cells of [`CHUNK_SERIES`] series for every shard: shard `s` owns the
//! run of cells `s * CHUNK_SERIES ..`, and series `k` of the chunk owns cell `k` of every run. So the
//! cells of 16 consecutive series of one shard fill one 128-byte line that no other shard writes,
//! and a thread only ever writes its own shard's lines, shared with other series but not with
//! other writers.
//!
//! The chunk is one anonymous memory mapping, whose pages the OS provides when they are first
//! written: a series costs 8 bytes for each shard that *writes* it, not for each shard that exists.
//! A game server whose series are each written by a few threads pays for those few, whatever the
//! shard count (a read of a page no shard wrote sees the OS's shared zero page). The price is one
//! page fault (~1 µs) the first time a shard writes any of a page's 512 series; the thread that
//! creates a series writes its own shard's cell at once, so that thread pays it at creation, not
//! when it records. Where no mapping can be made (and under loom and Miri, which model none), the
//! chunk's cells are one zeroed heap allocation instead, all of it resident.
//!
//! Beside the cells, per series and apart from them (never touched by a record): its [`Life`], when
//! it was created and its latest exemplar ([`Extra`], 16 bytes).
//!
//! A chunk's series are never reused: one removed by expiry leaves its cells and extra unused for
//! the chunk's life, and a chunk lives while any of its series does. So once every series of a
//! page of cells is removed and no walk can reach them any more ([`CounterCell::retire`]), the
//! chunk gives that page of every shard back to the OS, and the pages of extras that lie wholly
//! among them (unless one holds an exemplar): a chunk kept by a few long-lived series does not
//! keep the memory of the thousands that expired around them.

use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::exemplar::ExemplarSlot;
use super::life::{HasLife, Life};
use super::{add_u64, lines, Line, LINE_CELLS};
use crate::exemplar::{Exemplar, ExemplarLabelsRef};
use crate::loom::AtomicU64;
use crate::shard::{Shard, ShardLayout};

/// Series per chunk: 64 KiB of cells per shard (16 pages), small enough that a registry with a few
/// series reserves little address space, large enough that 10^6 series are 123 mappings.
#[cfg(not(loom))]
pub(crate) const CHUNK_SERIES: usize = 8192;
/// Series per chunk under loom: one line per shard, so the models stay small.
#[cfg(loom)]
pub(crate) const CHUNK_SERIES: usize = LINE_CELLS;

// Each shard's run is whole lines, so shards never share a line.
const _: () = assert!(CHUNK_SERIES.is_multiple_of(LINE_CELLS));

/// Where a chunk's cells live.
enum Memory {
    /// An anonymous mapping: zeroed, page-aligned, resident only where written.
    #[cfg(not(any(loom, miri)))]
    Mapped(#[allow(dead_code)] memmap2::MmapMut),
    /// Zeroed lines on the heap, the fallback when no mapping can be made: a leaked box, freed on
    /// drop (a `Box` kept here would claim unique access each time the chunk moves, which the
    /// cells' pointers into it outlive).
    Heap(NonNull<[Line]>),
}

impl Drop for Memory {
    // Under loom and Miri, `Heap` is the only variant.
    #[allow(irrefutable_let_patterns)]
    fn drop(&mut self) {
        if let Memory::Heap(lines) = *self {
            // SAFETY: from `Box::leak` in `CounterChunk::on_heap`, freed once, here; the chunk
            // (and so every cell pointing into it) is being dropped.
            drop(unsafe { Box::from_raw(lines.as_ptr()) });
        }
    }
}

/// The cells of up to [`CHUNK_SERIES`] counters for every shard of a layout.
pub struct CounterChunk {
    layout: ShardLayout,
    /// Cell 0 of shard 0; shard `s`'s cell `k` is `base + s * CHUNK_SERIES + k`.
    base: NonNull<AtomicU64>,
    /// Owns the memory `base` points into; never accessed otherwise.
    _memory: Memory,
    /// Series `k`'s [`Life`]: 8 bytes a series, apart from the cells (written only when a handle
    /// is made or dropped and by the sweep, never by a record).
    lives: Box<[Life]>,
    /// Series `k`'s creation time and exemplar, apart from the cells like its life.
    extras: Box<[Extra]>,
    /// Per page of a shard's cells ([`page_series`] series): how many of its series were retired
    /// ([`CounterCell::retire`]); at `page_series()` the page's memory is given back. Unused where
    /// the chunk cannot give memory back (loom and Miri model no mapping; other OSes than Linux).
    #[cfg_attr(not(all(target_os = "linux", not(any(loom, miri)))), allow(dead_code))]
    retired: Box<[std::sync::atomic::AtomicU32]>,
}

/// What a counter series keeps besides its cells and life; written when the series is made and
/// when an exemplar is recorded, never by a plain record.
struct Extra {
    /// Wall clock at creation, milliseconds since the Unix epoch. Stored once when the series is
    /// made, before the series is published to any reader (by its map's lock and `Release`
    /// store), so `Relaxed` suffices; atomic only because the chunk is shared before then. `std`'s
    /// atomic: no loom model is about it.
    created_ms: std::sync::atomic::AtomicU64,
    exemplar: ExemplarSlot,
}

// SAFETY: `base` points into `_memory`, which the chunk owns and which moves with it (a mapping or
// a heap block does not move when its owner does); the cells are only ever accessed as atomics
// through shared references, so sharing and sending the chunk across threads is sound.
unsafe impl Send for CounterChunk {}
// SAFETY: as for `Send`.
unsafe impl Sync for CounterChunk {}

impl CounterChunk {
    pub fn new(layout: ShardLayout) -> Self {
        #[cfg(not(any(loom, miri)))]
        match map_zeroed(layout.shards as usize * CHUNK_SERIES) {
            Ok((base, map)) => {
                return Self {
                    layout,
                    base,
                    _memory: Memory::Mapped(map),
                    lives: lives(),
                    extras: extras(),
                    retired: retired(),
                }
            }
            Err(e) => tracing::warn!(
                bytes = layout.shards as usize * CHUNK_SERIES * 8,
                error = %e,
                "cannot map memory for counter cells; using the heap (all of it resident)"
            ),
        }
        Self::on_heap(layout)
    }

    /// A chunk whose cells are one zeroed heap allocation (all of it resident).
    fn on_heap(layout: ShardLayout) -> Self {
        // The whole slice's pointer: it may reach every cell, not only the first line's.
        let heap = NonNull::from(Box::leak(lines(layout.shards as usize * CHUNK_SERIES / LINE_CELLS)));
        Self {
            layout,
            base: heap.cast(),
            _memory: Memory::Heap(heap),
            lives: lives(),
            extras: extras(),
            retired: retired(),
        }
    }
}

/// The OS's page size (Linux only gives memory back, see [`CounterChunk::retire`]).
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
fn page_size() -> usize {
    procfs::page_size() as usize
}

/// Series whose cells fill one page of a shard's run (512 with 4 KiB pages): the unit in which a
/// chunk gives memory back; a chunk whose run is smaller than a page gives none back.
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
pub(crate) fn page_series() -> usize {
    page_size() / std::mem::size_of::<AtomicU64>()
}

/// Page groups of a chunk: one per page of a shard's run (at least one).
fn retired() -> Box<[std::sync::atomic::AtomicU32]> {
    #[cfg(all(target_os = "linux", not(any(loom, miri))))]
    let groups = (CHUNK_SERIES / page_series()).max(1);
    #[cfg(not(all(target_os = "linux", not(any(loom, miri)))))]
    let groups = 1;
    (0..groups).map(|_| std::sync::atomic::AtomicU32::new(0)).collect()
}

/// Hands the pages `[addr, addr + len)` (page-aligned) back to the OS; they read as zeros after.
///
/// # Safety
///
/// Nothing reads or writes the pages any more, or what it finds there is zero-valid and unused.
#[cfg(all(target_os = "linux", not(any(loom, miri))))]
unsafe fn give_back(addr: usize, len: usize) {
    // SAFETY: the range is page-aligned memory of this process that the caller no longer uses;
    // `MADV_DONTNEED` on private anonymous memory only replaces its pages with zero pages.
    unsafe {
        libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED);
    }
}

impl CounterChunk {
    /// Counts series `k` retired; when it completes its page group, gives back that page of every
    /// shard's cells, and the pages of extras that lie wholly among retired groups and hold no
    /// exemplar. Only a mapped chunk gives memory back, and only on Linux.
    #[cfg(all(target_os = "linux", not(any(loom, miri))))]
    fn retire(&self, k: usize) {
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        let per = page_series();
        if !matches!(self._memory, Memory::Mapped(_)) || per > CHUNK_SERIES {
            return;
        }
        let full = |g: usize| self.retired[g].load(Acquire) as usize == per;
        let g = k / per;
        // AcqRel: the group's last retirement sees the others (each after its series' removal).
        if self.retired[g].fetch_add(1, AcqRel) as usize + 1 != per {
            return;
        }
        let page = page_size();
        for s in 0..self.layout.shards as usize {
            // SAFETY: shard `s`'s run starts `s * CHUNK_SERIES` cells (a whole number of pages)
            // past the page-aligned mapping, and page `g` of it holds series `g * per ..` of the
            // group, all retired: nothing reads or writes those cells any more.
            unsafe { give_back(self.base.as_ptr().add(s * CHUNK_SERIES + g * per) as usize, page) };
        }
        // The extras are a heap block, not page-aligned: a page of them may span two groups.
        let size = std::mem::size_of::<Extra>();
        let start = self.extras.as_ptr() as usize;
        let end = start + self.extras.len() * size;
        let mut a = (start + g * per * size) & !(page - 1);
        while a < start + (g + 1) * per * size {
            if a >= start && a + page <= end {
                // Every extra with a byte in the page (one may straddle each of its ends).
                let (first, last) = ((a - start) / size, (a + page - 1 - start) / size);
                if (first / per..=last / per).all(full)
                    && !self.extras[first..=last].iter().any(|e| e.exemplar.is_set())
                {
                    // SAFETY: the page lies within the extras' block and holds only (parts of)
                    // extras of retired series, none with an exemplar: all-zero, as they read after
                    // this, is an unused `Extra` (a zero time and no exemplar), and nothing reads
                    // them.
                    unsafe { give_back(a, page) };
                }
            }
            a += page;
        }
    }
}

fn lives() -> Box<[Life]> {
    (0..CHUNK_SERIES).map(|_| Life::new()).collect()
}

fn extras() -> Box<[Extra]> {
    (0..CHUNK_SERIES)
        .map(|_| Extra {
            created_ms: std::sync::atomic::AtomicU64::new(0),
            exemplar: ExemplarSlot::new(),
        })
        .collect()
}

/// An anonymous mapping of `cells` zeroed `AtomicU64`s, and a pointer to the first.
#[cfg(not(any(loom, miri)))]
fn map_zeroed(cells: usize) -> std::io::Result<(NonNull<AtomicU64>, memmap2::MmapMut)> {
    let mut map = memmap2::MmapOptions::new()
        .len(cells * std::mem::size_of::<AtomicU64>())
        // Address space, not memory: only written pages are ever backed.
        .no_reserve_swap()
        .map_anon()?;
    // Transparent huge pages would back 2 MiB at the first write and undo the point of the
    // mapping. Advice only: a kernel without THP refuses it, which is fine.
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::NoHugePage);
    let base = NonNull::new(map.as_mut_ptr()).expect("a mapping is never at address 0");
    // Page alignment is far above `AtomicU64`'s (8) and a line's (128).
    debug_assert_eq!(base.as_ptr() as usize % std::mem::align_of::<Line>(), 0);
    Ok((base.cast(), map))
}

/// One counter series: its cell in shard 0 of a chunk, and the chunk. Cloning shares the cells.
#[derive(Clone)]
pub struct CounterCell {
    chunk: Arc<CounterChunk>,
    /// Shard `s`'s cell is `cell + s * CHUNK_SERIES`.
    cell: NonNull<AtomicU64>,
}

// SAFETY: `cell` points into the chunk the `Arc` keeps alive, and is only used for atomic
// operations through shared references; `CounterChunk` is `Send + Sync`.
unsafe impl Send for CounterCell {}
// SAFETY: as for `Send`.
unsafe impl Sync for CounterCell {}

impl HasLife for CounterCell {
    fn life(&self) -> &Life {
        &self.chunk.lives[self.index()]
    }
}

impl CounterCell {
    /// Series `k` of `chunk`, created now (each `k` is handed out once).
    pub fn new(chunk: Arc<CounterChunk>, k: usize) -> Self {
        // `add_at` and `get` rely on it.
        assert!(k < CHUNK_SERIES, "cell {k} of a chunk of {CHUNK_SERIES}");
        chunk.extras[k].created_ms.store(super::clock::unix_ms(), Relaxed);
        // SAFETY: `k < CHUNK_SERIES`, within shard 0's run of the chunk's cells.
        let cell = unsafe { chunk.base.add(k) };
        Self { chunk, cell }
    }

    /// Lets the chunk give back the memory of this series' cells and extra: called for a removed
    /// series once nothing can reach it any more, neither a holder (a removed series has none and
    /// takes none) nor a walk (every map that held it is gone). Counted once per series however
    /// often it is called, and not at all for a series not removed.
    pub(crate) fn retire(&self) {
        if self.life().retire() {
            #[cfg(all(target_os = "linux", not(any(loom, miri))))]
            self.chunk.retire(self.index());
        }
    }

    /// When the series was created: wall clock, milliseconds since the Unix epoch.
    pub fn created_ms(&self) -> u64 {
        self.chunk.extras[self.index()].created_ms.load(Relaxed)
    }

    /// Adds `v` and makes `labels` (with value `v`) the series' latest exemplar. The add is
    /// [`CounterCell::add`]'s; the exemplar is stored after it.
    pub(crate) fn add_with_exemplar(&self, v: u64, labels: ExemplarLabelsRef<'_>) {
        self.add(v);
        self.set_exemplar(v, labels);
    }

    /// Makes `labels` (with value `v`) the series' latest exemplar.
    pub(crate) fn set_exemplar(&self, v: u64, labels: ExemplarLabelsRef<'_>) {
        self.chunk.extras[self.index()].exemplar.store(labels, v as f64);
    }

    /// The series' latest exemplar, if any.
    pub(crate) fn exemplar(&self) -> Option<Exemplar> {
        self.chunk.extras[self.index()].exemplar.load()
    }

    pub fn layout(&self) -> ShardLayout {
        self.chunk.layout
    }

    /// The series' index `k` in its chunk.
    fn index(&self) -> usize {
        // SAFETY: `cell` was made as `base.add(k)` in `new`, within the chunk's allocation.
        unsafe { self.cell.offset_from(self.chunk.base) as usize }
    }

    /// The cell the current thread adds to when its shard is one of the layout's exclusive ones
    /// (claiming the thread's slot first if it has none yet); the shard's index is the slot's.
    pub(crate) fn exclusive_cell(&self) -> Option<&AtomicU64> {
        let shard = crate::shard::current(self.chunk.layout);
        shard.exclusive.then(|| self.cell(shard.index))
    }

    /// Shard `index`'s cell.
    #[inline(always)]
    fn cell(&self, index: usize) -> &AtomicU64 {
        debug_assert!(index < self.chunk.layout.shards as usize);
        // SAFETY: `index < layout.shards` (callers pass a `Shard` of this series' layout:
        // `ShardLayout::pick`, `shard::current`; or iterate the layout's shards), and `new` asserted
        // `k < CHUNK_SERIES`, so the cell is within the chunk's `shards * CHUNK_SERIES` initialised
        // cells, which live as long as `self.chunk`, and so as long as the returned borrow.
        unsafe { &*self.cell.as_ptr().add(index * CHUNK_SERIES) }
    }

    /// Adds `v` to `shard`'s cell; `shard` comes from this series' layout.
    #[inline(always)]
    pub fn add_at(&self, shard: Shard, v: u64) {
        add_u64(self.cell(shard.index), v, shard.exclusive);
    }

    /// Adds `v` from the current thread.
    #[inline(always)]
    pub fn add(&self, v: u64) {
        match crate::shard::current_exclusive(self.chunk.layout) {
            Some(index) => self.add_at(Shard { index, exclusive: true }, v),
            None => self.add_shared(v),
        }
    }

    /// [`CounterCell::add`] from a thread without an exclusive shard (or not known yet).
    #[inline(never)]
    fn add_shared(&self, v: u64) {
        self.add_at(crate::shard::current(self.chunk.layout), v);
    }

    /// The sum over shards, saturating at `u64::MAX` (so is each shard's cell, see [`add_u64`]).
    pub fn get(&self) -> u64 {
        super::sum_u64((0..self.chunk.layout.shards as usize).map(|s| self.cell(s)))
    }

    /// Raises the counter to at least `v` (the facade's `absolute`, metrics-exporter-prometheus'
    /// `fetch_max`). The total is a sum over shards, so raising it is a read of the sum and an add
    /// of the difference: calls on one series take turns ([`ABSOLUTE_LOCKS`]), else two callers
    /// that read the same sum would both add their difference and overshoot, and a counter never
    /// comes back down. Adds meanwhile are not held up and are not lost: they land before the read
    /// (and are in the sum) or after it (and count on top of `v`). The total saturates at
    /// `u64::MAX` like every add.
    pub fn absolute_at(&self, shard: Shard, v: u64) {
        let stripe = (self.cell.as_ptr() as usize / std::mem::size_of::<AtomicU64>()) % ABSOLUTE_LOCKS.len();
        // Nothing under the lock can panic, so a poisoned lock guards nothing broken.
        let _turn = ABSOLUTE_LOCKS[stripe]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cur = self.get();
        if v > cur {
            self.add_at(shard, v - cur);
        }
    }
}

/// The turns of [`CounterCell::absolute_at`], striped by series: `absolute` mirrors a counter kept
/// elsewhere (a collector's, once per scrape), far from the recording path, so a few series
/// sharing a lock wait on each other rarely. `std`'s mutex: no loom model is about it.
static ABSOLUTE_LOCKS: [std::sync::Mutex<()>; 64] = [const { std::sync::Mutex::new(()) }; 64];

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Every series of a chunk has its own cell in every shard, whichever memory holds them.
    fn check_cells(chunk: CounterChunk) {
        let layout = chunk.layout;
        let chunk = Arc::new(chunk);
        let cells: Vec<_> = (0..CHUNK_SERIES)
            .map(|k| CounterCell::new(Arc::clone(&chunk), k))
            .collect();
        for (k, c) in cells.iter().enumerate() {
            for s in 0..layout.shards {
                let shard = Shard {
                    index: s as usize,
                    exclusive: s < layout.exclusive,
                };
                c.add_at(shard, k as u64 * 100 + u64::from(s) + 1);
            }
        }
        let shards = u64::from(layout.shards);
        for (k, c) in cells.iter().enumerate() {
            let want = shards * (k as u64 * 100) + shards * (shards + 1) / 2;
            assert_eq!(c.get(), want, "series {k} of {CHUNK_SERIES}, {shards} shards");
        }
    }

    #[test]
    #[cfg(not(miri))]
    fn mapped_cells_are_distinct() {
        let chunk = CounterChunk::new(ShardLayout::new(5));
        assert!(
            matches!(chunk._memory, Memory::Mapped(_)),
            "the mapping is the normal case"
        );
        check_cells(chunk);
    }

    /// Removes `cells`' series, as a sweep does, so that they can be retired.
    fn remove(cells: &[CounterCell]) {
        for c in cells {
            assert_eq!(
                c.life().sweep(crate::storage::life::clock(), Some(0)),
                crate::storage::life::Swept::Removed
            );
        }
    }

    #[test]
    #[cfg(all(not(miri), target_os = "linux"))]
    fn a_page_whose_series_are_all_retired_is_given_back() {
        let per = page_series();
        let chunk = Arc::new(CounterChunk::new(ShardLayout::new(3)));
        let cells: Vec<_> = (0..3 * per).map(|k| CounterCell::new(Arc::clone(&chunk), k)).collect();
        for (k, c) in cells.iter().enumerate() {
            c.add_at(
                Shard {
                    index: k % 3,
                    exclusive: false,
                },
                7,
            );
        }
        // Page 2 holds an exemplar in its extras.
        cells[2 * per + per / 2].add_with_exemplar(1, ExemplarLabelsRef::Pairs(&[("t", "1")]));
        let all_retired_but = |keep: usize| {
            remove(&cells);
            for (k, c) in cells.iter().enumerate() {
                if k != keep {
                    // Counted once, however often it is called.
                    c.retire();
                    c.retire();
                }
            }
        };
        all_retired_but(per + 1);
        // Page 0: every shard's cells and the extras page wholly among them read as zeros now.
        assert!(cells[..per].iter().all(|c| c.get() == 0), "page 0's cells given back");
        assert_eq!(cells[per / 2].created_ms(), 0, "an extras page of page 0 given back");
        // Page 1 has a series not retired: nothing of it is given back.
        assert!(cells[per..2 * per].iter().all(|c| c.get() == 7), "page 1 kept");
        assert_ne!(cells[per + per / 2].created_ms(), 0);
        // Page 2: the cells go; the extras page with the exemplar stays, exemplar and all.
        assert!(
            cells[2 * per..].iter().all(|c| c.get() == 0),
            "page 2's cells given back"
        );
        assert_ne!(
            cells[2 * per + per / 2].created_ms(),
            0,
            "the extras page with an exemplar kept"
        );
        assert!(cells[2 * per + per / 2].exemplar().is_some());
        // A series not removed is never counted: page 1 stays whole.
        let fresh = CounterCell::new(Arc::clone(&chunk), 3 * per);
        fresh.retire();
        assert!(cells[per..2 * per].iter().all(|c| c.get() == 7));
    }

    #[test]
    fn heap_cells_are_distinct() {
        check_cells(CounterChunk::on_heap(ShardLayout::new(5)));
    }

    #[test]
    #[should_panic(expected = "cell 8192 of a chunk of 8192")]
    fn a_cell_past_the_chunk_is_refused() {
        CounterCell::new(Arc::new(CounterChunk::new(ShardLayout::new(1))), CHUNK_SERIES);
    }
}
