//! cls_rbd's image header calls on `rbd_header.<id>` (spec §5.2–§5.3): size, features, flags,
//! snapshots and their protection and limit, metadata, striping, and the object map calls
//! on `rbd_object_map.*`. Replaces the image part of `cls/rbd/cls_rbd_client.cc`.
//!
//! Functions take the header object name, so the caller decides which image (and pool) it
//! speaks to. Snapshot ids are the image's own ids (self-managed RADOS snapshots).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{
    ClsResult, LIST_PAGE, decode_as, enc, first_page, list_map, list_rest, outputs, read,
    unexpected_reply, write,
};
use crate::format::image::{
    ChildAttachInput, ChildImageSpec, ObjectMapResizeInput, ObjectMapUpdateInput,
    OpFeaturesSetInput, ParentAttachInput, ParentImageSpec, ParentInfo, keys,
};
use crate::format::image::{
    CreateInput, GetFeaturesInput, GetFeaturesOutput, GetSizeOutput, ProtectionStatus,
    SetFeaturesInput, SetFlagsInput, SetProtectionStatusInput, SnapContext, SnapshotAddInput,
    SnapshotInfo, SnapshotNamespace, SnapshotRenameInput, StripeUnitCount,
};
use crate::format::object_map::ObjectMap;
use crate::rados::{Errno, IoCtx, NOSNAP, ReadOp, ReadResult, SnapId, WriteOp};

const CLASS: &str = "rbd";

/// Creates the header exclusively (`EEXIST` if it exists) with its size, order, features and
/// data object prefix; `data_pool_id` -1 keeps data in the header's pool.
pub async fn create<I: IoCtx>(io: &I, oid: &str, input: &CreateInput) -> ClsResult<()> {
    let op = WriteOp::new()
        .create(true)
        .exec(CLASS, "create", enc(input));
    io.operate_write(oid, op).await?;
    Ok(())
}

/// Order and size of the head (`NOSNAP`) or of a snapshot.
pub async fn get_size<I: IoCtx>(io: &I, oid: &str, snap: SnapId) -> ClsResult<GetSizeOutput> {
    read(io, oid, CLASS, "get_size", enc(&snap)).await
}

/// What an image refresh reads of the head's header. Raw `parent` key: the caller decides
/// what a clone means to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadState {
    pub size: GetSizeOutput,
    pub features: u64,
    pub flags: u64,
    pub object_prefix: String,
    pub snapc: SnapContext,
    pub metadata: BTreeMap<String, Bytes>,
    pub parent: Option<Bytes>,
}

/// [`HeadState`] in one round trip (one read op of six method calls and an omap read, as
/// librbd refreshes), where the calls one by one cost seven: a peer cluster is often far.
pub async fn head_state<I: IoCtx>(io: &I, oid: &str) -> ClsResult<HeadState> {
    let calls = [
        ("get_size", enc(&NOSNAP)),
        (
            "get_features",
            enc(&GetFeaturesInput {
                snap_id: NOSNAP,
                read_only: false,
            }),
        ),
        ("get_flags", enc(&NOSNAP)),
        ("get_object_prefix", Bytes::new()),
        ("get_snapcontext", Bytes::new()),
        ("metadata_list", first_page()),
    ];
    let methods = calls.clone().map(|(m, _)| m);
    let op = calls
        .into_iter()
        .fold(ReadOp::new(), |op, (m, input)| op.exec(CLASS, m, input));
    let mut reply = io
        .operate_read(oid, op.omap_get_vals_by_keys([keys::PARENT]))
        .await?;
    let parent = match reply.results.pop() {
        Some(ReadResult::Omap { mut entries, .. }) => entries.remove(keys::PARENT),
        _ => return Err(unexpected_reply(format!("{oid} parent"))),
    };
    let [size, features, flags, prefix, snapc, metadata] = outputs(oid, &methods, reply)?;
    let features: GetFeaturesOutput = decode_as(oid, CLASS, "get_features", features)?;
    let metadata: BTreeMap<String, Bytes> = decode_as(oid, CLASS, "metadata_list", metadata)?;
    let more = metadata.len() as u64 >= LIST_PAGE;
    Ok(HeadState {
        size: decode_as(oid, CLASS, "get_size", size)?,
        features: features.features,
        flags: decode_as(oid, CLASS, "get_flags", flags)?,
        object_prefix: decode_as(oid, CLASS, "get_object_prefix", prefix)?,
        snapc: decode_as(oid, CLASS, "get_snapcontext", snapc)?,
        metadata: list_rest(io, oid, CLASS, "metadata_list", metadata, more).await?,
        parent,
    })
}

