//! A family's series, indexed by their label values, in little memory, walked without a lock.
//!
//! Every series' encoded label values (see [`encode`](super::labels::encode)) sit in a byte arena,
//! its cells' handle and the end of its values in two parallel arrays, and a hash table of `u32`
//! positions finds a series by its values. Per series that is the label bytes, a 4-byte end
//! position, the handle and about 5 bytes of table, with no allocation of its own.
//!
//! Creation, lookups and walks do not wait for each other. Creation is serialised by the map's
//! mutex ([`SeriesMap::lock`]); the arrays and the arena are append-only and segmented: segment
//! `k` holds `BASE << k` items, is allocated when the first item goes into it and never moves, so
//! an item once written stays where it is and no growth copies anything. The writer (the mutex
//! holder) writes an entry, then publishes `len` with `Release`; a walk ([`SeriesMap::iter`])
//! loads `len` with `Acquire` and reads entries `[0, len)`, with no lock: it sees every series
//! created before it began, and those created meanwhile whole or not at all.
//!
//! The hash index is lock-free for readers too ([`SeriesMap::get`]): an open-addressing table of
//! `AtomicU32` positions (linear probing, at most 3/4 full), reached through an `AtomicPtr`. The
//! writer stores a new series' position into an empty slot with `Release` after the entry is
//! written; a reader loads slots with `Acquire`, so a position it sees names a whole entry, whose
//! label bytes it compares (entries never change). A full table is replaced by one twice as
//! large, built under the mutex and published by pointer with `Release`. Readers that still probe
//! the old one may miss series created since (callers then take the mutex and look again), so
//! old tables are kept, never written again, until the map drops: with doubling they add less
//! than the current table, so the index is at most twice its final size (4 to 11 bytes per
//! series, plus as much again for the old tables) and readers need no reclamation scheme.
//!
//! The arena's positions are logical: byte `p` is in arena segment `seg(p)` as above. A value
//! never spans two segments: one that does not fit in the rest of the current segment starts at
//! the next segment large enough for it (segments skipped are never allocated). So the start of
//! series `i`'s values need not be stored: it is the end of series `i - 1`'s or, if that is in an
//! earlier segment, the start of the segment holding series `i`'s last byte.
//!
//! Series are never removed; iteration is in creation order. Removal (expiry) would fit by
//! building a new map of the surviving series under the mutex and swapping it in for readers
//! (an `Arc` swapped by pointer, the old map freed once no walk holds it), since entries here
//! never move or change once published.

use std::alloc::{self, Layout};
use std::hash::{BuildHasher, Hasher as _};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::PoisonError;

use crate::loom::{AtomicPtr, AtomicU32, AtomicUsize, Mutex, MutexGuard, UnsafeCell};

/// Label values are hashed with random keys, so a crafted set of values cannot make one family's
/// lookups collide. Under loom the keys are fixed: a lookup's probes read entries through modelled
/// atomics, and loom needs every execution of a model to make the same operations.
#[cfg(not(loom))]
type Hasher = std::hash::RandomState;
#[cfg(loom)]
type Hasher = std::hash::BuildHasherDefault<std::hash::DefaultHasher>;

/// Segment `k` of the entry arrays holds `1 << (ENTRY_BASE_LOG + k)` entries: 8 in the first,
/// so a family of one series costs 8 entries' room (224 bytes), not a large fixed block.
#[cfg(not(loom))]
const ENTRY_BASE_LOG: u32 = 3;
/// One entry in the first segment, so a model crosses segment boundaries after 1 and 3 entries.
#[cfg(loom)]
const ENTRY_BASE_LOG: u32 = 0;

/// Segment `k` of the byte arena holds `1 << (BYTE_BASE_LOG + k)` bytes: 256 in the first.
#[cfg(not(loom))]
const BYTE_BASE_LOG: u32 = 8;
/// Four bytes in the first segment, so a model's short values cross a segment boundary.
#[cfg(loom)]
const BYTE_BASE_LOG: u32 = 2;

/// Segment pointers per array: enough for every `u32` position with either base (`33 - base`).
#[cfg(not(loom))]
const SEGMENTS: usize = 32;
/// Fewer under loom, where each pointer is an atomic the model tracks.
#[cfg(loom)]
const SEGMENTS: usize = 8;

/// Segment and offset in it of item `i`, segment `k` holding `1 << (base_log + k)` items.
#[inline]
fn locate(i: u64, base_log: u32) -> (usize, usize) {
    let j = i + (1 << base_log);
    let top = u64::BITS - 1 - j.leading_zeros();
    ((top - base_log) as usize, (j - (1 << top)) as usize)
}

