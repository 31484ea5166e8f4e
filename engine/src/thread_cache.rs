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
//! thread and table stays bounded (`MAX_SLOTS` entries, see the users for entry sizes).

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots a table starts with.
pub(crate) const MIN_SLOTS: usize = 64;

/// Slots a table grows to at most: 24,576 entries at 3/4 full. The working sets of the benches
/// (up to 5,000 series per thread) fit without eviction; at the cap a table of facade counters
/// takes 2 MiB (64-byte entries).
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
    /// The hash its home slot is taken from.
    fn hash(&self) -> u64;
}

/// A per-thread open-addressing table (see the [module docs](self)). Plain data with no `Drop`,
/// so a `const`-initialised thread-local holding it needs no destructor registration and its
/// accesses no state check: the owner frees it ([`Table::free`]).
pub(crate) struct Table<E> {
    /// `mask + 1` slots, or null before the first entry (and after `free`).
    slots: *mut Option<E>,
    mask: usize,
    len: usize,
    /// The epoch of the entries inserted since the table was last cleared.
    epoch: u64,
    /// [`DROPPED`] when the table was last cleared.
    dropped: u64,
}

impl<E: Entry> Table<E> {
    /// A table with no slots yet.
    pub(crate) const fn new() -> Self {
        Self {
            slots: std::ptr::null_mut(),
            mask: 0,
            len: 0,
            epoch: 0,
            dropped: 0,
        }
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The epoch of every entry: each insert at another epoch first drops them all
    /// ([`Self::insert`]).
    #[inline(always)]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The number of slots (0 before the first entry).
    #[inline(always)]
    pub(crate) fn slots(&self) -> usize {
        if self.slots.is_null() {
            0
        } else {
            self.mask + 1
        }
    }

    /// Whether slots were allocated.
    pub(crate) fn is_allocated(&self) -> bool {
        !self.slots.is_null()
    }

    /// The entry in `hash`'s home slot.
    #[inline(always)]
    pub(crate) fn home(&self, hash: u64) -> Option<&E> {
        if self.slots.is_null() {
            return None;
        }
        // SAFETY: `slots` holds `mask + 1` initialised slots (see `alloc`), and the index is masked.
        unsafe { (*self.slots.add(hash as usize & self.mask)).as_ref() }
    }

    /// The slots, empty before the first entry.
    fn slice(&self) -> &[Option<E>] {
        if self.slots.is_null() {
            return &[];
        }
        // SAFETY: `slots` holds `mask + 1` initialised slots, borrowed with `self`.
        unsafe { std::slice::from_raw_parts(self.slots, self.mask + 1) }
    }

    fn slice_mut(&mut self) -> &mut [Option<E>] {
        if self.slots.is_null() {
            return &mut [];
        }
        // SAFETY: as in `slice`, borrowed mutably with `self`.
        unsafe { std::slice::from_raw_parts_mut(self.slots, self.mask + 1) }
    }

    /// The first entry in `hash`'s probe window for which `is` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut is: impl FnMut(&E) -> bool) -> Option<&E> {
        let slots = self.slice();
        if slots.is_empty() {
            return None;
        }
        let mut i = hash as usize & self.mask;
        for _ in 0..PROBES {
            match &slots[i] {
                None => return None,
                Some(e) if is(e) => return Some(e),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
        None
    }

    /// Every entry, for the owner to update in place.
    pub(crate) fn entries_mut(&mut self) -> impl Iterator<Item = &mut E> {
        self.slice_mut().iter_mut().flatten()
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
    pub(crate) fn insert(&mut self, epoch: u64, e: E) -> Option<E> {
        if self.stale(epoch) {
            self.reset(epoch);
        }
        if self.slots.is_null() {
            self.alloc(MIN_SLOTS);
        } else if (self.len + 1) * 4 > (self.mask + 1) * 3 && self.mask + 1 < MAX_SLOTS {
            self.grow();
        }
        loop {
            let hash = e.hash();
            let mask = self.mask;
            let slots = self.slice_mut();
            let home = hash as usize & mask;
            let free = (0..PROBES).map(|k| (home + k) & mask).find(|&i| slots[i].is_none());
            match free {
                Some(i) => {
                    slots[i] = Some(e);
                    self.len += 1;
                    return None;
                }
                None if mask + 1 < MAX_SLOTS => self.grow(),
                None => return slots[home].replace(e),
            }
        }
    }

    fn alloc(&mut self, n: usize) {
        let slots: Box<[Option<E>]> = (0..n).map(|_| None).collect();
        self.mask = n - 1;
        self.len = 0;
        self.slots = Box::into_raw(slots).cast::<Option<E>>();
    }

    /// Doubles the slots, moving every entry; if an entry then finds its window full (rare below
    /// 3/4), doubles again. At [`MAX_SLOTS`] such an entry is dropped.
    fn grow(&mut self) {
        let mut n = 2 * (self.mask + 1);
        let mut pending: Vec<E> = self.take().into_vec().into_iter().flatten().collect();
        let mut slots: Vec<Option<E>>;
        'size: loop {
            let mask = n - 1;
            slots = (0..n).map(|_| None).collect();
            while let Some(e) = pending.pop() {
                let home = e.hash() as usize & mask;
                match (0..PROBES).map(|k| (home + k) & mask).find(|&i| slots[i].is_none()) {
                    Some(i) => slots[i] = Some(e),
                    None if n < MAX_SLOTS => {
                        pending.push(e);
                        pending.extend(slots.drain(..).flatten());
                        n *= 2;
                        continue 'size;
                    }
                    None => drop(e),
                }
            }
            break;
        }
        self.len = slots.iter().filter(|s| s.is_some()).count();
        self.mask = n - 1;
        self.slots = Box::into_raw(slots.into_boxed_slice()).cast::<Option<E>>();
    }

    /// Takes the slots out, leaving the table unallocated.
    fn take(&mut self) -> Box<[Option<E>]> {
        if self.slots.is_null() {
            return Box::new([]);
        }
        let n = self.mask + 1;
        let p = std::mem::replace(&mut self.slots, std::ptr::null_mut());
        self.mask = 0;
        self.len = 0;
        // SAFETY: `p` came from `Box::into_raw` of a boxed slice of `n` slots (`alloc`, `grow`),
        // and no longer belongs to the table.
        unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n)) }
    }

    /// Drops every entry, keeping the slots.
    pub(crate) fn clear(&mut self) {
        self.slice_mut().iter_mut().for_each(|s| *s = None);
        self.len = 0;
    }

    /// Drops every entry and frees the slots.
    pub(crate) fn free(&mut self) {
        drop(self.take());
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

    #[test]
    fn table_grows_to_the_working_set_then_replaces() {
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
        }
        for i in 0..n {
            assert_eq!(
                t.find(hash(i), |e| e.1 == i as u32).map(|e| e.1),
                Some(i as u32),
                "entry {i}"
            );
        }
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
        // Another epoch drops every entry.
        assert!(t.insert(1, E(5, 5)).is_none());
        assert_eq!(t.entries_mut().count(), 1);
        t.free();
        assert!(!t.is_allocated());
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
