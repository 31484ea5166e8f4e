//! A series' life: who holds it, whether it was used since the last sweep, when it was last seen
//! in use, and whether it was removed, in one word, so that a holder taking the series and a sweep
//! removing it cannot both succeed.
//!
//! Every way of recording into a series holds it while it records: a handle from the manager, a
//! `metrics` facade handle (each thread's cached one, and every clone a caller keeps), an entry of
//! the by-name cache, the family's overflow series. A series nobody holds cannot be recorded into.
//! So "idle" is "held by nobody, and taken by nobody, for the idle timeout", checked by the sweep
//! ([`Life::sweep`]) without any cost on the recording path: holds are taken and given back when a
//! handle is made and dropped, never when it records.
//!
//! Word layout (`u64`): bits 0–27 the number of holds, bit 28 `TOUCHED` (taken or released since
//! the last sweep), bit 29 `DOOMED` (removal asked for by the game code: removed as soon as nobody
//! holds it, whatever its idle time), bit 30 `REMOVED` (gone from its family: no hold can be taken
//! any more), bits 32–63 the sweep clock (1 ms ticks, wrapping after 49.7 days) when it was last
//! seen in use.
//!
//! A hold is one `fetch_add`, whose result says whether the series was already removed (the hold
//! is then given back and the caller looks the series up again); removal is a compare-exchange from
//! a word with no hold and no `TOUCHED`. The two are read-modify-writes of one word, so either the
//! hold comes first (the exchange fails, the series stays) or the removal does (the hold sees
//! `REMOVED`).

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

use crate::loom::AtomicU64;

const COUNT_MASK: u64 = (1 << 28) - 1;
const TOUCHED: u64 = 1 << 28;
const DOOMED: u64 = 1 << 29;
const REMOVED: u64 = 1 << 30;
const STAMP_SHIFT: u32 = 32;
const FLAGS: u64 = (1 << STAMP_SHIFT) - 1;

/// What a sweep decided for a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Swept {
    /// In use, or idle for less than the timeout: it stays.
    Kept,
    /// Removed: no hold can be taken on it any more; drop it from its family.
    Removed,
}

/// The life word of one series (see the module documentation).
pub(crate) struct Life(AtomicU64);

impl Life {
    /// A new series: touched, so the first sweep counts it as used.
    pub(crate) fn new() -> Self {
        Self(AtomicU64::new(TOUCHED))
    }

    /// Takes a hold; `false` when the series was removed (the caller looks it up again).
    #[inline]
    pub(crate) fn hold(&self) -> bool {
        // AcqRel: the sweep's removal is a read-modify-write of this word, so the two are ordered;
        // Acquire also orders what the caller does with the series after its removal was seen.
        let old = self.0.fetch_add(1, AcqRel);
        debug_assert!(old & COUNT_MASK < COUNT_MASK, "2^28 holds on one series");
        if old & REMOVED != 0 {
            self.0.fetch_sub(1, Relaxed);
            return false;
        }
        if old & (TOUCHED | DOOMED) != TOUCHED {
            // Used again: a series the game code asked to remove comes back when recorded into.
            self.0.fetch_and(!DOOMED, Relaxed);
            self.0.fetch_or(TOUCHED, Relaxed);
        }
        true
    }

    /// Takes one more hold on a series the caller already holds (a clone): cannot be removed.
    #[inline]
    pub(crate) fn hold_again(&self) {
        let old = self.0.fetch_add(1, Relaxed);
        debug_assert!(old & COUNT_MASK != 0 && old & REMOVED == 0, "hold_again without a hold");
    }

    /// Gives a hold back. The series counts as used until the next sweep, so its idle time starts
    /// when its last holder let go, not at the sweep before.
    #[inline]
    pub(crate) fn release(&self) {
        let old = self.0.fetch_or(TOUCHED, Relaxed);
        debug_assert!(old & COUNT_MASK != 0, "release without a hold");
        // Release: the holder's last use of the series happens-before a sweep that sees no hold.
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Release);
    }

    /// Asks for removal: the next sweep removes the series if nobody holds it then; a hold taken
    /// before that (a record) cancels the request.
    pub(crate) fn doom(&self) {
        // TOUCHED cleared, so `hold` sees the change and cancels the request if the series is used.
        self.0.fetch_and(!TOUCHED, Relaxed);
        self.0.fetch_or(DOOMED, Relaxed);
    }

    /// Holds on the series now (a snapshot).
    #[cfg(test)]
    pub(crate) fn holds(&self) -> u64 {
        self.0.load(Relaxed) & COUNT_MASK
    }

    /// Whether removal was asked for and not cancelled by a record.
    pub(crate) fn is_doomed(&self) -> bool {
        self.0.load(Relaxed) & DOOMED != 0
    }

    /// Whether the series was removed from its family.
    pub(crate) fn is_removed(&self) -> bool {
        self.0.load(Acquire) & REMOVED != 0
    }

    /// The first, lock-free pass of a sweep: stamps a series in use with `now`, and says whether
    /// [`Life::sweep`] would remove it now.
    pub(crate) fn peek_idle(&self, now: u32, idle: Option<u32>) -> bool {
        let mut cur = self.0.load(Relaxed);
        loop {
            if cur & REMOVED != 0 {
                return true;
            }
            let stamp = (cur >> STAMP_SHIFT) as u32;
            if cur & (COUNT_MASK | TOUCHED) != 0 && cur & DOOMED == 0 {
                if cur & TOUCHED == 0 && stamp == now {
                    return false;
                }
                let next = (cur & FLAGS & !TOUCHED) | (u64::from(now) << STAMP_SHIFT);
                match self.0.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                    Ok(_) => return false,
                    Err(w) => cur = w,
                }
                continue;
            }
            return cur & COUNT_MASK == 0 && (cur & DOOMED != 0 || idle.is_some_and(|i| now.wrapping_sub(stamp) >= i));
        }
    }

    /// The sweep of one series at clock `now` (ticks): a held or touched series is stamped
    /// `now` and kept; one unused for `idle` ticks or more (`None`: never idle), or doomed and
    /// held by nobody, is removed.
    pub(crate) fn sweep(&self, now: u32, idle: Option<u32>) -> Swept {
        // Acquire: pairs with `release`, so the last holder's records happen-before the removal.
        let mut cur = self.0.load(Acquire);
        loop {
            if cur & REMOVED != 0 {
                return Swept::Removed;
            }
            let stamp = (cur >> STAMP_SHIFT) as u32;
            let used = cur & (COUNT_MASK | TOUCHED) != 0;
            let next = if used && cur & DOOMED == 0 {
                if cur & TOUCHED == 0 && stamp == now {
                    return Swept::Kept;
                }
                (cur & FLAGS & !TOUCHED) | (u64::from(now) << STAMP_SHIFT)
            } else if cur & COUNT_MASK == 0 && (cur & DOOMED != 0 || idle.is_some_and(|i| now.wrapping_sub(stamp) >= i))
            {
                cur | REMOVED
            } else {
                return Swept::Kept;
            };
            match self.0.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) if next & REMOVED != 0 => return Swept::Removed,
                Ok(_) => return Swept::Kept,
                Err(now_word) => cur = now_word,
            }
        }
    }
}

