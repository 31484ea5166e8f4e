//! A series' life: who holds it, when it was last let go of, and whether it was removed, in one
//! word, so that a holder taking the series and a sweep removing it cannot both succeed.
//!
//! Every way of recording into a series holds it while it records: a handle from the manager, a
//! `metrics` facade handle (each thread's cached one, and every clone a caller keeps), an entry of
//! the by-name cache, the family's overflow series. A series nobody holds cannot be recorded into.
//! So "idle" is "held by nobody since its last holder let go, for the idle timeout", checked by the
//! sweep ([`Life::sweep`]) without any cost on the recording path: holds are taken and given back
//! when a handle is made and dropped, never when it records.
//!
//! Word layout (`u64`): bits 0–28 the number of holds, bit 29 `DOOMED` (removal asked for by the
//! game code: removed as soon as nobody holds it, whatever its idle time), bit 30 `REMOVED` (gone
//! from its family: no hold can be taken any more), bit 31 `RETIRED` (removed, and unreachable by
//! any walk too: its memory may be given back), bits 32–63 the [`clock`] when the last holder let
//! go (or the series was made).
//!
//! A hold is one `fetch_add`, whose result says whether the series was already removed (the hold
//! is then given back and the caller looks the series up again); removal is a compare-exchange from
//! a word with no hold. The two are read-modify-writes of one word, so either the hold comes first
//! (the exchange fails, the series stays) or the removal does (the hold sees `REMOVED`).

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::OnceLock;
use std::time::Instant;

use crate::loom::AtomicU64;

const COUNT_MASK: u64 = (1 << 29) - 1;
const DOOMED: u64 = 1 << 29;
const REMOVED: u64 = 1 << 30;
const RETIRED: u64 = 1 << 31;
const STAMP_SHIFT: u32 = 32;
const FLAGS: u64 = (1 << STAMP_SHIFT) - 1;

/// Milliseconds since the process' first use of the clock, wrapping after 49.7 days (stamps are
/// compared with wrapping arithmetic, so an age must stay below half of that).
pub(crate) fn clock() -> u32 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u32
}

/// What a sweep decided for a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Swept {
    /// Held, or idle for less than the timeout: it stays.
    Kept,
    /// Removed: no hold can be taken on it any more; drop it from its family.
    Removed,
}

/// The life word of one series (see the module documentation).
pub(crate) struct Life(AtomicU64);

impl Life {
    /// A new series, let go of now (its creator holds it next).
    pub(crate) fn new() -> Self {
        Self(AtomicU64::new(u64::from(clock()) << STAMP_SHIFT))
    }

    /// Takes a hold; `false` when the series was removed (the caller looks it up again).
    #[inline]
    pub(crate) fn hold(&self) -> bool {
        // AcqRel: the sweep's removal is a read-modify-write of this word, so the two are ordered;
        // Acquire also orders what the caller does with the series after its removal was seen.
        let old = self.0.fetch_add(1, AcqRel);
        debug_assert!(old & COUNT_MASK < COUNT_MASK, "2^29 holds on one series");
        if old & REMOVED != 0 {
            self.0.fetch_sub(1, Relaxed);
            return false;
        }
        if old & DOOMED != 0 {
            // Used again: a series the game code asked to remove stays when recorded into.
            self.0.fetch_and(!DOOMED, Relaxed);
        }
        true
    }

    /// Takes one more hold on a series the caller already holds (a clone): cannot be removed.
    #[inline]
    pub(crate) fn hold_again(&self) {
        let old = self.0.fetch_add(1, Relaxed);
        debug_assert!(old & COUNT_MASK != 0 && old & REMOVED == 0, "hold_again without a hold");
    }

    /// Gives a hold back, stamping the clock: a series' idle time starts when its last holder let
    /// go.
    #[inline]
    pub(crate) fn release(&self) {
        let now = u64::from(clock()) << STAMP_SHIFT;
        // Release: the holder's last use of the series happens-before a sweep that sees no hold.
        let old = self.0.fetch_update(Release, Relaxed, |w| Some(((w & FLAGS) - 1) | now));
        debug_assert!(old.is_ok_and(|w| w & COUNT_MASK != 0), "release without a hold");
    }

