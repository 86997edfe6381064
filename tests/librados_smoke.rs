//! Smoke test of the librados backend against the lab's site-a (`scripts/ceph-lab up`;
//! `RBD_RELAY_LAB_DIR` picks the lab). Without a reachable lab these tests FAIL, unless
//! `RBD_RELAY_SKIP_CEPH=1` (then each prints a loud SKIPPED line). The generic contract is
//! the conformance suite's job; this file checks the librados-specific plumbing (aio
//! bridge, watch callbacks, snap-context ioctxs, connect timeouts) and records librados
//! behaviours the memory backend must mirror.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use rbd_relay::rados::librados::{ConnectConfig, LibradosCluster, LibradosIoCtx};
use rbd_relay::rados::{
    CmpOp, Errno, IoCtx, Rados, ReadOp, ReadResult, SnapContext, WatchEvent, WriteOp,
};

fn conf_path() -> String {
    let dir = std::env::var("RBD_RELAY_LAB_DIR").unwrap_or_else(|_| "/tmp/rbd-relay-lab".into());
    format!("{dir}/site-a/ceph.conf")
}

/// The lab connection, or `None` (SKIPPED) when `RBD_RELAY_SKIP_CEPH=1`.
async fn lab(test: &str) -> Option<(LibradosCluster, LibradosIoCtx)> {
    if std::env::var("RBD_RELAY_SKIP_CEPH").as_deref() == Ok("1") {
        eprintln!("*** SKIPPED librados_smoke::{test}: RBD_RELAY_SKIP_CEPH=1, no Ceph lab used ***");
        return None;
    }
    let conf = conf_path();
    let cluster = LibradosCluster::connect(ConnectConfig::from_conf(&conf))
        .await
        .unwrap_or_else(|e| panic!("no Ceph lab at {conf} ({e}); run scripts/ceph-lab up or set RBD_RELAY_SKIP_CEPH=1"));
    let io = cluster.ioctx("rbd").await.expect("pool rbd");
    Some((cluster, io))
}

fn name(what: &str) -> String {
    format!("smoke.{what}.{}", uuid::Uuid::new_v4())
}