/// A value that holds a series' life while it exists: a clone takes another hold, a drop gives
/// one back. Derefs to the value, so recording through it costs nothing more.
pub(crate) struct Held<T: HasLife> {
    value: T,
}

/// Cells that carry a series' [`Life`].
pub(crate) trait HasLife {
    fn life(&self) -> &Life;
}

impl<T: HasLife> Held<T> {
    /// Holds `value`'s series; gives `value` back when it was removed.
    pub(crate) fn new(value: T) -> Result<Self, T> {
        if value.life().hold() {
            Ok(Self { value })
        } else {
            Err(value)
        }
    }
}

impl<T: HasLife> Held<T> {
    /// Moves the hold onto what `f` makes of the value, which carries the same life (a series'
    /// cells out of the series), or gives the value back held.
    pub(crate) fn try_map<U: HasLife>(self, f: impl FnOnce(T) -> Result<U, T>) -> Result<Held<U>, Self> {
        let this = std::mem::ManuallyDrop::new(self);
        let life: *const Life = this.value.life();
        // SAFETY: `this` is never used or dropped again, so the value is moved out of it once;
        // its hold moves with it into the result.
        let value = unsafe { std::ptr::read(&this.value) };
        match f(value) {
            Ok(u) => {
                debug_assert!(std::ptr::eq(u.life(), life), "a hold moved to another series");
                Ok(Held { value: u })
            }
            Err(t) => Err(Held { value: t }),
        }
    }
}

impl<T: HasLife> std::ops::Deref for Held<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: HasLife + Clone> Clone for Held<T> {
    fn clone(&self) -> Self {
        self.value.life().hold_again();
        Self {
            value: self.value.clone(),
        }
    }
}

impl<T: HasLife> Drop for Held<T> {
    fn drop(&mut self) {
        self.value.life().release();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_held_series_is_never_removed() {
        let l = Life::new();
        assert!(l.hold());
        for now in [0, 100, 10_000] {
            assert_eq!(l.sweep(now, Some(1)), Swept::Kept);
        }
        l.doom();
        assert_eq!(l.sweep(20_000, Some(1)), Swept::Kept, "doomed but held");
        l.release();
        assert_eq!(l.sweep(20_001, Some(1)), Swept::Removed, "doomed, released");
        assert!(!l.hold(), "no hold on a removed series");
        assert_eq!(l.holds(), 0);
    }

    #[test]
    fn idle_time_counts_from_the_last_release() {
        let l = Life::new();
        assert_eq!(l.sweep(10, Some(100)), Swept::Kept, "new: touched");
        assert!(l.hold());
        assert_eq!(l.sweep(50, Some(100)), Swept::Kept);
        l.release();
        assert_eq!(
            l.sweep(60, Some(100)),
            Swept::Kept,
            "touched by the release: stamped 60"
        );
        assert_eq!(l.sweep(159, Some(100)), Swept::Kept);
        assert_eq!(l.sweep(159, None), Swept::Kept, "no timeout: never idle");
        assert_eq!(l.sweep(160, Some(100)), Swept::Removed);
    }

    #[test]
    fn a_record_cancels_a_removal_request() {
        let l = Life::new();
        l.doom();
        assert!(l.hold());
        l.release();
        assert_eq!(l.sweep(1, None), Swept::Kept);
        assert_eq!(l.sweep(2, Some(5)), Swept::Kept);
    }

    #[test]
    fn the_clock_wraps() {
        let l = Life::new();
        assert_eq!(l.sweep(u32::MAX - 5, Some(10)), Swept::Kept);
        assert_eq!(l.sweep(3, Some(10)), Swept::Kept, "9 ticks across the wrap");
        assert_eq!(l.sweep(4, Some(10)), Swept::Removed);
    }
}
