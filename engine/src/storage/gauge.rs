//! Gauge cells: one `f64` per series on its own line (a gauge's value is the last write, which
//! shards cannot express), so writers of different gauges never share a line.

use std::sync::atomic::Ordering::Relaxed;

use crossbeam_utils::CachePadded;

use super::add_f64;
use crate::loom::{Arc, AtomicU64};

/// One gauge series. Cloning shares the cell.
#[derive(Clone)]
pub(crate) struct GaugeCell(Arc<CachePadded<AtomicU64>>);

impl GaugeCell {
    pub(crate) fn new() -> Self {
        Self(Arc::new(CachePadded::new(AtomicU64::new(0f64.to_bits()))))
    }

    #[inline(always)]
    pub(crate) fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Relaxed);
    }

    #[inline(always)]
    pub(crate) fn add(&self, v: f64) {
        add_f64(&self.0, v, false);
    }

    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}
