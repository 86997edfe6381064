//! cls_rbd's snapshot methods on an image header through the typed client
//! (`rbd_relay::cls::image`), on both backends: snap_seq rules on add, duplicates, the snap
//! context (newest first), per-snapshot size and flags, rename, protection (needs
//! layering), the snapshot limit, and the trash namespace with its OPERATIONS feature bit.

use std::collections::BTreeMap;

use bytes::Bytes;
use rbd_relay::cls::image as img;
use rbd_relay::format::Decode;
use rbd_relay::format::image::{
    CEPH_NOSNAP, ProtectionStatus, SnapContext, SnapshotNamespace, SnapshotRecord, features as f,
};
use rbd_relay::rados::{Errno, IoCtx, Rados};

use crate::cls_rbd_image::{MIB, header};
use crate::cls_rbd_mirror::{Checks, r};
use crate::harness::name;

pub async fn image_snapshots<R: Rados>(_c: &R, io: &R::IoCtx) {
    let mut c = Checks::default();
    let user = || SnapshotNamespace::User;
    c.eq(
        "add to a missing header",
        r(img::snapshot_add(io, &name("rbd_header"), 1, "a", user()).await),
        Err(Errno::ENOENT),
    );
    let oid = header(io, f::LAYERING).await;
    c.eq(
        "empty snapc",
        r(img::get_snapcontext(io, &oid).await),
        Ok(SnapContext {
            seq: 0,
            snaps: vec![],
        }),
    );
    img::set_flags(io, &oid, 1, 1, CEPH_NOSNAP).await.unwrap();
    c.eq(
        "add",
        r(img::snapshot_add(io, &oid, 5, "a", user()).await),
        Ok(()),
    );
    c.eq(
        "older id",
        r(img::snapshot_add(io, &oid, 3, "b", user()).await),
        Err(Errno::ESTALE),
    );
    c.eq(
        "same id",
        r(img::snapshot_add(io, &oid, 5, "b", user()).await),
        Err(Errno::EEXIST),
    );
    c.eq(
        "same name",
        r(img::snapshot_add(io, &oid, 7, "a", user()).await),
        Err(Errno::EEXIST),
    );
    c.eq(
        "beyond max snap",
        r(img::snapshot_add(io, &oid, u64::MAX - 1, "m", user()).await),
        Err(Errno::EINVAL),
    );
    let unknown = SnapshotNamespace::Unknown {
        namespace_type: 9,
        body: Default::default(),
    };
    c.eq(
        "unknown namespace",
        r(img::snapshot_add(io, &oid, 6, "u", unknown).await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "snapc after refusals",
        r(img::get_snapcontext(io, &oid).await).map(|s| s.seq),
        Ok(5),
    );
    img::set_size(io, &oid, 32 * MIB).await.unwrap();
    c.eq(
        "add second",
        r(img::snapshot_add(io, &oid, 8, "b", user()).await),
        Ok(()),
    );
    c.eq(
        "snapc",
        r(img::get_snapcontext(io, &oid).await),
        Ok(SnapContext {
            seq: 8,
            snaps: vec![8, 5],
        }),
    );
    let info = img::snapshot_get(io, &oid, 5).await.unwrap();
    c.eq(
        "snap info",
        (
            info.id,
            info.name.clone(),
            info.image_size,
            info.snapshot_namespace.clone(),
            info.child_count,
        ),
        (5, "a".to_string(), 16 * MIB, user(), 0),
    );
    c.eq("snap timestamp", info.timestamp.is_zero(), false);
    let stored = io.omap_get_all(&oid, "snapshot_").await.unwrap();
    let record = SnapshotRecord::from_bytes(stored["snapshot_0000000000000005"].clone()).unwrap();
    c.eq(
        "stored record",
        (
            record.protection_status,
            record.flags,
            record.parent_overlap,
        ),
        (ProtectionStatus::Unprotected, 1, None),
    );
    c.eq(
        "snap size",
        r(img::get_size(io, &oid, 5).await).map(|s| s.size),
        Ok(16 * MIB),
    );
    c.eq(
        "snap flags inherited",
        r(img::get_flags(io, &oid, 5).await),
        Ok(1),
    );
    c.eq(
        "snap flags set",
        r(img::set_flags(io, &oid, 2, 3, 5).await),
        Ok(()),
    );
    c.eq("snap flags", r(img::get_flags(io, &oid, 5).await), Ok(2));
    c.eq(
        "get missing",
        r(img::snapshot_get(io, &oid, 6).await).map(|_| ()),
        Err(Errno::ENOENT),
    );
    c.eq(
        "rename to taken",
        r(img::snapshot_rename(io, &oid, 5, "b").await),
        Err(Errno::EEXIST),
    );
    c.eq(
        "rename to own name",
        r(img::snapshot_rename(io, &oid, 5, "a").await),
        Err(Errno::EEXIST),
    );
    c.eq(
        "rename missing",
        r(img::snapshot_rename(io, &oid, 6, "z").await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "rename",
        r(img::snapshot_rename(io, &oid, 5, "c").await),
        Ok(()),
    );
    c.eq(
        "renamed",
        r(img::snapshot_get(io, &oid, 5).await).map(|i| i.name),
        Ok("c".to_string()),
    );

    c.eq(
        "protection",
        r(img::get_protection_status(io, &oid, 5).await),
        Ok(ProtectionStatus::Unprotected),
    );
    c.eq(
        "protect",
        r(img::set_protection_status(io, &oid, 5, ProtectionStatus::Protected).await),
        Ok(()),
    );
    c.eq(
        "protected",
        r(img::get_protection_status(io, &oid, 5).await),
        Ok(ProtectionStatus::Protected),
    );
    c.eq(
        "remove protected",
        r(img::snapshot_remove(io, &oid, 5).await),
        Err(Errno::EBUSY),
    );
    c.eq(
        "bad status",
        r(img::set_protection_status(io, &oid, 5, ProtectionStatus::Other(3)).await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "protect missing",
        r(img::set_protection_status(io, &oid, 6, ProtectionStatus::Protected).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "protection of missing",
        r(img::get_protection_status(io, &oid, 6).await),
        Err(Errno::ENOENT),
    );
    img::set_protection_status(io, &oid, 5, ProtectionStatus::Unprotected)
        .await
        .unwrap();
    let plain = header(io, f::EXCLUSIVE_LOCK).await;
    img::snapshot_add(io, &plain, 1, "p", user()).await.unwrap();
    c.eq(
        "protect without layering",
        r(img::set_protection_status(io, &plain, 1, ProtectionStatus::Protected).await),
        Err(Errno::ENOEXEC),
    );
    c.eq(
        "protect on a missing header",
        r(
            img::set_protection_status(io, &name("rbd_header"), 1, ProtectionStatus::Protected)
                .await,
        ),
        Err(Errno::ENOENT),
    );

    c.eq(
        "no limit",
        r(img::snapshot_get_limit(io, &oid).await),
        Ok(u64::MAX),
    );
    c.eq(
        "limit below count",
        r(img::snapshot_set_limit(io, &oid, 1).await),
        Err(Errno::ERANGE),
    );
    c.eq(
        "limit",
        r(img::snapshot_set_limit(io, &oid, 2).await),
        Ok(()),
    );
    c.eq(
        "limit read",
        r(img::snapshot_get_limit(io, &oid).await),
        Ok(2),
    );
    c.eq(
        "add over limit",
        r(img::snapshot_add(io, &oid, 9, "d", user()).await),
        Err(Errno(libc::EDQUOT)),
    );
    c.eq(
        "unlimit",
        r(img::snapshot_set_limit(io, &oid, u64::MAX).await),
        Ok(()),
    );
    c.eq(
        "unlimit again",
        r(img::snapshot_set_limit(io, &oid, u64::MAX).await),
        Ok(()),
    );
    c.eq(
        "add after unlimit",
        r(img::snapshot_add(io, &oid, 9, "d", user()).await),
        Ok(()),
    );
    let fresh = header(io, 0).await;
    c.eq(
        "limit 0",
        r(img::snapshot_set_limit(io, &fresh, 0).await),
        Ok(()),
    );
    c.eq(
        "first snap at limit 0",
        r(img::snapshot_add(io, &fresh, 1, "x", user()).await),
        Ok(()),
    );
    c.eq(
        "second snap at limit 0",
        r(img::snapshot_add(io, &fresh, 2, "y", user()).await),
        Err(Errno(libc::EDQUOT)),
    );

    c.eq(
        "trash",
        r(img::snapshot_trash_add(io, &oid, 9).await),
        Ok(()),
    );
    let t = img::snapshot_get(io, &oid, 9).await.unwrap();
    c.eq(
        "trash namespace",
        t.snapshot_namespace,
        SnapshotNamespace::Trash {
            original_name: "d".into(),
            original_snapshot_namespace_type: 0,
        },
    );
    c.eq("trash name", t.name.len(), 36);
    c.eq(
        "operations feature",
        r(img::get_features(io, &oid, CEPH_NOSNAP).await).map(|o| o.features),
        Ok(f::LAYERING | f::OPERATIONS),
    );
    c.eq(
        "trash twice",
        r(img::snapshot_trash_add(io, &oid, 9).await),
        Err(Errno::EEXIST),
    );
    c.eq(
        "trash missing",
        r(img::snapshot_trash_add(io, &oid, 6).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "rename trashed",
        r(img::snapshot_rename(io, &oid, 9, "e").await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "same name in another namespace",
        r(img::snapshot_add(io, &oid, 10, "d", user()).await),
        Ok(()),
    );
    c.eq(
        "remove trashed",
        r(img::snapshot_remove(io, &oid, 9).await),
        Ok(()),
    );
    c.eq(
        "operations feature cleared",
        r(img::get_features(io, &oid, CEPH_NOSNAP).await).map(|o| o.features),
        Ok(f::LAYERING),
    );
    c.eq("remove", r(img::snapshot_remove(io, &oid, 5).await), Ok(()));
    c.eq(
        "remove again",
        r(img::snapshot_remove(io, &oid, 5).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "snapc at end",
        r(img::get_snapcontext(io, &oid).await),
        Ok(SnapContext {
            seq: 10,
            snaps: vec![10, 8],
        }),
    );
    c.eq(
        "snapshot list",
        r(img::snapshot_list(io, &oid).await)
            .map(|l| l.into_iter().map(|s| s.name).collect::<Vec<_>>()),
        Ok(vec!["b".to_string(), "d".into()]),
    );
    // A snap context read before a removal: one call of the batch fails, the rest is read.
    let stale = SnapContext {
        seq: 10,
        snaps: vec![10, 8, 5],
    };
    c.eq(
        "snapshots of a stale snapc",
        r(img::snapshots(io, &oid, &stale).await)
            .map(|l| l.into_iter().map(|s| s.id).collect::<Vec<_>>()),
        Ok(vec![8, 10]),
    );
    // The head's state in one op equals the calls one by one; metadata past a first page.
    let meta: BTreeMap<String, Bytes> = (0..1030)
        .map(|i| (format!("k{i:04}"), Bytes::from(format!("v{i}"))))
        .collect();
    img::metadata_set(io, &oid, &meta).await.unwrap();
    let parent = BTreeMap::from([("parent".to_string(), Bytes::from_static(b"raw"))]);
    io.omap_set(&oid, parent).await.unwrap();
    let head = img::head_state(io, &oid).await.unwrap();
    c.eq("head state: metadata", head.metadata, meta);
    c.eq(
        "head state: parent",
        head.parent,
        Some(Bytes::from_static(b"raw")),
    );
    c.eq(
        "head state: size",
        Ok(head.size),
        r(img::get_size(io, &oid, CEPH_NOSNAP).await),
    );
    c.eq(
        "head state: features",
        Ok(head.features),
        r(img::get_features(io, &oid, CEPH_NOSNAP).await).map(|o| o.features),
    );
    c.eq(
        "head state: flags",
        Ok(head.flags),
        r(img::get_flags(io, &oid, CEPH_NOSNAP).await),
    );
    c.eq(
        "head state: prefix",
        Ok(head.object_prefix),
        r(img::get_object_prefix(io, &oid).await),
    );
    c.eq(
        "head state: snapc",
        Ok(head.snapc),
        r(img::get_snapcontext(io, &oid).await),
    );
    c.eq(
        "head state of a missing header",
        r(img::head_state(io, &name("rbd_header")).await).map(|_| ()),
        Err(Errno::ENOENT),
    );
    c.done();
}