/// Index of segment `k`'s first item.
#[inline]
fn segment_start(k: usize, base_log: u32) -> u64 {
    ((1u64 << k) - 1) << base_log
}

/// Items in segment `k`.
#[inline]
fn segment_len(k: usize, base_log: u32) -> usize {
    1 << (base_log as usize + k)
}

type Slot<T> = UnsafeCell<MaybeUninit<T>>;

/// An append-only array of `T` in segments that never move. Written by one writer at a time (the
/// holder of the map's mutex), read by anyone who has a happens-before edge to an item's write.
/// It does not know which slots hold a value: the owner drops them ([`Segments::drop_prefix`]).
struct Segments<T> {
    segments: [AtomicPtr<Slot<T>>; SEGMENTS],
    _owns: PhantomData<T>,
}

// SAFETY: a `Segments<T>` owns the `T`s written into it, so sending it sends them (`T: Send`).
unsafe impl<T: Send> Send for Segments<T> {}
// SAFETY: through `&Segments<T>` other threads read `&T` (`T: Sync`) and the writer moves `T`s in
// that the owner later drops, wherever it is (`T: Send`).
unsafe impl<T: Send + Sync> Sync for Segments<T> {}

impl<T> Segments<T> {
    fn new() -> Self {
        const { assert!(size_of::<T>() > 0, "segments of zero-sized items") };
        Self {
            segments: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            _owns: PhantomData,
        }
    }

    fn layout(k: usize) -> Layout {
        Layout::array::<Slot<T>>(segment_len(k, ENTRY_BASE_LOG)).expect("segment size fits isize")
    }

    /// Whether item `i` has a segment pointer to live in.
    fn in_range(i: usize) -> bool {
        locate(i as u64, ENTRY_BASE_LOG).0 < SEGMENTS
    }

    /// Writes item `i`, allocating its segment if it is the first item there.
    ///
    /// # Safety
    ///
    /// - The caller is the only writer: no other `write` runs concurrently, and earlier writes
    ///   happen-before this one (callers hold the map's mutex).
    /// - Slot `i` was never written, and no reader reads it until a happens-before edge from this
    ///   write (the `Release` store of the map's `len`) reaches it.
    /// - `Segments::in_range(i)`.
    unsafe fn write(&self, i: usize, value: T) {
        let (k, off) = locate(i as u64, ENTRY_BASE_LOG);
        // Relaxed: only writers store segment pointers, and earlier writers' stores happen-before
        // this load (the mutex), so it sees any pointer already stored.
        let mut seg = self.segments[k].load(Relaxed);
        if seg.is_null() {
            let layout = Self::layout(k);
            // SAFETY: the layout has a non-zero size (`T` is not zero-sized, see `new`; at least one item).
            seg = unsafe { alloc::alloc(layout) }.cast::<Slot<T>>();
            if seg.is_null() {
                alloc::handle_alloc_error(layout);
            }
            // Loom's cells carry model state and must be constructed; `std`'s
            // `UnsafeCell<MaybeUninit<T>>` is valid uninitialised, so the memory is left untouched
            // (and not made resident) until items are written.
            #[cfg(loom)]
            for j in 0..segment_len(k, ENTRY_BASE_LOG) {
                // SAFETY: `j` is within the allocation just made, for `segment_len` slots.
                unsafe { seg.add(j).write(UnsafeCell::new(MaybeUninit::uninit())) };
            }
            // Relaxed: readers reach this pointer only through the `Release` store of `len` that
            // follows it in this thread (see `get`); writers through the mutex.
            self.segments[k].store(seg, Relaxed);
        }
        // SAFETY:
        // - `off < segment_len(k)`, so the slot is within segment `k`'s allocation.
        // - No one else accesses slot `i` now: the caller is the only writer and no reader reads
        //   it before the write is published.
        unsafe { (*seg.add(off)).with_mut(|p| (*p).write(value)) };
    }

    /// Item `i`.
    ///
    /// # Safety
    ///
    /// Slot `i` was written, and that write happens-before this call (a `len` loaded with
    /// `Acquire` above `i`, or the map's mutex). The reference lives no longer than `self`.
    unsafe fn get(&self, i: usize) -> &T {
        let (k, off) = locate(i as u64, ENTRY_BASE_LOG);
        // Relaxed: the segment pointer was stored before slot `i` was written, and that write
        // happens-before this call, so this load sees it (a segment pointer is stored once).
        let seg = self.segments[k].load(Relaxed);
        // SAFETY:
        // - `seg` is segment `k`'s allocation (non-null: it was stored before slot `i` was written)
        //   and `off` is within it.
        // - Slot `i` holds an initialised `T` whose write happens-before this read, and it is never
        //   written again nor dropped while `&self` lives (`drop_prefix` takes `&mut self`).
        unsafe { (*seg.add(off)).with(|p| (*p).assume_init_ref()) }
    }

