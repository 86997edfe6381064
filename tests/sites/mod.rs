//! What the embedded end-to-end tests share: a mirrored primary on site-a written the way
//! librbd writes, the daemon on site-b, site-b's status of a copy, and waiting until
//! site-b's copy equals it.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rbd_relay::cls;
use rbd_relay::config::Settings;
use rbd_relay::demo::primary::PrimaryImage;
use rbd_relay::demo::{MemoryConnector, POOL, TwoSites, compare, notify_image_updated};
use rbd_relay::format::mirror::{MirrorImageState, MirrorImageStatusState, MirrorMode};
use rbd_relay::mirror::{self, Connector, Env, PeerSite, Registry};
use rbd_relay::rados::faults::{Faults, FaultyRados};
use rbd_relay::rados::memory::{MemoryCluster, MemoryIoCtx, MemoryRados};
use rbd_relay::rados::{IoCtx, Rados, RadosResult};
use rbd_relay::rbd::{CloneOf, Image};
use tokio_util::sync::CancellationToken;

pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A 32 MiB journaled primary on site-a, mirrored (image mode).
pub async fn primary(sites: &TwoSites, name: &str) -> PrimaryImage<MemoryIoCtx> {
    primary_with(sites, name, 32 << 20, None).await
}

/// As [`primary`], `size` bytes, and with `parent` a clone of a snapshot of site-a.
pub async fn primary_with(
    sites: &TwoSites,
    name: &str,
    size: u64,
    parent: Option<CloneOf>,
) -> PrimaryImage<MemoryIoCtx> {
    let a = sites.site_a.connect();
    let io = a.ioctx(POOL).await.unwrap();
    let global = uuid::Uuid::new_v4().to_string();
    let img = PrimaryImage::create_with(&a, io.clone(), name, &global, (size, 20), parent)
        .await
        .unwrap();
    notify_image_updated(&io, img.id(), &global, MirrorImageState::Enabled)
        .await
        .unwrap();
    img
}

/// A new client's `POOL` on `site`, in `namespace` (`""`: the default one).
pub async fn io_in(site: &MemoryCluster, namespace: &str) -> MemoryIoCtx {
    let io = site.connect().ioctx(POOL).await.unwrap();
    io.with_namespace(namespace)
}

/// What `rbd namespace create` and `rbd mirror pool enable <pool>/<namespace> <mode>` write
/// (the namespace gets its own mirror uuid, as librbd gives it).
pub async fn mirrored_namespace(site: &MemoryCluster, name: &str, mode: MirrorMode) {
    let io = io_in(site, "").await;
    let key = BTreeMap::from([(format!("name_{name}"), Bytes::new())]);
    io.omap_set("rbd_namespace", key).await.unwrap();
    let ns = io.with_namespace(name);
    cls::mirror::uuid_set(&ns, &uuid::Uuid::new_v4().to_string())
        .await
        .unwrap();
    cls::mirror::mode_set(&ns, mode).await.unwrap();
}

/// Waits until site-b's copy of `name` equals site-a's (image and every snapshot).
pub async fn wait_equal(sites: &TwoSites, name: &str) {
    wait_equal_in(sites, "", name).await
}

/// As [`wait_equal`], for an image in an RBD namespace.
pub async fn wait_equal_in(sites: &TwoSites, namespace: &str, name: &str) {
    let io_a = io_in(&sites.site_a, namespace).await;
    let io_b = io_in(&sites.site_b, namespace).await;
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

pub async fn workload(img: &mut PrimaryImage<MemoryIoCtx>, seed: u64, ops: usize) {
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

/// The daemon's peers behind a fault plan (the daemon needs one backend type for both
/// sites: its local site goes through a plan of its own, or the same one).
#[derive(Clone)]
#[allow(dead_code)] // not every test crate with these helpers injects faults
pub struct FaultyPeer {
    pub inner: MemoryConnector,
    pub faults: Faults,
}

#[async_trait::async_trait]
impl Connector for FaultyPeer {
    type Rados = FaultyRados<MemoryRados>;
    async fn connect(&self, peer: &PeerSite) -> RadosResult<Self::Rados> {
        Ok(FaultyRados::new(
            self.inner.connect(peer).await?,
            self.faults.clone(),
        ))
    }
}

/// The real daemon serving site-b, on the test's runtime.
pub struct Daemon {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// What it publishes (pool errors, image views).
    pub registry: std::sync::Arc<Registry>,
}

/// Starts the daemon on site-b with a fast pool refresh.
pub fn start(sites: &TwoSites) -> Daemon {
    logs();
    let mut settings = Settings::default();
    settings.pools.refresh_interval_ms = 200;
    let env = Env::new(sites.site_b.connect(), sites.connector.clone(), settings);
    let registry = env.registry.clone();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(mirror::run(env, cancel.clone()));
    Daemon {
        cancel,
        task,
        registry,
    }
}

impl Daemon {
    pub async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

/// Site-b's own status of its copy of `name` (the status list is keyed by local image id).
pub async fn status_of(sites: &TwoSites, name: &str) -> Option<(MirrorImageStatusState, String)> {
    status_in(sites, "", name).await
}

/// As [`status_of`], in an RBD namespace (its statuses live in its own `rbd_mirroring`).
pub async fn status_in(
    sites: &TwoSites,
    namespace: &str,
    name: &str,
) -> Option<(MirrorImageStatusState, String)> {
    let io_b = io_in(&sites.site_b, namespace).await;
    let id = cls::dir::id_of(&io_b, name).await.ok()?;
    let mut list = cls::mirror::image_status_list(&io_b).await.ok()?;
    let local = list.statuses.remove(&id)?.local?;
    Some((local.state, local.description))
}
