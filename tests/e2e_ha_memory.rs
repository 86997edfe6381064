//! Several daemons on one site, on the embedded backend: three daemons (each its own client
//! of site-b, on its own runtime) share the images; one is killed (its runtime dropped: no
//! commit, no unlock, its watches expire), the others fence it and take its images over; a
//! new daemon joins and takes its share; each image runs on the instance rendezvous hashing
//! names; the sites end identical. `scripts/ha-check` does
//! the same on the lab with real processes and SIGKILL.

#[allow(dead_code)] // each test crate uses part of the shared support
mod sites;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rbd_relay::config::Settings;
use rbd_relay::demo::primary::PrimaryImage;
use rbd_relay::demo::{POOL, TwoSites};
use rbd_relay::format::mirror::MirrorMode;
use rbd_relay::mirror::balance::BALANCE_OBJECT;
use rbd_relay::mirror::instances::{INSTANCES_OBJECT, Membership};
use rbd_relay::mirror::registry::ReplayState;
use rbd_relay::mirror::{self, Env, Registry};
use rbd_relay::rados::memory::MemoryIoCtx;
use rbd_relay::rados::{IoCtx, Rados};
use sites::{DEADLINE, logs, primary, wait_equal, workload};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// One daemon process: its own runtime on its own thread, so that ending it without a
/// clean stop is a kill -9.
struct Life {
    gid: u64,
    registry: Arc<Registry>,
    /// Sending `true` stops it cleanly, `false` (or dropping it) kills it.
    end: oneshot::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

/// A daemon with fast pings; `balance_ms` 0 keeps the placement count-based.
fn start(sites: &TwoSites, balance_ms: u64) -> Life {
    let (site_b, connector) = (sites.site_b.clone(), sites.connector.clone());
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (end, ended) = oneshot::channel::<bool>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut settings = Settings::default();
            settings.pools.refresh_interval_ms = 200;
            settings.instances.ping_interval_ms = 200;
            settings.instances.ping_timeout_ms = 500;
            settings.instances.balance_interval_ms = balance_ms;
            settings.instances.balance_min_gap_bytes = 64 << 10;
            let local = site_b.connect();
            let gid = local.instance_id();
            let env = Env::new(local, connector, settings);
            ready_tx.send((gid, env.registry.clone())).unwrap();
            let cancel = CancellationToken::new();
            let run = mirror::run(env, cancel.clone());
            tokio::pin!(run);
            tokio::select! {
                _ = &mut run => {}
                clean = ended => {
                    if clean == Ok(true) {
                        cancel.cancel();
                        run.await;
                    }
                }
            }
        });
        rt.shutdown_background();
    });
    let (gid, registry) = ready.recv().unwrap();
    Life {
        gid,
        registry,
        end,
        thread,
    }
}

impl Life {
    fn end(self, clean: bool) {
        let _ = self.end.send(clean);
        self.thread.join().unwrap();
    }

    /// Images replaying here: (name, global id).
    fn replaying(&self) -> Vec<(String, String)> {
        self.registry
            .snapshot()
            .into_iter()
            .filter(|(_, v)| v.state == ReplayState::Replaying)
            .map(|(k, v)| (v.name, k.global_id))
            .collect()
    }

    fn membership(&self) -> Membership {
        self.registry
            .instances()
            .into_iter()
            .find(|(pool, _)| pool == POOL)
            .map(|(_, m)| m)
            .unwrap_or_default()
    }

    /// The live instance ids this daemon sees in the pool.
    fn live(&self) -> Vec<u64> {
        self.membership().live.iter().map(|i| i.id).collect()
    }
}

