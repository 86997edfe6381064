//! Local RBD images at the RADOS level: the non-primary replica rbd-relay creates, opens,
//! locks and writes. librbd refuses writes to a non-primary image through its public API,
//! so rbd-mirror writes through librbd internals; we only have librados, so this module
//! speaks Ceph's on-disk image format directly (spec §5): `rbd_id.<name>`,
//! `rbd_directory`, `rbd_header.<id>` through cls_rbd, data objects
//! `rbd_data.<id>.<objno>` written with the image's snap context, the exclusive lock
//! through cls_lock plus a header watch, and the object map. To every Ceph tool the result
//! is the image rbd-mirror would have made.
//!
//! - [`create`]: [`create_non_primary`], rbd-mirror's bootstrap image creation.
//! - [`clone`]: clones: reads through the parent, copy-up, flatten.
//! - [`compare`]: two images byte for byte, [`compare`](compare::compare).
//! - [`image`]: [`Image`], an open image and its header (replaces librbd's `ImageCtx` +
//!   `ImageState` refresh for what a replayer needs).
//! - [`fencing`]: taking the lock from a dead holder (blocklist first, then break).
//! - [`lock`]: the exclusive lock and the header watch that answers lock requests like
//!   rbd-mirror's `MirrorExclusiveLockPolicy`.
//! - [`layout`]: image extents → data object extents.
//! - [`io`]: the data path (librbd's `io::ImageRequest` / `ObjectRequest` for a replica).
//! - [`ops`]: header-changing operations (librbd's `operation/*`).
//! - [`object_map`]: keeps HEAD's and snapshots' object maps correct.
//! - [`remove`]: deleting an image, [`remove_image`].
//!
//! Object map choice: maps are **maintained**, not flagged invalid. Every object the data
//! path creates is marked EXISTS before the write goes out, a removed object becomes
//! NONEXISTENT after its removal, resize resizes the map, a snapshot copies HEAD's map and
//! (fast-diff) marks HEAD's objects EXISTS_CLEAN, snapshot removal folds the removed map's
//! dirty objects into the next one. So `rbd object-map check` finds nothing and `rbd diff`
//! / `rbd du` stay fast and right, which invalid flags would give up until a rebuild.

pub mod clone;
pub mod compare;
pub mod create;
pub mod fencing;
pub mod image;
pub mod io;
pub mod layout;
pub mod lock;
pub mod object_map;
pub mod ops;
pub mod remove;

use bytes::Bytes;

pub use compare::compare;
pub use create::{CloneOf, NonPrimarySpec, create_non_primary};
pub use image::Image;
pub use lock::LockState;
pub use remove::{remove_for_resync, remove_image};

use crate::cls::ClsError;
use crate::format::DecodeError;
use crate::rados::{Errno, RadosError};

/// Why an image operation failed. Ceph's errnos map to the variants a caller acts on;
/// the rest stay in `Cls` / `Rados` with their errno.
#[derive(Debug, thiserror::Error)]
pub enum RbdError {
    #[error("image {0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("extent {offset}+{length} is beyond the image size {size}")]
    OutOfBounds { offset: u64, length: u64, size: u64 },
    #[error("the header changed under us (another client's snapshot or resize); refresh first")]
    StaleSnapContext,
    #[error("the exclusive lock is not held")]
    LockNotHeld,
    #[error("the exclusive lock was lost (blocklisted, broken, or the watch failed)")]
    LockLost,
    #[error("the exclusive lock is held by {owner}")]
    LockBusy { owner: String },
    /// A compare-and-write found different data; nothing was written. Replaying a journal,
    /// this is expected (the primary journaled the op before its own compare failed).
    #[error("compare-and-write mismatch at image offset {offset}")]
    CompareMismatch { offset: u64 },
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Cls(#[from] ClsError),
    #[error(transparent)]
    Rados(#[from] RadosError),
    #[error("{what}: {source}")]
    Decode { what: String, source: DecodeError },
}

impl RbdError {
    /// Worth retrying (after a reconnect or refresh) rather than failing the image.
    pub fn is_transient(&self) -> bool {
        match self {
            RbdError::StaleSnapContext | RbdError::LockBusy { .. } => true,
            RbdError::Cls(e) => e.is_transient(),
            RbdError::Rados(e) => e.is_transient(),
            _ => false,
        }
    }

    /// Bounded label for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RbdError::NotFound(_) => "not_found",
            RbdError::Exists(_) => "exists",
            RbdError::OutOfBounds { .. } => "out_of_bounds",
            RbdError::StaleSnapContext => "stale_snap_context",
            RbdError::LockNotHeld => "lock_not_held",
            RbdError::LockLost => "lock_lost",
            RbdError::LockBusy { .. } => "lock_busy",
            RbdError::CompareMismatch { .. } => "compare_mismatch",
            RbdError::SnapshotNotFound(_) => "snapshot_not_found",
            RbdError::Invalid(_) => "invalid",
            RbdError::Unsupported(_) => "unsupported",
            RbdError::Cls(e) => e.code(),
            RbdError::Rados(e) => e.code(),
            RbdError::Decode { .. } => "decode",
        }
    }