    /// Drops items `[0, len)`.
    ///
    /// # Safety
    ///
    /// Exactly the slots `[0, len)` hold values, and they are not used after.
    unsafe fn drop_prefix(&mut self, len: usize) {
        if !std::mem::needs_drop::<T>() {
            return;
        }
        for i in 0..len {
            let (k, off) = locate(i as u64, ENTRY_BASE_LOG);
            // Relaxed: `&mut self` excludes every other access; whatever gave it made all earlier
            // stores happen-before.
            let seg = self.segments[k].load(Relaxed);
            // SAFETY: slot `i` is initialised (caller), within segment `k`, and not used after.
            unsafe { (*seg.add(off)).with_mut(|p| (*p).assume_init_drop()) };
        }
    }
}

impl<T> Drop for Segments<T> {
    fn drop(&mut self) {
        for (k, seg) in self.segments.iter().enumerate() {
            // Relaxed: `&mut self` excludes every other access.
            let seg = seg.load(Relaxed);
            if seg.is_null() {
                continue;
            }
            #[cfg(loom)]
            for j in 0..segment_len(k, ENTRY_BASE_LOG) {
                // SAFETY: every slot of the segment was constructed in `write` (its content, a
                // `MaybeUninit`, needs no drop; items were dropped by the owner).
                unsafe { ptr::drop_in_place(seg.add(j)) };
            }
            // SAFETY: `seg` was allocated in `write` with this layout and is freed once.
            unsafe { alloc::dealloc(seg.cast::<u8>(), Self::layout(k)) };
        }
    }
}

/// The label bytes of every series: append-only, in segments that never move.
struct ByteArena {
    segments: [AtomicPtr<u8>; SEGMENTS],
}

