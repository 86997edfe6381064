//! Header-changing operations on a locked image: resize, snapshots (create, remove,
//! rename, protect, unprotect, limit), rename, metadata, features and flags. Each changes
//! the header through cls_rbd, keeps the object maps in step, re-reads the header and
//! sends HeaderUpdate so open librbd clients refresh. Replaces librbd's `operation/*`
//! requests as rbd-mirror's journal replay drives them.
//!
//! Idempotent where a journal replay may repeat an event after a crash: creating a
//! snapshot that exists (same name and namespace) returns its id, removing a missing one
//! succeeds, resizing to the current size does nothing, renaming to the current name
//! does nothing. Snapshot ids here are this image's own (names + namespaces are the
//! identity across sites).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::layout::object_count;
use super::{Image, IoOp, RbdError};
use crate::cls::{self, image as cls_image};
use crate::format::image::{ProtectionStatus, SnapshotInfo, SnapshotNamespace, features, oids};
use crate::rados::{Errno, IoCtx, NOSNAP};

/// How many data objects a shrink trims at once.
const TRIM_IN_FLIGHT: usize = 32;

impl<I: IoCtx> Image<I> {
    /// Grows or shrinks the image; shrinking removes or truncates the data objects past
    /// the new end first (under the snap context, so snapshots keep them).
    pub async fn resize(&mut self, size: u64) -> Result<(), RbdError> {
        self.assert_locked().await?;
        let old = self.header.size;
        if size == old {
            return Ok(());
        }
        let order = self.header.order;
        let count = object_count(order, size);
        if size < old {
            // The object holding the new end keeps its head; everything after goes.
            let boundary_end = (count << order).min(old);
            if boundary_end > size {
                let tail = IoOp::Discard {
                    offset: size,
                    length: boundary_end - size,
                };
                self.apply(&[tail], 1).await?;
            }
            self.remove_objects(count..object_count(order, old), TRIM_IN_FLIGHT)
                .await?;
        }
        self.object_map_resize(count).await?;
        cls_image::set_size(&self.io, &self.header_oid, size).await?;
        self.changed().await
    }

    /// Creates a snapshot and returns its id (an existing one with the same name and
    /// namespace is returned as is).
    pub async fn snap_create(
        &mut self,
        name: &str,
        ns: SnapshotNamespace,
    ) -> Result<u64, RbdError> {
        self.assert_locked().await?;
        if let Some(s) = self.snapshot_by_name(name, &ns) {
            return Ok(s.id);
        }
        let id = self.data_io.selfmanaged_snap_create().await?;
        if let Err(e) = cls_image::snapshot_add(&self.io, &self.header_oid, id, name, ns).await {
            let _ = self.data_io.selfmanaged_snap_remove(id).await;
            return Err(match e.errno() {
                Some(Errno::EEXIST) => RbdError::Exists(format!("snapshot {name}")),
                _ => e.into(),
            });
        }
        self.object_map_snap_create(id).await?;
        self.changed().await?;
        Ok(id)
    }

