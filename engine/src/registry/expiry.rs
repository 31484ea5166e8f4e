//! Expiry and removal of series.
//!
//! A series is idle when nobody held it for its kind's idle timeout since its last holder let go
//! ([`crate::MetricsManagerBuilder::idle_timeout`]): no handle, no `metrics` facade call, no
//! by-name call (each of those holds the series while it records, see
//! [`Life`](crate::storage::life::Life)). The sweep ([`Registry::sweep`], run before a read of the
//! registry, so before every scrape, at most every 100 ms) removes the idle ones and those the
//! game code asked to remove ([`Registry::remove`]) that nobody holds:
//!
//! 1. A first pass over each family's current map, without its lock and without writing, notes
//!    whether any series may go.
//! 2. Only then, under the map's lock (series creation in that family waits; walks and recording do
//!    not), each candidate is removed with one compare-exchange on its life word that fails if a
//!    hold was taken meanwhile, and a new map of the series that stay is built and swapped in.
//!    The old map is freed when the last walk over it ends; a series' cells are freed when the
//!    last holder lets go (a removed series has none) and the old map is gone.
//! 3. Every thread's facade and by-name caches are told to let go of what they hold (a cache epoch),
//!    so a series used only through a thread's cache is held again only if that thread uses it
//!    again before the next sweep.
//! 4. A removed counter series' cells sit in a chunk shared with other series, which lives while
//!    any of them does. Once no walk can reach the removed series any more (every map the family
//!    swapped out is gone: a walk in flight keeps its map), the series is retired
//!    ([`CounterCell::retire`]), and the chunk gives back the pages whose series are all retired.
//!    While a walk keeps an old map, its family's removed series wait for a later sweep, which the
//!    next read of the registry runs even without an idle timeout.
//!
//! What was recorded into a series is never lost: a series is removed only when nobody holds it,
//! and nothing records into a series without holding it. A series removed and then recorded into
//! again comes back, from zero, as a new series (Prometheus sees a counter reset).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{lock, Family, Registry, Series, SeriesMap};
use crate::storage::counter::CounterCell;
use crate::storage::life::{clock, HasLife, Swept};
use crate::MetricKind;

/// The longest idle timeout, in ms (24.8 days): stamps are compared with wrapping arithmetic on
/// a clock that wraps after 49.7 days, so an age must stay below half of that.
const MAX_IDLE: u32 = i32::MAX as u32;

/// Series removed by one sweep past which the allocator is asked to hand the free pages inside its
/// arenas back to the OS (`malloc_trim`): a large expiry frees many small blocks among live ones,
/// whose pages glibc would otherwise keep.
const TRIM_AFTER: usize = 10_000;

/// Reads of the registry sweep at most this often (ms); [`Registry::sweep`] itself always sweeps.
pub(crate) const READ_SWEEP_INTERVAL_MS: u32 = 100;

/// A timeout in ms, rounded up, at least 1 (a series is made, then held by its creator: with no
/// idle time a sweep between the two could remove it again and again), at most [`MAX_IDLE`].
fn ticks(d: Duration) -> u32 {
    u32::try_from(d.as_nanos().div_ceil(1_000_000)).map_or(MAX_IDLE, |t| t.clamp(1, MAX_IDLE))
}

impl Registry {
    /// Whether any kind has an idle timeout.
    pub(crate) fn expires(&self) -> bool {
        self.config.idle_timeouts.iter().any(Option::is_some)
    }

    /// The sweep a read of the registry runs first: at most every [`READ_SWEEP_INTERVAL_MS`], so
    /// the reads of one scrape (an exporter reads twice: series counts, then the exposition) sweep
    /// once.
    pub(crate) fn sweep_due(&self) -> usize {
        if !self.expires() && !self.sweep_pending.load(Relaxed) {
            return 0;
        }
        if clock().wrapping_sub(self.last_sweep.load(Relaxed)) < READ_SWEEP_INTERVAL_MS {
            return 0;
        }
        self.sweep()
    }