impl ByteArena {
    fn new() -> Self {
        Self {
            segments: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    fn layout(k: usize) -> Layout {
        Layout::array::<u8>(segment_len(k, BYTE_BASE_LOG)).expect("segment size fits isize")
    }

    /// Where a value of `len > 0` bytes goes after position `prev_end`: its segment, offset there
    /// and end position; `None` past `u32` positions or the segment pointers.
    fn place(prev_end: u32, len: usize) -> Option<(usize, usize, u32)> {
        let (mut k, mut off) = locate(u64::from(prev_end), BYTE_BASE_LOG);
        if off + len > segment_len(k, BYTE_BASE_LOG) {
            // The next segment large enough for the whole value.
            k += 1;
            while k < SEGMENTS && segment_len(k, BYTE_BASE_LOG) < len {
                k += 1;
            }
            off = 0;
        }
        if k >= SEGMENTS {
            return None;
        }
        let end = segment_start(k, BYTE_BASE_LOG) + (off + len) as u64;
        Some((k, off, u32::try_from(end).ok()?))
    }

    /// Copies `bytes` in after position `prev_end` (the previous value's end) and returns their
    /// end position, or `None` (nothing written) when they do not fit in `u32` positions.
    ///
    /// # Safety
    ///
    /// The caller is the only writer, earlier writes happen-before this one (the map's mutex),
    /// `prev_end` is the end of the last published value (or 0), and no reader reads past it
    /// until a happens-before edge from this write (the `Release` store of `len`) reaches it.
    unsafe fn append(&self, prev_end: u32, bytes: &[u8]) -> Option<u32> {
        if bytes.is_empty() {
            return Some(prev_end);
        }
        let (k, off, end) = Self::place(prev_end, bytes.len())?;
        // Relaxed: only writers store segment pointers, ordered by the mutex.
        let mut seg = self.segments[k].load(Relaxed);
        if seg.is_null() {
            let layout = Self::layout(k);
            // SAFETY: the layout has a non-zero size.
            seg = unsafe { alloc::alloc(layout) };
            if seg.is_null() {
                alloc::handle_alloc_error(layout);
            }
            // Relaxed: readers reach it through the later `Release` store of `len` (see `read`).
            self.segments[k].store(seg, Relaxed);
        }
        // SAFETY:
        // - `off + bytes.len() <= segment_len(k)` (`place`), so the range is within segment `k`.
        // - No reader reads bytes past `prev_end` before this write is published, and no other
        //   writer runs, so nothing else accesses the range; `bytes` is another allocation.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), seg.add(off), bytes.len()) };
        Some(end)
    }

    /// The value that ends at `end`, the previous one ending at `prev_end`.
    ///
    /// # Safety
    ///
    /// `(prev_end, end)` are consecutive ends returned by `append`, whose writes happen-before
    /// this call (`len` loaded with `Acquire`, or the mutex). The slice lives no longer than
    /// `self`.
    unsafe fn read(&self, prev_end: u32, end: u32) -> &[u8] {
        if end == prev_end {
            return &[];
        }
        // The value does not span segments, so it is in the segment holding its last byte and
        // starts at `prev_end` or, if that is in an earlier segment, at this segment's start.
        let (k, _) = locate(u64::from(end) - 1, BYTE_BASE_LOG);
        let seg_start = segment_start(k, BYTE_BASE_LOG);
        let start = u64::from(prev_end).max(seg_start);
        // Relaxed: the pointer was stored before the value was written (`append`), and that write
        // happens-before this call.
        let seg = self.segments[k].load(Relaxed);
        // SAFETY:
        // - `seg` is segment `k`'s allocation, and `[start, end)` lies within it (`place`).
        // - Those bytes were written before the write this call has a happens-before edge from,
        //   and are never written again while `&self` lives.
        unsafe { std::slice::from_raw_parts(seg.add((start - seg_start) as usize), (u64::from(end) - start) as usize) }
    }
}

impl Drop for ByteArena {
    fn drop(&mut self) {
        for (k, seg) in self.segments.iter().enumerate() {
            // Relaxed: `&mut self` excludes every other access.
            let seg = seg.load(Relaxed);
            if !seg.is_null() {
                // SAFETY: `seg` was allocated in `append` with this layout and is freed once.
                unsafe { alloc::dealloc(seg, Self::layout(k)) };
            }
        }
    }
}

/// An empty slot of an [`IndexTable`] (positions are below `u32::MAX`: see `insert`).
const EMPTY: u32 = u32::MAX;

/// Slots of the first index table. Eight: a family of one series (no labels) costs 32 bytes.
#[cfg(not(loom))]
const MIN_SLOTS: usize = 8;
/// Two under loom, so a model of four series grows the table twice.
#[cfg(loom)]
const MIN_SLOTS: usize = 2;

/// One generation of the hash index: series positions by the hash of their label values, linear
/// probing from `hash & mask`. Never more than 3/4 full, so every probe sequence reaches an
/// empty slot.
struct IndexTable {
    mask: usize,
    slots: Box<[AtomicU32]>,
}

impl IndexTable {
    fn new(slots: usize) -> Box<Self> {
        debug_assert!(slots.is_power_of_two());
        Box::new(Self {
            mask: slots - 1,
            slots: (0..slots).map(|_| AtomicU32::new(EMPTY)).collect(),
        })
    }

    /// Whether `len` series fit (at most 3/4 of the slots used).
    fn fits(&self, len: usize) -> bool {
        len * 4 <= self.slots.len() * 3
    }

    /// Stores `pos` in the first empty slot of `hash`'s probe sequence.
    ///
    /// Only the mutex holder calls it. `Release`: pairs with the `Acquire` load of a slot in
    /// `SeriesMap::probe`, so a reader that sees `pos` sees entry `pos` written.
    fn store(&self, hash: u64, pos: u32) {
        let mut i = hash as usize & self.mask;
        // Relaxed: slots are stored only by the mutex holder, ordered by the mutex.
        while self.slots[i].load(Relaxed) != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.slots[i].store(pos, Release);
    }
}

/// What the mutex guards: the index tables, current and retired.
struct Index {
    /// Tables replaced by larger ones, kept until the map drops: readers may still probe them.
    retired: Vec<*mut IndexTable>,
}

// SAFETY: the pointers in `retired` own their tables (from `Box::into_raw`), which hold only
// atomics: moving them to another thread moves that ownership.
unsafe impl Send for Index {}

/// The series of one family, `S` being a series' handle.
pub struct SeriesMap<S> {
    index: Mutex<Index>,
    /// The current index table, null before the first series. Stored by the mutex holder with
    /// `Release` (after filling a new table), loaded by readers with `Acquire`.
    table: AtomicPtr<IndexTable>,
    /// Hashes label values for the index; read without the mutex.
    hasher: Hasher,
    /// Entries `[0, len)` are written; stored by the mutex holder after it writes an entry.
    len: AtomicUsize,
    /// Where series `i`'s values end in the arena.
    ends: Segments<u32>,
    series: Segments<S>,
    bytes: ByteArena,
}

/// A [`SeriesMap`] locked for lookups and creation (by its mutex).
pub struct LockedSeriesMap<'a, S> {
    map: &'a SeriesMap<S>,
    index: MutexGuard<'a, Index>,
}

/// Separator of encoded label values (see [`encode`](super::labels::encode)).
const SEP: u8 = 0xFF;

/// Label values to look up: encoded, or one `&str` per label.
#[derive(Clone, Copy)]
enum Query<'q> {
    Encoded(&'q [u8]),
    Values(&'q [&'q str]),
}

