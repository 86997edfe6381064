//! The daemon end to end on the embedded backend: two in-memory sites, a primary written the
//! way librbd writes (journal first), the real daemon code on site-b, and byte-for-byte
//! comparisons of image and snapshots. The same scenarios run on the lab in
//! `scripts/e2e-check` (real librbd on site-a).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rbd_relay::cls;
use rbd_relay::config::Settings;
use rbd_relay::demo::primary::PrimaryImage;
use rbd_relay::demo::{MemoryConnector, POOL, TwoSites, compare, notify_image_updated};
use rbd_relay::format::Encode;
use rbd_relay::format::client_data::TagData;
use rbd_relay::format::entry::Entry;
use rbd_relay::format::journal::data_oid;
use rbd_relay::format::mirror::{MirrorImageState, MirrorImageStatusState, MirrorMode};
use rbd_relay::mirror::{self, Connector, Env, PeerSite};
use rbd_relay::rados::memory::{MemoryIoCtx, MemoryRados};
use rbd_relay::rados::{IoCtx, Rados, RadosResult};
use rbd_relay::rbd::Image;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

struct Daemon {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn start(sites: &TwoSites) -> Daemon {
    logs();
    let mut settings = Settings::default();
    settings.pools.refresh_interval_ms = 200;
    let env = Env::new(sites.site_b.connect(), sites.connector.clone(), settings);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(mirror::run(env, cancel.clone()));
    Daemon { cancel, task }
}

impl Daemon {
    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

async fn primary(sites: &TwoSites, name: &str) -> PrimaryImage<MemoryIoCtx> {
    let a = sites.site_a.connect();
    let io = a.ioctx(POOL).await.unwrap();
    let global = uuid::Uuid::new_v4().to_string();
    let img = PrimaryImage::create(&a, POOL, name, &global, 32 << 20, 20)
        .await
        .unwrap();
    notify_image_updated(&io, img.id(), &global, MirrorImageState::Enabled)
        .await
        .unwrap();
    img
}

/// Waits until site-b's copy of `name` equals site-a's (image and every snapshot).
async fn wait_equal(sites: &TwoSites, name: &str) {
    let io_a = sites.site_a.connect().ioctx(POOL).await.unwrap();
    let io_b = sites.site_b.connect().ioctx(POOL).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let a = Image::open_by_name(io_a.clone(), name).await.unwrap();
        let why = match Image::open_by_name(io_b.clone(), name).await {
            Ok(b) => compare(&a, &b).await.unwrap(),
            Err(e) => Err(e.to_string()),
        };
        match why {
            Ok(()) => return,
            Err(why) if tokio::time::Instant::now() > deadline => panic!("{name}: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn workload(img: &mut PrimaryImage<MemoryIoCtx>, seed: u64, ops: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut snaps = 0;
    for _ in 0..ops {
        img.writer()
            .await
            .random_op(&mut rng, &mut snaps)
            .await
            .unwrap();
    }
    img.writer().await.flush().await.unwrap();
}

/// Site-b's own status of its copy of `name` (the status list is keyed by local image id).
async fn status_of(sites: &TwoSites, name: &str) -> Option<(MirrorImageStatusState, String)> {
    let io_b = sites.site_b.connect().ioctx(POOL).await.unwrap();
    let id = cls::dir::id_of(&io_b, name).await.ok()?;
    let mut list = cls::mirror::image_status_list(&io_b).await.ok()?;
    let local = list.statuses.remove(&id)?.local?;
    Some((local.state, local.description))
}

async fn wait_status(sites: &TwoSites, name: &str, state: MirrorImageStatusState) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some((s, d)) = status_of(sites, name).await
            && s == state
        {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never {state:?}: {:?}",
            status_of(sites, name).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_written_before_mirroring_is_synced_then_everything_replays() {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let a = sites.site_a.connect();
    let io = a.ioctx(POOL).await.unwrap();
    let global = uuid::Uuid::new_v4().to_string();
    let mut img = PrimaryImage::create(&a, POOL, "synced", &global, 32 << 20, 20)
        .await
        .unwrap();
    // Before the daemon ever sees it: data, a snapshot, more data, image-meta.
    workload(&mut img, 1, 300).await;
    img.writer()
        .await
        .op(rbd_relay::demo::primary::Op::SnapCreate("before".into()))
        .await
        .unwrap();
    img.writer()
        .await
        .write(0, Bytes::from(vec![7u8; 1 << 20]))
        .await
        .unwrap();
    img.writer()
        .await
        .op(rbd_relay::demo::primary::Op::MetadataSet(
            "k".into(),
            "v".into(),
        ))
        .await
        .unwrap();
    img.writer().await.flush().await.unwrap();
    let daemon = start(&sites);
    notify_image_updated(&io, img.id(), &global, MirrorImageState::Enabled)
        .await
        .unwrap();
    wait_equal(&sites, "synced").await;
    workload(&mut img, 2, 300).await;
    wait_equal(&sites, "synced").await;
    let b = sites.site_b.connect().ioctx(POOL).await.unwrap();
    let replica = Image::open_by_name(b, "synced").await.unwrap();
    assert_eq!(replica.metadata().get("k").map(|v| &v[..]), Some(&b"v"[..]));
    let description = wait_status(&sites, "synced", MirrorImageStatusState::Replaying).await;
    assert!(description.starts_with("replaying"), "{description}");
    daemon.stop().await;
}

/// Remembers the site-a clients a daemon life opened, so that its death can time out their
/// watches too.
#[derive(Clone)]
struct Recording {
    inner: MemoryConnector,
    gids: Arc<Mutex<Vec<u64>>>,
}

#[async_trait::async_trait]
impl Connector for Recording {
    type Rados = MemoryRados;
    async fn connect(&self, peer: &PeerSite) -> RadosResult<MemoryRados> {
        let rados = self.inner.connect(peer).await?;
        self.gids.lock().unwrap().push(rados.instance_id());
        Ok(rados)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_at_random_moments_resumes_without_loss() {
    logs();
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let mut img = primary(&sites, "crashy").await;
    for round in 0..20u64 {
        // A separate runtime per daemon life: dropping it is a kill -9 (no final commit,
        // no unlock, tasks gone mid-flight).
        let site_b = sites.site_b.clone();
        let connector = Recording {
            inner: sites.connector.clone(),
            gids: Default::default(),
        };
        let remote_gids = connector.gids.clone();
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let life = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let local = site_b.connect();
                tx.send(local.instance_id()).unwrap();
                let env = Env::new(local, connector, Settings::default());
                let _ = tokio::time::timeout(
                    Duration::from_millis(30 + round % 7 * 37),
                    mirror::run(env, CancellationToken::new()),
                )
                .await;
            });
            rt.shutdown_background();
        });
        workload(&mut img, 10 + round, 150).await;
        let gid = rx.recv().unwrap();
        life.join().unwrap();
        // What the OSDs do when the dead clients' watches time out, on both sites.
        sites.site_b.disconnect_watches(gid);
        for gid in remote_gids.lock().unwrap().drain(..) {
            sites.site_a.disconnect_watches(gid);
        }
    }
    let daemon = start(&sites);
    workload(&mut img, 99, 50).await;
    wait_equal(&sites, "crashy").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_mirroring_removes_only_the_non_primary_copy() {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let daemon = start(&sites);
    let mut img = primary(&sites, "gone").await;
    workload(&mut img, 3, 50).await;
    wait_equal(&sites, "gone").await;
    let io_a = sites.site_a.connect().ioctx(POOL).await.unwrap();
    let global = cls::mirror::image_get(&io_a, img.id())
        .await
        .unwrap()
        .global_image_id;
    let mut entry = cls::mirror::image_get(&io_a, img.id()).await.unwrap();
    entry.state = MirrorImageState::Disabling;
    cls::mirror::image_set(&io_a, img.id(), &entry)
        .await
        .unwrap();
    notify_image_updated(&io_a, img.id(), &global, MirrorImageState::Disabling)
        .await
        .unwrap();
    let io_b = sites.site_b.connect().ioctx(POOL).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while Image::open_by_name(io_b.clone(), "gone").await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "local copy not removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cls::mirror::image_get_image_id(&io_b, &global)
            .await
            .is_err()
    );
    // The primary is untouched.
    Image::open_by_name(io_a, "gone").await.unwrap();
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_entry_fails_only_its_image() {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let daemon = start(&sites);
    let mut bad = primary(&sites, "bad").await;
    let mut good = primary(&sites, "good").await;
    workload(&mut bad, 4, 20).await;
    wait_equal(&sites, "bad").await;
    // A well-framed entry (CRC fine) whose event cannot be decoded, where the next entry
    // of the current tag goes: the daemon must stop that image and name the position.
    let io_a = sites.site_a.connect().ioctx(POOL).await.unwrap();
    let id = bad.id().to_string();
    let header = rbd_relay::format::journal::header_oid(&id);
    let set = cls::journal::get_active_set(&io_a, &header).await.unwrap();
    // A new epoch whose entry 0 is the garbage (offset 0 of the active set).
    let tag = cls::journal::allocate_tag(&io_a, &header, 0, TagData::default().to_bytes())
        .await
        .unwrap();
    let garbage = Entry {
        entry_tid: 0,
        tag_tid: tag,
        data: Bytes::from_static(b"not an event"),
    };
    let oid = data_oid(io_a.pool_id(), &id, set * 4);
    cls::journal::append(&io_a, &oid, 1 << 16, garbage.to_bytes())
        .await
        .unwrap();
    io_a.notify(&header, Bytes::new(), Duration::from_secs(1))
        .await
        .unwrap();
    let why = wait_status(&sites, "bad", MirrorImageStatusState::Error).await;
    assert!(why.contains("corrupt"), "{why}");
    // The other image keeps replicating.
    workload(&mut good, 5, 100).await;
    wait_equal(&sites, "good").await;
    daemon.stop().await;
}
