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
    // Only clones are left: an exclusive create succeeds, and the clones stay.
    io.operate_write(
        &oid,
        WriteOp::new().create(true).snap_context(snapc2.clone()),
    )
    .await
    .unwrap();
    assert_eq!(io.stat(&oid).await.unwrap().size, 0);
    assert_eq!(
        io.read_at_snap(&oid, 0, 0, s1).await.unwrap(),
        Bytes::from_static(b"one")
    );
    io.remove(&oid).await.unwrap();
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

/// Where RADOS is lenient or strict with snapshots: reads at snap ids the object never saw
/// return the head (only clones hide it), rollback of what never existed is a no-op, a
/// removed snapshot's clone is gone, and snap contexts must be strictly descending.
pub async fn snapshot_edges<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("edges");
    io.write_full(&oid, Bytes::from_static(b"a")).await.unwrap();
    let s1 = io.selfmanaged_snap_create().await.unwrap();
    let snapc = |snaps: Vec<u64>| SnapContext {
        seq: snaps[0],
        snaps,
    };
    let write = |data: &'static [u8], snapc: SnapContext| {
        let (io, oid) = (io.clone(), oid.clone());
        async move {
            io.operate_write(&oid, WriteOp::new().write_full(data).snap_context(snapc))
                .await
        }
    };
    // Not written since s1: s1, and snap ids never allocated, read the head.
    assert_eq!(
        io.read_at_snap(&oid, 0, 0, s1).await.unwrap(),
        Bytes::from_static(b"a")
    );
    assert_eq!(
        io.read_at_snap(&oid, 0, 0, s1 + 1000).await.unwrap(),
        Bytes::from_static(b"a")
    );
    write(b"b", snapc(vec![s1])).await.unwrap();
    let s2 = io.selfmanaged_snap_create().await.unwrap();
    write(b"c", snapc(vec![s2, s1])).await.unwrap();
    let s3 = io.selfmanaged_snap_create().await.unwrap();
    // s3 was removed before any write under it: reading at it still finds the head.
    io.selfmanaged_snap_remove(s3).await.unwrap();
    assert_eq!(
        io.read_at_snap(&oid, 0, 0, s3).await.unwrap(),
        Bytes::from_static(b"c")
    );
    assert_eq!(
        io.read_at_snap(&oid, 0, 0, s2).await.unwrap(),
        Bytes::from_static(b"b")
    );
    // Removing s1 drops its clone.
    io.selfmanaged_snap_remove(s1).await.unwrap();
    let mut gone = Err(());
    for _ in 0..50 {
        // Ceph trims clones in the background.
        gone = match io.read_at_snap(&oid, 0, 0, s1).await {
            Err(e) if e.errno == Errno::ENOENT => Ok(()),
            _ => Err(()),
        };
        if gone.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        gone,
        Ok(()),
        "the clone of a removed snapshot stays readable"
    );
    assert_eq!(
        io.read_at_snap(&oid, 0, 0, s2).await.unwrap(),
        Bytes::from_static(b"b")
    );

    // Snap contexts: seq below a snap, or snaps not strictly descending, are invalid.
    for bad in [vec![s1, s2], vec![s2, s2]] {
        let c = SnapContext {
            seq: s2,
            snaps: bad,
        };
        assert_eq!(errno(write(b"x", c).await), Errno::EINVAL);
    }

    // Rollback of an object that never existed succeeds and creates nothing; rolling back
    // an object born after the snapshot removes it.
    let never = name("never");
    io.selfmanaged_snap_rollback(&never, s2, &snapc(vec![s2]))
        .await
        .unwrap();
    assert_eq!(errno(io.stat(&never).await), Errno::ENOENT);
    let young = name("young");
    io.operate_write(
        &young,
        WriteOp::new()
            .write_full(&b"y"[..])
            .snap_context(snapc(vec![s2])),
    )
    .await
    .unwrap();
    io.selfmanaged_snap_rollback(&young, s2, &snapc(vec![s2]))
        .await
        .unwrap();
    assert_eq!(errno(io.stat(&young).await), Errno::ENOENT);
    io.remove(&oid).await.unwrap();
    io.selfmanaged_snap_remove(s2).await.unwrap();
}