impl Query<'_> {
    /// Whether these are the encoded values `stored`.
    #[inline]
    fn matches(self, stored: &[u8]) -> bool {
        match self {
            Query::Encoded(q) => q == stored,
            Query::Values(vs) => {
                let Some((last, init)) = vs.split_last() else {
                    return stored.is_empty();
                };
                let mut rest = stored;
                for v in init {
                    let v = v.as_bytes();
                    match rest.get(v.len()) {
                        Some(&SEP) if rest[..v.len()] == *v => rest = &rest[v.len() + 1..],
                        _ => return false,
                    }
                }
                rest == last.as_bytes()
            }
        }
    }
}

impl<S> SeriesMap<S> {
    /// An empty map.
    pub fn new() -> Self {
        Self {
            index: Mutex::new(Index { retired: Vec::new() }),
            table: AtomicPtr::new(ptr::null_mut()),
            hasher: Hasher::default(),
            len: AtomicUsize::new(0),
            ends: Segments::new(),
            series: Segments::new(),
            bytes: ByteArena::new(),
        }
    }

    /// Locks the map for lookups and creation; walks ([`SeriesMap::iter`]) go on meanwhile.
    pub fn lock(&self) -> LockedSeriesMap<'_, S> {
        LockedSeriesMap {
            map: self,
            // The map's parts are consistent whenever the lock is released (a panic in `insert`
            // leaves at most an unpublished entry), so poison is ignored.
            index: self.index.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Number of series (a snapshot: creation may go on).
    pub fn len(&self) -> usize {
        // Relaxed: only the number is used, no entry is read through it.
        self.len.load(Relaxed)
    }

    /// The hash of label values: the values one by one, separated by [`SEP`], so encoded values
    /// (split at the separator) and the same values as `&str`s make the same calls and the same
    /// hash whatever the hasher does with the boundaries of `write`s.
    fn hash(&self, q: Query<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        match q {
            Query::Encoded(bytes) => {
                for (i, v) in bytes.split(|&b| b == SEP).enumerate() {
                    if i > 0 {
                        h.write_u8(SEP);
                    }
                    h.write(v);
                }
            }
            Query::Values(vs) => {
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        h.write_u8(SEP);
                    }
                    h.write(v.as_bytes());
                }
            }
        }
        h.finish()
    }

    /// The position of the series `q` names, probing the current index table without a lock.
    /// `None` may also mean the series was created after the table this call loaded was
    /// replaced: the mutex holder's lookup ([`LockedSeriesMap::get`]) is exact.
    fn probe(&self, q: Query<'_>) -> Option<usize> {
        // Acquire: pairs with the `Release` store of the pointer in `LockedSeriesMap::insert`, so
        // the table's slots as filled before it was published are visible.
        let table = self.table.load(Acquire);
        if table.is_null() {
            return None;
        }
        // SAFETY: a non-null `table` comes from `Box::into_raw` in `insert` and is freed only when
        // the map drops (current or retired), which `&self` excludes.
        let table = unsafe { &*table };
        let mut i = self.hash(q) as usize & table.mask;
        // At most 3/4 of the slots are used, so the probe meets an empty slot; the bound only
        // guards against a broken invariant.
        for _ in 0..table.slots.len() {
            // Acquire: pairs with the `Release` store of the position (`IndexTable::store`), which
            // follows the writes of entry `pos` (and the `Release` store of `len` past it).
            let pos = table.slots[i].load(Acquire);
            if pos == EMPTY {
                return None;
            }
            let pos = pos as usize;
            // SAFETY: `pos` was stored after entry `pos` was written and `len` published past it,
            // and that store happens-before this read (the Acquire load above).
            if q.matches(unsafe { self.entry(pos) }.0) {
                return Some(pos);
            }
            i = (i + 1) & table.mask;
        }
        None
    }

    /// The series with these label values (in label-name order), without a lock. `None` when
    /// there is none, or when it was created so recently that this lookup did not see it: take
    /// the mutex ([`SeriesMap::lock`]) and look again before creating one.
    pub fn get(&self, values: &[&str]) -> Option<&S> {
        let pos = self.probe(Query::Values(values))?;
        // SAFETY: `probe` found entry `pos` published (see there).
        Some(unsafe { self.series.get(pos) })
    }

    /// [`SeriesMap::get`] by encoded label values.
    pub fn get_encoded(&self, values: &[u8]) -> Option<&S> {
        let pos = self.probe(Query::Encoded(values))?;
        // SAFETY: `probe` found entry `pos` published (see there).
        Some(unsafe { self.series.get(pos) })
    }

    /// Every series created before this call, and maybe some created during the walk, with its
    /// encoded label values, in creation order. Takes no lock.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &S)> {
        // Acquire: pairs with the `Release` store of `len` in `LockedSeriesMap::insert`, so entries
        // `[0, len)`, their label bytes and their segments' pointers, all written before that
        // store, are visible here.
        let len = self.len.load(Acquire);
        // SAFETY: `i < len`, and the writes of entry `i` and of every earlier one happen-before
        // this read (the Acquire load above).
        (0..len).map(move |i| unsafe { self.entry(i) })
    }

    /// Entry `i`: its encoded label values and its handle.
    ///
    /// # Safety
    ///
    /// `i` is below a `len` published with a happens-before edge to this call (`len` loaded with
    /// `Acquire`, or the mutex held), so entries `i - 1` and `i` are written and visible.
    unsafe fn entry(&self, i: usize) -> (&[u8], &S) {
        // SAFETY: entries `i - 1` and `i` are written and visible (caller); entries are never
        // changed or dropped while `&self` lives.
        unsafe {
            let prev_end = if i == 0 { 0 } else { *self.ends.get(i - 1) };
            let values = self.bytes.read(prev_end, *self.ends.get(i));
            (values, self.series.get(i))
        }
    }
}

