//! What only the librados backend has, against the lab: ops stay valid when their future
//! is dropped mid-flight (the aio bridge owns every buffer until completion), and an
//! unreachable cluster fails within the configured timeout without leaking the key.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use rbd_relay::rados::librados::{ConnectConfig, LibradosCluster};
use rbd_relay::rados::{IoCtx, ReadOp, WriteOp};

use crate::harness::{self, name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_futures_leave_ops_valid() {
    let Some((_c, io)) = harness::librados("dropped_futures_leave_ops_valid").await else {
        return;
    };
    let oid = name("dropped");
    for i in 0..200u64 {
        // Polled once (submitted), then dropped while in flight.
        let _ = io
            .operate_write(&oid, WriteOp::new().write(i, &b"z"[..]))
            .now_or_never();
        let _ = io
            .operate_read(&oid, ReadOp::new().read(0, 4096).omap_get_vals("", "", 10))
            .now_or_never();
        let _ = io
            .notify(&oid, Bytes::new(), Duration::from_millis(100))
            .now_or_never();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(io.stat(&oid).await.unwrap().size > 0);
    io.remove(&oid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cluster_fails_in_bounded_time() {
    if std::env::var("RBD_RELAY_SKIP_CEPH").as_deref() == Ok("1") {
        eprintln!(
            "*** SKIPPED conformance::librados_only::unreachable_cluster_fails_in_bounded_time ***"
        );
        return;
    }
    let cfg = ConnectConfig {
        mon_host: Some("v2:127.0.0.1:9".into()),
        key: Some(rbd_relay::rados::librados::CephKey::new(
            "AQBPLbZmAAAAABAAm3aMvhlJCz8N1/ziFU/pTQ==",
        )),
        mount_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    assert!(
        !format!("{cfg:?}").contains("AQBP"),
        "key leaked into Debug"
    );
    let started = Instant::now();
    let err = LibradosCluster::connect(cfg)
        .await
        .map(drop)
        .expect_err("connected to nothing");
    println!(
        "connect to a dead mon -> {err} after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!err.to_string().contains("AQBP"));
}