/// Sets the head's size (the caller trims data objects and the object map).
pub async fn set_size<I: IoCtx>(io: &I, oid: &str, size: u64) -> ClsResult<()> {
    write(io, oid, CLASS, "set_size", enc(&size)).await
}

pub async fn get_features<I: IoCtx>(
    io: &I,
    oid: &str,
    snap: SnapId,
) -> ClsResult<GetFeaturesOutput> {
    read(
        io,
        oid,
        CLASS,
        "get_features",
        enc(&GetFeaturesInput {
            snap_id: snap,
            read_only: false,
        }),
    )
    .await
}

/// Sets the bits of `mask` to their value in `features`.
pub async fn set_features<I: IoCtx>(io: &I, oid: &str, features: u64, mask: u64) -> ClsResult<()> {
    write(
        io,
        oid,
        CLASS,
        "set_features",
        enc(&SetFeaturesInput { features, mask }),
    )
    .await
}

pub async fn get_object_prefix<I: IoCtx>(io: &I, oid: &str) -> ClsResult<String> {
    read(io, oid, CLASS, "get_object_prefix", Bytes::new()).await
}

/// The separate data pool's id, -1 for none.
pub async fn get_data_pool<I: IoCtx>(io: &I, oid: &str) -> ClsResult<i64> {
    read(io, oid, CLASS, "get_data_pool", Bytes::new()).await
}

pub async fn get_flags<I: IoCtx>(io: &I, oid: &str, snap: SnapId) -> ClsResult<u64> {
    read(io, oid, CLASS, "get_flags", enc(&snap)).await
}

/// Sets the bits of `mask` to their value in `flags`, on the head or a snapshot.
pub async fn set_flags<I: IoCtx>(
    io: &I,
    oid: &str,
    flags: u64,
    mask: u64,
    snap: SnapId,
) -> ClsResult<()> {
    write(
        io,
        oid,
        CLASS,
        "set_flags",
        enc(&SetFlagsInput {
            flags,
            mask,
            snap_id: snap,
        }),
    )
    .await
}

/// The snapshot context every data write must carry.
pub async fn get_snapcontext<I: IoCtx>(io: &I, oid: &str) -> ClsResult<SnapContext> {
    read(io, oid, CLASS, "get_snapcontext", Bytes::new()).await
}

/// `ENOENT` for an unknown snapshot id.
pub async fn snapshot_get<I: IoCtx>(io: &I, oid: &str, snap: SnapId) -> ClsResult<SnapshotInfo> {
    read(io, oid, CLASS, "snapshot_get", enc(&snap)).await
}

/// Every snapshot of the image, oldest first.
pub async fn snapshot_list<I: IoCtx>(io: &I, oid: &str) -> ClsResult<Vec<SnapshotInfo>> {
    let snapc = get_snapcontext(io, oid).await?;
    snapshots(io, oid, &snapc).await
}

/// The snapshots of `snapc` still in the header, oldest first: one round trip (a read op of
/// one `snapshot_get` per id), or one per snapshot when one was removed since `snapc`
/// was read (its call fails the whole op with `ENOENT`).
pub async fn snapshots<I: IoCtx>(
    io: &I,
    oid: &str,
    snapc: &SnapContext,
) -> ClsResult<Vec<SnapshotInfo>> {
    let ids: Vec<SnapId> = snapc.snaps.iter().rev().copied().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let op = (ids.iter()).fold(ReadOp::new(), |op, id| {
        op.exec(CLASS, "snapshot_get", enc(id))
    });
    match io.operate_read(oid, op).await {
        Ok(reply) => (reply.results.into_iter())
            .map(|r| match r {
                ReadResult::Data(out) => decode_as(oid, CLASS, "snapshot_get", out),
                _ => Err(unexpected_reply(format!("{oid} snapshot_get"))),
            })
            .collect(),
        Err(e) if e.errno == Errno::ENOENT => snapshots_one_by_one(io, oid, &ids).await,
        Err(e) => Err(e.into()),
    }
}

async fn snapshots_one_by_one<I: IoCtx>(
    io: &I,
    oid: &str,
    ids: &[SnapId],
) -> ClsResult<Vec<SnapshotInfo>> {
    let mut snaps = Vec::with_capacity(ids.len());
    for id in ids {
        match snapshot_get(io, oid, *id).await {
            Err(e) if e.is_not_found() => continue, // removed meanwhile
            other => snaps.push(other?),
        }
    }
    Ok(snaps)
}

