//! cls_rbd's clone methods through the typed client (`rbd_relay::cls::image`), on both
//! backends: the child's parent link (attach, overlap capped and shrunk with the size,
//! per-snapshot overlap, detach with and without deep-flatten), the parent snapshot's
//! clone-v2 children (attach, list, detach, what they block) with the op feature bits,
//! and a data object's copy-up.

use bytes::Bytes;
use rbd_relay::cls::image as img;
use rbd_relay::format::image::{
    CEPH_NOSNAP, ChildImageSpec, ParentImageSpec, ParentInfo, SnapshotNamespace, features as f,
};
use rbd_relay::rados::{Errno, IoCtx, NOSNAP, Rados, ReadOp, WriteOp};

use crate::cls_rbd_image::{MIB, header};
use crate::cls_rbd_mirror::{Checks, r};
use crate::harness::name;

fn parent_spec(snap_id: u64) -> ParentImageSpec {
    ParentImageSpec {
        pool_id: 1,
        pool_namespace: String::new(),
        image_id: "parentid".into(),
        snap_id,
    }
}

async fn features<I: IoCtx>(io: &I, oid: &str) -> Result<u64, Errno> {
    r(img::get_features(io, oid, CEPH_NOSNAP).await).map(|o| o.features)
}

pub async fn image_clones<R: Rados>(_c: &R, io: &R::IoCtx) {
    let mut c = Checks::default();
    let user = || SnapshotNamespace::User;

    // ---- the child's side ----
    let plain = header(io, 0).await;
    c.eq(
        "attach without layering",
        r(img::parent_attach(io, &plain, &parent_spec(4), MIB).await),
        Err(Errno::ENOEXEC),
    );
    let child = header(io, f::LAYERING | f::DEEP_FLATTEN).await;
    c.eq(
        "attach with no overlap",
        r(img::parent_attach(io, &child, &parent_spec(4), 0).await),
        Err(Errno::EINVAL),
    );
    c.eq("no parent", r(img::parent_get(io, &child).await), Ok(None));
    c.eq(
        "no overlap",
        r(img::parent_overlap_get(io, &child, CEPH_NOSNAP).await),
        Ok(None),
    );
    c.eq(
        "attach",
        r(img::parent_attach(io, &child, &parent_spec(4), 64 * MIB).await),
        Ok(()),
    );
    c.eq(
        "overlap capped at the size",
        r(img::parent_overlap_get(io, &child, CEPH_NOSNAP).await),
        Ok(Some(16 * MIB)),
    );
    c.eq(
        "link",
        r(img::parent_get(io, &child).await),
        Ok(Some(ParentInfo {
            pool_id: 1,
            pool_namespace: String::new(),
            image_id: "parentid".into(),
            snap_id: 4,
            head_overlap: Some(16 * MIB),
        })),
    );
    c.eq(
        "attach again",
        r(img::parent_attach(io, &child, &parent_spec(4), MIB).await),
        Err(Errno::EEXIST),
    );
    img::snapshot_add(io, &child, 2, "s", user()).await.unwrap();
    c.eq(
        "snapshot overlap",
        r(img::parent_overlap_get(io, &child, 2).await),
        Ok(Some(16 * MIB)),
    );
    img::set_size(io, &child, 4 * MIB).await.unwrap();
    c.eq(
        "shrink lowers the overlap",
        r(img::parent_overlap_get(io, &child, CEPH_NOSNAP).await),
        Ok(Some(4 * MIB)),
    );
    img::set_size(io, &child, 32 * MIB).await.unwrap();
    c.eq(
        "growing leaves it",
        r(img::parent_overlap_get(io, &child, CEPH_NOSNAP).await),
        Ok(Some(4 * MIB)),
    );
    c.eq(
        "snapshot keeps its own",
        r(img::parent_overlap_get(io, &child, 2).await),
        Ok(Some(16 * MIB)),
    );
    img::op_features_set(io, &child, 2, 2).await.unwrap();
    c.eq(
        "op feature sets operations",
        features(io, &child).await,
        Ok(f::LAYERING | f::DEEP_FLATTEN | f::OPERATIONS),
    );
    c.eq(
        "unknown op feature",
        r(img::op_features_set(io, &child, 1 << 20, 1 << 20).await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "detach (deep-flatten)",
        r(img::parent_detach(io, &child).await),
        Ok(()),
    );
    c.eq("link gone", r(img::parent_get(io, &child).await), Ok(None));
    c.eq(
        "snapshot freed too",
        r(img::parent_overlap_get(io, &child, 2).await),
        Ok(None),
    );
    c.eq(
        "clone-child op feature cleared",
        features(io, &child).await,
        Ok(f::LAYERING | f::DEEP_FLATTEN),
    );
    c.eq(
        "detach again",
        r(img::parent_detach(io, &child).await),
        Err(Errno::ENOENT),
    );

    let shallow = header(io, f::LAYERING).await;
    img::parent_attach(io, &shallow, &parent_spec(4), MIB)
        .await
        .unwrap();
    img::snapshot_add(io, &shallow, 3, "s", user())
        .await
        .unwrap();
    c.eq(
        "detach (snapshots keep the parent)",
        r(img::parent_detach(io, &shallow).await),
        Ok(()),
    );
    c.eq(
        "head no longer reads the parent",
        r(img::parent_get(io, &shallow).await).map(|p| p.map(|p| (p.snap_id, p.head_overlap))),
        Ok(Some((4, None))),
    );
    c.eq(
        "snapshot still does",
        r(img::parent_overlap_get(io, &shallow, 3).await),
        Ok(Some(MIB)),
    );
    c.eq(
        "removing that snapshot drops the link",
        r(img::snapshot_remove(io, &shallow, 3).await),
        Ok(()),
    );
    c.eq(
        "link dropped",
        r(img::parent_get(io, &shallow).await),
        Ok(None),
    );

    // ---- the parent's side ----
    let parent = header(io, f::LAYERING).await;
    img::snapshot_add(io, &parent, 4, "base", user())
        .await
        .unwrap();
    let kid = |id: &str| ChildImageSpec {
        pool_id: 7,
        pool_namespace: String::new(),
        image_id: id.into(),
    };
    c.eq(
        "no children",
        r(img::children_list(io, &parent, 4).await).map(|s| s.len()),
        Ok(0),
    );
    c.eq(
        "children of a missing snapshot",
        r(img::children_list(io, &parent, 9).await).map(|s| s.len()),
        Err(Errno::ENOENT),
    );
    c.eq(
        "attach child",
        r(img::child_attach(io, &parent, 4, &kid("b")).await),
        Ok(()),
    );
    c.eq(
        "attach twice",
        r(img::child_attach(io, &parent, 4, &kid("b")).await),
        Err(Errno::EEXIST),
    );
    img::child_attach(io, &parent, 4, &kid("a")).await.unwrap();
    c.eq(
        "listed in order",
        r(img::children_list(io, &parent, 4).await).map(|s| s.into_iter().collect::<Vec<_>>()),
        Ok(vec![kid("a"), kid("b")]),
    );
    c.eq(
        "child count",
        r(img::snapshot_get(io, &parent, 4).await).map(|s| s.child_count),
        Ok(2),
    );
    c.eq(
        "clone-parent op feature",
        features(io, &parent).await,
        Ok(f::LAYERING | f::OPERATIONS),
    );
    c.eq(
        "remove a snapshot with children",
        r(img::snapshot_remove(io, &parent, 4).await),
        Err(Errno::EBUSY),
    );
    c.eq(
        "trash it",
        r(img::snapshot_trash_add(io, &parent, 4).await),
        Ok(()),
    );
    c.eq(
        "attach to a trashed snapshot",
        r(img::child_attach(io, &parent, 4, &kid("c")).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "detach a stranger",
        r(img::child_detach(io, &parent, 4, &kid("z")).await),
        Err(Errno::ENOENT),
    );
    for id in ["a", "b"] {
        c.eq(
            "detach",
            r(img::child_detach(io, &parent, 4, &kid(id)).await),
            Ok(()),
        );
    }
    c.eq(
        "childless",
        r(img::children_list(io, &parent, 4).await).map(|s| s.len()),
        Ok(0),
    );
    c.eq(
        "trashed childless snapshot goes",
        r(img::snapshot_remove(io, &parent, 4).await),
        Ok(()),
    );
    c.eq(
        "op features cleared",
        features(io, &parent).await,
        Ok(f::LAYERING),
    );

    // ---- copy-up ----
    let obj = name("rbd_data");
    let copyup = |data: &'static [u8]| img::copyup(WriteOp::new(), Bytes::from_static(data));
    let read = |io: R::IoCtx, oid: String| async move {
        io.operate_read(&oid, ReadOp::new().read(0, 64).at_snap(NOSNAP))
            .await
            .map(|reply| format!("{:?}", reply.results))
            .map_err(|e| e.errno)
    };
    io.operate_write(&obj, copyup(b"parent")).await.unwrap();
    let first = read(io.clone(), obj.clone()).await;
    io.operate_write(&obj, copyup(b"other")).await.unwrap();
    c.eq(
        "copy-up writes only an absent object",
        read(io.clone(), obj.clone()).await,
        first.clone(),
    );
    c.eq(
        "copy-up data",
        first.map(|s| s.contains("parent")),
        Ok(true),
    );
    c.done();
}
