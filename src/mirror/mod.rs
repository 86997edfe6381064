//! The daemon: keeps non-primary copies of remote primaries in step, driven by
//! notifications. Replaces upstream's Mirror → ClusterWatcher → PoolReplayer → PoolWatcher
//! → ImageReplayer chain with actors of the same names (see design.md "Shape"):
//!
//! ```text
//!  Daemon::run ── ClusterWatcher (local rbd_mirroring: mode, peers; watched)
//!                   ├─ Instances per pool (the site's daemons: join, liveness, fencing)
//!                   └─ PoolReplayer per pool × peer (connects the peer)
//!                        ├─ PoolWatcher (remote rbd_mirroring: mirrored images; watched)
//!                        └─ ImageReplayer per image this instance owns (assignment):
//!                             bootstrap → [image sync] → replay
//! ```
//! Each actor owns its state; parents hold children's cancel tokens; everything runs on
//! one `TaskTracker` so shutdown waits for every actor to commit and publish its last
//! status. What the actors publish for `rbd-relay status` lives in the [`Registry`].

pub mod assignment;
pub mod balance;
pub mod cluster_watcher;
pub mod image_replayer;
pub mod instances;
pub mod peer;
pub mod pool_replayer;
pub mod pool_watcher;
pub mod registry;

use std::sync::Arc;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{LiveSettings, Settings};
use crate::journal::follower::PrefetchBudget;
use crate::rados::Rados;

pub use peer::{Connector, PeerSite};
pub use registry::{Held, ImageKey, ImageView, PoolKey, Registry};

/// What every actor of one daemon shares. Cheap to clone.
pub struct Env<R: Rados, C> {
    pub settings: Arc<Settings>,
    /// The local (secondary) cluster.
    pub local: R,
    pub connector: Arc<C>,
    pub tasks: TaskTracker,
    pub registry: Arc<Registry>,
    /// Journal bytes fetched and not yet applied, across all images.
    pub prefetch: Arc<PrefetchBudget>,
    /// Objects being copied by image syncs, across all images.
    pub sync_slots: Arc<Semaphore>,
    /// Settings an operator may change while running (`config set`); read at each use.
    pub live: Arc<watch::Sender<LiveSettings>>,
}

impl<R: Rados, C> Clone for Env<R, C> {
    fn clone(&self) -> Self {
        Env {
            settings: self.settings.clone(),
            local: self.local.clone(),
            connector: self.connector.clone(),
            tasks: self.tasks.clone(),
            registry: self.registry.clone(),
            prefetch: self.prefetch.clone(),
            sync_slots: self.sync_slots.clone(),
            live: self.live.clone(),
        }
    }
}

impl<R: Rados, C: Connector<Rados = R>> Env<R, C> {
    pub fn new(local: R, connector: C, settings: Settings) -> Self {
        let prefetch = PrefetchBudget::new(settings.replay.total_prefetch_bytes);
        let live = Arc::new(watch::Sender::new(settings.live()));
        let sync_slots = Arc::new(Semaphore::new(settings.sync.objects_in_flight.max(1)));
        Env {
            live,
            settings: Arc::new(settings),
            local,
            connector: Arc::new(connector),
            tasks: TaskTracker::new(),
            registry: Arc::new(Registry::default()),
            prefetch,
            sync_slots,
        }
    }
}

impl<R: Rados, C> Env<R, C> {
    /// The same daemon on a new local client (the old one was blocklisted): settings,
    /// registry and budgets carry over; the old round's tasks have all ended.
    pub fn reconnected(self, local: R) -> Self {
        Env {
            local,
            tasks: TaskTracker::new(),
            ..self
        }
    }
}

/// Runs the daemon until `cancel` fires, then waits for every actor to stop cleanly.
pub async fn run<R: Rados, C: Connector<Rados = R>>(env: Env<R, C>, cancel: CancellationToken) {
    let watcher = cluster_watcher::ClusterWatcher::new(env.clone());
    env.tasks.spawn(watcher.run(cancel.clone()));
    cancel.cancelled().await;
    env.tasks.close();
    env.tasks.wait().await;
}
