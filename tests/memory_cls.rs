//! The embedded backend's cls registry, with methods registered by the test: how a method
//! runs inside the atomic op (a failure undoes what it wrote), what it sees (caller,
//! watchers), and the OSD's rules the conformance suite can only reach through real
//! classes: a read method never runs on a missing object, a write method does (even from a
//! read op), and only a method that writes moves the object's version.

use bytes::Bytes;
use rbd_relay::rados::memory::cls::{ClsContext, ClsFlags, ClsRegistry};
use rbd_relay::rados::memory::{MemoryCluster, MemoryIoCtx};
use rbd_relay::rados::{Errno, IoCtx, Rados, ReadOp, WriteOp};

fn constant(_: &mut ClsContext<'_>, _: Bytes) -> Result<Bytes, Errno> {
    Ok(Bytes::from_static(b"const"))
}

fn put(ctx: &mut ClsContext<'_>, input: Bytes) -> Result<Bytes, Errno> {
    ctx.omap_set([("k".to_string(), input)]);
    Ok(Bytes::new())
}

fn put_then_fail(ctx: &mut ClsContext<'_>, input: Bytes) -> Result<Bytes, Errno> {
    ctx.write_full(&input);
    ctx.omap_set([("k".to_string(), input)]);
    Err(Errno::EBUSY)
}

fn who(ctx: &mut ClsContext<'_>, _: Bytes) -> Result<Bytes, Errno> {
    let watchers = ctx.watchers().iter().map(|w| w.gid.to_string());
    let out = format!(
        "{} {}",
        ctx.caller().gid,
        watchers.collect::<Vec<_>>().join(",")
    );
    Ok(Bytes::from(out))
}

async fn setup() -> (MemoryCluster, MemoryIoCtx) {
    let mut cls = ClsRegistry::default();
    cls.class("empty");
    cls.register("t", "constant", ClsFlags::Read, constant);
    cls.register("t", "put", ClsFlags::ReadWrite, put);
    cls.register("t", "noop_write", ClsFlags::ReadWrite, constant);
    cls.register("t", "put_then_fail", ClsFlags::ReadWrite, put_then_fail);
    cls.register("t", "who", ClsFlags::Read, who);
    let cluster = MemoryCluster::new(cls);
    cluster.create_pool("rbd").unwrap();
    let io = cluster.connect().ioctx("rbd").await.unwrap();
    (cluster, io)
}

#[tokio::test]
async fn read_methods_need_the_object_write_methods_create_it() {
    let (_cluster, io) = setup().await;
    let errno = |r: Result<Bytes, _>| r.map_err(|e: rbd_relay::rados::RadosError| e.errno);
    assert_eq!(
        errno(io.exec("o", "t", "constant", Bytes::new()).await),
        Err(Errno::ENOENT)
    );
    // A write method from a read op runs on the missing object and creates it.
    io.exec("o", "t", "put", Bytes::from_static(b"v"))
        .await
        .unwrap();
    assert_eq!(
        io.exec("o", "t", "constant", Bytes::new()).await.unwrap(),
        Bytes::from_static(b"const")
    );
    assert_eq!(
        io.omap_get_by_keys("o", &["k"]).await.unwrap()["k"],
        Bytes::from_static(b"v")
    );
    assert_eq!(
        errno(io.exec("o", "empty", "m", Bytes::new()).await),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        errno(io.exec("o", "nope", "m", Bytes::new()).await),
        Err(Errno::EPERM)
    );
}

#[tokio::test]
async fn only_writing_methods_move_the_version() {
    let (_cluster, io) = setup().await;
    let v1 = io
        .operate_write(
            "o",
            WriteOp::new().exec("t", "put", Bytes::from_static(b"1")),
        )
        .await
        .unwrap();
    let v = io
        .operate_write("o", WriteOp::new().exec("t", "noop_write", Bytes::new()))
        .await
        .unwrap();
    assert_eq!(v, v1);
    let reply = io
        .operate_read(
            "o",
            ReadOp::new().exec("t", "put", Bytes::from_static(b"2")),
        )
        .await
        .unwrap();
    assert!(reply.version > v1);
}

#[tokio::test]
async fn a_failing_method_leaves_nothing() {
    let (_cluster, io) = setup().await;
    let fail = || WriteOp::new().exec("t", "put_then_fail", Bytes::from_static(b"x"));
    let r = io.operate_write("o", fail()).await;
    assert_eq!(r.unwrap_err().errno, Errno::EBUSY);
    assert_eq!(io.stat("o").await.unwrap_err().errno, Errno::ENOENT);

    io.write_full("o", Bytes::from_static(b"keep"))
        .await
        .unwrap();
    let r = io
        .operate_read("o", ReadOp::new().exec("t", "put_then_fail", Bytes::new()))
        .await;
    assert_eq!(r.unwrap_err().errno, Errno::EBUSY);
    assert_eq!(
        io.read("o", 0, 0).await.unwrap(),
        Bytes::from_static(b"keep")
    );
    assert!(io.omap_get_all("o", "").await.unwrap().is_empty());
}

#[tokio::test]
async fn methods_see_caller_and_watchers() {
    let (cluster, io) = setup().await;
    io.write_full("o", Bytes::new()).await.unwrap();
    let other = cluster.connect();
    let oio = other.ioctx("rbd").await.unwrap();
    let w = oio.watch("o").await.unwrap();
    let me = io.exec("o", "t", "who", Bytes::new()).await.unwrap();
    let caller = cluster.connect().ioctx("rbd").await.unwrap();
    let them = caller.exec("o", "t", "who", Bytes::new()).await.unwrap();
    assert_ne!(me, them, "each connection is its own client");
    assert!(
        me.ends_with(format!(" {}", other.instance_id()).as_bytes()),
        "{me:?}"
    );
    oio.unwatch(w.cookie).await.unwrap();
    assert!(
        io.exec("o", "t", "who", Bytes::new())
            .await
            .unwrap()
            .ends_with(b" ")
    );
}
