//! Cluster-level calls and plain object data: create, write, append, truncate, zero, remove,
//! zero (which truncates at the end), read (past the end too), stat, versions and
//! version asserts, and what each does to a missing object.

use bytes::Bytes;
use rbd_relay::rados::{Errno, IoCtx, Rados, ReadOp, ReadResult, WriteOp};

use crate::harness::{errno, name};

pub async fn cluster_and_pools<R: Rados>(c: &R, io: &R::IoCtx) {
    assert_eq!(c.fsid().len(), 36);
    assert!(c.instance_id() > 0);
    let pools = c.pool_list().await.unwrap();
    let id = c.pool_lookup("rbd").await.unwrap();
    assert!(pools.contains(&(id, "rbd".to_string())), "{pools:?}");
    assert_eq!((io.pool_id(), io.pool_name()), (id, "rbd"));
    assert_eq!(c.ioctx_by_id(id).await.unwrap().pool_name(), "rbd");
    assert_eq!(errno(c.pool_lookup("no-such-pool").await), Errno::ENOENT);
    assert_eq!(errno(c.ioctx("no-such-pool").await), Errno::ENOENT);
    assert_eq!(errno(c.ioctx_by_id(987_654).await), Errno::ENOENT);

    let key = format!("rbd-relay/conformance/{}", uuid::Uuid::new_v4());
    assert_eq!(errno(c.config_key_get(&key).await), Errno::ENOENT);
    c.config_key_set(&key, Bytes::from_static(b"v\x00\x01"))
        .await
        .unwrap();
    assert_eq!(
        c.config_key_get(&key).await.unwrap(),
        Bytes::from_static(b"v\x00\x01")
    );
}

pub async fn data_ops_and_versions<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("data");
    let v1 = io
        .operate_write(&oid, WriteOp::new().create(true).write(0, &b"hello"[..]))
        .await
        .unwrap();
    assert_eq!(
        errno(io.operate_write(&oid, WriteOp::new().create(true)).await),
        Errno::EEXIST
    );
    io.operate_write(&oid, WriteOp::new().create(false))
        .await
        .unwrap();
    io.append(&oid, Bytes::from_static(b" world"))
        .await
        .unwrap();
    assert_eq!(
        io.read(&oid, 0, 0).await.unwrap(),
        Bytes::from_static(b"hello world")
    );
    assert_eq!(
        io.read(&oid, 6, 100).await.unwrap(),
        Bytes::from_static(b"world")
    );
    assert_eq!(io.read(&oid, 50, 0).await.unwrap(), Bytes::new());
    assert_eq!(io.stat(&oid).await.unwrap().size, 11);
    io.truncate(&oid, 5).await.unwrap();
    let reply = io
        .operate_read(&oid, ReadOp::new().read(0, 0).stat())
        .await
        .unwrap();
    assert!(reply.version > v1);
    assert_eq!(
        reply.results[0],
        ReadResult::Data(Bytes::from_static(b"hello"))
    );
    // A stale version fails the whole op with ERANGE and changes nothing.
    let stale = io
        .operate_write(&oid, WriteOp::new().assert_version(v1).write(0, &b"X"[..]))
        .await;
    assert_eq!(errno(stale), Errno::ERANGE);
    io.operate_write(
        &oid,
        WriteOp::new().assert_version(reply.version).zero(0, 1),
    )
    .await
    .unwrap();
    // Zeroing nothing is no step at all (a zero-length ZERO would abort a 16.2 OSD if
    // sent), and an op without steps is invalid.
    io.operate_write(&oid, WriteOp::new().zero(2, 0).write(1, &b"e"[..]))
        .await
        .unwrap();
    assert_eq!(
        io.read(&oid, 0, 2).await.unwrap(),
        Bytes::from_static(b"\0e")
    );
    assert_eq!(
        errno(io.operate_write(&oid, WriteOp::new().zero(2, 0)).await),
        Errno::EINVAL
    );
    assert_eq!(
        errno(io.operate_write(&oid, WriteOp::new()).await),
        Errno::EINVAL
    );
    assert_eq!(
        errno(io.operate_read(&oid, ReadOp::new()).await),
        Errno::EINVAL
    );
    // Writes past the end fill the gap with zeros.
    io.write(&oid, 8, Bytes::from_static(b"!")).await.unwrap();
    assert_eq!(
        io.read(&oid, 0, 0).await.unwrap(),
        Bytes::from_static(b"\0ello\0\0\0!")
    );
    io.write_full(&oid, Bytes::from_static(b"new"))
        .await
        .unwrap();
    assert_eq!(
        io.read(&oid, 0, 0).await.unwrap(),
        Bytes::from_static(b"new")
    );
    // Objects are capped at osd_max_object_size (128 MiB by default).
    let big = io.write(&oid, 128 << 20, Bytes::from_static(b"x")).await;
    assert_eq!(errno(big), Errno::EFBIG);
    io.remove(&oid).await.unwrap();
    assert_eq!(errno(io.remove(&oid).await), Errno::ENOENT);
}