/// Adds a snapshot with an id allocated by `selfmanaged_snap_create` (must be newer than the
/// header's `snap_seq`); `EEXIST` on a duplicate name.
pub async fn snapshot_add<I: IoCtx>(
    io: &I,
    oid: &str,
    snap: SnapId,
    name: &str,
    ns: SnapshotNamespace,
) -> ClsResult<()> {
    let input = SnapshotAddInput {
        name: name.into(),
        snap_id: snap,
        snapshot_namespace: ns,
    };
    write(io, oid, CLASS, "snapshot_add", enc(&input)).await
}

pub async fn snapshot_remove<I: IoCtx>(io: &I, oid: &str, snap: SnapId) -> ClsResult<()> {
    write(io, oid, CLASS, "snapshot_remove", enc(&snap)).await
}

pub async fn snapshot_rename<I: IoCtx>(
    io: &I,
    oid: &str,
    snap: SnapId,
    dst_name: &str,
) -> ClsResult<()> {
    let input = SnapshotRenameInput {
        src_snap_id: snap,
        dst_name: dst_name.into(),
    };
    write(io, oid, CLASS, "snapshot_rename", enc(&input)).await
}

/// Moves a snapshot to the trash namespace (kept while clones still use it).
pub async fn snapshot_trash_add<I: IoCtx>(io: &I, oid: &str, snap: SnapId) -> ClsResult<()> {
    write(io, oid, CLASS, "snapshot_trash_add", enc(&snap)).await
}

// ---- clones (librbd's AttachParent/AttachChild/DetachParent/DetachChild requests) ----

/// Links a child's header to its parent snapshot; the cls caps `overlap` at the child's
/// size. `EEXIST` when another parent is linked.
pub async fn parent_attach<I: IoCtx>(
    io: &I,
    oid: &str,
    parent: &ParentImageSpec,
    overlap: u64,
) -> ClsResult<()> {
    let input = ParentAttachInput {
        parent: parent.clone(),
        overlap,
        reattach: false,
    };
    write(io, oid, CLASS, "parent_attach", enc(&input)).await
}

/// A header's parent link (the `parent` key); `None` for an image that is no clone.
pub async fn parent_get<I: IoCtx>(io: &I, oid: &str) -> ClsResult<Option<ParentInfo>> {
    let op = ReadOp::new().omap_get_vals_by_keys([keys::PARENT]);
    let raw = match io.operate_read(oid, op).await?.results.pop() {
        Some(ReadResult::Omap { mut entries, .. }) => entries.remove(keys::PARENT),
        _ => return Err(unexpected_reply(format!("{oid} parent"))),
    };
    raw.map(|b| decode_as(oid, CLASS, "parent", b)).transpose()
}

/// Unlinks the head from its parent (flatten). Snapshots still reading through the parent
/// keep it unless the image has deep-flatten; `ENOENT` when the head has no overlap.
pub async fn parent_detach<I: IoCtx>(io: &I, oid: &str) -> ClsResult<()> {
    write(io, oid, CLASS, "parent_detach", Bytes::new()).await
}

/// The parent overlap of the head (`NOSNAP`) or of a snapshot; `None` without a parent.
pub async fn parent_overlap_get<I: IoCtx>(
    io: &I,
    oid: &str,
    snap: SnapId,
) -> ClsResult<Option<u64>> {
    read(io, oid, CLASS, "parent_overlap_get", enc(&snap)).await
}

/// Records a clone-v2 child on its parent's snapshot (on the parent's header); `EEXIST`
/// when it is recorded already.
pub async fn child_attach<I: IoCtx>(
    io: &I,
    parent_oid: &str,
    snap: SnapId,
    child: &ChildImageSpec,
) -> ClsResult<()> {
    child_op(io, parent_oid, "child_attach", snap, child).await
}

/// Forgets a clone-v2 child on its parent's snapshot; `ENOENT` when it is not recorded.
pub async fn child_detach<I: IoCtx>(
    io: &I,
    parent_oid: &str,
    snap: SnapId,
    child: &ChildImageSpec,
) -> ClsResult<()> {
    child_op(io, parent_oid, "child_detach", snap, child).await
}

async fn child_op<I: IoCtx>(
    io: &I,
    parent_oid: &str,
    method: &'static str,
    snap: SnapId,
    child: &ChildImageSpec,
) -> ClsResult<()> {
    let input = ChildAttachInput {
        snap_id: snap,
        child: child.clone(),
    };
    write(io, parent_oid, CLASS, method, enc(&input)).await
}

/// The clone-v2 children of a snapshot; empty when it has none.
pub async fn children_list<I: IoCtx>(
    io: &I,
    oid: &str,
    snap: SnapId,
) -> ClsResult<std::collections::BTreeSet<ChildImageSpec>> {
    match read(io, oid, CLASS, "children_list", enc(&snap)).await {
        Err(e) if e.is_not_found() => {
            // ENOENT means "no children" once the snapshot is known to exist.
            snapshot_get(io, oid, snap).await?;
            Ok(Default::default())
        }
        other => other,
    }
}