    /// Removes the idle series and those asked to be removed that nobody holds (see the module
    /// documentation). Returns the number of series removed. Sweeps do not overlap; a
    /// sweep asked for while one runs returns at once.
    pub(crate) fn sweep(&self) -> usize {
        if !self.expires() && !self.sweep_pending.load(Relaxed) {
            return 0;
        }
        let Ok(_one) = self.sweeping.try_lock() else {
            return 0;
        };
        // Cleared before the pass: a removal asked for during it sets it again.
        self.sweep_pending.store(false, Relaxed);
        let now = clock();
        self.last_sweep.store(now, Relaxed);
        let mut removed = 0;
        for family in self.all() {
            if family.is_self_metric {
                continue;
            }
            let idle = self.config.idle_timeouts[family.kind().index()].map(ticks);
            // Each label set of a facade family is a variant with its own map.
            for variant in family.variants() {
                let (gone, left) = sweep_family(variant, now, idle);
                removed += gone;
                if left {
                    // Still held, or waiting for a walk: asked again at the next sweep.
                    self.sweep_pending.store(true, Relaxed);
                }
            }
        }
        if self.expires() || removed > 0 {
            crate::thread_cache::bump_cache_epoch();
        }
        if removed >= TRIM_AFTER {
            trim();
        }
        removed
    }

    /// Asks for the removal of every series of `family` whose label values `matches` accepts: each
    /// is removed at once if nobody holds it, else at the first sweep after its last holder lets go
    /// (unless it is recorded into again before that). Returns how many series matched.
    pub(crate) fn remove(&self, family: &Family, mut matches: impl FnMut(&[u8]) -> bool) -> usize {
        let map = family.series.load_full();
        let overflow = family.overflow.get().map(|h| h.life() as *const _);
        let mut n = 0;
        for (values, s) in map.iter() {
            if matches(values) && !s.life().is_removed() && Some(s.life() as *const _) != overflow {
                s.life().doom();
                n += 1;
            }
        }
        // The sweep below may retire what it removes only if no one, this call included, still
        // walks a map it swaps out.
        drop(map);
        if n > 0 {
            // Caches let go, so that series held only by a cache can go at the next sweep.
            crate::thread_cache::bump_cache_epoch();
            let now = clock();
            let idle = self.config.idle_timeouts[family.kind().index()].map(ticks);
            let _one = self.sweeping.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if sweep_family(family, now, idle).1 {
                self.sweep_pending.store(true, Relaxed);
            }
        }
        n
    }
}

/// One family's sweep: the number of series removed, and whether work is left for a later sweep
/// (series asked to be removed that are held, or removed series waiting to be retired).
fn sweep_family(family: &Family, now: u32, idle: Option<u32>) -> (usize, bool) {
    let (removed, doomed_left, old) = swap_out(family, now, idle);
    let waiting = retire(family, old);
    (removed, doomed_left || waiting)
}

/// Removes `family`'s idle series and those asked to be removed that nobody holds, swapping in a
/// map without them: the number removed, whether series asked to be removed are left (held), and
/// the map swapped out, if any.
fn swap_out(family: &Family, now: u32, idle: Option<u32>) -> (usize, bool, Option<Arc<SeriesMap<Series>>>) {
    // Pass 1, without the lock and without writing: may any series go?
    let overflow = family.overflow.get().map(|h| h.life() as *const _);
    let mut candidates = false;
    let mut doomed_left = false;
    for (_, s) in family.series.load_full().iter() {
        let life = s.life();
        if Some(life as *const _) == overflow {
            continue;
        }
        if life.is_idle(now, idle) {
            candidates = true;
        } else if life.is_doomed() {
            doomed_left = true;
        }
    }
    if !candidates {
        return (0, doomed_left, None);
    }
    // Pass 2, under the lock: creation waits, so the map seen is the whole map.
    let map = family.series.load_full();
    let w = map.lock();
    let mut removed = 0;
    for (_, s) in map.iter() {
        if s.life().is_removed() || s.life().sweep(now, idle) == Swept::Removed {
            removed += 1;
        }
    }
    if removed == 0 {
        return (0, doomed_left, None);
    }
    let fresh = SeriesMap::new();
    {
        let mut fw = fresh.lock();
        for (values, s) in map.iter() {
            if !s.life().is_removed() {
                let copied = fw.insert(values, s.clone());
                debug_assert!(copied, "a map of fewer series than one that held them");
            }
        }
    }
    family.series.store(Arc::new(fresh));
    drop(w);
    family.give_places(removed);
    (removed, doomed_left, Some(map))
}

/// A family's removed counter series not retired yet, and the maps it swapped out that may still
/// be walked (see the module documentation, point 4). Used under the registry's sweep lock.
#[derive(Default)]
pub(crate) struct Retiring {
    /// Every map swapped out since the last retirement, as long as a walk may keep one.
    maps: Vec<Weak<SeriesMap<Series>>>,
    /// The removed counter series of those maps, retired once none of them is left.
    cells: Vec<CounterCell>,
}

