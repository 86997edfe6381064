//! rbd-relay: an event-driven replacement for Ceph's `rbd-mirror` (journal mode).
//!
//! Crate map (dependencies point one way: mirror → journal, rbd → cls → rados → format):
//! - [`format`]: Ceph's binary encodings and the types we read and write; pure.
//! - [`rados`]: the storage seam (async traits) with the `librados` and `memory` backends.

pub mod format;
pub mod rados;
