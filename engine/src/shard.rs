//! Which shard of a series the current thread writes.
//!
//! Every live thread holds a *slot*: a small integer unique among live threads, taken from a
//! process-wide [`SlotPool`] on first use and given back when the thread exits. A registry with
//! `S` shards reserves its first `E` shards for the threads holding slots `0..E`: such a shard has
//! exactly one writer, so a write to it is a plain `load` + `store` (no `lock`-prefixed
//! instruction). The remaining `S - E` shards are shared by every other thread and written with
//! atomic read-modify-write instructions. Readers sum all shards.
//!
//! Memory ordering: cells are `Relaxed` (see `storage`). The pool's claim is `Acquire` and its
//! release is `Release`, so a thread that takes over a slot sees every store the previous owner
//! made to the exclusive shard before it exited; that is what makes the owner's non-atomic
//! read-modify-write correct across owners.

use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::atomic::Ordering;

use crate::loom::AtomicU64;

/// The most threads that can hold an exclusive slot at once. Threads past it use shared shards.
pub(crate) const MAX_SLOTS: u32 = 1024;
const WORDS: usize = (MAX_SLOTS / 64) as usize;

/// A bitmap of claimed slots.
pub struct SlotPool {
    words: Box<[AtomicU64]>,
}

impl SlotPool {
    pub fn new() -> Self {
        Self {
            words: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Claims the lowest free slot, or `None` when all are taken.
    pub fn claim(&self) -> Option<u32> {
        for (w, word) in self.words.iter().enumerate() {
            let mut cur = word.load(Ordering::Relaxed);
            while cur != u64::MAX {
                let bit = (!cur).trailing_zeros();
                // Acquire pairs with the Release in `release` by the slot's previous owner.
                match word.compare_exchange_weak(cur, cur | (1 << bit), Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => return Some(w as u32 * 64 + bit),
                    Err(now) => cur = now,
                }
            }
        }
        None
    }

    /// Gives a slot back. Its owner must not write its exclusive shards after this.
    pub fn release(&self, slot: u32) {
        let (w, bit) = ((slot / 64) as usize, slot % 64);
        // Release: publishes the owner's last stores to whoever claims the slot next.
        self.words[w].fetch_and(!(1u64 << bit), Ordering::Release);
    }
}

/// How a series' shards are split between exclusive and shared ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardLayout {
    /// Total shards, `>= 1`.
    pub shards: u32,
    /// Shards `0..exclusive` belong to the threads holding slots `0..exclusive`.
    pub exclusive: u32,
}

/// The shard a write goes to, and whether the writer is its only writer.
#[derive(Clone, Copy, Debug)]
pub struct Shard {
    pub index: usize,
    pub exclusive: bool,
}

impl ShardLayout {
    /// `shards` total, a quarter of them (at least one) shared by threads without an exclusive one.
    pub fn new(shards: u32) -> Self {
        let shards = shards.clamp(1, MAX_SLOTS);
        let shared = (shards / 4).max(1);
        Self {
            shards,
            exclusive: shards - shared,
        }
    }

    /// The shard for the thread holding `slot`.
    #[inline(always)]
    pub fn pick(self, slot: u32) -> Shard {
        if slot < self.exclusive {
            Shard {
                index: slot as usize,
                exclusive: true,
            }
        } else {
            let shared = self.shards - self.exclusive;
            Shard {
                index: (self.exclusive + slot % shared) as usize,
                exclusive: false,
            }
        }
    }
}

mod current {
    use std::cell::Cell;
    use std::sync::atomic::Ordering;
    use std::sync::OnceLock;

    use super::{SlotPool, StdAtomicU64, MAX_SLOTS};

    const UNCLAIMED: u32 = u32::MAX;

    fn pool() -> &'static SlotPool {
        static POOL: OnceLock<SlotPool> = OnceLock::new();
        POOL.get_or_init(SlotPool::new)
    }

