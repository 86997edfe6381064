//! cls_rbd's mirroring calls on `rbd_mirroring` (spec §2.6): the pool's mirror mode, uuid and
//! peers, the mirrored images and their global ids, and the per-site image statuses that
//! `rbd mirror pool status` shows. Replaces the `mirror_*` part of `cls/rbd/cls_rbd_client.cc`.
//!
//! Every function takes the pool's [`IoCtx`] (with its RADOS namespace); the object is always
//! [`MIRRORING_OBJECT`]. The instance and image-map calls live on `rbd_mirror_leader`.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{ClsResult, LIST_PAGE, enc, list_map, read, write};
use crate::format::codec::ListInput;
use crate::format::entity::EntityInst;
use crate::format::mirror::{
    MIRROR_LEADER_OBJECT, MIRRORING_OBJECT, MirrorImage, MirrorImageSetInput,
    MirrorImageSiteStatus, MirrorImageStatus, MirrorImageStatusListOutput,
    MirrorImageStatusSetInput, MirrorMode, MirrorPeer, MirrorPeerDirection, MirrorPeerPingInput,
    MirrorPeerSetDirectionInput, MirrorPeerSetInput,
};
use crate::rados::IoCtx;

const CLASS: &str = "rbd";
const OID: &str = MIRRORING_OBJECT;

/// The pool's mirror uuid (its identity as a mirroring site); `ENOENT` if never set.
pub async fn uuid_get<I: IoCtx>(io: &I) -> ClsResult<String> {
    read(io, OID, CLASS, "mirror_uuid_get", Bytes::new()).await
}

/// `EINVAL` when empty or when mirroring is already enabled.
pub async fn uuid_set<I: IoCtx>(io: &I, uuid: &str) -> ClsResult<()> {
    write(io, OID, CLASS, "mirror_uuid_set", enc(uuid)).await
}

/// The pool's mirror mode; a missing object or key means disabled.
pub async fn mode_get<I: IoCtx>(io: &I) -> ClsResult<MirrorMode> {
    match read(io, OID, CLASS, "mirror_mode_get", Bytes::new()).await {
        Err(e) if e.is_not_found() => Ok(MirrorMode::Disabled),
        other => other,
    }
}

/// Enabling needs the uuid set (`EINVAL`); disabling needs no peers (`EBUSY`).
pub async fn mode_set<I: IoCtx>(io: &I, mode: MirrorMode) -> ClsResult<()> {
    write(io, OID, CLASS, "mirror_mode_set", enc(&mode)).await
}

pub async fn peer_list<I: IoCtx>(io: &I) -> ClsResult<Vec<MirrorPeer>> {
    read(io, OID, CLASS, "mirror_peer_list", Bytes::new()).await
}

pub async fn peer_add<I: IoCtx>(io: &I, peer: &MirrorPeer) -> ClsResult<()> {
    write(io, OID, CLASS, "mirror_peer_add", enc(peer)).await
}

pub async fn peer_remove<I: IoCtx>(io: &I, uuid: &str) -> ClsResult<()> {
    write(io, OID, CLASS, "mirror_peer_remove", enc(uuid)).await
}

pub async fn peer_set_client<I: IoCtx>(io: &I, uuid: &str, client_name: &str) -> ClsResult<()> {
    let input = MirrorPeerSetInput {
        uuid: uuid.into(),
        value: client_name.into(),
    };
    write(io, OID, CLASS, "mirror_peer_set_client", enc(&input)).await
}

pub async fn peer_set_cluster<I: IoCtx>(io: &I, uuid: &str, site_name: &str) -> ClsResult<()> {
    let input = MirrorPeerSetInput {
        uuid: uuid.into(),
        value: site_name.into(),
    };
    write(io, OID, CLASS, "mirror_peer_set_cluster", enc(&input)).await
}

pub async fn peer_set_direction<I: IoCtx>(
    io: &I,
    uuid: &str,
    direction: MirrorPeerDirection,
) -> ClsResult<()> {
    let input = MirrorPeerSetDirectionInput {
        uuid: uuid.into(),
        direction,
    };
    write(io, OID, CLASS, "mirror_peer_set_direction", enc(&input)).await
}

/// Announces this site to a remote pool (called on the *remote* `rbd_mirroring`): the remote
/// learns our mirror uuid and last-seen time, creating a TX-only peer if it had none.
pub async fn peer_ping<I: IoCtx>(io: &I, site_name: &str, mirror_uuid: &str) -> ClsResult<()> {
    let input = MirrorPeerPingInput {
        site_name: site_name.into(),
        mirror_uuid: mirror_uuid.into(),
        direction: MirrorPeerDirection::Tx,
    };
    write(io, OID, CLASS, "mirror_peer_ping", enc(&input)).await
}

/// Every mirrored image of the pool: local image id → global image id.
pub async fn image_list<I: IoCtx>(io: &I) -> ClsResult<BTreeMap<String, String>> {
    list_map(io, OID, CLASS, "mirror_image_list").await
}

