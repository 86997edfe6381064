//! Watch/notify across clients and when a watcher goes away: notifications reach every
//! client's watches, a watcher that unwatches while a notify waits for it is simply dropped
//! from it (neither acked nor timed out, the notify completes without waiting), and a
//! blocklisted watcher's stream reports the error, its calls fail, and notifies stop
//! waiting for it; removing a watched object disconnects its watchers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rbd_relay::rados::{Errno, IoCtx, Rados, Watch, WatchEvent};

use crate::harness::{Lab, errno, name};

type Io<L> = <<L as Lab>::R as Rados>::IoCtx;

async fn next_notify(w: &mut Watch) -> rbd_relay::rados::Notification {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(WatchEvent::Notify(n))) => n,
        other => panic!("expected a notification, got {other:?}"),
    }
}

pub async fn cross_client_notify<L: Lab>(lab: &L, c: &L::R, io: &Io<L>) {
    let oid = name("cross");
    io.write_full(&oid, Bytes::new()).await.unwrap();
    let c2 = lab.connect().await;
    let io2 = c2.ioctx("rbd").await.unwrap();
    assert_ne!(c.instance_id(), c2.instance_id());
    let mut mine = io.watch(&oid).await.unwrap();
    let mut theirs = io2.watch(&oid).await.unwrap();
    let notify = {
        let (io2, oid) = (io2.clone(), oid.clone());
        tokio::spawn(async move {
            io2.notify(&oid, Bytes::from_static(b"hi"), Duration::from_secs(10))
                .await
        })
    };
    for (w, ioc) in [(&mut mine, io), (&mut theirs, &io2)] {
        let n = next_notify(w).await;
        assert_eq!(
            (n.notifier_id, &n.payload[..]),
            (c2.instance_id(), &b"hi"[..])
        );
        let reply = Bytes::from(format!("from {}", n.cookie));
        ioc.notify_ack(&oid, n.notify_id, n.cookie, reply)
            .await
            .unwrap();
    }
    let mut reply = notify.await.unwrap().unwrap();
    reply.acks.sort_by_key(|a| a.notifier_id);
    let got: Vec<_> = reply
        .acks
        .iter()
        .map(|a| (a.notifier_id, a.cookie))
        .collect();
    assert_eq!(
        got,
        vec![
            (c.instance_id(), mine.cookie),
            (c2.instance_id(), theirs.cookie)
        ]
    );
    assert_eq!(
        reply.acks[0].payload,
        Bytes::from(format!("from {}", mine.cookie))
    );
    assert!(reply.timeouts.is_empty());
    io.unwatch(mine.cookie).await.unwrap();
    io2.unwatch(theirs.cookie).await.unwrap();
    io.remove(&oid).await.unwrap();
}

pub async fn unwatch_during_notify<L: Lab>(lab: &L, _c: &L::R, io: &Io<L>) {
    let oid = name("leaving");
    io.write_full(&oid, Bytes::new()).await.unwrap();
    let c2 = lab.connect().await;
    let io2 = c2.ioctx("rbd").await.unwrap();
    let mut leaving = io2.watch(&oid).await.unwrap();
    let started = Instant::now();
    let notify = {
        let (io, oid) = (io.clone(), oid.clone());
        tokio::spawn(async move { io.notify(&oid, Bytes::new(), Duration::from_secs(20)).await })
    };
    next_notify(&mut leaving).await;
    io2.unwatch(leaving.cookie).await.unwrap();
    let reply = notify.await.unwrap().unwrap();
    eprintln!(
        "unwatch during notify: {reply:?} after {:?}",
        started.elapsed()
    );
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
    io.remove(&oid).await.unwrap();
}

pub async fn blocklisted_watcher<L: Lab>(lab: &L, c: &L::R, io: &Io<L>) {
    let oid = name("blocklisted");
    io.write_full(&oid, Bytes::new()).await.unwrap();
    let victim = lab.connect().await;
    let vio = victim.ioctx("rbd").await.unwrap();
    let mut watch = vio.watch(&oid).await.unwrap();
    let mut survivor = io.watch(&oid).await.unwrap();
    let started = Instant::now();
    let token = lab.blocklist(&victim, &oid).await;
    let ev = tokio::time::timeout(Duration::from_secs(60), watch.next()).await;
    eprintln!(
        "blocklisted watch event: {ev:?} after {:?}",
        started.elapsed()
    );
    let e = match ev {
        Ok(Some(WatchEvent::Error(e))) => e,
        other => panic!("expected a watch error, got {other:?}"),
    };
    let check = vio.watch_check(watch.cookie).await;
    let read = vio.read(&oid, 0, 0).await;
    eprintln!("watch error {e}, watch_check {check:?}, read {read:?}");
    // The cluster stops counting the victim: a notify waits only for the survivor.
    let notify = {
        let (io, oid) = (io.clone(), oid.clone());
        tokio::spawn(async move { io.notify(&oid, Bytes::new(), Duration::from_secs(5)).await })
    };
    let n = next_notify(&mut survivor).await;
    io.notify_ack(&oid, n.notify_id, n.cookie, Bytes::new())
        .await
        .unwrap();
    let reply = notify.await.unwrap().unwrap();
    eprintln!("notify after blocklist: {reply:?}");
    lab.unblocklist(token).await;
    assert_eq!(e, Errno::ENOTCONN);
    assert!(check.is_err());
    assert_eq!(errno(read), Errno::EBLOCKLISTED);
    assert_eq!(reply.acks.len(), 1);
    assert_eq!(reply.acks[0].notifier_id, c.instance_id());
    assert!(reply.timeouts.is_empty(), "{reply:?}");
    io.unwatch(survivor.cookie).await.unwrap();
    io.remove(&oid).await.unwrap();
}

/// Removing a watched object disconnects its watchers (the OSD cancels their watches).
pub async fn remove_watched_object<L: Lab>(lab: &L, _c: &L::R, io: &Io<L>) {
    let oid = name("removed");
    io.write_full(&oid, Bytes::new()).await.unwrap();
    let other = lab.connect().await;
    let oio = other.ioctx("rbd").await.unwrap();
    let mut watch = oio.watch(&oid).await.unwrap();
    io.remove(&oid).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(30), watch.next()).await;
    assert_eq!(ev.ok(), Some(Some(WatchEvent::Error(Errno::ENOTCONN))));
    assert_eq!(errno(oio.watch_check(watch.cookie).await), Errno::ENOTCONN);
    // The OSD no longer knows the watch.
    assert_eq!(errno(oio.unwatch(watch.cookie).await), Errno::ENOENT);
}