    /// Asks for removal: the next sweep removes the series if nobody holds it then; a hold taken
    /// before that (a record) cancels the request.
    pub(crate) fn doom(&self) {
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

    /// Marks a removed series retired (see [`RETIRED`]): `true` the first time, `false` after that
    /// and for a series not removed.
    pub(crate) fn retire(&self) -> bool {
        self.0
            .fetch_update(Relaxed, Relaxed, |w| {
                (w & REMOVED != 0 && w & RETIRED == 0).then_some(w | RETIRED)
            })
            .is_ok()
    }

    /// Whether the series was removed from its family.
    pub(crate) fn is_removed(&self) -> bool {
        self.0.load(Acquire) & REMOVED != 0
    }

    /// Whether [`Life::sweep`] would remove the series at clock `now` (a snapshot, no write).
    pub(crate) fn is_idle(&self, now: u32, idle: Option<u32>) -> bool {
        Self::removable(self.0.load(Relaxed), now, idle)
    }

    fn removable(w: u64, now: u32, idle: Option<u32>) -> bool {
        let stamp = (w >> STAMP_SHIFT) as u32;
        // The age is signed: a sweep reads its clock once, so a holder can let go, and stamp the
        // word, after that reading. Its stamp is then ahead of `now`, and the unsigned difference
        // wraps to 49 days: such a series, let go of a moment ago between two holds of a thread
        // that records into it, was removed, and what it held was lost.
        let age = now.wrapping_sub(stamp) as i32;
        w & REMOVED != 0
            || (w & COUNT_MASK == 0 && (w & DOOMED != 0 || idle.is_some_and(|i| age >= 0 && age as u32 >= i)))
    }

    /// Removes the series if nobody holds it and it was asked to be removed, or let go of `idle`
    /// ticks (ms) or more before `now` (`None`: never idle).
    pub(crate) fn sweep(&self, now: u32, idle: Option<u32>) -> Swept {
        // Acquire: pairs with `release`, so the last holder's records happen-before the removal.
        let mut cur = self.0.load(Acquire);
        loop {
            if cur & REMOVED != 0 {
                return Swept::Removed;
            }
            if !Self::removable(cur, now, idle) {
                return Swept::Kept;
            }
            match self.0.compare_exchange_weak(cur, cur | REMOVED, AcqRel, Acquire) {
                Ok(_) => return Swept::Removed,
                Err(w) => cur = w,
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
        let now = clock();
        for later in [0, 100, 10_000] {
            assert_eq!(l.sweep(now + later, Some(1)), Swept::Kept);
        }
        l.doom();
        assert_eq!(l.sweep(now + 20_000, Some(1)), Swept::Kept, "doomed but held");
        l.release();
        assert_eq!(l.sweep(clock(), None), Swept::Removed, "doomed, released");
        assert!(!l.hold(), "no hold on a removed series");
        assert_eq!(l.holds(), 0);
    }

    #[test]
    fn idle_time_counts_from_the_last_release() {
        let l = Life::new();
        assert!(l.hold());
        std::thread::sleep(std::time::Duration::from_millis(5));
        let released = clock();
        l.release();
        // Stamped at the release, not at the creation 5 ms before.
        assert_eq!(l.sweep(released + 99, Some(100)), Swept::Kept);
        assert_eq!(l.sweep(released + 10_000, None), Swept::Kept, "no timeout: never idle");
        assert!(l.is_idle(released + 101, Some(100)));
        assert_eq!(l.sweep(released + 101, Some(100)), Swept::Removed);
    }

    #[test]
    fn a_record_cancels_a_removal_request() {
        let l = Life::new();
        l.doom();
        assert!(l.hold());
        l.release();
        assert!(!l.is_doomed());
        assert_eq!(l.sweep(clock(), None), Swept::Kept);
    }

    /// A sweep that read its clock before a holder let go does not take the release's later stamp
    /// for one 49 days old (it did, and removed a series recorded into a moment before).
    #[test]
    fn a_release_after_the_sweep_read_its_clock_is_not_idle() {
        let l = Life::new();
        assert!(l.hold());
        let sweep_now = clock();
        std::thread::sleep(std::time::Duration::from_millis(3));
        l.release();
        assert_eq!(l.sweep(sweep_now, Some(100)), Swept::Kept);
        assert!(!l.is_idle(sweep_now, Some(1)));
    }

    #[test]
    fn the_clock_wraps() {
        let l = Life(AtomicU64::new(u64::from(u32::MAX - 5) << STAMP_SHIFT));
        assert_eq!(l.sweep(3, Some(10)), Swept::Kept, "9 ms across the wrap");
        assert_eq!(l.sweep(4, Some(10)), Swept::Removed);
    }
}
