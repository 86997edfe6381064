//! Deleting an image completely, for a replica whose primary is gone or that must be
//! resynced. Replaces what rbd-mirror's `ImageDeleter` has librbd do (snapshot purge,
//! `image::RemoveRequest`, `mirror::DisableRequest`), at the RADOS level.
//!
//!  MARK_DISABLING (mirror entry state DISABLING, so pool watchers let go)
//!    v
//!  REMOVE_SNAPSHOTS (each self-managed snap id, in the data pool if the image has one;
//!    |               the OSD trims their clones) + their maps
//!    v
//!  REMOVE_DATA (every data object HEAD or a snapshot could have, wherever they live) +
//!    |         HEAD's object map
//!    v
//!  DETACH_FROM_PARENT (a clone leaves its parent snapshot's children)
//!    v
//!  REMOVE_JOURNAL (data objects of every set still there, then the header)
//!    v
//!  REMOVE_HEADER, REMOVE_ID_OBJECT, REMOVE_FROM_DIRECTORY
//!    v
//!  REMOVE_MIRROR_ENTRY (and its statuses; notify rbd_mirroring) --> Ok
//!  each step treats "already gone" as done, so a rerun after a crash finishes the job.

use futures::{StreamExt, TryStreamExt, stream};

use super::RbdError;
use super::layout::object_count;
use crate::cls::{self, ClsResult, image as cls_image, journal as cls_journal};
use crate::format::Encode;
use crate::format::image::{ProtectionStatus, SnapshotInfo, oids};
use crate::format::journal::{data_oid as journal_data_oid, header_oid as journal_oid};
use crate::format::mirror::{MIRRORING_OBJECT, MirrorImageState};
use crate::format::notify::MirroringNotify;
use crate::rados::{IoCtx, NOSNAP, RadosResult};

/// Removals in flight at once.
const IN_FLIGHT: usize = 32;

/// Deletes image `image_id` and everything that belongs to it; a clone that was the last
/// to read a trashed parent snapshot purges it.
pub async fn remove_image<I: IoCtx>(io: &I, image_id: &str) -> Result<(), RbdError> {
    remove(io, image_id, true).await
}

/// [`remove_image`] before copying the image anew (a resync): a trashed parent snapshot
/// stays, since the new copy of the clone will read it again.
pub async fn remove_for_resync<I: IoCtx>(io: &I, image_id: &str) -> Result<(), RbdError> {
    remove(io, image_id, false).await
}

async fn remove<I: IoCtx>(io: &I, image_id: &str, purge: bool) -> Result<(), RbdError> {
    let mirror = match cls::mirror::image_get(io, image_id).await {
        Ok(m) => Some(m),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(m) = &mirror
        && m.state != MirrorImageState::Disabling
    {
        let mut disabling = m.clone();
        disabling.state = MirrorImageState::Disabling;
        cls::mirror::image_set(io, image_id, &disabling).await?;
    }

    let header = oids::header(image_id);
    if let Some(Layout {
        prefix,
        objects,
        snaps,
        data,
    }) = read_layout(io, &header).await?
    {
        for snap in &snaps {
            // A clone's parent stays (rbd-mirror's deleter waits for the clones too).
            if snap.child_count > 0 {
                return Err(RbdError::Invalid(format!(
                    "snapshot {} has {} clones",
                    snap.name, snap.child_count
                )));
            }
            // cls_rbd refuses (EBUSY) to remove a protected snapshot.
            cls_gone(
                cls_image::set_protection_status(
                    io,
                    &header,
                    snap.id,
                    ProtectionStatus::Unprotected,
                )
                .await,
            )?;
            gone(io.remove(&oids::object_map(image_id, Some(snap.id))).await)?;
            cls_gone(cls_image::snapshot_remove(io, &header, snap.id).await)?;
            data.selfmanaged_snap_remove(snap.id).await?;
        }
        remove_all(&data, (0..objects).map(|o| oids::data(&prefix, o))).await?;
    }
    gone(io.remove(&oids::object_map(image_id, None)).await)?;
    match cls_image::parent_get(io, &header).await {
        Ok(Some(link)) => super::clone::detach_child(io, image_id, &link, purge).await?,
        Err(e) if !e.is_not_found() => return Err(e.into()),
        _ => {}
    }
    remove_journal(io, image_id).await?;
    gone(io.remove(&header).await)?;

    let name = match cls::dir::get_name(io, image_id).await {
        Ok(name) => Some(name),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(name) = name {
        if cls::dir::id_of(io, &name)
            .await
            .is_ok_and(|id| id == image_id)
        {
            gone(io.remove(&oids::id(&name)).await)?;
        }
        cls_gone(cls::dir::remove_image(io, &name, image_id).await)?;
    }

    if let Some(m) = mirror {
        cls_gone(cls::mirror::image_remove(io, image_id).await)?;
        cls_gone(cls::mirror::image_status_remove(io, &m.global_image_id).await)?;
        let notify = MirroringNotify::ImageUpdated {
            state: MirrorImageState::Disabled,
            image_id: image_id.into(),
            global_image_id: m.global_image_id,
        };
        let timeout = super::image::NOTIFY_TIMEOUT;
        if let Err(e) = io
            .notify(MIRRORING_OBJECT, notify.to_bytes(), timeout)
            .await
        {
            tracing::warn!(image = %image_id, error = %e, "rbd_mirroring notify failed");
        }
    }
    Ok(())
}

/// Where an image's data lives.
struct Layout<I> {
    prefix: String,
    /// How many objects HEAD or any snapshot may have.
    objects: u64,
    snaps: Vec<SnapshotInfo>,
    /// The data pool (or the image's pool), which also allocated the snapshot ids.
    data: I,
}

/// `None` when the header is gone.
async fn read_layout<I: IoCtx>(io: &I, header: &str) -> Result<Option<Layout<I>>, RbdError> {
    let head = match cls_image::get_size(io, header, NOSNAP).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let data = super::image::data_ioctx(io, cls_image::get_data_pool(io, header).await?).await?;
    let snaps = cls_image::snapshot_list(io, header).await?;
    let largest = snaps.iter().map(|s| s.image_size).fold(head.size, u64::max);
    Ok(Some(Layout {
        prefix: cls_image::get_object_prefix(io, header).await?,
        objects: object_count(head.order, largest),
        snaps,
        data,
    }))
}

async fn remove_journal<I: IoCtx>(io: &I, image_id: &str) -> Result<(), RbdError> {
    let oid = journal_oid(image_id);
    let g = match cls_journal::geometry(io, &oid).await {
        Ok(g) => g,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let min = cls_journal::get_minimum_set(io, &oid).await?;
    let active = cls_journal::get_active_set(io, &oid).await?;
    let width = u64::from(g.splay_width);
    let pool = if g.pool_id < 0 {
        io.pool_id()
    } else {
        g.pool_id
    };
    let objects = (min * width..(active + 1) * width).map(|n| journal_data_oid(pool, image_id, n));
    remove_all(io, objects).await?;
    gone(io.remove(&oid).await).map_err(RbdError::from)
}

async fn remove_all<I: IoCtx>(io: &I, oids: impl Iterator<Item = String>) -> Result<(), RbdError> {
    stream::iter(oids)
        .map(|oid| async move { gone(io.remove(&oid).await) })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await
        .map_err(RbdError::from)
}

/// A removal of something already gone is done.
fn gone(r: RadosResult<()>) -> RadosResult<()> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// [`gone`] for object-class calls.
fn cls_gone(r: ClsResult<()>) -> ClsResult<()> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}
