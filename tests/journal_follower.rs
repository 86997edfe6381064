//! The follower delivers a journal as it is written, woken by header notifications; the
//! probe covers lost notifications; a broken watch is re-established without missing
//! anything; acks become batched commit positions a restart resumes from; the prefetch
//! budget holds. On the embedded backend, with faults injected; and on real Ceph, woken by
//! real librbd's notifications with the probe turned off.

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rbd_relay::cls::journal as cls;
use rbd_relay::format::UTime;
use rbd_relay::format::event::{Event, EventEntry};
use rbd_relay::format::journal::header_oid;
use rbd_relay::journal::follower::{Follower, FollowerConfig, FollowerStats, PrefetchBudget};
use rbd_relay::journal::position::CommitPosition;
use rbd_relay::journal::writer::JournalWriter;
use rbd_relay::rados::faults::{Faults, FaultyRados, NotifyFaults};
use rbd_relay::rados::memory::MemoryCluster;
use rbd_relay::rados::{IoCtx, Rados};
use tokio::time::timeout;

fn write(i: u64) -> EventEntry {
    EventEntry {
        event: Event::AioWrite {
            offset: i * 4096,
            length: 100,
            data: Bytes::from(vec![i as u8; 100]),
        },
        timestamp: UTime::new(1, 0),
    }
}

fn notify_only() -> FollowerConfig {
    FollowerConfig {
        probe_ceiling: None,
        ..Default::default()
    }
}

async fn follower<I: IoCtx>(
    io: I,
    id: &str,
    config: FollowerConfig,
) -> (Follower<I>, Arc<FollowerStats>) {
    let stats = Arc::new(FollowerStats::default());
    let budget = PrefetchBudget::new(1 << 30);
    let f = follower_sharing(io, id, config, budget, stats.clone()).await;
    (f, stats)
}

/// A follower of journal `id` as client "peer", counting against `budget`.
async fn follower_sharing<I: IoCtx>(
    io: I,
    id: &str,
    config: FollowerConfig,
    budget: Arc<PrefetchBudget>,
    stats: Arc<FollowerStats>,
) -> Follower<I> {
    Follower::open(io, id, "peer", Bytes::new(), config, budget, stats)
        .await
        .unwrap()
}

/// Collects `n` entries (tids) from the follower, failing after 10 s.
async fn take<I: IoCtx>(f: &mut Follower<I>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = timeout(Duration::from_secs(10), f.next())
            .await
            .expect("follower stalled")
            .unwrap();
        for (e, p) in batch {
            got.push(e.entry_tid);
            f.ack(&e, p).await.unwrap();
        }
    }
    got
}

#[tokio::test]
async fn woken_by_notifications_and_resumes_after_commits() {
    let (_c, io) = support::memory().await;
    let mut w = JournalWriter::create(io.clone(), "j", 12, 2, "")
        .await
        .unwrap();
    let (mut f, stats) = follower(
        io.clone(),
        "j",
        FollowerConfig {
            commit_entries: 5,
            ..notify_only()
        },
    )
    .await;
    for i in 0..3 {
        w.append(&write(i)).await.unwrap();
    }
    assert_eq!(take(&mut f, 3).await, [0, 1, 2]);
    let writer = tokio::spawn(async move {
        // Like librbd: each write is committed once applied, and the commit notifies.
        let mut committed = CommitPosition::new(2, &Default::default());
        for i in 3..40 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            committed.advance(w.append(&write(i)).await.unwrap());
            w.commit(committed.position()).await.unwrap();
        }
        w
    });
    assert_eq!(take(&mut f, 37).await, (3..40).collect::<Vec<_>>());
    let _w = writer.await.unwrap();
    assert!(stats.notifications.load(Ordering::Relaxed) > 0);
    assert_eq!(stats.probes.load(Ordering::Relaxed), 0, "probe is off");
    // Commits were batched (every 5 acks), and the last flush stores everything.
    assert!(stats.commits.load(Ordering::Relaxed) >= 7);
    f.flush_commit().await.unwrap();
    let stored = cls::get_client(&io, &header_oid("j"), "peer")
        .await
        .unwrap()
        .commit_position;
    assert_eq!(&stored, f.committed());
    assert_eq!(stored.object_positions[0].entry_tid, 39);
    f.close().await;
    // A restarted follower resumes after the commit position: nothing twice.
    let mut w = JournalWriter::open(io.clone(), "j").await.unwrap();
    w.append(&write(100)).await.unwrap();
    let (mut f, _) = follower(io.clone(), "j", notify_only()).await;
    let batch = timeout(Duration::from_secs(5), f.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        batch
            .iter()
            .map(|(e, _)| (e.tag_tid, e.entry_tid))
            .collect::<Vec<_>>(),
        [(2, 0)]
    );
}

