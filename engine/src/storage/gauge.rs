//! Gauge cells: one `f64` per series on its own line (a gauge's value is the last write, which
//! shards cannot express), so writers of different gauges never share a line.

use std::sync::atomic::Ordering::Relaxed;

use crossbeam_utils::CachePadded;

use super::add_f64;
use std::sync::Arc;

use crate::loom::AtomicU64;

/// One gauge series. Cloning shares the cell.
#[derive(Clone)]
pub struct GaugeCell(Arc<CachePadded<AtomicU64>>);

impl GaugeCell {
    pub fn new() -> Self {
        Self(Arc::new(CachePadded::new(AtomicU64::new(0f64.to_bits()))))
    }

    #[inline(always)]
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }

    #[inline(always)]
    pub fn add(&self, v: f64) {
        add_f64(&self.0, v, false);
    }

    /// Raises the value to `v` if `v` is larger (a float counter never goes down).
    pub fn raise(&self, v: f64) {
        let mut cur = self.0.load(Relaxed);
        while v > f64::from_bits(cur) {
            match self.0.compare_exchange_weak(cur, v.to_bits(), Relaxed, Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}