/// Retires the removed counter series of `old` (the map a sweep just swapped out, if any) and the
/// waiting ones of `family` once no swapped-out map is left; keeps them waiting till then.
/// Returns whether some still wait.
fn retire(family: &Family, old: Option<Arc<SeriesMap<Series>>>) -> bool {
    let removed = |map: &SeriesMap<Series>| {
        map.iter()
            .filter_map(|(_, s)| match s {
                Series::Counter(c) if s.life().is_removed() => Some(c.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let mut r = lock(&family.retiring);
    r.maps.retain(|m| m.strong_count() > 0);
    if let Some(old) = old {
        let cells = removed(&old);
        // After the swap, every walk over `old` holds it (arc-swap turns a reader's borrowed load
        // into a count when the value is swapped out): 1 is this sweep's alone.
        if Arc::strong_count(&old) == 1 && r.maps.is_empty() {
            cells.iter().for_each(CounterCell::retire);
        } else {
            r.cells.extend(cells);
            r.maps.push(Arc::downgrade(&old));
        }
    }
    if r.maps.is_empty() && !r.cells.is_empty() {
        // Taken whole: a large expiry's list gives its memory back too.
        std::mem::take(&mut r.cells).iter().for_each(CounterCell::retire);
    }
    !r.cells.is_empty()
}

/// Hands memory the allocator keeps back to the OS, where the allocator can (glibc).
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(loom)))]
    // SAFETY: `malloc_trim` has no preconditions; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl MetricKind {
    /// Position in per-kind tables: counter, gauge, histogram, summary.
    pub(crate) fn index(self) -> usize {
        match self {
            MetricKind::Counter => 0,
            MetricKind::Gauge => 1,
            MetricKind::Histogram => 2,
            MetricKind::Summary => 3,
        }
    }
}

#[cfg(all(test, not(loom), not(miri), target_os = "linux"))]
mod tests {
    use super::*;
    use crate::registry::Spec;
    use crate::storage::counter::page_series;

    /// `n` series of counter family `f`, each added 5 and let go.
    fn counters(r: &Registry, f: &Family, n: usize) -> Vec<CounterCell> {
        (0..n)
            .map(|i| {
                let held = r.series(f, &[&i.to_string()]).unwrap();
                match &*held {
                    Series::Counter(c) => {
                        c.add(5);
                        c.clone()
                    }
                    _ => unreachable!("a counter family"),
                }
            })
            .collect()
    }

    #[test]
    fn removed_counters_give_their_pages_back_only_when_no_walk_keeps_them() {
        let config = crate::MetricsManager::builder()
            .idle_timeout([MetricKind::Counter], Duration::from_millis(1))
            .config();
        let r = Registry::new(config);
        let f = r.register("retire_total", "h", &["k"], Spec::Counter).unwrap();
        // Three pages of series: at least two whole page groups of the registry's chunk are ours.
        let n = 3 * page_series();
        let cells = counters(&r, &f, n);
        let walk = f.series.load_full();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(r.sweep(), n, "every series idle");
        assert!(
            cells.iter().all(|c| c.get() == 5),
            "a walk keeps the old map: nothing given back"
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(r.sweep(), 0);
        assert!(cells.iter().all(|c| c.get() == 5), "the walk still runs");
        drop(walk);
        assert_eq!(r.sweep(), 0);
        let zeroed = cells.iter().filter(|c| c.get() == 0).count();
        assert!(zeroed >= 2 * page_series(), "{zeroed} of {n} series' cells given back");
        assert!(cells.iter().all(|c| c.get() == 0 || c.get() == 5));
    }

    /// Without an idle timeout nothing sweeps on its own: series removed while a walk kept the old
    /// map are retired by the sweep the next read runs once the walk has ended.
    #[test]
    fn series_removed_during_a_walk_are_given_back_without_an_idle_timeout() {
        let r = Registry::new(crate::MetricsManager::builder().config());
        assert!(!r.expires());
        let f = r.register("removed_total", "h", &["k"], Spec::Counter).unwrap();
        let cells = counters(&r, &f, 3 * page_series());
        let walk = f.series.load_full();
        assert_eq!(r.remove(&f, |_| true), cells.len(), "every series matches");
        assert!(
            f.series.load().iter().next().is_none(),
            "removed at once: nobody holds them"
        );
        assert!(cells.iter().all(|c| c.get() == 5), "the walk keeps the old map");
        drop(walk);
        r.sweep();
        let zeroed = cells.iter().filter(|c| c.get() == 0).count();
        assert!(
            zeroed >= 2 * page_series(),
            "{zeroed} of {} series' cells given back",
            cells.len()
        );
        assert!(!r.sweep_pending.load(Relaxed), "nothing left for a later sweep");
    }
}
