//! Watch/notify: delivery with the notifier's id, acks with reply payloads, timeouts reported
//! in the reply (not as an error), a lagging consumer auto-acked and told `Lagged`, unwatch.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rbd_relay::rados::{Errno, IoCtx, Rados, WATCH_QUEUE, WatchEvent};

use crate::harness::{errno, name};

async fn watched<I: IoCtx>(io: &I, what: &str) -> String {
    let oid = name(what);
    io.write_full(&oid, Bytes::new()).await.unwrap();
    oid
}

pub async fn notify_and_ack<R: Rados>(c: &R, io: &R::IoCtx) {
    let oid = watched(io, "watched").await;
    let mut watch = io.watch(&oid).await.unwrap();
    let mut second = io.watch(&oid).await.unwrap();
    assert_ne!(watch.cookie, second.cookie);
    assert!(io.watch_check(watch.cookie).await.unwrap() < Duration::from_secs(60));
    let notifier = {
        let (io, oid) = (io.clone(), oid.clone());
        tokio::spawn(async move {
            io.notify(&oid, Bytes::from_static(b"ping"), Duration::from_secs(10))
                .await
        })
    };
    for w in [&mut watch, &mut second] {
        let Some(WatchEvent::Notify(n)) = w.next().await else {
            panic!("no notification")
        };
        assert_eq!(
            (n.payload.as_ref(), n.cookie, n.notifier_id),
            (&b"ping"[..], w.cookie, c.instance_id())
        );
        io.notify_ack(
            &oid,
            n.notify_id,
            n.cookie,
            Bytes::from(format!("pong{}", n.cookie)),
        )
        .await
        .unwrap();
    }
    let mut reply = notifier.await.unwrap().unwrap();
    reply.acks.sort_by_key(|a| a.cookie);
    assert_eq!(reply.acks.len(), 2);
    for a in &reply.acks {
        assert_eq!(a.notifier_id, c.instance_id());
        assert_eq!(a.payload, Bytes::from(format!("pong{}", a.cookie)));
    }
    assert!(reply.timeouts.is_empty());
    io.unwatch(watch.cookie).await.unwrap();
    io.unwatch(second.cookie).await.unwrap();
    io.remove(&oid).await.unwrap();
}

pub async fn notify_timeout<R: Rados>(c: &R, io: &R::IoCtx) {
    let oid = watched(io, "unacked").await;
    let mut watch = io.watch(&oid).await.unwrap();
    let started = Instant::now();
    let reply = io
        .notify(&oid, Bytes::new(), Duration::from_secs(1))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(
        (reply.acks.len(), reply.timeouts),
        (0, vec![(c.instance_id(), watch.cookie)])
    );
    assert!(matches!(watch.next().await, Some(WatchEvent::Notify(_))));
    io.unwatch(watch.cookie).await.unwrap();
    io.remove(&oid).await.unwrap();
}

pub async fn lagging_consumer<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = watched(io, "lagging").await;
    let mut watch = io.watch(&oid).await.unwrap();
    // Past the queue, the backend acks for the consumer and reports Lagged.
    let burst = WATCH_QUEUE + 20;
    let notifies = (0..burst).map(|_| io.notify(&oid, Bytes::new(), Duration::from_secs(2)));
    let replies = futures::future::join_all(notifies).await;
    let acked = replies
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.acks.len() == 1))
        .count();
    assert!(acked >= 20, "auto-acked {acked} of {burst}");
    assert_eq!(watch.next().await, Some(WatchEvent::Lagged));
    io.unwatch(watch.cookie).await.unwrap();
    io.remove(&oid).await.unwrap();
}

pub async fn unwatch_and_missing<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = watched(io, "unwatched").await;
    let watch = io.watch(&oid).await.unwrap();
    io.unwatch(watch.cookie).await.unwrap();
    assert_eq!(errno(io.unwatch(watch.cookie).await), Errno::ENOENT);
    assert_eq!(errno(io.watch_check(watch.cookie).await), Errno::ENOENT);
    let reply = io
        .notify(&oid, Bytes::new(), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        reply,
        Default::default(),
        "no watchers: an empty reply at once"
    );
    assert_eq!(errno(io.watch(&name("nobody")).await), Errno::ENOENT);
    let missing = name("nobody");
    let reply = io
        .notify(&missing, Bytes::new(), Duration::from_secs(1))
        .await;
    assert_eq!(errno(reply), Errno::ENOENT);
    io.remove(&oid).await.unwrap();
}

/// A watch whose stream was dropped without an unwatch still counts as a watcher; the
/// backend acks its notifications itself (empty payload), so notifiers never wait on it.
pub async fn dropped_stream_is_acked<R: Rados>(c: &R, io: &R::IoCtx) {
    let oid = watched(io, "dropped").await;
    let cookie = io.watch(&oid).await.unwrap().cookie;
    let reply = io
        .notify(&oid, Bytes::from_static(b"x"), Duration::from_secs(5))
        .await
        .unwrap();
    let acks: Vec<_> = reply
        .acks
        .iter()
        .map(|a| (a.notifier_id, a.cookie, a.payload.len()))
        .collect();
    assert_eq!(acks, vec![(c.instance_id(), cookie, 0)]);
    assert!(reply.timeouts.is_empty());
    // Watches are per namespace: the same name elsewhere has no watcher.
    let ns = io.with_namespace("conformance-ns");
    ns.write_full(&oid, Bytes::new()).await.unwrap();
    let other = ns
        .notify(&oid, Bytes::new(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(other, Default::default());
    ns.remove(&oid).await.unwrap();
    io.unwatch(cookie).await.unwrap();
    io.remove(&oid).await.unwrap();
}

/// An auto-ack watch: the backend acks each notification as it arrives (the notifier never
/// waits for the consumer) and still delivers it.
pub async fn auto_ack<R: Rados>(c: &R, io: &R::IoCtx) {
    let oid = watched(io, "autoack").await;
    let mut watch = io
        .watch_with(&oid, rbd_relay::rados::AckMode::Auto)
        .await
        .unwrap();
    let started = Instant::now();
    let reply = io
        .notify(&oid, Bytes::from_static(b"x"), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "notifier waited for the consumer"
    );
    assert_eq!((reply.acks.len(), reply.timeouts.len()), (1, 0));
    assert_eq!(
        (reply.acks[0].notifier_id, reply.acks[0].cookie),
        (c.instance_id(), watch.cookie)
    );
    let Some(WatchEvent::Notify(n)) = watch.next().await else {
        panic!("not delivered")
    };
    assert_eq!(n.payload, Bytes::from_static(b"x"));
    io.unwatch(watch.cookie).await.unwrap();
    io.remove(&oid).await.unwrap();
}
