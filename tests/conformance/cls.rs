//! Calling object-class methods: output of read methods, errors of the OSD's class loader
//! (unknown class EPERM, unknown method EOPNOTSUPP), and a method's own rights deciding
//! whether it writes (a write method called through a read op still writes).

use bytes::Bytes;
use rbd_relay::format::Encode;
use rbd_relay::rados::{Errno, IoCtx, Rados, WriteOp};

use crate::harness::{errno, name};

pub async fn cls_exec<R: Rados>(_c: &R, io: &R::IoCtx) {
    let id = |s: &str| s.to_string().to_bytes();
    let oid = name("rbd_id");
    // set_id needs the object to exist: create it in the same op.
    assert_eq!(
        errno(io.exec_write(&oid, "rbd", "set_id", id("abc123")).await),
        Errno::ENOENT
    );
    io.operate_write(
        &oid,
        WriteOp::new()
            .create(false)
            .exec("rbd", "set_id", id("abc123")),
    )
    .await
    .unwrap();
    assert_eq!(
        io.exec(&oid, "rbd", "get_id", Bytes::new()).await.unwrap(),
        id("abc123")
    );
    assert_eq!(
        errno(io.exec_write(&oid, "rbd", "set_id", id("again")).await),
        Errno::EEXIST
    );
    assert_eq!(
        errno(
            io.exec(&name("nobody"), "rbd", "get_id", Bytes::new())
                .await
        ),
        Errno::ENOENT
    );
    assert_eq!(
        errno(io.exec(&oid, "rbd", "no_such_method", Bytes::new()).await),
        Errno::EOPNOTSUPP
    );
    assert_eq!(
        errno(io.exec(&oid, "no_such_class", "m", Bytes::new()).await),
        Errno::EPERM
    );
    // A failed method cancels the ops before it.
    let op = WriteOp::new()
        .omap_set([("k", "v")])
        .exec("rbd", "set_id", id("x"));
    assert_eq!(errno(io.operate_write(&oid, op).await), Errno::EEXIST);
    assert!(io.omap_get_all(&oid, "").await.unwrap().is_empty());

    let ro = name("ro");
    io.write_full(&ro, Bytes::new()).await.unwrap();
    io.exec(&ro, "rbd", "set_id", id("x")).await.unwrap();
    assert_eq!(
        io.read(&ro, 0, 0).await.unwrap(),
        id("x"),
        "write method via read op must write"
    );
    io.remove(&ro).await.unwrap();
    io.remove(&oid).await.unwrap();
}
