//! Atomics, swapped for loom's under `cfg(loom)` so that the lock-free structures can be
//! model-checked (`RUSTFLAGS="--cfg loom" cargo test -p mmo-metrics --test loom --release`).
//! Reference counting (`Arc`) only owns memory here and is not part of any protocol, so it stays
//! `std`'s.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64};
