//! An image sync stopped while it makes its sync point on the primary (an operator's
//! restart here; a hand-over to another instance cancels it the same way) must not leave
//! the primary's exclusive lock with our live client. It once did: the lock was granted,
//! the stop dropped the call before the reply arrived, nothing released it, and every later
//! sync of the image waited on it (30 s, then again) until the daemon died. Found by
//! `scripts/ha-check`: 4 of 16 images never replayed after three daemons started together.

#[allow(dead_code)] // each test crate uses part of the shared support
mod sites;

use std::time::Duration;

use rbd_relay::cls::{self, journal as cls_journal};
use rbd_relay::config::Settings;
use rbd_relay::demo::{POOL, TwoSites};
use rbd_relay::format::image::oids;
use rbd_relay::format::journal::header_oid as journal_oid;
use rbd_relay::format::mirror::MirrorMode;
use rbd_relay::mirror::registry::ReplayState;
use rbd_relay::mirror::{self, Env, ImageKey};
use rbd_relay::rados::faults::{Faults, FaultyRados};
use rbd_relay::rados::memory::{MemoryIoCtx, MemoryRados};
use rbd_relay::rados::{Rados, RadosOp};
use sites::{DEADLINE, FaultyPeer, logs, primary, wait_equal, workload};
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

/// Who holds the exclusive lock of the image header `header` (empty: nobody).
async fn lockers(io: &MemoryIoCtx, header: &str) -> Vec<String> {
    match cls::lock::get_info(io, header, "rbd_lock").await {
        Ok(info) => info.lockers.keys().map(|k| format!("{k:?}")).collect(),
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => panic!("lock info of {header}: {e}"),
    }
}

/// A daemon for site-b whose cls calls to the primary's object `oid` take effect at once
/// but reply 500 ms late; and its peer's fault plan.
fn late_replies_from(
    sites: &TwoSites,
    oid: &str,
) -> (Env<FaultyRados<MemoryRados>, FaultyPeer>, Faults) {
    let peer = Faults::new(1);
    peer.delay_reply(RadosOp::Exec, oid, Duration::from_millis(500));
    let env = Env::new(
        FaultyRados::new(sites.site_b.connect(), Faults::new(2)),
        FaultyPeer {
            inner: sites.connector.clone(),
            faults: peer.clone(),
        },
        Settings::default(),
    );
    (env, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_stopped_while_locking_the_primary_leaves_no_lock_behind() {
    logs();
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let name = "interrupted";
    let mut img = primary(&sites, name).await;
    workload(&mut img, 7, 50).await;
    let io_a = sites.site_a.connect().ioctx(POOL).await.unwrap();
    let header = oids::header(img.id());
    let before = lockers(&io_a, &header).await;
    // The daemon's writes to the primary's header take effect at once; it hears back late.
    let (env, peer) = late_replies_from(&sites, &header);
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(mirror::run(env.clone(), cancel.clone()));
    let global_id = cls::mirror::image_get(&io_a, img.id())
        .await
        .unwrap()
        .global_image_id;
    let key = ImageKey {
        pool: POOL.into(),
        namespace: String::new(),
        global_id,
    };

    // The daemon's lock on the primary is granted, its reply still on the way: restart.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = lockers(&io_a, &header).await;
        if !now.is_empty() && now != before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never locked the primary"
        );
        sleep(Duration::from_millis(1)).await;
    }
    env.registry.control(&key).expect("a replayer").restart();
    peer.clear();

    // The next sync takes the lock at once: replaying long before the 30 s a sync waits
    // for a busy primary lock.
    let deadline = Instant::now() + Duration::from_secs(15);
    while env.registry.view(&key).map(|v| v.state) != Some(ReplayState::Replaying) {
        assert!(
            Instant::now() < deadline,
            "not replaying 15 s after the restart: {:?}, primary locked by {:?}",
            env.registry.view(&key).map(|v| (v.state, v.description)),
            lockers(&io_a, &header).await
        );
        sleep(Duration::from_millis(20)).await;
    }
    wait_equal(&sites, name).await;
    cancel.cancel();
    daemon.await.unwrap();
}

/// A replica the primary no longer has our journal client for (an operator removed it, or
/// the journal was recreated) is copied again: what was written meanwhile is in no journal
/// we can read. A bootstrap stopped right after it registered the client anew (a hand-over,
/// a crash) must leave that decision on record. It once registered the client as replaying
/// and corrected it a moment later, so the next start replayed from where Ceph had placed
/// the new client and never copied the writes in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_stopped_after_registering_anew_still_copies_the_image() {
    logs();
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let name = "reregistered";
    let mut img = primary(&sites, name).await;
    workload(&mut img, 11, 30).await;
    let daemon = sites::start(&sites);
    wait_equal(&sites, name).await;
    daemon.stop().await;

    let io_a = sites.site_a.connect().ioctx(POOL).await.unwrap();
    let io_b = sites.site_b.connect().ioctx(POOL).await.unwrap();
    let ours = cls::mirror::uuid_get(&io_b).await.unwrap();
    let journal = journal_oid(img.id());
    cls_journal::client_unregister(&io_a, &journal, &ours)
        .await
        .unwrap();
    workload(&mut img, 12, 30).await;

    // Registered anew, the reply held back: the daemon stops before it can say more.
    let (env, _) = late_replies_from(&sites, &journal);
    let cancel = CancellationToken::new();
    let run = tokio::spawn(mirror::run(env, cancel.clone()));
    let deadline = Instant::now() + DEADLINE;
    while cls_journal::get_client(&io_a, &journal, &ours)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the daemon never registered");
        sleep(Duration::from_millis(1)).await;
    }
    cancel.cancel();
    run.await.unwrap();

    let daemon = sites::start(&sites);
    wait_equal(&sites, name).await;
    daemon.stop().await;
}
