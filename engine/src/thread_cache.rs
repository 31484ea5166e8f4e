//! What the per-thread lookup caches share: the cache epoch, and an open-addressing table that
//! grows to the thread's working set.
//!
//! The facade's caches ([`crate::recorder`]) and the by-name API's ([`crate::MetricsManager`]'s
//! `increment_counter` and friends) map a key (a `metrics::Key`, or registry, kind, name and label
//! values) to a resolved series, one table per thread, so a steady stream of lookups takes no lock,
//! writes no shared cache line and does not allocate.
//!
//! # Epoch
//!
//! Every entry belongs to the [`cache_epoch`] loaded before its series was resolved, which is its
//! table's ([`Table::epoch`]: an insert at another epoch first drops every entry), and is used only
//! while the epoch is still that value: [`bump_cache_epoch`] makes every thread's next lookup of
//! every key a miss that resolves it again (and a thread that inserts after a bump clears its whole
//! table first, letting go of the series its entries held). The expiry sweep bumps it, so that a
//! series only a thread's cache holds can become idle (see `registry::expiry`). A lookup loads the
//! epoch `Relaxed`: a thread may go on using an entry for a short while after a bump (until its load
//! sees the new value), which is harmless: an entry holds its series, and a held series is never
//! removed.
//!
//! # Table
//!
//! Linear probing from `hash & mask`, each entry within [`PROBES`] slots of its home slot, so a
//! lookup reads at most that many slots (a hit of a key at its home slot, the common case, one).
//! The table starts at [`MIN_SLOTS`] slots when the thread first caches a key and doubles whenever
//! it would pass 3/4 full or an entry would land past its probe window, up to [`MAX_SLOTS`]. There
//! a new entry that finds no free slot in its window replaces the one in its home slot: a thread
//! whose working set passes the cap keeps most of its hits and resolves the rest again; memory per
//! thread and table stays bounded (`MAX_SLOTS` entries, see the users for entry sizes). Small
//! tables hold their entries in the slots; from [`INDEX_FROM_SLOTS`] the slots are a 4-byte index
//! over the entries kept in insertion order (see [`Table`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots a table starts with.
pub(crate) const MIN_SLOTS: usize = 64;

/// Slots a table grows to at most: 24,576 entries at 3/4 full. The working sets of the benches
/// (up to 5,000 series per thread) fit without eviction; at the cap a table takes 128 KiB of
/// index and up to 32,768 entries (64 bytes each for the facade and by-name caches: 2 MiB).
pub(crate) const MAX_SLOTS: usize = 1 << 15;

/// Slots probed from an entry's home slot.
pub(crate) const PROBES: usize = 8;

/// The epoch of every per-thread cache entry; see the [module docs](self).
static CACHE_EPOCH: AtomicU64 = AtomicU64::new(0);

/// The current cache epoch. Relaxed: it orders nothing; a thread that has not seen a bump yet
/// uses its entries a little longer (see the [module docs](self)).
#[inline(always)]
pub(crate) fn cache_epoch() -> u64 {
    CACHE_EPOCH.load(Ordering::Relaxed)
}

/// Registries dropped so far: a table that sees this change drops its entries at its next insert
/// ([`Table::stale`]). Lookups do not read it, so entries of live registries keep hitting until
/// then; only the entries of dropped registries matter, and they are never looked up again.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Called when a registry is dropped; see [`DROPPED`].
pub(crate) fn registry_dropped() {
    DROPPED.fetch_add(1, Ordering::Relaxed);
}

/// Invalidates every per-thread cache entry of every thread: the next lookup of each key on each
/// thread resolves it again. Call after removing series from a family.
pub(crate) fn bump_cache_epoch() {
    // Release: a thread that sees the new epoch (and so resolves again) also sees what was changed
    // before the bump when its resolution reads it with Acquire (the family's series index).
    CACHE_EPOCH.fetch_add(1, Ordering::Release);
}