impl<S> Default for SeriesMap<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Drop for SeriesMap<S> {
    fn drop(&mut self) {
        // Relaxed: `&mut self` excludes every other access.
        let len = self.len.load(Relaxed);
        // SAFETY: exactly entries `[0, len)` were written (`insert` writes entry `len` before it
        // stores `len + 1`), and the map is being dropped, so they are not used after.
        unsafe { self.series.drop_prefix(len) };
        // Relaxed: `&mut self` excludes every other access.
        let table = self.table.load(Relaxed);
        let index = self.index.get_mut().unwrap_or_else(PoisonError::into_inner);
        for t in index.retired.drain(..).chain((!table.is_null()).then_some(table)) {
            // SAFETY: each table came from `Box::into_raw` in `insert`, is either retired or
            // current (never both), and no reader is left (`&mut self`).
            drop(unsafe { Box::from_raw(t) });
        }
    }
}

impl<'a, S> LockedSeriesMap<'a, S> {
    /// Number of series.
    pub fn len(&self) -> usize {
        // Relaxed: `len` is stored only under the mutex this guard holds.
        self.map.len.load(Relaxed)
    }

    /// The series with these encoded label values.
    pub fn get(&self, values: &[u8]) -> Option<&S> {
        // Under the mutex the current table holds every series: it is stored by this mutex's
        // holders only.
        self.map.get_encoded(values)
    }

