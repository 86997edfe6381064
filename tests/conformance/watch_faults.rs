//! Watch/notify across two clients and when a watcher goes away: notifications reach every
//! client's watches; a watcher that unwatches while a notify waits for it is simply dropped
//! from it (neither acked nor timed out, the notify completes at once); a blocklisted
//! (fenced) watcher's stream reports `ENOTCONN`, its calls fail with `EBLOCKLISTED` and
//! notifies stop waiting for it; removing a watched object disconnects its watchers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rbd_relay::rados::{Errno, IoCtx, Notification, Rados, Watch, WatchEvent};

use crate::harness::{errno, name};

async fn next_notify(w: &mut Watch) -> Notification {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(WatchEvent::Notify(n))) => n,
        other => panic!("expected a notification, got {other:?}"),
    }
}

async fn next_error(w: &mut Watch) -> Errno {
    match tokio::time::timeout(Duration::from_secs(60), w.next()).await {
        Ok(Some(WatchEvent::Error(e))) => e,
        other => panic!("expected a watch error within 60 s, got {other:?}"),
    }
}

async fn watched<I: IoCtx>(io: &I, what: &str) -> String {
    let oid = name(what);
    io.write_full(&oid, Bytes::new()).await.unwrap();
    oid
}

pub async fn cross_client_notify<R: Rados>(c1: &R, io1: &R::IoCtx, c2: &R, io2: &R::IoCtx) {
    let oid = watched(io1, "cross").await;
    assert_ne!(c1.instance_id(), c2.instance_id());
    let mut mine = io1.watch(&oid).await.unwrap();
    let mut theirs = io2.watch(&oid).await.unwrap();
    let notify = {
        let (io2, oid) = (io2.clone(), oid.clone());
        tokio::spawn(async move {
            io2.notify(&oid, Bytes::from_static(b"hi"), Duration::from_secs(10))
                .await
        })
    };
    for (w, io) in [(&mut mine, io1), (&mut theirs, io2)] {
        let n = next_notify(w).await;
        assert_eq!(
            (n.notifier_id, &n.payload[..]),
            (c2.instance_id(), &b"hi"[..])
        );
        let reply = Bytes::from(format!("from {}", n.cookie));
        io.notify_ack(&oid, n.notify_id, n.cookie, reply)
            .await
            .unwrap();
    }
    let mut reply = notify.await.unwrap().unwrap();
    reply.acks.sort_by_key(|a| a.notifier_id);
    let mut want = vec![
        (c1.instance_id(), mine.cookie),
        (c2.instance_id(), theirs.cookie),
    ];
    want.sort();
    let got: Vec<_> = reply
        .acks
        .iter()
        .map(|a| (a.notifier_id, a.cookie))
        .collect();
    assert_eq!(got, want);
    for a in &reply.acks {
        assert_eq!(a.payload, Bytes::from(format!("from {}", a.cookie)));
    }
    assert!(reply.timeouts.is_empty());
    io1.unwatch(mine.cookie).await.unwrap();
    io2.unwatch(theirs.cookie).await.unwrap();
    io1.remove(&oid).await.unwrap();
}

pub async fn unwatch_during_notify<R: Rados>(_c1: &R, io1: &R::IoCtx, _c2: &R, io2: &R::IoCtx) {
    let oid = watched(io1, "leaving").await;
    let mut leaving = io2.watch(&oid).await.unwrap();
    let started = Instant::now();
    let notify = {
        let (io1, oid) = (io1.clone(), oid.clone());
        tokio::spawn(async move {
            io1.notify(&oid, Bytes::new(), Duration::from_secs(20))
                .await
        })
    };
    next_notify(&mut leaving).await;
    io2.unwatch(leaving.cookie).await.unwrap();
    let reply = notify.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        reply,
        Default::default(),
        "the leaver is neither acked nor timed out"
    );
    io1.remove(&oid).await.unwrap();
}

/// Fencing: a blocklisted client's watch breaks (reported on its stream, never silently)
/// and its calls fail with a transient error, until it reconnects as a new client.
pub async fn blocklisted_watcher<R: Rados>(c1: &R, io1: &R::IoCtx, c2: &R, io2: &R::IoCtx) {
    let oid = watched(io1, "fenced").await;
    let mut fenced = io2.watch(&oid).await.unwrap();
    let mut survivor = io1.watch(&oid).await.unwrap();
    assert_ne!(c1.client_addr(), c2.client_addr());
    c1.blocklist_add(&c2.client_addr(), Duration::from_secs(120))
        .await
        .unwrap();
    // librados reports the broken watch as ENOTCONN, not as EBLOCKLISTED.
    assert_eq!(next_error(&mut fenced).await, Errno::ENOTCONN);
    assert_eq!(errno(io2.watch_check(fenced.cookie).await), Errno::ENOTCONN);
    let err = io2.read(&oid, 0, 0).await.map(drop).unwrap_err();
    assert_eq!(err.errno, Errno::EBLOCKLISTED);
    assert!(err.is_transient());
    // The notifier waits only for the survivor: the fenced watch is gone, not timed out.
    let notify = {
        let (io1, oid) = (io1.clone(), oid.clone());
        tokio::spawn(async move { io1.notify(&oid, Bytes::new(), Duration::from_secs(5)).await })
    };
    let n = next_notify(&mut survivor).await;
    io1.notify_ack(&oid, n.notify_id, n.cookie, Bytes::new())
        .await
        .unwrap();
    let reply = notify.await.unwrap().unwrap();
    let acks: Vec<_> = reply
        .acks
        .iter()
        .map(|a| (a.notifier_id, a.cookie))
        .collect();
    assert_eq!(acks, vec![(c1.instance_id(), survivor.cookie)]);
    assert!(reply.timeouts.is_empty(), "{reply:?}");
    io1.unwatch(survivor.cookie).await.unwrap();
    io1.remove(&oid).await.unwrap();
}

/// Removing a watched object disconnects its watchers (the OSD cancels their watches).
pub async fn remove_watched_object<R: Rados>(_c1: &R, io1: &R::IoCtx, _c2: &R, io2: &R::IoCtx) {
    let oid = watched(io1, "removed").await;
    let mut watch = io2.watch(&oid).await.unwrap();
    io1.remove(&oid).await.unwrap();
    assert_eq!(next_error(&mut watch).await, Errno::ENOTCONN);
    assert_eq!(errno(io2.watch_check(watch.cookie).await), Errno::ENOTCONN);
    // The OSD no longer knows the watch.
    assert_eq!(errno(io2.unwatch(watch.cookie).await), Errno::ENOENT);
}