pub async fn missing_objects<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("missing");
    assert_eq!(errno(io.read(&oid, 0, 0).await), Errno::ENOENT);
    assert_eq!(errno(io.stat(&oid).await), Errno::ENOENT);
    assert_eq!(
        errno(io.operate_read(&oid, ReadOp::new().assert_exists()).await),
        Errno::ENOENT
    );
    assert_eq!(
        errno(
            io.operate_write(&oid, WriteOp::new().assert_exists().write(0, &b"x"[..]))
                .await
        ),
        Errno::ENOENT
    );
    assert_eq!(
        errno(io.stat(&oid).await),
        Errno::ENOENT,
        "a failed op must not create the object"
    );
    assert_eq!(
        errno(io.omap_get_vals(&oid, "", "", 10).await),
        Errno::ENOENT
    );
    assert_eq!(
        errno(
            io.operate_write(&oid, WriteOp::new().omap_rm_keys(["k"]))
                .await
        ),
        Errno::ENOENT
    );
    assert_eq!(
        errno(io.operate_write(&oid, WriteOp::new().omap_clear()).await),
        Errno::ENOENT
    );
    assert_eq!(
        errno(io.operate_write(&oid, WriteOp::new().rm_xattr("a")).await),
        Errno::ENOENT
    );
    let cmp = WriteOp::new().cmp_xattr("a", rbd_relay::rados::CmpOp::Eq, &b""[..]);
    assert_eq!(errno(io.operate_write(&oid, cmp).await), Errno::ENOENT);
    // A failing step after a successful one leaves nothing behind.
    let op = WriteOp::new().write(0, &b"x"[..]).remove().remove();
    assert_eq!(errno(io.operate_write(&oid, op).await), Errno::ENOENT);
    assert_eq!(errno(io.stat(&oid).await), Errno::ENOENT);
}

pub async fn zero_and_truncate<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("zero");
    let hello = || Bytes::from_static(b"hello world");
    let size = |io: &R::IoCtx| {
        let (io, oid) = (io.clone(), oid.clone());
        async move { io.stat(&oid).await.unwrap().size }
    };
    io.write_full(&oid, hello()).await.unwrap();
    io.operate_write(&oid, WriteOp::new().zero(3, 5))
        .await
        .unwrap();
    assert_eq!(
        io.read(&oid, 0, 0).await.unwrap(),
        Bytes::from_static(b"hel\0\0\0\0\0rld")
    );
    // Zeroing up to or past the end truncates the object at the offset, as the OSD does.
    io.operate_write(&oid, WriteOp::new().zero(6, 5))
        .await
        .unwrap();
    assert_eq!(size(io).await, 6);
    io.write_full(&oid, hello()).await.unwrap();
    io.operate_write(&oid, WriteOp::new().zero(7, 100))
        .await
        .unwrap();
    assert_eq!(
        io.read(&oid, 0, 0).await.unwrap(),
        Bytes::from_static(b"hello w")
    );
    // Wholly past the end: nothing happens.
    io.operate_write(&oid, WriteOp::new().zero(50, 10))
        .await
        .unwrap();
    assert_eq!(size(io).await, 7);
    io.truncate(&oid, 10).await.unwrap();
    assert_eq!(
        io.read(&oid, 0, 0).await.unwrap(),
        Bytes::from_static(b"hello w\0\0\0")
    );
    // An empty write still extends the object to its offset.
    io.write(&oid, 20, Bytes::new()).await.unwrap();
    assert_eq!(size(io).await, 20);
    io.remove(&oid).await.unwrap();

    // Truncate and zero of a missing object succeed and create nothing; an empty write or
    // append creates it.
    let missing = name("zero-missing");
    io.truncate(&missing, 10).await.unwrap();
    io.operate_write(&missing, WriteOp::new().zero(0, 10))
        .await
        .unwrap();
    assert_eq!(errno(io.stat(&missing).await), Errno::ENOENT);
    io.write(&missing, 100, Bytes::new()).await.unwrap();
    assert_eq!(io.stat(&missing).await.unwrap().size, 100);
    io.remove(&missing).await.unwrap();
    io.append(&missing, Bytes::new()).await.unwrap();
    assert_eq!(io.stat(&missing).await.unwrap().size, 0);
    io.remove(&missing).await.unwrap();
}

/// A write op that only asserts or compares is not a modification: the object's version
/// (and mtime) stay; every modifying op moves the version forward.
pub async fn versions_move_on_modification<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("version");
    let v1 = io
        .operate_write(&oid, WriteOp::new().write_full(&b"x"[..]))
        .await
        .unwrap();
    let mtime = io.stat(&oid).await.unwrap().mtime;
    let v = io
        .operate_write(&oid, WriteOp::new().assert_exists().assert_version(v1))
        .await
        .unwrap();
    assert_eq!(v, v1, "an assert-only op does not modify");
    let cmp = WriteOp::new().omap_cmp("k", rbd_relay::rados::CmpOp::Eq, &b""[..]);
    assert_eq!(io.operate_write(&oid, cmp).await.unwrap(), v1);
    let reply = io.operate_read(&oid, ReadOp::new().stat()).await.unwrap();
    assert_eq!(reply.version, v1);
    assert_eq!(
        reply.results[0],
        ReadResult::Stat(rbd_relay::rados::ObjectStat { size: 1, mtime })
    );
    // Watching is not a modification either.
    let w = io.watch(&oid).await.unwrap();
    io.unwatch(w.cookie).await.unwrap();
    let v2 = io
        .operate_write(&oid, WriteOp::new().rm_xattr("absent"))
        .await
        .unwrap();
    assert!(v2 > v1, "{v2} > {v1}");
    // Asserting a future version: EOVERFLOW (a past one: ERANGE), in reads and writes.
    let ahead = io
        .operate_read(&oid, ReadOp::new().assert_version(v2 + 1))
        .await;
    assert_eq!(errno(ahead), Errno::EOVERFLOW);
    let behind = WriteOp::new().assert_version(v1).omap_set([("k", "v")]);
    assert_eq!(errno(io.operate_write(&oid, behind).await), Errno::ERANGE);
    assert_eq!(
        io.operate_read(&oid, ReadOp::new().assert_version(v2))
            .await
            .unwrap()
            .version,
        v2
    );
    io.remove(&oid).await.unwrap();
}
