//! Synchronisation primitives, swapped for loom's under `cfg(loom)` so that the lock-free
//! structures can be model-checked (`RUSTFLAGS="--cfg loom" cargo test --test loom --release`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
