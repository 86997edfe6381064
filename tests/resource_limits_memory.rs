//! Resource limits on the embedded backend (issue: reliability, item 5): with the secondary's
//! data objects stuck, as behind an OSD that stopped answering, the journal bytes held
//! between fetch and apply never pass the global prefetch budget however many images have
//! a backlog; and one stuck image does not hold up the others.

#[path = "sites/mod.rs"]
#[allow(dead_code)]
mod sites;

use std::time::Duration;

use bytes::Bytes;
use rbd_relay::config::Settings;
use rbd_relay::demo::TwoSites;
use rbd_relay::format::mirror::MirrorMode;
use rbd_relay::mirror::registry::ReplayState;
use rbd_relay::mirror::{self, Env};
use rbd_relay::rados::Rados;
use rbd_relay::rados::faults::{Faults, FaultyRados};
use rbd_relay::rados::memory::MemoryRados;
use rbd_relay::rbd::Image;
use sites::{DEADLINE, FaultyPeer, io_in, logs, primary, wait_equal};
use tokio_util::sync::CancellationToken;

/// How long a stuck call waits: longer than any test here runs.
const STUCK: Duration = Duration::from_secs(3600);

/// The daemon on site-b, its local cluster behind `local` faults.
fn start(
    sites: &TwoSites,
    local: &Faults,
    settings: Settings,
) -> Env<FaultyRados<MemoryRados>, FaultyPeer> {
    logs();
    let connector = FaultyPeer {
        inner: sites.connector.clone(),
        faults: Faults::new(1),
    };
    let env = Env::new(
        FaultyRados::new(sites.site_b.connect(), local.clone()),
        connector,
        settings,
    );
    // Ends with the test's runtime: stuck calls never return, so no clean stop.
    tokio::spawn(mirror::run(env.clone(), CancellationToken::new()));
    env
}

/// Waits until `n` images are replaying.
async fn wait_replaying<R: Rados, C>(env: &Env<R, C>, n: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let views = env.registry.snapshot();
        let replaying = views
            .iter()
            .filter(|(_, v)| v.state == ReplayState::Replaying)
            .count();
        if replaying == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{replaying} of {n} images replaying"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 1,000 images each get 256 KiB of journal while site-b's data objects are stuck: what is
/// held between fetch and apply rises to the global budget (so the test can fail) and never
/// passes it; the rest of each backlog stays unread on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_secondary_holds_no_more_than_the_global_budget() {
    const IMAGES: usize = 1000;
    const TOTAL: usize = 8 << 20;
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let mut images = Vec::new();
    for i in 0..IMAGES {
        images.push(primary(&sites, &format!("img{i}")).await);
    }
    let mut settings = Settings::default();
    settings.pools.refresh_interval_ms = 200;
    settings.replay.image_prefetch_bytes = 256 << 10;
    settings.replay.total_prefetch_bytes = TOTAL;
    let local = Faults::new(2);
    let env = start(&sites, &local, settings);
    let began = tokio::time::Instant::now();
    wait_replaying(&env, IMAGES, Duration::from_secs(300)).await;
    println!("{IMAGES} images replaying after {:?}", began.elapsed());
    local.hang("rbd_data.", STUCK);
    let block = Bytes::from(vec![7u8; 64 << 10]);
    for img in &mut images {
        let mut w = img.writer().await;
        for k in 0..4 {
            w.write(k * (64 << 10), block.clone()).await.unwrap();
        }
        w.flush().await.unwrap();
    }
    let mut peak = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < until {
        let used = env.prefetch.used();
        assert!(used <= TOTAL, "{used} bytes held, budget {TOTAL}");
        peak = peak.max(used);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("peak {peak} bytes held of a {TOTAL}-byte budget");
    // 1,000 backlogs of 256 KiB (far above the budget) fill it.
    assert!(
        peak > TOTAL / 2,
        "peak {peak} bytes held: the budget was never used"
    );
}

/// One image whose copy cannot be written (its data objects stuck) holds nothing up: the
/// other images go on replicating to equality.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stuck_image_does_not_hold_up_the_others() {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let stuck = primary(&sites, "stuck").await;
    let mut others = [primary(&sites, "a").await, primary(&sites, "b").await];
    let local = Faults::new(3);
    let mut settings = Settings::default();
    settings.pools.refresh_interval_ms = 200;
    let env = start(&sites, &local, settings);
    wait_replaying(&env, 3, DEADLINE).await;
    let io_b = io_in(&sites.site_b, "").await;
    let copy = Image::open_by_name(io_b.clone(), "stuck").await.unwrap();
    local.hang(&format!("rbd_data.{}.", copy.id()), STUCK);
    let block = Bytes::from(vec![9u8; 4096]);
    {
        let mut w = stuck.writer().await;
        w.write(0, block.clone()).await.unwrap();
        w.flush().await.unwrap();
    }
    for (i, img) in others.iter_mut().enumerate() {
        sites::workload(img, i as u64, 100).await;
    }
    wait_equal(&sites, "a").await;
    wait_equal(&sites, "b").await;
    // The stuck copy did not get the write: the fault held.
    let copy = Image::open_by_name(io_b, "stuck").await.unwrap();
    assert_ne!(copy.read(0, 4096, None).await.unwrap(), block);
}
