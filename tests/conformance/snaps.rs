//! Self-managed snapshots (copy-on-write clones read back at a snap id, rollback, invalid
//! snap contexts) and RADOS namespaces.

use bytes::Bytes;
use rbd_relay::rados::{Errno, IoCtx, Rados, SnapContext, WriteOp};

use crate::harness::{errno, name};

pub async fn snapshot_clones<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("snapped");
    io.write_full(&oid, Bytes::from_static(b"one"))
        .await
        .unwrap();
    let s1 = io.selfmanaged_snap_create().await.unwrap();
    let snapc1 = SnapContext {
        seq: s1,
        snaps: vec![s1],
    };
    io.operate_write(
        &oid,
        WriteOp::new()
            .write_full(&b"two!"[..])
            .snap_context(snapc1.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        io.read(&oid, 0, 0).await.unwrap(),
        Bytes::from_static(b"two!")
    );
    assert_eq!(
        io.read_at_snap(&oid, 0, 0, s1).await.unwrap(),
        Bytes::from_static(b"one")
    );
    assert_eq!(
        io.read_at_snap(&oid, 1, 10, s1).await.unwrap(),
        Bytes::from_static(b"ne")
    );

    // A second snapshot; the object was not written since, so both see "two!" / "one".
    let s2 = io.selfmanaged_snap_create().await.unwrap();
    assert!(s2 > s1);
    let snapc2 = SnapContext {
        seq: s2,
        snaps: vec![s2, s1],
    };
    io.operate_write(
        &oid,
        WriteOp::new()
            .write(0, &b"3"[..])
            .snap_context(snapc2.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        io.read_at_snap(&oid, 0, 0, s2).await.unwrap(),
        Bytes::from_static(b"two!")
    );
    assert_eq!(
        io.read_at_snap(&oid, 0, 0, s1).await.unwrap(),
        Bytes::from_static(b"one")
    );
    assert_eq!(
        io.read(&oid, 0, 0).await.unwrap(),
        Bytes::from_static(b"3wo!")
    );

    // An object born after a snapshot does not exist at it.
    let young = name("young");
    io.operate_write(
        &young,
        WriteOp::new()
            .write_full(&b"y"[..])
            .snap_context(snapc2.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        errno(io.read_at_snap(&young, 0, 0, s1).await),
        Errno::ENOENT
    );

    io.selfmanaged_snap_rollback(&oid, s1, &snapc2)
        .await
        .unwrap();
    assert_eq!(
        io.read(&oid, 0, 0).await.unwrap(),
        Bytes::from_static(b"one")
    );
    let bad = SnapContext {
        seq: 1,
        snaps: vec![s2 + 100],
    }; // seq below a snap: invalid
    let r = io
        .operate_write(&oid, WriteOp::new().write_full(&b"x"[..]).snap_context(bad))
        .await;
    assert_eq!(errno(r), Errno::EINVAL);

    // A removed object stays readable at the snapshots that saw it.
    io.operate_write(&oid, WriteOp::new().remove().snap_context(snapc2.clone()))
        .await
        .unwrap();
    assert_eq!(errno(io.read(&oid, 0, 0).await), Errno::ENOENT);
    assert_eq!(
        io.read_at_snap(&oid, 0, 0, s2).await.unwrap(),
        Bytes::from_static(b"two!")
    );
    io.remove(&young).await.unwrap();
    io.selfmanaged_snap_remove(s1).await.unwrap();
    io.selfmanaged_snap_remove(s2).await.unwrap();
}

pub async fn namespaces<R: Rados>(_c: &R, io: &R::IoCtx) {
    let ns = io.with_namespace("conformance-ns");
    assert_eq!(
        (ns.namespace(), ns.pool_id()),
        ("conformance-ns", io.pool_id())
    );
    let obj = name("in-ns");
    ns.write_full(&obj, Bytes::from_static(b"x")).await.unwrap();
    assert!(ns.list_objects().await.unwrap().contains(&obj));
    assert!(!io.list_objects().await.unwrap().contains(&obj));
    assert_eq!(errno(io.stat(&obj).await), Errno::ENOENT);
    ns.remove(&obj).await.unwrap();
    assert!(!ns.list_objects().await.unwrap().contains(&obj));
}