/// The local image id of a global image id; `ENOENT` if not mirrored here.
pub async fn image_get_image_id<I: IoCtx>(io: &I, global_image_id: &str) -> ClsResult<String> {
    read(
        io,
        OID,
        CLASS,
        "mirror_image_get_image_id",
        enc(global_image_id),
    )
    .await
}

pub async fn image_get<I: IoCtx>(io: &I, image_id: &str) -> ClsResult<MirrorImage> {
    read(io, OID, CLASS, "mirror_image_get", enc(image_id)).await
}

/// Writes `image_<id>` and `global_<gid>`; `EEXIST` if the global id maps to another image.
pub async fn image_set<I: IoCtx>(io: &I, image_id: &str, image: &MirrorImage) -> ClsResult<()> {
    let input = MirrorImageSetInput {
        image_id: image_id.into(),
        image: image.clone(),
    };
    write(io, OID, CLASS, "mirror_image_set", enc(&input)).await
}

/// Only for images in state DISABLING (`EBUSY` otherwise); also drops their statuses.
pub async fn image_remove<I: IoCtx>(io: &I, image_id: &str) -> ClsResult<()> {
    write(io, OID, CLASS, "mirror_image_remove", enc(image_id)).await
}

/// Records a site status for an image. An empty `mirror_uuid` is this site's own status;
/// otherwise it is a remote site's status reported into this pool. Silently ignored by Ceph
/// for unknown or not-enabled images.
pub async fn image_status_set<I: IoCtx>(
    io: &I,
    global_image_id: &str,
    status: &MirrorImageSiteStatus,
) -> ClsResult<()> {
    let input = MirrorImageStatusSetInput {
        global_image_id: global_image_id.into(),
        status: status.clone(),
    };
    write(io, OID, CLASS, "mirror_image_status_set", enc(&input)).await
}

/// Removes the local and every remote status of an image.
pub async fn image_status_remove<I: IoCtx>(io: &I, global_image_id: &str) -> ClsResult<()> {
    write(
        io,
        OID,
        CLASS,
        "mirror_image_status_remove",
        enc(global_image_id),
    )
    .await
}

/// `ENOENT` when the image has no status at all.
pub async fn image_status_get<I: IoCtx>(
    io: &I,
    global_image_id: &str,
) -> ClsResult<MirrorImageStatus> {
    read(
        io,
        OID,
        CLASS,
        "mirror_image_status_get",
        enc(global_image_id),
    )
    .await
}

/// Every mirrored image with its status (images without a status have none in `statuses`).
pub async fn image_status_list<I: IoCtx>(io: &I) -> ClsResult<MirrorImageStatusListOutput> {
    let mut all = MirrorImageStatusListOutput {
        images: BTreeMap::new(),
        statuses: BTreeMap::new(),
    };
    loop {
        let start_after = all.images.keys().next_back().cloned().unwrap_or_default();
        let input = ListInput {
            start_after,
            max_return: LIST_PAGE,
        };
        let page: MirrorImageStatusListOutput =
            read(io, OID, CLASS, "mirror_image_status_list", enc(&input)).await?;
        let full = page.images.len() as u64 >= LIST_PAGE;
        all.images.extend(page.images);
        all.statuses.extend(page.statuses);
        if !full {
            return Ok(all);
        }
    }
}

/// Drops statuses written by clients that no longer watch `rbd_mirroring`.
pub async fn image_status_remove_down<I: IoCtx>(io: &I) -> ClsResult<()> {
    write(
        io,
        OID,
        CLASS,
        "mirror_image_status_remove_down",
        Bytes::new(),
    )
    .await
}

/// The mirror daemons registered on this pool's `rbd_mirror_leader` (by instance id);
/// `ENOENT` before any registered.
pub async fn instances_list<I: IoCtx>(io: &I) -> ClsResult<Vec<String>> {
    read(
        io,
        MIRROR_LEADER_OBJECT,
        CLASS,
        "mirror_instances_list",
        Bytes::new(),
    )
    .await
}

pub async fn instances_add<I: IoCtx>(io: &I, instance_id: &str) -> ClsResult<()> {
    write(
        io,
        MIRROR_LEADER_OBJECT,
        CLASS,
        "mirror_instances_add",
        enc(instance_id),
    )
    .await
}

pub async fn instances_remove<I: IoCtx>(io: &I, instance_id: &str) -> ClsResult<()> {
    write(
        io,
        MIRROR_LEADER_OBJECT,
        CLASS,
        "mirror_instances_remove",
        enc(instance_id),
    )
    .await
}

/// The client that wrote an image's local status; `ESTALE` if it no longer watches.
pub async fn image_instance_get<I: IoCtx>(io: &I, global_image_id: &str) -> ClsResult<EntityInst> {
    read(
        io,
        OID,
        CLASS,
        "mirror_image_instance_get",
        enc(global_image_id),
    )
    .await
}