#[cfg(test)]
thread_local! {
    /// Resolutions by the facade and by-name caches on this thread, for the tests.
    static RESOLVED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts a cache miss that resolves its key (tests only; nothing in other builds).
#[inline(always)]
pub(crate) fn count_resolve() {
    #[cfg(test)]
    RESOLVED.with(|r| r.set(r.get() + 1));
}

/// An entry of a [`Table`].
pub(crate) trait Entry {
    /// The hash its home slot is taken from; only its low 32 bits are used.
    fn hash(&self) -> u64;
}

/// The table size from which entries live apart from the slots, in insertion order, behind an
/// index (see [`Table`]): from 769 keys. Below it a hit reads its entry straight from its slot; an
/// index first is one more dependent load, which made a by-name hit over 16 keys 6–15 % slower
/// and over 500 keys gained nothing (`scripts/ab.sh`, B/A 1.03–1.11).
pub(crate) const INDEX_FROM_SLOTS: usize = 2048;

/// An index slot's entry position bits: the position plus one, 0 for a free slot. The cap's
/// 32,768 slots hold at most that many entries.
const POS: u32 = 0xFFFF;
const _: () = assert!(MAX_SLOTS <= POS as usize);

/// An index slot's tag: bits 16..32 of the hash, so a hit or probe reads only the entries whose
/// tag matches.
#[inline(always)]
fn tag(hash: u64) -> u32 {
    hash as u32 & !POS
}

/// What a slot holds for a key ([`Table::probe`]).
enum Probe<'a, E> {
    /// Nothing: the key is not in the table.
    Free,
    /// An entry, with the key's tag in the indexed layout.
    Entry(&'a E),
    /// An entry of another tag (indexed layout).
    Other,
}

/// A per-thread table (see the [module docs](self)), in one of two layouts:
///
/// - **direct**, below [`INDEX_FROM_SLOTS`] slots: each slot holds its entry;
/// - **indexed**, from there: each slot is a `u32`, the tag and position of an entry in an array
///   of the entries in the order they were inserted. A hit reads one slot of an index of 4 bytes
///   a slot (32 KiB for 5,000 keys), then its entry from an array with no free slots, in the
///   order the thread first met its keys: a loop that visits its keys in the same order every
///   tick, as a game loop does, reads that array front to back, which the hardware prefetcher
///   streams. Open-addressed 64-byte entries over 5,000 keys (512 KiB of slots) made every hit a
///   random read past L1, and a key displaced from its home slot (30 % of them at 5/8 full)
///   read another key's entry first: over 5,000 series per thread the indexed layout takes
///   0.66–0.78 of the time of a by-name hit and 0.78–0.90 of a facade hit (`scripts/ab.sh`,
///   BENCHMARKS.md).
///
/// Plain data with no `Drop` (the entries' `Vec` is `ManuallyDrop`), so a `const`-initialised
/// thread-local holding it needs no destructor registration and its accesses no state check: the
/// owner frees it ([`Table::free`]).
pub(crate) struct Table<E> {
    /// The direct layout's `mask + 1` slots, or null.
    direct: *mut Option<E>,
    /// The indexed layout's `mask + 1` slots (see [`POS`] and [`tag`]), or null.
    index: *mut u32,
    mask: usize,
    /// Entries in the direct layout.
    len: usize,
    /// The indexed layout's entries (empty in the direct layout).
    entries: std::mem::ManuallyDrop<Vec<E>>,
    /// The epoch of the entries inserted since the table was last cleared.
    epoch: u64,
    /// [`DROPPED`] when the table was last cleared.
    dropped: u64,
}

impl<E: Entry> Table<E> {
    /// A table with no slots yet.
    pub(crate) const fn new() -> Self {
        Self {
            direct: std::ptr::null_mut(),
            index: std::ptr::null_mut(),
            mask: 0,
            len: 0,
            entries: std::mem::ManuallyDrop::new(Vec::new()),
            epoch: 0,
            dropped: 0,
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len + self.entries.len()
    }

    /// The epoch of every entry: each insert at another epoch first drops them all
    /// ([`Self::insert`]).
    #[inline(always)]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The number of slots (1 before the first entry, whose mask is 0).
    #[inline(always)]
    pub(crate) fn slots(&self) -> usize {
        self.mask + 1
    }

    /// Whether slots were allocated.
    #[inline(always)]
    pub(crate) fn is_allocated(&self) -> bool {
        !self.direct.is_null() || !self.index.is_null()
    }

    /// The entry in `hash`'s home slot, if any; in the indexed layout only one whose tag is
    /// `hash`'s, so a key displaced from its home slot reads no other key's entry before
    /// [`Self::find`] probes on. The caller compares the whole key.
    #[inline(always)]
    pub(crate) fn home(&self, hash: u64) -> Option<&E> {
        match self.probe(hash as usize & self.mask, hash) {
            Probe::Entry(e) => Some(e),
            Probe::Free | Probe::Other => None,
        }
    }

    /// What slot `at` (masked: at most `mask`) holds for a key of hash `hash`. One function for
    /// both layouts, so that `find` calls its `is` from one place (with one loop per layout, the
    /// by-name cache's compare was no longer inlined: 10 % slower over 500 keys).
    #[inline(always)]
    fn probe(&self, at: usize, hash: u64) -> Probe<'_, E> {
        debug_assert!(at <= self.mask);
        if !self.direct.is_null() {
            // SAFETY: `direct` holds `mask + 1` initialised slots (`alloc`), and `at <= mask`.
            return match unsafe { &*self.direct.add(at) } {
                Some(e) => Probe::Entry(e),
                None => Probe::Free,
            };
        }
        if self.index.is_null() {
            return Probe::Free;
        }
        // SAFETY: `index` holds `mask + 1` initialised slots (`alloc`), and `at <= mask`.
        let s = unsafe { *self.index.add(at) };
        let pos = (s & POS) as usize;
        if pos == 0 {
            Probe::Free
        } else if s & !POS == tag(hash) {
            // SAFETY: a slot's position, when not 0, is that of an entry plus one (`place`).
            Probe::Entry(unsafe { self.entries.get_unchecked(pos - 1) })
        } else {
            Probe::Other
        }
    }

    /// The direct layout's slots (empty in the other).
    fn direct_mut(&mut self) -> &mut [Option<E>] {
        if self.direct.is_null() {
            return &mut [];
        }
        // SAFETY: `direct` holds `mask + 1` initialised slots, borrowed mutably with `self`.
        unsafe { std::slice::from_raw_parts_mut(self.direct, self.mask + 1) }
    }

    /// The indexed layout's slots (empty in the other).
    fn index_mut(&mut self) -> &mut [u32] {
        if self.index.is_null() {
            return &mut [];
        }
        // SAFETY: `index` holds `mask + 1` initialised slots, borrowed mutably with `self`.
        unsafe { std::slice::from_raw_parts_mut(self.index, self.mask + 1) }
    }

    /// The first entry in `hash`'s probe window for which `is` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut is: impl FnMut(&E) -> bool) -> Option<&E> {
        let mut at = hash as usize & self.mask;
        for _ in 0..PROBES {
            match self.probe(at, hash) {
                Probe::Free => return None,
                Probe::Entry(e) if is(e) => return Some(e),
                Probe::Entry(_) | Probe::Other => at = (at + 1) & self.mask,
            }
        }
        None
    }

    /// Every entry, for the owner to update in place.
    pub(crate) fn entries_mut(&mut self) -> impl Iterator<Item = &mut E> {
        let direct: &mut [Option<E>] = if self.direct.is_null() {
            &mut []
        } else {
            // SAFETY: as in `direct_mut`; `entries` is another field, borrowed apart.
            unsafe { std::slice::from_raw_parts_mut(self.direct, self.mask + 1) }
        };
        direct.iter_mut().flatten().chain(self.entries.iter_mut())
    }

    /// Whether an insert at `epoch` must first drop every entry: they are from another epoch, or
    /// a registry was dropped since the table was last cleared.
    pub(crate) fn stale(&self, epoch: u64) -> bool {
        epoch != self.epoch || DROPPED.load(Ordering::Relaxed) != self.dropped
    }

    /// Drops every entry and sets the table's epoch.
    pub(crate) fn reset(&mut self, epoch: u64) {
        self.clear();
        self.epoch = epoch;
        self.dropped = DROPPED.load(Ordering::Relaxed);
    }

    /// Caches `e`, resolved at `epoch`: first drops every entry if they are stale ([`Self::stale`]),
    /// grows the table when due, and past [`MAX_SLOTS`] replaces the entry in `e`'s home slot if
    /// its probe window is full, returning the replaced one.
    pub(crate) fn insert(&mut self, epoch: u64, mut e: E) -> Option<E> {
        if self.stale(epoch) {
            self.reset(epoch);
        }
        if !self.is_allocated() {
            self.alloc(MIN_SLOTS);
        } else if (self.len() + 1) * 4 > (self.mask + 1) * 3 && self.mask + 1 < MAX_SLOTS {
            self.grow();
        }
        loop {
            e = match self.place(e) {
                Ok(()) => return None,
                Err(e) if self.mask + 1 < MAX_SLOTS => {
                    self.grow();
                    e
                }
                Err(e) => return Some(self.replace_home(e)),
            };
        }
    }

    /// Puts `e` in a free slot of its probe window, or gives it back when the window is full.
    fn place(&mut self, e: E) -> Result<(), E> {
        let hash = e.hash();
        let home = hash as usize & self.mask;
        let mask = self.mask;
        let window = move |k: usize| (home + k) & mask;
        if !self.direct.is_null() {
            let slots = self.direct_mut();
            match (0..PROBES).map(window).find(|&i| slots[i].is_none()) {
                Some(i) => slots[i] = Some(e),
                None => return Err(e),
            }
            self.len += 1;
        } else {
            let pos = self.entries.len() as u32 + 1;
            let slots = self.index_mut();
            match (0..PROBES).map(window).find(|&i| slots[i] == 0) {
                Some(i) => slots[i] = tag(hash) | pos,
                None => return Err(e),
            }
            self.entries.push(e);
        }
        Ok(())
    }

    /// Puts `e` in its home slot, giving back the entry it replaces (a full table).
    fn replace_home(&mut self, e: E) -> E {
        let hash = e.hash();
        let home = hash as usize & self.mask;
        if !self.direct.is_null() {
            return self.direct_mut()[home].replace(e).expect("a full window's home slot");
        }
        let slot = &mut self.index_mut()[home];
        let at = (*slot & POS) as usize - 1;
        *slot = tag(hash) | (at as u32 + 1);
        std::mem::replace(&mut self.entries[at], e)
    }

    /// Empty slots for `n` in the layout of that size (the entries are the caller's to place).
    fn alloc(&mut self, n: usize) {
        self.mask = n - 1;
        if n < INDEX_FROM_SLOTS {
            let slots: Box<[Option<E>]> = (0..n).map(|_| None).collect();
            self.direct = Box::into_raw(slots).cast::<Option<E>>();
        } else {
            let slots: Box<[u32]> = vec![0; n].into_boxed_slice();
            self.index = Box::into_raw(slots).cast::<u32>();
            let room = (n * 3 / 4).saturating_sub(self.entries.len());
            self.entries.reserve_exact(room);
        }
    }

    /// Doubles the slots and places every entry again; if an entry then finds its window full
    /// (rare below 3/4), doubles again. At [`MAX_SLOTS`] such an entry is dropped.
    fn grow(&mut self) {
        let mut n = 2 * (self.mask + 1);
        let mut pending = self.take();
        'size: loop {
            self.alloc(n);
            while let Some(e) = pending.pop() {
                match self.place(e) {
                    Ok(()) => {}
                    Err(e) if n < MAX_SLOTS => {
                        // Placed again first, in the order they were placed; then `e`, then the rest.
                        pending.push(e);
                        pending.extend(self.take());
                        n *= 2;
                        continue 'size;
                    }
                    Err(e) => drop(e),
                }
            }
            break;
        }
    }

    /// Takes every entry out, leaving the table unallocated. They come back in reverse: popping
    /// them, as `grow` does, yields the direct layout's in slot order, then the indexed layout's
    /// in insertion order, which placing them again keeps.
    fn take(&mut self) -> Vec<E> {
        let n = self.mask + 1;
        let mut out = Vec::with_capacity(self.len());
        let direct = std::mem::replace(&mut self.direct, std::ptr::null_mut());
        if !direct.is_null() {
            // SAFETY: `direct` came from `Box::into_raw` of a boxed slice of `n` slots (`alloc`),
            // and no longer belongs to the table.
            let slots = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(direct, n)) };
            out.extend(slots.into_vec().into_iter().flatten());
        }
        let index = std::mem::replace(&mut self.index, std::ptr::null_mut());
        if !index.is_null() {
            // SAFETY: as above, of `n` index slots.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(index, n)) });
        }
        out.append(&mut self.entries);
        out.reverse();
        self.mask = 0;
        self.len = 0;
        out
    }

    /// Drops every entry, keeping the slots.
    pub(crate) fn clear(&mut self) {
        self.direct_mut().iter_mut().for_each(|s| *s = None);
        self.index_mut().fill(0);
        self.len = 0;
        self.entries.clear();
    }

    /// Drops every entry and frees the slots and the entries' array.
    pub(crate) fn free(&mut self) {
        drop(self.take());
        drop(std::mem::take(&mut *self.entries));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricsManager;

    struct E(u64, u32);

    impl Entry for E {
        fn hash(&self) -> u64 {
            self.0
        }
    }

    fn resolved() -> usize {
        RESOLVED.with(|r| r.get())
    }

    /// Runs `f` on what `setup` makes again (up to 100 times) while a test on another thread
    /// drops a registry or bumps the cache epoch (an expiry sweep) mid-way, which makes every
    /// cached entry stale (an insert then drops them all, see [`Table::stale`]). What `setup`
    /// made (a manager) is dropped after the check.
    fn while_caches_stay_valid<M>(setup: impl Fn() -> M, f: impl Fn(&M)) {
        let now = || (DROPPED.load(Ordering::Relaxed), cache_epoch());
        for _ in 0..100 {
            let m = setup();
            let before = now();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&m)));
            let stale = now() != before;
            drop(m);
            if !stale {
                return r.unwrap_or_else(|p| std::panic::resume_unwind(p));
            }
        }
        panic!("the caches were made stale during each of 100 runs");
    }

    /// Over 5,000 series on one thread (the indexed layout, 30 % of the keys displaced from their
    /// home slot), every by-name and facade call lands in its own series, and once every
    /// key is cached none resolves again.
    #[test]
    fn a_large_working_set_hits_every_key_exactly() {
        let setup = || {
            let m = MetricsManager::new();
            m.register_counter("ws_by_name", "h", &["k"]).unwrap();
            m
        };
        while_caches_stay_valid(setup, |m| {
            let rec = m.recorder();
            let keys: Vec<String> = (0..5_000).map(|i| format!("k{i}")).collect();
            let pass = |v: u64| {
                metrics::with_local_recorder(&rec, || {
                    for k in &keys {
                        m.increment_counter("ws_by_name", v, &[k]).unwrap();
                        metrics::counter!("ws_facade", "k" => k.clone()).increment(v);
                    }
                })
            };
            pass(1);
            let r = resolved();
            pass(2);
            pass(3);
            assert_eq!(resolved(), r, "cached keys were resolved again");
            for k in &keys {
                assert_eq!(m.counter("ws_by_name", &[k]).unwrap().get(), 6, "by name, {k}");
                assert_eq!(m.counter("ws_facade", &[k]).unwrap().get(), 6, "facade, {k}");
            }
        });
    }

    #[test]
    fn table_grows_to_the_working_set_then_replaces() {
        while_caches_stay_valid(
            || (),
            |()| {
                let mut t = Table::<E>::new();
                assert!(t.find(1, |_| true).is_none() && t.home(1).is_none());
                // Hashes that collide in the low bits force growth by full windows, not only by load.
                let hash = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) << 3 | i & 7;
                // Below half the cap no probe window fills up.
                let n = (MAX_SLOTS / 2) as u64;
                for i in 0..n {
                    assert!(
                        t.insert(0, E(hash(i), i as u32)).is_none(),
                        "entry {i} replaced below the cap"
                    );
                    assert!(
                        t.direct.is_null() != (t.slots() < INDEX_FROM_SLOTS),
                        "the layout of {} slots",
                        t.slots()
                    );
                }
                for i in 0..n {
                    assert_eq!(
                        t.find(hash(i), |e| e.1 == i as u32).map(|e| e.1),
                        Some(i as u32),
                        "entry {i}"
                    );
                    if let Some(e) = t.home(hash(i)) {
                        assert_eq!(e.0 as u32, hash(i) as u32, "a home entry of another tag");
                    }
                }
                // The indexed layout keeps its entries in the order they were inserted, across growth
                // (those moved from the direct layout, at most 3/4 of its largest size, first).
                let order: Vec<u32> = t.entries_mut().map(|e| e.1).collect();
                let direct = INDEX_FROM_SLOTS / 2 * 3 / 4;
                assert!(
                    order.len() == n as usize && order[direct..].iter().copied().eq(direct as u32..n as u32),
                    "entries out of insertion order"
                );
                assert!(t.mask < MAX_SLOTS);
                let mut replaced = 0;
                for i in n..3 * n {
                    replaced += usize::from(t.insert(0, E(hash(i), i as u32)).is_some());
                    assert!(
                        t.find(hash(i), |e| e.1 == i as u32).is_some(),
                        "the newest entry is found"
                    );
                }
                assert!(replaced > 0 && t.mask + 1 == MAX_SLOTS);
                assert!(t.len() <= MAX_SLOTS && t.len() == t.entries_mut().count());
                // Another epoch drops every entry.
                assert!(t.insert(1, E(5, 5)).is_none());
                assert_eq!(t.entries_mut().count(), 1);
                t.free();
                assert!(!t.is_allocated() && t.entries.capacity() == 0);
            },
        );
    }

    /// A table that grew to the indexed layout keeps it (its slots stay) through an epoch reset,
    /// and finds what is inserted after it and nothing else.
    #[test]
    fn a_reset_keeps_the_layout() {
        while_caches_stay_valid(
            || (),
            |()| {
                let mut t = Table::<E>::new();
                let hash = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                for i in 0..2_000 {
                    t.insert(0, E(hash(i), i as u32));
                }
                assert!(t.direct.is_null() && !t.index.is_null() && t.len() == 2_000);
                t.insert(1, E(hash(7), 7));
                assert_eq!((t.len(), t.slots()), (1, 4096));
                assert_eq!(t.home(hash(7)).map(|e| e.1), Some(7));
                assert!(t.home(hash(8)).is_none() && t.find(hash(8), |_| true).is_none());
                t.free();
            },
        );
    }

    /// A manager that is dropped lets go of the series this thread's by-name cache holds for it
    /// at the next insert, instead of keeping them until their slots are reused.
    #[test]
    fn a_dropped_manager_is_let_go_of_by_the_cache() {
        let m = MetricsManager::new();
        m.register_counter("dropped_by_name", "h", &["a"]).unwrap();
        for v in ["1", "2", "3"] {
            m.increment_counter("dropped_by_name", 1, &[v]).unwrap();
        }
        drop(m);
        let m = MetricsManager::new();
        m.register_counter("kept_by_name", "h", &["a"]).unwrap();
        m.increment_counter("kept_by_name", 1, &["1"]).unwrap();
        assert_eq!(crate::manager::cached_by_name(), 1);
    }

    /// Bumping the epoch makes both caches (facade and by-name) resolve their keys again, once.
    #[test]
    fn epoch_bump_makes_both_caches_resolve_again() {
        let m = MetricsManager::new();
        m.register_counter("epoch_by_name", "h", &["a"]).unwrap();
        let rec = m.recorder();
        let facade =
            || metrics::with_local_recorder(&rec, || metrics::counter!("epoch_facade", "a" => "1").increment(1));
        let by_name = || m.increment_counter("epoch_by_name", 1, &["x"]).unwrap();
        let r0 = resolved();
        facade();
        by_name();
        assert_eq!(resolved(), r0 + 2);
        facade();
        by_name();
        assert_eq!(resolved(), r0 + 2, "cached");
        bump_cache_epoch();
        facade();
        assert_eq!(resolved(), r0 + 3, "the facade resolves again");
        by_name();
        assert_eq!(resolved(), r0 + 4, "the by-name cache resolves again");
        facade();
        by_name();
        assert_eq!(resolved(), r0 + 4, "cached again");
        assert_eq!(m.counter("epoch_by_name", &["x"]).unwrap().get(), 4);
    }
}