    /// Spreads the threads that found no free slot over the shared shards.
    static OVERFLOW: StdAtomicU64 = StdAtomicU64::new(0);

    thread_local! {
        /// The slot, read on every write: const-initialised and without `Drop`, so reading it is
        /// one thread-local load with no registration check.
        static SLOT: Cell<u32> = const { Cell::new(UNCLAIMED) };
        /// Gives the slot back when the thread exits.
        static GUARD: SlotGuard = const { SlotGuard };
    }

    struct SlotGuard;

    impl Drop for SlotGuard {
        fn drop(&mut self) {
            // From now on this thread writes like a thread without a slot (shared shards).
            let slot = SLOT.replace(MAX_SLOTS);
            if slot < MAX_SLOTS {
                pool().release(slot);
            }
        }
    }

    #[cold]
    fn claim() -> u32 {
        let slot = match pool().claim() {
            // Registering the guard fails once the thread is being torn down: give the slot back.
            Some(s) if GUARD.try_with(|_| ()).is_ok() => s,
            Some(s) => {
                pool().release(s);
                MAX_SLOTS
            }
            None => MAX_SLOTS + (OVERFLOW.fetch_add(1, Ordering::Relaxed) % u64::from(MAX_SLOTS)) as u32,
        };
        SLOT.set(slot);
        slot
    }

    /// The current thread's slot; claims one on first use.
    #[inline(always)]
    pub fn slot() -> u32 {
        let v = SLOT.get();
        if v != UNCLAIMED {
            v
        } else {
            claim()
        }
    }

    /// The current thread's slot, or a value `>= MAX_SLOTS` when it has none yet: one
    /// thread-local load, for a caller that compares it against an exclusive-shard count first.
    #[inline(always)]
    pub fn raw_slot() -> u32 {
        SLOT.get()
    }
}

pub(crate) use current::{raw_slot, slot};

/// The shard the current thread writes in a series with this layout.
#[inline(always)]
pub fn current(layout: ShardLayout) -> Shard {
    match current_exclusive(layout) {
        Some(index) => Shard { index, exclusive: true },
        None => shared(layout),
    }
}

/// The current thread's shard in `layout` when it is one of the exclusive ones (the common case),
/// else `None`: [`current`] for a caller that takes its other case out of line, so that its fast
/// path calls nothing.
#[inline(always)]
pub fn current_exclusive(layout: ShardLayout) -> Option<usize> {
    let raw = current::raw_slot();
    // One compare on the path every thread with an exclusive shard takes: an unclaimed slot reads
    // as `u32::MAX`, above any exclusive count, and is claimed on the shared path.
    (raw < layout.exclusive).then_some(raw as usize)
}

/// [`current`] for a thread whose slot is not one of the layout's exclusive ones, or not claimed yet.
#[inline(never)]
fn shared(layout: ShardLayout) -> Shard {
    layout.pick(slot())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn claims_lowest_and_reuses() {
        let pool = SlotPool::new();
        assert_eq!(pool.claim(), Some(0));
        assert_eq!(pool.claim(), Some(1));
        pool.release(0);
        assert_eq!(pool.claim(), Some(0));
        for i in 2..MAX_SLOTS {
            assert_eq!(pool.claim(), Some(i));
        }
        assert_eq!(pool.claim(), None);
    }

    #[test]
    fn layout_splits_shards() {
        let l = ShardLayout::new(16);
        assert_eq!(l.exclusive, 12);
        assert!(l.pick(3).exclusive);
        let s = l.pick(12);
        assert!(!s.exclusive && (12..16).contains(&s.index));
        let one = ShardLayout::new(1);
        assert_eq!(one.exclusive, 0);
        assert_eq!(one.pick(0).index, 0);
        assert!(!one.pick(0).exclusive);
    }

    #[test]
    fn threads_get_distinct_slots() {
        let a = slot();
        let b = std::thread::spawn(slot).join().unwrap();
        assert_ne!(a, b);
    }
}