fn errno<T: std::fmt::Debug>(r: Result<T, rbd_relay::rados::RadosError>) -> Errno {
    r.expect_err("expected an error").errno
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_and_pools() {
    let Some((c, io)) = lab("cluster_and_pools").await else { return };
    assert_eq!(c.fsid().len(), 36);
    assert!(c.instance_id() > 0);
    let pools = c.pool_list().await.unwrap();
    let id = c.pool_lookup("rbd").await.unwrap();
    assert!(pools.contains(&(id, "rbd".to_string())), "{pools:?}");
    assert_eq!(io.pool_id(), id);
    assert_eq!(c.ioctx_by_id(id).await.unwrap().pool_name(), "rbd");
    assert_eq!(errno(c.pool_lookup("no-such-pool").await), Errno::ENOENT);
    assert_eq!(errno(c.ioctx("no-such-pool").await), Errno::ENOENT);
    assert_eq!(errno(c.ioctx_by_id(987_654).await), Errno::ENOENT);

    let key = format!("rbd-relay/smoke/{}", uuid::Uuid::new_v4());
    assert_eq!(errno(c.config_key_get(&key).await), Errno::ENOENT);
    c.config_key_set(&key, Bytes::from_static(b"v\x00\x01")).await.unwrap();
    assert_eq!(c.config_key_get(&key).await.unwrap(), Bytes::from_static(b"v\x00\x01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_ops_and_versions() {
    let Some((_c, io)) = lab("data_ops_and_versions").await else { return };
    let oid = name("data");
    assert_eq!(errno(io.read(&oid, 0, 0).await), Errno::ENOENT);
    assert_eq!(errno(io.stat(&oid).await), Errno::ENOENT);
    let v1 = io.operate_write(&oid, WriteOp::new().create(true).write(0, &b"hello"[..])).await.unwrap();
    assert_eq!(errno(io.operate_write(&oid, WriteOp::new().create(true)).await), Errno::EEXIST);
    io.append(&oid, Bytes::from_static(b" world")).await.unwrap();
    assert_eq!(io.read(&oid, 0, 0).await.unwrap(), Bytes::from_static(b"hello world"));
    assert_eq!(io.read(&oid, 6, 100).await.unwrap(), Bytes::from_static(b"world"));
    assert_eq!(io.read(&oid, 50, 0).await.unwrap(), Bytes::new());
    assert_eq!(io.stat(&oid).await.unwrap().size, 11);
    io.truncate(&oid, 5).await.unwrap();
    let reply = io.operate_read(&oid, ReadOp::new().read(0, 0).stat()).await.unwrap();
    assert!(reply.version > v1);
    assert_eq!(reply.results[0], ReadResult::Data(Bytes::from_static(b"hello")));
    // Version asserts: a stale version fails the whole op.
    let stale = io.operate_write(&oid, WriteOp::new().assert_version(v1).write(0, &b"X"[..])).await;
    println!("assert_version(older) on write -> {}", errno(stale));
    io.operate_write(&oid, WriteOp::new().assert_version(reply.version).zero(0, 1)).await.unwrap();
    assert_eq!(io.read(&oid, 0, 2).await.unwrap(), Bytes::from_static(b"\0e"));
    io.remove(&oid).await.unwrap();
    assert_eq!(errno(io.remove(&oid).await), Errno::ENOENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omap_and_xattrs() {
    let Some((_c, io)) = lab("omap_and_xattrs").await else { return };
    let oid = name("omap");
    let kv: BTreeMap<String, Bytes> = (0..10).map(|i| (format!("k{i}"), Bytes::from(format!("v{i}")))).collect();
    io.omap_set(&oid, kv.clone()).await.unwrap();
    io.omap_set(&oid, BTreeMap::from([("other".to_string(), Bytes::new())])).await.unwrap();
    let (page, more) = io.omap_get_vals(&oid, "", "k", 4).await.unwrap();
    assert_eq!((page.len(), more), (4, true));
    let (page, more) = io.omap_get_vals(&oid, "k5", "k", 100).await.unwrap();
    assert_eq!((page.keys().next().map(String::as_str), page.len(), more), (Some("k6"), 4, false));
    assert_eq!(io.omap_get_all(&oid, "k").await.unwrap(), kv);
    let by = io.omap_get_by_keys(&oid, &["k1", "nope"]).await.unwrap();
    assert_eq!(by, BTreeMap::from([("k1".to_string(), Bytes::from_static(b"v1"))]));
    let keys = io.operate_read(&oid, ReadOp::new().omap_get_keys("", 3)).await.unwrap();
    assert_eq!(keys.results[0], ReadResult::Keys { keys: vec!["k0".into(), "k1".into(), "k2".into()], more: true });
    io.omap_rm_keys(&oid, &["k0"]).await.unwrap();

    // omap_cmp: a mismatch cancels the whole op.
    let guarded = WriteOp::new().omap_cmp("k1", CmpOp::Eq, &b"v1"[..]).omap_set([("k1", "new")]);
    io.operate_write(&oid, guarded).await.unwrap();
    let bad = WriteOp::new().omap_cmp("k1", CmpOp::Eq, &b"v1"[..]).omap_set([("k2", "new")]);
    assert_eq!(errno(io.operate_write(&oid, bad).await), Errno::ECANCELED);
    assert_eq!(io.omap_get_by_keys(&oid, &["k2"]).await.unwrap()["k2"], Bytes::from_static(b"v2"));
    let read_cmp = io.operate_read(&oid, ReadOp::new().omap_cmp("k1", CmpOp::Eq, &b"zzz"[..])).await;
    assert_eq!(errno(read_cmp), Errno::ECANCELED);
    // Behaviours to mirror in the memory backend (printed for the report):
    for (what, value) in [("missing key vs empty value", &b""[..]), ("missing key vs non-empty value", &b"x"[..])] {
        let r = io.operate_write(&oid, WriteOp::new().omap_cmp("absent", CmpOp::Eq, value).omap_set([("t", "1")])).await;
        println!("omap_cmp Eq on {what} -> {:?}", r.map(drop).map_err(|e| e.errno));
    }
    let r = io.operate_write(&name("nobody"), WriteOp::new().omap_cmp("k", CmpOp::Eq, &b""[..]).omap_set([("t", "1")])).await;
    println!("omap_cmp on a missing object -> {:?}", r.map(drop).map_err(|e| e.errno));
    io.operate_write(&oid, WriteOp::new().omap_clear()).await.unwrap();
    assert!(io.omap_get_all(&oid, "").await.unwrap().is_empty());

    io.set_xattr(&oid, "a", Bytes::from_static(b"1")).await.unwrap();
    io.set_xattr(&oid, "b", Bytes::from_static(b"2")).await.unwrap();
    assert_eq!(io.get_xattr(&oid, "a").await.unwrap(), Bytes::from_static(b"1"));
    assert_eq!(errno(io.get_xattr(&oid, "zz").await), Errno::ENODATA);
    let all = io.operate_read(&oid, ReadOp::new().get_xattrs()).await.unwrap();
    assert_eq!(all.results[0], ReadResult::Xattrs(BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])));
    let cmp = io.operate_write(&oid, WriteOp::new().cmp_xattr("a", CmpOp::Eq, &b"2"[..]).rm_xattr("a")).await;
    println!("cmp_xattr mismatch -> {:?}", cmp.map(drop).map_err(|e| e.errno));
    assert_eq!(errno(io.get_xattr(&name("nobody"), "a").await), Errno::ENOENT);
    io.remove(&oid).await.unwrap();
}

/// A Ceph string (u32 length + bytes), the input of `rbd.set_id` and output of `get_id`.
fn ceph_string(s: &str) -> Bytes {
    let mut b = (s.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    Bytes::from(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cls_exec() {
    let Some((_c, io)) = lab("cls_exec").await else { return };
    let oid = name("rbd_id");
    // set_id stats the object first: exec on a missing object is ENOENT unless created.
    assert_eq!(errno(io.exec_write(&oid, "rbd", "set_id", ceph_string("abc123")).await), Errno::ENOENT);
    let create_and_set = WriteOp::new().create(false).exec("rbd", "set_id", ceph_string("abc123"));
    io.operate_write(&oid, create_and_set).await.unwrap();
    assert_eq!(io.exec(&oid, "rbd", "get_id", Bytes::new()).await.unwrap(), ceph_string("abc123"));
    assert_eq!(errno(io.exec(&name("nobody"), "rbd", "get_id", Bytes::new()).await), Errno::ENOENT);
    assert_eq!(errno(io.exec(&oid, "rbd", "no_such_method", Bytes::new()).await), Errno::EOPNOTSUPP);
    let ro = name("ro");
    io.write_full(&ro, Bytes::new()).await.unwrap();
    let r = io.exec(&ro, "rbd", "set_id", ceph_string("x")).await;
    println!("exec of a write method through a read op -> {:?}", r.map(drop).map_err(|e| e.errno));
    let r = io.exec(&oid, "no_such_class", "m", Bytes::new()).await;
    println!("exec of an unknown class -> {:?}", r.map(drop).map_err(|e| e.errno));
    println!("... and the object after it: {:?}", io.read(&ro, 0, 0).await.map_err(|e| e.errno));
    io.remove(&ro).await.unwrap();
    io.remove(&oid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_notify() {
    let Some((c, io)) = lab("watch_notify").await else { return };
    let oid = name("watched");
    io.write_full(&oid, Bytes::new()).await.unwrap();
    let mut watch = io.watch(&oid).await.unwrap();
    assert!(io.watch_check(watch.cookie).await.unwrap() < Duration::from_secs(60));

    let notifier = {
        let io = io.clone();
        let oid = oid.clone();
        tokio::spawn(async move { io.notify(&oid, Bytes::from_static(b"ping"), Duration::from_secs(5)).await })
    };
    let Some(WatchEvent::Notify(n)) = watch.next().await else { panic!("no notification") };
    assert_eq!((n.payload.as_ref(), n.cookie, n.notifier_id), (&b"ping"[..], watch.cookie, c.instance_id()));
    io.notify_ack(&oid, n.notify_id, n.cookie, Bytes::from_static(b"pong")).await.unwrap();
    let reply = notifier.await.unwrap().unwrap();
    assert_eq!(reply.acks.len(), 1);
    assert_eq!((reply.acks[0].notifier_id, reply.acks[0].cookie), (c.instance_id(), watch.cookie));
    assert_eq!(reply.acks[0].payload, Bytes::from_static(b"pong"));
    assert!(reply.timeouts.is_empty());

    // Unacked: a timeout in the reply, not an error.
    let started = Instant::now();
    let reply = io.notify(&oid, Bytes::new(), Duration::from_secs(1)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!((reply.acks.len(), reply.timeouts), (0, vec![(c.instance_id(), watch.cookie)]));
    assert!(matches!(watch.next().await, Some(WatchEvent::Notify(_))));

    // A consumer that lags: past the queue, the backend acks for it and reports Lagged.
    let burst = rbd_relay::rados::WATCH_QUEUE + 20;
    let notifies = (0..burst).map(|_| io.notify(&oid, Bytes::new(), Duration::from_secs(2)));
    let replies = futures::future::join_all(notifies).await;
    let acked = replies.iter().filter(|r| r.as_ref().is_ok_and(|r| r.acks.len() == 1)).count();
    assert!(acked >= 20, "auto-acked {acked} of {burst}");
    assert_eq!(watch.next().await, Some(WatchEvent::Lagged));

    io.unwatch(watch.cookie).await.unwrap();
    assert_eq!(errno(io.unwatch(watch.cookie).await), Errno::ENOENT);
    assert_eq!(errno(io.watch_check(watch.cookie).await), Errno::ENOENT);
    let reply = io.notify(&oid, Bytes::new(), Duration::from_secs(1)).await.unwrap();
    assert_eq!(reply, Default::default());
    let r = io.watch(&name("nobody")).await;
    println!("watch on a missing object -> {:?}", r.map(|w| w.cookie).map_err(|e| e.errno));
    io.remove(&oid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_namespaces() {
    let Some((_c, io)) = lab("snapshots_and_namespaces").await else { return };
    let oid = name("snapped");
    io.write_full(&oid, Bytes::from_static(b"one")).await.unwrap();
    let s1 = io.selfmanaged_snap_create().await.unwrap();
    let snapc = SnapContext { seq: s1, snaps: vec![s1] };
    let w = WriteOp::new().write_full(&b"two!"[..]).snap_context(snapc.clone());
    io.operate_write(&oid, w).await.unwrap();
    assert_eq!(io.read(&oid, 0, 0).await.unwrap(), Bytes::from_static(b"two!"));
    assert_eq!(io.read_at_snap(&oid, 0, 0, s1).await.unwrap(), Bytes::from_static(b"one"));
    assert_eq!(io.read_at_snap(&oid, 1, 10, s1).await.unwrap(), Bytes::from_static(b"ne"));
    io.selfmanaged_snap_rollback(&oid, s1, &snapc).await.unwrap();
    assert_eq!(io.read(&oid, 0, 0).await.unwrap(), Bytes::from_static(b"one"));
    let bad = SnapContext { seq: 1, snaps: vec![s1 + 100] }; // seq below a snap: invalid
    let r = io.operate_write(&oid, WriteOp::new().write_full(&b"x"[..]).snap_context(bad)).await;
    assert_eq!(errno(r), Errno::EINVAL);
    io.remove(&oid).await.unwrap();
    io.selfmanaged_snap_remove(s1).await.unwrap();

    let ns = io.with_namespace("smoke-ns");
    assert_eq!((ns.namespace(), ns.pool_id()), ("smoke-ns", io.pool_id()));
    let obj = name("in-ns");
    ns.write_full(&obj, Bytes::from_static(b"x")).await.unwrap();
    assert!(ns.list_objects().await.unwrap().contains(&obj));
    assert!(!io.list_objects().await.unwrap().contains(&obj));
    assert_eq!(errno(io.stat(&obj).await), Errno::ENOENT);
    ns.remove(&obj).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_futures_leave_ops_valid() {
    let Some((_c, io)) = lab("dropped_futures_leave_ops_valid").await else { return };
    let oid = name("dropped");
    for i in 0..200u64 {
        // Polled once (submitted), then dropped while in flight.
        let _ = io.operate_write(&oid, WriteOp::new().write(i, &b"z"[..])).now_or_never();
        let _ = io.operate_read(&oid, ReadOp::new().read(0, 4096).omap_get_vals("", "", 10)).now_or_never();
        let _ = io.notify(&oid, Bytes::new(), Duration::from_millis(100)).now_or_never();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(io.stat(&oid).await.unwrap().size > 0);
    io.remove(&oid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cluster_fails_in_bounded_time() {
    if std::env::var("RBD_RELAY_SKIP_CEPH").as_deref() == Ok("1") {
        eprintln!("*** SKIPPED librados_smoke::unreachable_cluster_fails_in_bounded_time ***");
        return;
    }
    let cfg = ConnectConfig {
        mon_host: Some("v2:127.0.0.1:9".into()),
        key: Some(rbd_relay::rados::librados::CephKey::new("AQBPLbZmAAAAABAAm3aMvhlJCz8N1/ziFU/pTQ==")),
        mount_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    assert!(!format!("{cfg:?}").contains("AQBP"), "key leaked into Debug");
    let started = Instant::now();
    let err = LibradosCluster::connect(cfg).await.map(drop).expect_err("connected to nothing");
    println!("connect to a dead mon -> {err} after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!err.to_string().contains("AQBP"));
}
