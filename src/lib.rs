//! rbd-relay: an event-driven replacement for Ceph's `rbd-mirror` (journal mode).
//!
//! Crate map (dependencies point one way: mirror → journal, rbd → cls → rados → format):
//! - [`backoff`]: retry delays with jitter.
//! - [`daemon`]: `rbd-relay run`'s process contract (options, daemonize, log, pid file,
//!   signals) and its admin socket commands.
//! - [`cls`]: typed calls to Ceph's object classes (cls_rbd, cls_journal, cls_lock).
//! - [`format`]: Ceph's binary encodings and the types we read and write; pure.
//! - [`journal`]: RBD journals at the RADOS level (writer; the follower comes next).
//! - [`metrics`]: Prometheus metric names, the exporter, one fn per event.
//! - [`prefix_check`]: `rbd-relay check-prefix`, the copy against the primary's journal
//!   replayed up to the copy's commit position.
//! - [`promote`]: `rbd-relay promote --wait-caught-up`, a failover that proves zero loss.
//! - [`rados`]: the storage seam (async traits) with the `librados` and `memory` backends.
//! - [`rbd`]: local RBD images at the RADOS level (the non-primary replica we write).

pub mod admin_socket;
pub mod backoff;
pub mod ceph_conf;
pub mod cls;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod format;
pub mod journal;
pub mod metrics;
pub mod mirror;
pub mod prefix_check;
pub mod promote;
pub mod rados;
pub mod rbd;