/// Sets the operation feature bits of `mask` to those in `op_features`.
pub async fn op_features_set<I: IoCtx>(
    io: &I,
    oid: &str,
    op_features: u64,
    mask: u64,
) -> ClsResult<()> {
    let input = OpFeaturesSetInput { op_features, mask };
    write(io, oid, CLASS, "op_features_set", enc(&input)).await
}

/// A data object's copy-up: `data` (the parent's bytes for the object, maybe short) becomes
/// the object only if it does not exist yet, so racing or repeated copy-ups are harmless.
pub fn copyup(op: WriteOp, data: Bytes) -> WriteOp {
    op.exec(CLASS, "copyup", data)
}

pub async fn get_protection_status<I: IoCtx>(
    io: &I,
    oid: &str,
    snap: SnapId,
) -> ClsResult<ProtectionStatus> {
    read(io, oid, CLASS, "get_protection_status", enc(&snap)).await
}

pub async fn set_protection_status<I: IoCtx>(
    io: &I,
    oid: &str,
    snap: SnapId,
    status: ProtectionStatus,
) -> ClsResult<()> {
    let input = SetProtectionStatusInput {
        snap_id: snap,
        status,
    };
    write(io, oid, CLASS, "set_protection_status", enc(&input)).await
}

/// The snapshot count limit (`u64::MAX` when unlimited).
pub async fn snapshot_get_limit<I: IoCtx>(io: &I, oid: &str) -> ClsResult<u64> {
    read(io, oid, CLASS, "snapshot_get_limit", Bytes::new()).await
}

pub async fn snapshot_set_limit<I: IoCtx>(io: &I, oid: &str, limit: u64) -> ClsResult<()> {
    write(io, oid, CLASS, "snapshot_set_limit", enc(&limit)).await
}

/// Sets image metadata (`rbd image-meta set`), several keys at once.
pub async fn metadata_set<I: IoCtx>(
    io: &I,
    oid: &str,
    kv: &BTreeMap<String, Bytes>,
) -> ClsResult<()> {
    write(io, oid, CLASS, "metadata_set", enc(kv)).await
}

pub async fn metadata_remove<I: IoCtx>(io: &I, oid: &str, key: &str) -> ClsResult<()> {
    write(io, oid, CLASS, "metadata_remove", enc(key)).await
}

/// Every metadata key of the image with its raw value.
pub async fn metadata_list<I: IoCtx>(io: &I, oid: &str) -> ClsResult<BTreeMap<String, Bytes>> {
    list_map(io, oid, CLASS, "metadata_list").await
}

/// Striping of a STRIPINGV2 image; `None` for the default layout (Ceph answers `ENOEXEC`).
pub async fn get_stripe_unit_count<I: IoCtx>(
    io: &I,
    oid: &str,
) -> ClsResult<Option<StripeUnitCount>> {
    match read(io, oid, CLASS, "get_stripe_unit_count", Bytes::new()).await {
        Err(e) if e.is(Errno::ENOEXEC) => Ok(None),
        other => other.map(Some),
    }
}

pub async fn set_stripe_unit_count<I: IoCtx>(
    io: &I,
    oid: &str,
    s: &StripeUnitCount,
) -> ClsResult<()> {
    write(io, oid, CLASS, "set_stripe_unit_count", enc(s)).await
}

/// The feature bits this OSD's cls_rbd supports (any object will do).
pub async fn get_all_features<I: IoCtx>(io: &I, oid: &str) -> ClsResult<u64> {
    read(io, oid, CLASS, "get_all_features", Bytes::new()).await
}

/// The object map of the head or of a snapshot (by its object name).
pub async fn object_map_load<I: IoCtx>(io: &I, map_oid: &str) -> ClsResult<ObjectMap> {
    read(io, map_oid, CLASS, "object_map_load", Bytes::new()).await
}

/// Creates or resizes an object map; new entries get `default_state`.
pub async fn object_map_resize<I: IoCtx>(
    io: &I,
    map_oid: &str,
    object_count: u64,
    default_state: u8,
) -> ClsResult<()> {
    let input = ObjectMapResizeInput {
        object_count,
        default_state,
    };
    write(io, map_oid, CLASS, "object_map_resize", enc(&input)).await
}

/// Sets objects `[start, end)` to `state` (only those currently in `expected`, if given).
pub async fn object_map_update<I: IoCtx>(
    io: &I,
    map_oid: &str,
    input: &ObjectMapUpdateInput,
) -> ClsResult<()> {
    write(io, map_oid, CLASS, "object_map_update", enc(input)).await
}