#[tokio::test]
async fn lost_notifications_are_covered_by_the_probe() {
    let cluster = MemoryCluster::default();
    cluster.create_pool("rbd").unwrap();
    let io = cluster.connect().ioctx("rbd").await.unwrap();
    let faults = Faults::new(1);
    faults.set_notify(NotifyFaults {
        drop: 1.0,
        ..Default::default()
    });
    let lossy = FaultyRados::new(cluster.connect(), faults.clone())
        .ioctx("rbd")
        .await
        .unwrap();
    let mut w = JournalWriter::create(io.clone(), "j", 12, 2, "")
        .await
        .unwrap();
    let config = FollowerConfig {
        probe_floor: Duration::from_millis(20),
        probe_ceiling: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let (mut f, stats) = follower(lossy, "j", config).await;
    let writer = tokio::spawn(async move {
        for i in 0..10 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            w.append(&write(i)).await.unwrap();
        }
    });
    assert_eq!(take(&mut f, 10).await, (0..10).collect::<Vec<_>>());
    writer.await.unwrap();
    assert!(stats.probes.load(Ordering::Relaxed) > 0);
    assert_eq!(
        stats.notifications.load(Ordering::Relaxed),
        0,
        "every notification was dropped"
    );
    assert!(faults.injected() > 0);
}

/// Idle at the probe's ceiling with a live watch, the follower reads the journal only once
/// per `probe_idle`; right after entries it probes as before.
#[tokio::test]
async fn an_idle_follower_with_a_live_watch_reads_only_per_probe_idle() {
    for (probe_idle, looks) in [
        (Duration::from_secs(60), false),
        (Duration::from_millis(100), true),
    ] {
        let (_c, io) = support::memory().await;
        let mut w = JournalWriter::create(io.clone(), "j", 12, 2, "")
            .await
            .unwrap();
        let config = FollowerConfig {
            probe_floor: Duration::from_millis(10),
            probe_ceiling: Some(Duration::from_millis(40)),
            probe_idle,
            ..Default::default()
        };
        let (mut f, stats) = follower(io.clone(), "j", config).await;
        w.append(&write(0)).await.unwrap();
        assert_eq!(take(&mut f, 1).await, [0]);
        // Past the floor-to-ceiling probes (10 + 20 + 40 ms) and the first at the ceiling.
        let _ = timeout(Duration::from_millis(300), f.next()).await;
        let before = stats.probes.load(Ordering::Relaxed);
        assert!(before > 0, "no probe right after entries");
        let _ = timeout(Duration::from_millis(600), f.next()).await;
        let after = stats.probes.load(Ordering::Relaxed);
        assert_eq!(
            after > before,
            looks,
            "probe_idle {probe_idle:?}: {before} then {after} probes"
        );
    }
}