/// Waits until all daemons agree on who is live and every image replays on exactly one
/// daemon, the owner in every daemon's view (rendezvous hashing, or the leader's move);
/// returns each daemon's share (names).
async fn settled(lives: &[&Life], names: &[String]) -> BTreeMap<u64, Vec<String>> {
    let mut ids: Vec<u64> = lives.iter().map(|l| l.gid).collect();
    ids.sort_unstable();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        // Nothing here is an error: daemons that disagree for a moment (started together,
        // one not yet told of a join) only wait for each other.
        for l in lives {
            let failed: Vec<_> = l
                .registry
                .snapshot()
                .into_iter()
                .filter(|(_, v)| v.state == ReplayState::Error)
                .map(|(_, v)| (v.name, v.description))
                .collect();
            assert!(failed.is_empty(), "on {}: {failed:?}", l.gid);
        }
        let found: BTreeMap<u64, Vec<(String, String)>> =
            lives.iter().map(|l| (l.gid, l.replaying())).collect();
        let mut owners: BTreeMap<String, usize> = BTreeMap::new();
        for (name, _) in found.values().flatten() {
            *owners.entry(name.clone()).or_default() += 1;
        }
        // Every daemon's view names the same owner (a move the leader made may not have
        // reached the others yet).
        let views: Vec<Membership> = lives.iter().map(|l| l.membership()).collect();
        let placed = lives.iter().all(|l| {
            found[&l.gid]
                .iter()
                .all(|(_, g)| views.iter().all(|m| m.owner(g) == Some(l.gid)))
        });
        let agreed = lives.iter().all(|l| l.live() == ids);
        let shares = found
            .into_iter()
            .map(|(gid, share)| (gid, share.into_iter().map(|(n, _)| n).collect()))
            .collect();
        if agreed && placed && names.iter().all(|n| owners.get(n) == Some(&1)) {
            return shares;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not settled: shares {shares:?}, live {:?}",
            lives.iter().map(|l| l.live()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` mirrored primaries on site-a named `<prefix>-<i>`: their names and writers.
async fn primaries(
    sites: &TwoSites,
    prefix: &str,
    n: usize,
) -> (Vec<String>, Vec<PrimaryImage<MemoryIoCtx>>) {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let mut images = Vec::new();
    for name in &names {
        images.push(primary(sites, name).await);
    }
    (names, images)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_images_and_take_over_a_killed_ones() {
    logs();
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let (names, mut images) = primaries(&sites, "ha", 12).await;
    let lives = [start(&sites, 0), start(&sites, 0), start(&sites, 0)];
    for (i, img) in images.iter_mut().enumerate() {
        workload(img, i as u64, 40).await;
    }
    let shares = settled(&lives.iter().collect::<Vec<_>>(), &names).await;
    assert!(
        shares.values().filter(|s| !s.is_empty()).count() >= 2,
        "one daemon took everything: {shares:?}"
    );
    for name in &names {
        wait_equal(&sites, name).await;
    }

    // Kill the daemon with the most images while the primaries keep writing.
    let [a, b, c] = lives;
    let mut lives = vec![a, b, c];
    lives.sort_by_key(|l| std::cmp::Reverse(shares[&l.gid].len()));
    let victim = lives.remove(0);
    let orphans = shares[&victim.gid].clone();
    let dead = victim.gid;
    victim.end(false);
    let killed = tokio::time::Instant::now();
    for (i, img) in images.iter_mut().enumerate() {
        workload(img, 100 + i as u64, 40).await;
    }
    let shares = settled(&lives.iter().collect::<Vec<_>>(), &names).await;
    tracing::info!(took = ?killed.elapsed(), ?orphans, ?shares, "orphans replaying again");
    for name in &names {
        wait_equal(&sites, name).await;
    }
    // Fenced and unregistered: its client can no longer touch site-b.
    let io = sites.site_b.connect().ioctx(POOL).await.unwrap();
    let listed = io.omap_get_all(INSTANCES_OBJECT, "").await.unwrap();
    assert!(!listed.contains_key(&dead.to_string()), "{listed:?}");
    assert_eq!(listed.len(), 2);

    // A new daemon joins and takes a share; then everyone stops cleanly and unregisters.
    lives.push(start(&sites, 0));
    for (i, img) in images.iter_mut().enumerate() {
        workload(img, 200 + i as u64, 40).await;
    }
    let shares = settled(&lives.iter().collect::<Vec<_>>(), &names).await;
    tracing::info!(?shares, "after a join");
    for name in &names {
        wait_equal(&sites, name).await;
    }
    for life in lives {
        life.end(true);
    }
    let listed = io.omap_get_all(INSTANCES_OBJECT, "").await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

/// Two daemons; only the images of one of them are written to: the leader moves one of
/// them to the idle daemon (an override in RADOS both follow), and the sites end identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_moves_replay_load_to_an_idle_daemon() {
    logs();
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let (names, images) = primaries(&sites, "load", 8).await;
    let lives = [start(&sites, 300), start(&sites, 300)];
    let all: Vec<&Life> = lives.iter().collect();
    let shares = settled(&all, &names).await;
    let ids: Vec<u64> = lives.iter().map(|l| l.gid).collect();
    let (busy, idle) = if shares[&ids[0]].len() >= shares[&ids[1]].len() {
        (ids[0], ids[1])
    } else {
        (ids[1], ids[0])
    };
    let hot: Vec<usize> = (0..names.len())
        .filter(|&i| shares[&busy].contains(&names[i]))
        .collect();
    assert!(hot.len() >= 2, "{shares:?}");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let data = bytes::Bytes::from(vec![7u8; 64 << 10]);
    let mut offset = 0;
    let moved = loop {
        for &i in &hot {
            let mut w = images[i].writer().await;
            w.write(offset % (32 << 20), data.clone()).await.unwrap();
            w.flush().await.unwrap();
        }
        offset += 64 << 10;
        let m = lives[0].membership();
        if let Some((g, to)) = m.moves.iter().next() {
            break (g.clone(), *to);
        }
        assert!(tokio::time::Instant::now() < deadline, "no move: {m:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(moved.1, idle, "moved to the busy daemon: {moved:?}");
    let shares = settled(&all, &names).await;
    let (name, _) = lives
        .iter()
        .flat_map(|l| l.replaying())
        .find(|(_, g)| *g == moved.0)
        .expect("the moved image replays");
    assert!(
        shares[&idle].contains(&name),
        "{name} not on {idle}: {shares:?}"
    );
    assert!(
        hot.iter().any(|&i| names[i] == name),
        "moved an idle image: {name}"
    );
    tracing::info!(?moved, ?shares, "after the move");
    for name in &names {
        wait_equal(&sites, name).await;
    }
    for life in lives {
        life.end(true);
    }
    // A clean stop withdraws the load reports (moves stay for the next leader to judge).
    let io = sites.site_b.connect().ioctx(POOL).await.unwrap();
    let reports = io.omap_get_all(BALANCE_OBJECT, "load_").await.unwrap();
    assert!(reports.is_empty(), "{reports:?}");
}
