//! A coarse monotonic clock for summary windows: reading it is one `Relaxed` load, where
//! `Instant::now()` costs tens of nanoseconds. A background thread (started with the first summary)
//! advances it every [`TICK`]; scrapes also advance it, so a scrape never sees a stale window.
//!
//! And the wall clock of exposed timestamps ([`unix_ms`]): series creation times and exemplars.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// How often the clock thread advances the clock.
pub(crate) const TICK: Duration = Duration::from_millis(25);

static NOW_MS: AtomicU64 = AtomicU64::new(0);

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Milliseconds since the clock started, at most [`TICK`] behind.
#[inline(always)]
pub fn coarse_ms() -> u64 {
    NOW_MS.load(Relaxed)
}

/// Reads the precise time and advances the coarse clock to it.
pub fn refresh() -> u64 {
    let now = start().elapsed().as_millis() as u64;
    NOW_MS.fetch_max(now, Relaxed);
    now.max(NOW_MS.load(Relaxed))
}

/// Starts the clock thread once per process.
pub fn ensure_running() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        refresh();
        let spawned = std::thread::Builder::new()
            .name("mmo-metrics-clock".into())
            .spawn(|| loop {
                std::thread::sleep(TICK);
                refresh();
            });
        if let Err(e) = spawned {
            tracing::error!(
                "mmo-metrics: cannot start the summary clock thread ({e}); summary windows advance only on scrapes"
            );
        }
    });
}

/// The wall clock in milliseconds since the Unix epoch (0 for a clock set before it): the
/// precision of Prometheus' timestamps. Read when a series is created and when an exemplar is
/// recorded, never when recording a value.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