    /// Ceph's errno behind the error, if it came from RADOS.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            RbdError::Cls(e) => e.errno(),
            RbdError::Rados(e) => Some(e.errno),
            _ => None,
        }
    }
}

/// One image-level I/O of a batch given to [`Image::apply`] (a journal's Aio* events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoOp {
    Write {
        offset: u64,
        data: Bytes,
    },
    /// Zeroes exactly the range: whole objects are removed, partial ranges zeroed.
    Discard {
        offset: u64,
        length: u64,
    },
    WriteZeroes {
        offset: u64,
        length: u64,
    },
    /// `pattern` repeated over the range (its length divides `length`, as librbd checks).
    WriteSame {
        offset: u64,
        length: u64,
        pattern: Bytes,
    },
    /// Writes `data` only if the image holds `cmp` at `offset` (same length, within one
    /// object, as librbd requires).
    CompareAndWrite {
        offset: u64,
        cmp: Bytes,
        data: Bytes,
    },
}

impl IoOp {
    /// The image extent the op touches.
    pub fn extent(&self) -> (u64, u64) {
        match self {
            IoOp::Write { offset, data } => (*offset, data.len() as u64),
            IoOp::Discard { offset, length }
            | IoOp::WriteZeroes { offset, length }
            | IoOp::WriteSame { offset, length, .. } => (*offset, *length),
            IoOp::CompareAndWrite { offset, data, .. } => (*offset, data.len() as u64),
        }
    }

    /// The part of the op inside an image of `size` bytes (`None`: all of it is beyond).
    /// Journal replay needs this after a crash: the replica may already carry a shrink that
    /// the journal records after this op, and the region that shrink trimmed reads as
    /// zeroes whatever we write there now.
    pub fn clip(self, size: u64) -> Option<IoOp> {
        let (offset, length) = self.extent();
        if offset >= size {
            return None;
        }
        let keep = (size - offset).min(length);
        if keep == length {
            return Some(self);
        }
        Some(match self {
            IoOp::Write { offset, data } => IoOp::Write {
                offset,
                data: data.slice(..keep as usize),
            },
            IoOp::Discard { offset, .. } => IoOp::Discard {
                offset,
                length: keep,
            },
            IoOp::WriteZeroes { offset, .. } => IoOp::WriteZeroes {
                offset,
                length: keep,
            },
            // The pattern no longer divides the length: spell the bytes out.
            IoOp::WriteSame {
                offset, pattern, ..
            } => IoOp::Write {
                offset,
                data: pattern
                    .iter()
                    .copied()
                    .cycle()
                    .take(keep as usize)
                    .collect(),
            },
            // Within one object, and the object is being cut: compare what remains.
            IoOp::CompareAndWrite { offset, cmp, data } => IoOp::CompareAndWrite {
                offset,
                cmp: cmp.slice(..keep as usize),
                data: data.slice(..keep as usize),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_what_lies_inside_the_image() {
        let w = IoOp::Write {
            offset: 8,
            data: Bytes::from_static(b"abcdefgh"),
        };
        assert_eq!(w.clone().clip(16), Some(w.clone()));
        assert_eq!(w.clone().clip(8), None);
        assert_eq!(
            w.clip(11),
            Some(IoOp::Write {
                offset: 8,
                data: Bytes::from_static(b"abc")
            })
        );
        let same = IoOp::WriteSame {
            offset: 0,
            length: 8,
            pattern: Bytes::from_static(b"xy"),
        };
        assert_eq!(
            same.clip(5),
            Some(IoOp::Write {
                offset: 0,
                data: Bytes::from_static(b"xyxyx")
            })
        );
        let zero = IoOp::Discard {
            offset: 4,
            length: 100,
        };
        assert_eq!(
            zero.clip(10),
            Some(IoOp::Discard {
                offset: 4,
                length: 6
            })
        );
    }
}
