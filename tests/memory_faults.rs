//! The embedded backend's fault hooks and the fault-injection layer, which later tests use
//! to prove that lost, duplicated or late notifications and transient errors change only
//! latency: a disconnected watch reports its error and stops receiving; a blocklisted
//! client fails every call; the layer drops, duplicates and fails what its plan says.

use std::time::Duration;

use bytes::Bytes;
use rbd_relay::rados::faults::{Faults, FaultyIoCtx, FaultyRados, NotifyFaults, OpFault};
use rbd_relay::rados::memory::MemoryCluster;
use rbd_relay::rados::{Errno, IoCtx, Rados, RadosOp, WatchEvent};

async fn cluster() -> (MemoryCluster, rbd_relay::rados::memory::MemoryRados) {
    let cluster = MemoryCluster::default();
    cluster.create_pool("rbd").unwrap();
    let c = cluster.connect();
    (cluster, c)
}

/// Pool `rbd` through a fault plan seeded with `seed`.
async fn faulty(
    c: rbd_relay::rados::memory::MemoryRados,
    seed: u64,
) -> (Faults, FaultyIoCtx<rbd_relay::rados::memory::MemoryIoCtx>) {
    let faults = Faults::new(seed);
    let io = FaultyRados::new(c, faults.clone())
        .ioctx("rbd")
        .await
        .unwrap();
    (faults, io)
}

#[tokio::test]
async fn disconnected_watch_reports_and_stops() {
    let (cluster, c) = cluster().await;
    let io = c.ioctx("rbd").await.unwrap();
    io.write_full("obj", Bytes::new()).await.unwrap();
    let mut watch = io.watch("obj").await.unwrap();
    let other = cluster.connect().ioctx("rbd").await.unwrap();
    cluster.disconnect_watches(c.instance_id());
    assert_eq!(watch.next().await, Some(WatchEvent::Error(Errno::ENOTCONN)));
    assert_eq!(
        io.watch_check(watch.cookie).await.unwrap_err().errno,
        Errno::ENOTCONN
    );
    // The broken watch no longer counts as a watcher: notifies complete at once.
    let reply = other
        .notify("obj", Bytes::new(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, Default::default());
    // Re-watching works: the client itself is fine.
    let mut again = io.watch("obj").await.unwrap();
    let n = tokio::spawn(async move {
        other
            .notify("obj", Bytes::new(), Duration::from_secs(5))
            .await
    });
    let Some(WatchEvent::Notify(ev)) = again.next().await else {
        panic!("no notify")
    };
    io.notify_ack("obj", ev.notify_id, ev.cookie, Bytes::new())
        .await
        .unwrap();
    assert_eq!(n.await.unwrap().unwrap().acks.len(), 1);
}

#[tokio::test]
async fn blocklisted_client_fails_everything() {
    let (cluster, c) = cluster().await;
    let io = c.ioctx("rbd").await.unwrap();
    io.write_full("obj", Bytes::new()).await.unwrap();
    let mut watch = io.watch("obj").await.unwrap();
    cluster.blocklist(c.instance_id());
    assert_eq!(watch.next().await, Some(WatchEvent::Error(Errno::ENOTCONN)));
    assert_eq!(
        io.read("obj", 0, 0).await.unwrap_err().errno,
        Errno::EBLOCKLISTED
    );
    assert_eq!(
        c.pool_lookup("rbd").await.unwrap_err().errno,
        Errno::EBLOCKLISTED
    );
    assert!(
        io.read("obj", 0, 0).await.unwrap_err().is_transient(),
        "a reconnect cures it"
    );
    // Other clients are unaffected.
    let fresh = cluster.connect().ioctx("rbd").await.unwrap();
    assert_eq!(fresh.read("obj", 0, 0).await.unwrap(), Bytes::new());
}

#[tokio::test]
async fn injected_op_failures_follow_the_plan() {
    let (_cluster, c) = cluster().await;
    let (faults, io) = faulty(c, 7).await;
    faults.fail(OpFault {
        op: RadosOp::Write,
        object_prefix: "journal".into(),
        errno: Errno::ETIMEDOUT,
        skip: 1,
        times: 2,
    });
    io.write_full("journal.1", Bytes::new()).await.unwrap(); // skipped
    for _ in 0..2 {
        assert_eq!(
            io.write_full("journal.1", Bytes::new())
                .await
                .unwrap_err()
                .errno,
            Errno::ETIMEDOUT
        );
    }
    io.write_full("journal.1", Bytes::new()).await.unwrap();
    io.write_full("other", Bytes::new()).await.unwrap();
    assert_eq!(faults.injected(), 2);
}

#[tokio::test]
async fn dropped_and_duplicated_notifications() {
    let (cluster, c) = cluster().await;
    let (faults, io) = faulty(c, 42).await;
    let notifier = cluster.connect().ioctx("rbd").await.unwrap();
    io.write_full("obj", Bytes::new()).await.unwrap();

    faults.set_notify(NotifyFaults {
        drop: 1.0,
        ..Default::default()
    });
    let mut watch = io.watch("obj").await.unwrap();
    // Dropped: the notifier still completes (acked on the consumer's behalf), nothing arrives.
    let reply = notifier
        .notify("obj", Bytes::new(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((reply.acks.len(), reply.timeouts.len()), (1, 0));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), watch.next())
            .await
            .is_err()
    );

    faults.set_notify(NotifyFaults {
        duplicate: 1.0,
        ..Default::default()
    });
    let n = tokio::spawn(async move {
        notifier
            .notify("obj", Bytes::from_static(b"x"), Duration::from_secs(5))
            .await
    });
    for _ in 0..2 {
        let Some(WatchEvent::Notify(ev)) = watch.next().await else {
            panic!("no notify")
        };
        assert_eq!(ev.payload, Bytes::from_static(b"x"));
        io.notify_ack("obj", ev.notify_id, ev.cookie, Bytes::new())
            .await
            .unwrap();
    }
    assert_eq!(n.await.unwrap().unwrap().acks.len(), 1);
    assert_eq!(faults.injected(), 2);
}

/// A hang is a down OSD seen through an op timeout: matching calls wait, then fail with
/// ETIMEDOUT (transient); others pass at once; a clear heals it.
#[tokio::test]
async fn hung_calls_wait_then_time_out_until_cleared() {
    let (_cluster, c) = cluster().await;
    let (faults, io) = faulty(c, 5).await;
    io.write_full("journal.1", Bytes::new()).await.unwrap();
    faults.hang("journal.", Duration::from_millis(200));
    let started = std::time::Instant::now();
    let e = io.read("journal.1", 0, 0).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!((e.errno, e.is_transient()), (Errno::ETIMEDOUT, true));
    io.write_full("other", Bytes::new()).await.unwrap();
    assert_eq!(faults.injected(), 1);
    faults.clear();
    assert_eq!(io.read("journal.1", 0, 0).await.unwrap(), Bytes::new());
}