#[tokio::test]
async fn broken_watch_is_rewatched_without_loss() {
    let cluster = MemoryCluster::default();
    cluster.create_pool("rbd").unwrap();
    let io = cluster.connect().ioctx("rbd").await.unwrap();
    let conn = cluster.connect();
    let gid = conn.instance_id();
    let mut w = JournalWriter::create(io.clone(), "j", 12, 2, "")
        .await
        .unwrap();
    let (mut f, stats) = follower(conn.ioctx("rbd").await.unwrap(), "j", notify_only()).await;
    w.append(&write(0)).await.unwrap();
    assert_eq!(take(&mut f, 1).await, [0]);
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cluster.disconnect_watches(gid);
        for i in 1..6 {
            w.append(&write(i)).await.unwrap(); // notifications lost while disconnected
        }
    });
    assert_eq!(take(&mut f, 5).await, [1, 2, 3, 4, 5]);
    writer.await.unwrap();
    assert_eq!(stats.watch_errors.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn prefetch_budget_holds() {
    let (_c, io) = support::memory().await;
    let mut w = JournalWriter::create(io.clone(), "j", 16, 2, "")
        .await
        .unwrap();
    for i in 0..50 {
        w.append(&write(i)).await.unwrap();
    }
    let budget = PrefetchBudget::new(1 << 30);
    let config = FollowerConfig {
        image_budget_bytes: 1000,
        batch_entries: 4,
        ..notify_only()
    };
    let mut f = follower_sharing(io, "j", config, budget.clone(), Default::default()).await;
    let mut held = Vec::new();
    loop {
        let batch = f.next().await.unwrap();
        if batch.is_empty() {
            break; // over budget: nothing more until acks
        }
        held.extend(batch);
    }
    let bytes: usize = held.iter().map(|(e, _)| e.data.len()).sum();
    assert!((1000 - 200..=1000).contains(&bytes), "{bytes} bytes held");
    assert_eq!(budget.used(), bytes);
    for (e, p) in held.drain(..) {
        f.ack(&e, p).await.unwrap();
    }
    assert_eq!(budget.used(), 0);
    assert!(!f.next().await.unwrap().is_empty(), "acks free the budget");
}

/// Journals `names`, 50 entries each, and a follower for each sharing one global budget
/// of `limit` bytes.
async fn shared_budget_followers(
    limit: usize,
    image_budget_bytes: usize,
    names: &[&str],
) -> (impl Rados, Arc<PrefetchBudget>, Vec<Follower<impl IoCtx>>) {
    let (client, io) = support::memory().await;
    let budget = PrefetchBudget::new(limit);
    let mut followers = Vec::new();
    for name in names {
        let mut w = JournalWriter::create(io.clone(), name, 16, 2, "")
            .await
            .unwrap();
        for i in 0..50 {
            w.append(&write(i)).await.unwrap();
        }
        let config = FollowerConfig {
            batch_entries: 512,
            image_budget_bytes,
            ..notify_only()
        };
        let f = follower_sharing(io.clone(), name, config, budget.clone(), Default::default());
        followers.push(f.await);
    }
    (client, budget, followers)
}

/// The global budget bounds what all followers hold together, batches included: a follower
/// with nothing in flight waits while others hold the budget, and resumes on their acks.
#[tokio::test]
async fn the_global_budget_bounds_batches_across_followers() {
    let (_c, budget, mut fs) = shared_budget_followers(1000, 1 << 30, &["a", "b"]).await;
    let mut b = fs.pop().unwrap();
    let mut a = fs.pop().unwrap();
    let held = a.next().await.unwrap();
    let bytes: usize = held.iter().map(|(e, _)| e.data.len()).sum();
    assert!(
        !held.is_empty() && bytes <= 1000,
        "{bytes} bytes in a batch"
    );
    assert_eq!(budget.used(), bytes);
    let mut waiting = tokio::spawn(async move {
        let batch = b.next().await.unwrap();
        (b, batch)
    });
    assert!(
        timeout(Duration::from_millis(200), &mut waiting)
            .await
            .is_err(),
        "the second follower must wait for room"
    );
    assert_eq!(budget.used(), bytes);
    for (e, p) in held {
        a.ack(&e, p).await.unwrap();
    }
    let (_b, batch) = timeout(Duration::from_secs(5), waiting)
        .await
        .expect("acks wake the waiting follower")
        .unwrap();
    assert!(!batch.is_empty());
    assert!(budget.used() <= 1000, "{} bytes held", budget.used());
}

/// An entry larger than the whole budget still passes when nothing else is held, a
/// follower dropped with entries unacked gives their bytes back, and an image budget
/// below one entry lets entries through one at a time.
#[tokio::test]
async fn an_oversized_entry_passes_alone_and_a_dropped_follower_releases() {
    let (_c, budget, mut fs) = shared_budget_followers(10, 1 << 30, &["a"]).await;
    let mut a = fs.pop().unwrap();
    let batch = a.next().await.unwrap();
    assert_eq!(batch.len(), 1, "one entry at a time over a tiny budget");
    assert!(budget.used() > 10);
    drop(a);
    assert_eq!(budget.used(), 0, "a dropped follower releases what it held");
    // The same under an image budget below one entry: one at a time, acks let the next in.
    let (_c, _, mut fs) = shared_budget_followers(1 << 30, 10, &["b"]).await;
    let mut b = fs.pop().unwrap();
    for tid in 0..3 {
        let batch = b.next().await.unwrap();
        assert_eq!(
            batch.iter().map(|(e, _)| e.entry_tid).collect::<Vec<_>>(),
            [tid]
        );
        assert!(
            b.next().await.unwrap().is_empty(),
            "nothing more until the ack"
        );
        for (e, p) in batch {
            b.ack(&e, p).await.unwrap();
        }
    }
}

/// Bytes behind count a backlog before it is read (closed objects at their nominal size),
/// and reach zero once everything is applied.
#[tokio::test]
async fn bytes_behind_see_the_backlog_and_drain_to_zero() {
    let (_c, io) = support::memory().await;
    // 4 KiB objects, 2 per set: 300 entries of ~150 bytes close several sets.
    let mut w = JournalWriter::create(io.clone(), "j", 12, 2, "")
        .await
        .unwrap();
    for i in 0..300 {
        w.append(&write(i)).await.unwrap();
    }
    let mut journal = 0;
    let mut objects = 0;
    for oid in io.list_objects().await.unwrap() {
        if oid.starts_with("journal_data.") {
            journal += io.stat(&oid).await.unwrap().size;
            objects += 1;
        }
    }
    let config = FollowerConfig {
        batch_entries: 4,
        ..notify_only()
    };
    let (mut f, _) = follower(io, "j", config).await;
    // Known from the header before any read: the closed sets. At most one entry per
    // closed object over; the active set's objects are not counted.
    let plausible = journal / 2..journal + objects * 200;
    let before = f.bytes_behind();
    assert!(
        plausible.contains(&before),
        "{before} bytes behind, journal {journal} bytes in {objects} objects"
    );
    let first = f.next().await.unwrap();
    let behind = f.bytes_behind();
    assert!(
        plausible.contains(&behind),
        "{behind} bytes behind after a read"
    );
    for (e, p) in first {
        f.ack(&e, p).await.unwrap();
    }
    assert!(f.bytes_behind() < behind, "acks reduce it");
    take(&mut f, 296).await;
    assert_eq!(f.bytes_behind(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_librbd_notifications_wake_the_follower() {
    let Some((_c, io)) = support::librados("real_librbd_notifications_wake_the_follower").await
    else {
        return;
    };
    let (_image, spec, id) = support::journaled_image("follow", &[]);
    let rbd = |args: &[&str]| support::cli("rbd", args);
    let (mut f, stats) = follower(io.clone(), &id, notify_only()).await;
    // librbd with a short commit age notifies the header right after each write; the
    // follower, caught up and with its probe off, can only learn of them that way.
    let bench_spec = spec.clone();
    let bench = tokio::task::spawn_blocking(move || {
        let args = [
            "bench",
            "--io-type",
            "write",
            "--io-size",
            "4K",
            "--io-total",
            "40K",
            "--rbd-journal-commit-age",
            "0.01",
        ];
        support::cli("rbd", &[&args[..], &[bench_spec.as_str()]].concat())
    });
    // rbd bench journals an AioFlush and then its 10 writes, all in one new tag.
    let got = take(&mut f, 11).await;
    bench.await.unwrap();
    assert_eq!(got, (0..got.len() as u64).collect::<Vec<_>>());
    assert!(stats.notifications.load(Ordering::Relaxed) > 0);
    assert_eq!(stats.probes.load(Ordering::Relaxed), 0);
    f.flush_commit().await.unwrap();
    f.close().await;
    cls::client_unregister(&io, &header_oid(&id), "peer")
        .await
        .unwrap();
    rbd(&["rm", &spec]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_librbd_trims_behind_our_commits() {
    let Some((_c, io)) = support::librados("real_librbd_trims_behind_our_commits").await else {
        return;
    };
    let rbd = |args: &[&str]| support::cli("rbd", args);
    let (image, spec, id) = support::journaled_image("trim", &["--journal-object-size", "4K"]);
    let header = header_oid(&id);
    let (mut f, _) = follower(io.clone(), &id, notify_only()).await;
    rbd(&[
        "bench",
        "--io-type",
        "write",
        "--io-size",
        "4K",
        "--io-total",
        "64K",
        &spec,
    ]);
    let first = format!("journal_data.{}.{id}.0", io.pool_id());
    assert!(
        io.stat(&first).await.is_ok(),
        "our registration keeps the journal from being trimmed"
    );
    let n: usize = rbd(&["journal", "inspect", "-p", "rbd", "--image", &image])
        .split(" entries inspected")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    take(&mut f, n).await;
    f.flush_commit().await.unwrap();
    // librbd trims once every client committed past a set (its next commit runs the trimmer).
    rbd(&[
        "bench",
        "--io-type",
        "write",
        "--io-size",
        "4K",
        "--io-total",
        "4K",
        &spec,
    ]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cls::get_minimum_set(&io, &header).await.unwrap() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the primary did not trim behind our commit position"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(io.stat(&first).await.is_err(), "trimmed objects are gone");
    let status = rbd(&[
        "journal", "status", "-p", "rbd", "--image", &image, "--format", "json",
    ]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let ours = status["registered_clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "peer")
        .expect("our client");
    let newest = &ours["commit_position"]["object_positions"][0];
    let stored = &f.committed().object_positions[0];
    assert_eq!(
        (newest["tag_tid"].as_u64(), newest["entry_tid"].as_u64()),
        (Some(stored.tag_tid), Some(stored.entry_tid))
    );
    f.close().await;
    cls::client_unregister(&io, &header, "peer").await.unwrap();
    rbd(&["rm", &spec]);
}
