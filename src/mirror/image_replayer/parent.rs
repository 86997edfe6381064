//! CREATE_LOCAL_IMAGE for a clone: the replica's parent is the local replica of the
//! primary's parent (found by its global id, in the pool of the same name and the same
//! namespace), at the snapshot of the same name. Replaces the clone half of upstream's
//! `image_replayer/CreateImageRequest`.
//!
//! Until the parent and that snapshot are replicated (the parent replays on its own,
//! maybe on another instance) the bootstrap fails with a transient error and is retried.

use crate::cls::{self, image as cls_image};
use crate::format::image::{ParentImageSpec, SnapshotInfo, SnapshotNamespace, oids};
use crate::format::mirror::MirrorImageState;
use crate::rados::IoCtx;
use crate::rbd::{self, CloneOf, Image};

use super::{PoolCtx, ReplayError};

/// The local parent snapshot for the replica of `remote_image_id`; `None` when the
/// primary is not a clone (or a flattened one).
pub async fn local_parent<I: IoCtx>(
    ctx: &PoolCtx<I>,
    remote_image_id: &str,
) -> Result<Option<CloneOf>, ReplayError> {
    let header = oids::header(remote_image_id);
    let Some(link) = cls_image::parent_get(&ctx.remote_io, &header).await? else {
        return Ok(None);
    };
    let remote_io = rbd::clone::pool_in(&ctx.remote_io, link.pool_id, &link.pool_namespace).await?;
    let ns = match link.pool_namespace.as_str() {
        "" => String::new(),
        ns => format!("{ns}/"),
    };
    let name = match cls::dir::get_name(&remote_io, &link.image_id).await {
        Ok(name) => name,
        Err(e) if e.is_not_found() => link.image_id.clone(), // in the trash there
        Err(e) => return Err(e.into()),
    };
    let who = format!("parent {}/{ns}{name}", remote_io.pool_name());
    let waiting = |why: String| ReplayError::WaitingForParent(format!("{who}: {why}"));
    let global_id = match cls::mirror::image_get(&remote_io, &link.image_id).await {
        Ok(m) if m.state == MirrorImageState::Enabled => m.global_image_id,
        Ok(_) => return Err(waiting("not mirrored".into())),
        Err(e) if e.is_not_found() => return Err(waiting("not mirrored".into())),
        Err(e) => return Err(e.into()),
    };
    let snap =
        cls_image::snapshot_get(&remote_io, &oids::header(&link.image_id), link.snap_id).await?;
    let local_io = match ctx.local_io.pool_by_name(remote_io.pool_name()).await {
        Ok(io) => io.with_namespace(&link.pool_namespace),
        Err(e) if e.is_not_found() => return Err(waiting("no pool of that name here".into())),
        Err(e) => return Err(e.into()),
    };
    let local_id = match cls::mirror::image_get_image_id(&local_io, &global_id).await {
        Ok(id) => id,
        Err(e) if e.is_not_found() => return Err(waiting("not replicated yet".into())),
        Err(e) => return Err(e.into()),
    };
    let parent = Image::open(local_io.clone(), &local_id).await?;
    let Some(local_snap) = parent.snapshots().iter().find(|s| same_snapshot(s, &snap)) else {
        return Err(waiting(format!(
            "snapshot {} is not replicated yet",
            snap.name
        )));
    };
    Ok(Some(CloneOf {
        parent: ParentImageSpec {
            pool_id: local_io.pool_id(),
            pool_namespace: link.pool_namespace,
            image_id: local_id,
            snap_id: local_snap.id,
        },
        overlap: local_snap.image_size,
    }))
}

/// Snapshots are the same across sites by name and namespace; a trashed one by the name
/// it had (its own name is a random uuid on each site).
pub fn same_snapshot(local: &SnapshotInfo, remote: &SnapshotInfo) -> bool {
    match remote.snapshot_namespace {
        SnapshotNamespace::Trash { .. } => local.snapshot_namespace == remote.snapshot_namespace,
        _ => local.name == remote.name && local.snapshot_namespace == remote.snapshot_namespace,
    }
}
