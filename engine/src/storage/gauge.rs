//! Gauge cells: one `f64` per series on its own line (a gauge's value is the last write, which
//! shards cannot express), so writers of different gauges never share a line.

use std::sync::atomic::Ordering::Relaxed;

use crossbeam_utils::CachePadded;

use super::add_f64;
use super::life::{HasLife, Life};
use std::sync::Arc;

use crate::loom::AtomicU64;

/// One gauge series. Cloning shares the cell.
#[derive(Clone)]
pub struct GaugeCell(Arc<CachePadded<Cell>>);

/// The value, and the series' [`Life`] and creation time on the same padded line (a gauge's line
/// holds one value; the life word is written only when a handle is made or dropped and by the
/// sweep, the creation time only when the series is made).
struct Cell {
    value: AtomicU64,
    life: Life,
    /// Wall clock at creation, milliseconds since the Unix epoch.
    created_ms: u64,
}

impl HasLife for GaugeCell {
    fn life(&self) -> &Life {
        &self.0.life
    }
}

impl GaugeCell {
    pub fn new() -> Self {
        Self(Arc::new(CachePadded::new(Cell {
            value: AtomicU64::new(0f64.to_bits()),
            life: Life::new(),
            created_ms: super::clock::unix_ms(),
        })))
    }

    /// When the series was created: wall clock, milliseconds since the Unix epoch.
    pub fn created_ms(&self) -> u64 {
        self.0.created_ms
    }

    #[inline(always)]
    pub fn set(&self, v: f64) {
        self.0.value.store(v.to_bits(), Relaxed);
    }

    #[inline(always)]
    pub fn add(&self, v: f64) {
        add_f64(&self.0.value, v, false);
    }

    /// Raises the value to `v` if `v` is larger (a float counter never goes down).
    pub fn raise(&self, v: f64) {
        let mut cur = self.0.value.load(Relaxed);
        while v > f64::from_bits(cur) {
            match self.0.value.compare_exchange_weak(cur, v.to_bits(), Relaxed, Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.value.load(Relaxed))
    }
}