    /// Removes a snapshot (a missing one is not an error); a protected one is refused. One
    /// that clones still read moves to the trash namespace instead, as librbd does, and
    /// stays there while they do. A trashed one is named by its namespace alone (its name
    /// is a random uuid, different on each site).
    pub async fn snap_remove(
        &mut self,
        name: &str,
        ns: &SnapshotNamespace,
    ) -> Result<(), RbdError> {
        self.assert_locked().await?;
        let trashed = matches!(ns, SnapshotNamespace::Trash { .. });
        let found = match trashed {
            true => self
                .header
                .snapshots
                .iter()
                .find(|s| &s.snapshot_namespace == ns),
            false => self.snapshot_by_name(name, ns),
        };
        let Some(snap) = found.cloned() else {
            return Ok(());
        };
        let status = cls_image::get_protection_status(&self.io, &self.header_oid, snap.id).await?;
        if status != ProtectionStatus::Unprotected {
            return Err(RbdError::Invalid(format!("snapshot {name} is protected")));
        }
        // Children attach from their own images: the cached count may be stale. A trashed
        // snapshot that clones still read stays; the last one's detach purges it.
        if self.child_count(snap.id).await? > 0 {
            if !trashed {
                match cls_image::snapshot_trash_add(&self.io, &self.header_oid, snap.id).await {
                    Err(e) if e.is(Errno::EEXIST) => {}
                    other => other?,
                }
                self.changed().await?;
            }
            return Ok(());
        }
        let next_newer = self
            .header
            .snapshots
            .iter()
            .map(|s| s.id)
            .filter(|&id| id > snap.id)
            .min();
        self.object_map_snap_remove(snap.id, next_newer).await?;
        match cls_image::snapshot_remove(&self.io, &self.header_oid, snap.id).await {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
        self.data_io.selfmanaged_snap_remove(snap.id).await?;
        self.changed().await
    }

    pub(super) async fn child_count(&self, snap_id: u64) -> Result<u32, RbdError> {
        match cls_image::snapshot_get(&self.io, &self.header_oid, snap_id).await {
            Ok(s) => Ok(s.child_count),
            Err(e) if e.is_not_found() => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Renames a user snapshot.
    pub async fn snap_rename(&mut self, src: &str, dst: &str) -> Result<(), RbdError> {
        self.assert_locked().await?;
        if src == dst {
            return Ok(());
        }
        let id = self.user_snap(src)?.id;
        match cls_image::snapshot_rename(&self.io, &self.header_oid, id, dst).await {
            Err(e) if e.is(Errno::EEXIST) => {
                return Err(RbdError::Exists(format!("snapshot {dst}")));
            }
            other => other?,
        }
        self.changed().await
    }

    pub async fn snap_protect(&mut self, name: &str) -> Result<(), RbdError> {
        self.set_protection(name, ProtectionStatus::Protected).await
    }

    /// Refused while clones of the snapshot exist.
    pub async fn snap_unprotect(&mut self, name: &str) -> Result<(), RbdError> {
        let snap = self.user_snap(name)?;
        if snap.child_count > 0 {
            return Err(RbdError::Invalid(format!(
                "snapshot {name} has {} clones",
                snap.child_count
            )));
        }
        self.set_protection(name, ProtectionStatus::Unprotected)
            .await
    }

    async fn set_protection(
        &mut self,
        name: &str,
        status: ProtectionStatus,
    ) -> Result<(), RbdError> {
        self.assert_locked().await?;
        let id = self.user_snap(name)?.id;
        cls_image::set_protection_status(&self.io, &self.header_oid, id, status).await?;
        self.changed().await
    }

    /// Sets (or with `None` removes) the snapshot count limit.
    pub async fn snap_set_limit(&mut self, limit: Option<u64>) -> Result<(), RbdError> {
        self.assert_locked().await?;
        let limit = limit.unwrap_or(u64::MAX);
        cls_image::snapshot_set_limit(&self.io, &self.header_oid, limit).await?;
        self.changed().await
    }

    /// The snapshot count limit (`None`: unlimited).
    pub async fn snap_limit(&self) -> Result<Option<u64>, RbdError> {
        let limit = cls_image::snapshot_get_limit(&self.io, &self.header_oid).await?;
        Ok((limit != u64::MAX).then_some(limit))
    }

    /// Renames the image like librbd: `rbd_id.<new>` first, then the directory, then the
    /// old id object, so every step can be rerun.
    pub async fn rename(&mut self, new_name: &str) -> Result<(), RbdError> {
        self.assert_locked().await?;
        if new_name == self.name {
            return Ok(());
        }
        match cls::dir::create_id_object(&self.io, new_name, &self.id).await {
            Err(e) if e.is(Errno::EEXIST) => {
                if cls::dir::id_of(&self.io, new_name).await? != self.id {
                    return Err(RbdError::Exists(format!("image {new_name}")));
                }
            }
            other => other?,
        }
        match cls::dir::rename_image(&self.io, &self.name, new_name, &self.id).await {
            // Already renamed by an earlier run.
            Err(e) if e.is_not_found() && cls::dir::get_id(&self.io, new_name).await.is_ok() => {}
            other => other?,
        }
        match self.io.remove(&oids::id(&self.name)).await {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
        self.name = new_name.into();
        self.changed().await
    }

    pub async fn metadata_set(&mut self, key: &str, value: &str) -> Result<(), RbdError> {
        self.assert_locked().await?;
        let kv = BTreeMap::from([(key.to_string(), Bytes::copy_from_slice(value.as_bytes()))]);
        cls_image::metadata_set(&self.io, &self.header_oid, &kv).await?;
        self.changed().await
    }

    /// Removing a missing key is not an error.
    pub async fn metadata_remove(&mut self, key: &str) -> Result<(), RbdError> {
        self.assert_locked().await?;
        match cls_image::metadata_remove(&self.io, &self.header_oid, key).await {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
        self.changed().await
    }

    /// Turns features on or off with librbd's side effects for the object map: enabling
    /// object-map / fast-diff creates an empty map flagged invalid (as `rbd feature enable`
    /// does; `rbd object-map rebuild` fills it), disabling removes the maps and the flags.
    /// Journaling and exclusive-lock are what keeps this image a mirror: refused.
    pub async fn update_features(&mut self, mask: u64, enabled: bool) -> Result<(), RbdError> {
        self.assert_locked().await?;
        const MAPS: u64 = features::OBJECT_MAP | features::FAST_DIFF;
        const MUTABLE: u64 = MAPS | features::DEEP_FLATTEN;
        if mask & !MUTABLE != 0 {
            return Err(RbdError::Unsupported(format!(
                "changing features {:#x} on a mirrored image",
                mask & !MUTABLE
            )));
        }
        let current = self.header.features;
        let mask = if enabled {
            mask & !current
        } else {
            mask & current
        };
        if mask == 0 {
            return Ok(());
        }
        let (io, oid) = (&self.io, self.header_oid.as_str());
        if enabled {
            if mask & features::FAST_DIFF != 0 && (current | mask) & features::OBJECT_MAP == 0 {
                return Err(RbdError::Invalid("fast-diff needs object-map".into()));
            }
            if mask & features::OBJECT_MAP != 0 {
                let count = self.object_count();
                cls_image::object_map_resize(io, &oids::object_map(&self.id, None), count, 0)
                    .await?;
            }
            if mask & MAPS != 0 {
                let flags = crate::format::image::flags::OBJECT_MAP_INVALID
                    | crate::format::image::flags::FAST_DIFF_INVALID;
                cls_image::set_flags(io, oid, flags, flags, NOSNAP).await?;
            }
            cls_image::set_features(io, oid, mask, mask).await?;
        } else {
            let mask = if mask & features::OBJECT_MAP != 0 {
                mask | (current & features::FAST_DIFF)
            } else {
                mask
            };
            cls_image::set_features(io, oid, 0, mask).await?;
            if mask & features::OBJECT_MAP != 0 {
                let maps =
                    std::iter::once(None).chain(self.header.snapshots.iter().map(|s| Some(s.id)));
                for snap in maps {
                    match io.remove(&oids::object_map(&self.id, snap)).await {
                        Err(e) if !e.is_not_found() => return Err(e.into()),
                        _ => {}
                    }
                }
            }
            let flags = crate::format::image::flags::OBJECT_MAP_INVALID
                | crate::format::image::flags::FAST_DIFF_INVALID;
            cls_image::set_flags(io, oid, 0, flags, NOSNAP).await?;
        }
        self.changed().await?;
        self.load_object_map().await
    }

    /// Sets header flag bits of `mask` to their value in `flags` (HEAD).
    pub async fn set_flags(&mut self, flags: u64, mask: u64) -> Result<(), RbdError> {
        self.assert_locked().await?;
        cls_image::set_flags(&self.io, &self.header_oid, flags, mask, NOSNAP).await?;
        self.changed().await
    }

    fn user_snap(&self, name: &str) -> Result<SnapshotInfo, RbdError> {
        self.snapshot_by_name(name, &SnapshotNamespace::User)
            .cloned()
            .ok_or_else(|| RbdError::SnapshotNotFound(name.into()))
    }

    /// After a header change: re-read it and tell other clients.
    pub(super) async fn changed(&mut self) -> Result<(), RbdError> {
        self.refresh().await?;
        self.notify_header_update().await;
        Ok(())
    }
}