    /// Adds a series that [`LockedSeriesMap::get`] did not find. `false` (and nothing added) when
    /// the family's label bytes would pass 4 GiB of positions or its series `u32` positions,
    /// which the caller treats like the series limit.
    pub fn insert(&mut self, values: &[u8], series: S) -> bool {
        debug_assert!(self.get(values).is_none(), "insert of an existing series");
        let map = self.map;
        let i = self.len();
        // Positions below `EMPTY`.
        let Ok(pos) = u32::try_from(i) else {
            return false;
        };
        if pos == EMPTY || !Segments::<S>::in_range(i) {
            return false;
        }
        // SAFETY: `i - 1 < len`, written under the mutex.
        let prev_end = if i == 0 { 0 } else { unsafe { *map.ends.get(i - 1) } };
        // SAFETY: this guard holds the mutex (the only writer, ordered after earlier ones),
        // `prev_end` is the last published end, and readers read no further until `len` is stored.
        let Some(end) = (unsafe { map.bytes.append(prev_end, values) }) else {
            return false;
        };
        // SAFETY: as above; slot `i` (= `len`) was never written, and `in_range(i)`.
        unsafe {
            map.ends.write(i, end);
            map.series.write(i, series);
        }
        // Release: publishes entry `i`, its bytes and any segment allocated for them to walks that
        // load `len` with `Acquire` (`SeriesMap::iter`).
        map.len.store(i + 1, Release);
        let hash = map.hash(Query::Encoded(values));
        // Relaxed: the table pointer is stored only under the mutex this guard holds.
        let current = map.table.load(Relaxed);
        // SAFETY: a non-null table pointer is live until the map drops (see `SeriesMap::probe`).
        let slots = match unsafe { current.as_ref() } {
            Some(table) if table.fits(i + 1) => {
                table.store(hash, pos);
                return true;
            }
            Some(table) => 2 * table.slots.len(),
            None => MIN_SLOTS,
        };
        // A table twice as large (or the first one) holding every series, `i` included.
        let table = IndexTable::new(slots);
        for j in 0..i {
            // SAFETY: `j < len`, written under the mutex.
            table.store(map.hash(Query::Encoded(unsafe { map.entry(j) }.0)), j as u32);
        }
        table.store(hash, pos);
        // Release: pairs with the `Acquire` load in `SeriesMap::probe`: a reader that loads the
        // new pointer sees the slots filled above and the entries they name.
        map.table.store(Box::into_raw(table), Release);
        if !current.is_null() {
            self.index.retired.push(current);
        }
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;
    use crate::registry::Series;
    use crate::storage::gauge::GaugeCell;

    /// Fewer under Miri, which runs the tests hundreds of times slower.
    const fn scaled(n: usize) -> usize {
        if cfg!(miri) {
            n / 20
        } else {
            n
        }
    }

    #[test]
    fn locate_matches_segment_bounds() {
        for base in [0, 3, 8] {
            let mut i = 0u64;
            for k in 0..if cfg!(miri) { 5 } else { 12 } {
                assert_eq!(segment_start(k, base), i);
                for off in 0..segment_len(k, base) {
                    assert_eq!(locate(i, base), (k, off));
                    i += 1;
                }
            }
        }
        assert_eq!(locate(u64::from(u32::MAX), 3).0, 29);
        assert!(locate(u64::from(u32::MAX), 0).0 < 33);
    }

    #[test]
    fn values_never_span_segments() {
        // A 300-byte value does not fit the 256-byte first segment: it goes to the second (512).
        assert_eq!(ByteArena::place(0, 300), Some((1, 0, 256 + 300)));
        assert_eq!(ByteArena::place(0, 256), Some((0, 0, 256)));
        // 250 + 10 crosses the first boundary: the value starts the second segment.
        assert_eq!(ByteArena::place(250, 10), Some((1, 0, 266)));
        // Too large for any segment left before 4 GiB.
        assert_eq!(ByteArena::place(0, 1 << 32), None);
    }

    #[test]
    fn finds_what_it_holds_in_creation_order() {
        let m = SeriesMap::new();
        let n = scaled(5000);
        // Lengths up to about 600 bytes: long values skip to later segments.
        let keys: Vec<Vec<u8>> = (0..n)
            .map(|i| match i % 50 {
                1 => format!("{i}{}", "x".repeat(300 + i % 300)).into_bytes(),
                _ => format!("zone{}\u{ff}p{i}", i % 7).into_bytes(),
            })
            .collect();
        let cells: Vec<GaugeCell> = keys.iter().map(|_| GaugeCell::new()).collect();
        {
            let mut w = m.lock();
            for (i, (k, c)) in keys.iter().zip(&cells).enumerate() {
                assert!(w.get(k).is_none());
                c.set(i as f64);
                assert!(w.insert(k, Series::Gauge(c.clone())));
            }
            assert!(
                w.insert(b"", Series::Gauge(GaugeCell::new())),
                "empty values are a series too"
            );
            assert_eq!(w.len(), keys.len() + 1);
            for (i, k) in keys.iter().enumerate() {
                match w.get(k) {
                    Some(Series::Gauge(g)) => assert_eq!(g.get(), i as f64),
                    _ => panic!("series {i} lost"),
                }
            }
            assert!(w.get(b"zone0").is_none());
            assert!(w.get(b"").is_some());
        }
        let order: Vec<&[u8]> = m.iter().map(|(v, _)| v).collect();
        assert_eq!(order.len(), keys.len() + 1);
        assert!(order.iter().zip(&keys).all(|(a, b)| *a == b.as_slice()));
        assert_eq!(order[keys.len()], b"");
        assert_eq!(m.len(), keys.len() + 1);
    }

    /// The lock-free lookup by values finds what the locked one finds, across index growths, and
    /// tells value lists apart that differ only in where the separators fall.
    #[test]
    fn lock_free_get_by_values() {
        let m = SeriesMap::new();
        let n = scaled(3000);
        let values = |i: usize| [format!("k{}", i % 7), format!("v{i}"), String::new()];
        let mut buf = Vec::new();
        for i in 0..n {
            let v = values(i);
            crate::registry::labels::encode(&v, &mut buf);
            let mut w = m.lock();
            assert!(w.get(&buf).is_none());
            assert!(w.insert(&buf, i));
            drop(w);
            for j in [0, i / 2, i] {
                let v = values(j);
                let refs: Vec<&str> = v.iter().map(String::as_str).collect();
                assert_eq!(m.get(&refs), Some(&j), "series {j} after {i} inserts");
            }
        }
        assert_eq!(m.get(&["k0", "v0"]), None, "fewer values");
        assert_eq!(m.get(&["k0", "v0", "", ""]), None, "more values");
        assert_eq!(m.get(&["k0\u{ff}v0", ""]), None);
        let m2 = SeriesMap::new();
        assert_eq!(m2.get(&["a"]), None::<&u8>, "empty map");
        assert!(m2.lock().insert(b"", 7u8));
        assert_eq!(m2.get(&[""]), Some(&7));
        assert_eq!(m2.get(&["a"]), None);
    }

    /// Lookups without the lock on other threads while one thread inserts (and the index grows):
    /// each finds its series or, for one created too recently, nothing.
    #[test]
    fn lock_free_gets_during_inserts() {
        let n = scaled(20_000) as u32;
        let m = Arc::new(SeriesMap::<u32>::new());
        let readers: Vec<_> = (0..2)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    let mut hits = 0u32;
                    while m.len() < n as usize {
                        // Acquire: pairs with the `Release` store of `len` past series `len - 1`,
                        // which follows the index store of every earlier series.
                        let len = m.len.load(Acquire) as u32;
                        for i in (t..len).step_by(97) {
                            let v = i.to_string();
                            match m.get(&[&v]) {
                                Some(&s) => {
                                    assert_eq!(s, i);
                                    hits += 1;
                                }
                                // Only the last series seen may not be in the index yet.
                                None => assert!(i + 1 == len, "series {i} of {len} not found"),
                            }
                        }
                    }
                    hits
                })
            })
            .collect();
        for i in 0..n {
            assert!(m.lock().insert(i.to_string().as_bytes(), i));
        }
        for r in readers {
            r.join().unwrap();
        }
        for i in 0..n {
            assert_eq!(m.get(&[&i.to_string()]), Some(&i));
        }
    }

    /// Handles are dropped with the map (a leak shows under Miri), and only those written.
    #[test]
    fn drops_every_handle_once() {
        let probe = Arc::new(());
        {
            let m = SeriesMap::new();
            let mut w = m.lock();
            for i in 0..scaled(1000) {
                assert!(w.insert(format!("{i}").as_bytes(), Arc::clone(&probe)));
            }
            assert_eq!(Arc::strong_count(&probe), scaled(1000) + 1);
        }
        assert_eq!(Arc::strong_count(&probe), 1);
    }

    /// A walk on another thread while one thread inserts: every entry it sees is whole, and it sees
    /// every entry published before it began. Under Miri this also checks the orderings (its data
    /// race detector flags a read of an entry not ordered after its write).
    #[test]
    fn walks_during_inserts_see_whole_entries() {
        let n = scaled(4000);
        let key = |i: usize| format!("{i}:{}", "v".repeat(i % 400)).into_bytes();
        let m = Arc::new(SeriesMap::<Box<usize>>::new());
        let done = Arc::new(AtomicBool::new(false));
        let walker = {
            let (m, done) = (Arc::clone(&m), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut walks = 0;
                loop {
                    let finished = done.load(Acquire);
                    let before = m.len();
                    let mut seen = 0;
                    for (i, (v, s)) in m.iter().enumerate() {
                        assert_eq!(v, key(i).as_slice());
                        assert_eq!(**s, i);
                        seen += 1;
                    }
                    assert!(seen >= before);
                    walks += 1;
                    if finished {
                        assert_eq!(seen, n);
                        return walks;
                    }
                }
            })
        };
        for i in 0..n {
            assert!(m.lock().insert(&key(i), Box::new(i)));
        }
        done.store(true, Release);
        assert!(walker.join().unwrap() >= 1);
    }
}
