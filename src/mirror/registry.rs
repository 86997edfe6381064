//! What the actors publish about themselves, for `rbd-relay status`, the admin socket and
//! the demo: one [`ImageView`] per image replayer, written only by that replayer, read by
//! anyone; each image replayer's [`Control`] and each running pool replayer, so that admin
//! commands exist exactly while their image or pool does; each pool's instances (who else
//! serves it, who leads). Read-mostly `DashMap`s, per design.md's one exception to "no
//! shared mutable state".

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use dashmap::DashMap;
use serde::Serialize;

use super::image_replayer::Control;
use super::instances::Membership;

/// Identifies an image replayer: local pool, namespace and global image id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ImageKey {
    pub pool: String,
    pub namespace: String,
    pub global_id: String,
}

/// The replayer's state words match upstream's status states (`rbd mirror image status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayState {
    StartingReplay,
    Syncing,
    Replaying,
    Stopped,
    Error,
    /// Neither side is primary (demoted), or the remote is not primary.
    Unknown,
}

impl ReplayState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayState::StartingReplay => "starting_replay",
            ReplayState::Syncing => "syncing",
            ReplayState::Replaying => "replaying",
            ReplayState::Stopped => "stopped",
            ReplayState::Error => "error",
            ReplayState::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageView {
    pub name: String,
    pub peer: String,
    pub state: ReplayState,
    /// Upstream's description text (without the secret-free JSON of replaying).
    pub description: String,
    pub entries_replayed: u64,
    pub bytes_replayed: u64,
    /// Entries the primary has journaled that we have not applied (same tag only).
    pub entries_behind: u64,
    /// Age of the newest applied entry when it was applied; 0 when caught up.
    pub lag_seconds: f64,
    /// Image sync progress, 0..=1.
    pub sync_fraction: f64,
    #[serde(with = "unix_seconds")]
    pub updated: SystemTime,
}

mod unix_seconds {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        s.serialize_f64(secs)
    }
}

/// A pool replayer: local pool × peer site.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub pool: String,
    pub peer: String,
}

/// What an operator's `stop` holds: new image replayers in it start held too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Held {
    Daemon,
    Pool(PoolKey),
}

#[derive(Default)]
pub struct Registry {
    images: DashMap<ImageKey, ImageView>,
    controls: DashMap<ImageKey, Arc<Control>>,
    pools: DashMap<PoolKey, ()>,
    held: Mutex<HashSet<Held>>,
    /// Per local pool name: the instances serving it.
    instances: DashMap<String, Membership>,
    /// Pool-level failures by pool and what failed: `peer` names the peer site whose pool
    /// could not be listed, or is empty for the local pool's own mirroring settings.
    /// By pool × peer and RBD namespace: each namespace lists its images on its own.
    pool_errors: DashMap<(PoolKey, String), String>,
    /// Poked on every membership change and pool error change (the service map status
    /// shows the leader and the pools' callouts).
    status_changed: tokio::sync::Notify,
    /// Fired when an instance finds this daemon's local client blocklisted.
    fenced: tokio::sync::Notify,
    /// Counts `rbd mirror leader release` requests; every pool's instance watches it.
    leader_releases: tokio::sync::watch::Sender<u64>,
}

/// Keeps a pool replayer listed while alive.
pub struct PoolEntry {
    registry: Arc<Registry>,
    key: PoolKey,
}

impl PoolEntry {
    pub fn key(&self) -> &PoolKey {
        &self.key
    }
}

impl Drop for PoolEntry {
    fn drop(&mut self) {
        self.registry.pools.remove(&self.key);
    }
}

impl Registry {
    pub fn publish(&self, key: &ImageKey, view: ImageView) {
        self.images.insert(key.clone(), view);
    }

    /// The replayer ended: its view and its admin commands go.
    pub fn remove(&self, key: &ImageKey) {
        self.images.remove(key);
        self.controls.remove(key);
    }

    /// A new image replayer's control, held if its pool or the daemon is.
    pub fn attach(&self, key: &ImageKey, peer: &str) -> Arc<Control> {
        let pool = Held::Pool(PoolKey {
            pool: key.pool.clone(),
            peer: peer.to_string(),
        });
        let held = {
            let held = self.lock_held();
            held.contains(&Held::Daemon) || held.contains(&pool)
        };
        let control = Arc::new(Control::new(held));
        self.controls.insert(key.clone(), control.clone());
        control
    }

    pub fn control(&self, key: &ImageKey) -> Option<Arc<Control>> {
        self.controls.get(key).map(|c| c.clone())
    }

    pub fn view(&self, key: &ImageKey) -> Option<ImageView> {
        self.images.get(key).map(|v| v.clone())
    }

    /// Lists a pool replayer until the returned entry is dropped.
    pub fn add_pool(self: &Arc<Self>, pool: &str, peer: &str) -> PoolEntry {
        let key = PoolKey {
            pool: pool.into(),
            peer: peer.into(),
        };
        self.pools.insert(key.clone(), ());
        PoolEntry {
            registry: self.clone(),
            key,
        }
    }

    /// Running pool replayers, sorted.
    pub fn pools(&self) -> Vec<PoolKey> {
        let mut all: Vec<_> = self.pools.iter().map(|e| e.key().clone()).collect();
        all.sort();
        all
    }

    /// Marks (or clears) an operator's hold for replayers yet to start.
    pub fn hold(&self, what: Held, on: bool) {
        let mut held = self.lock_held();
        if on {
            held.insert(what);
        } else if what == Held::Daemon {
            held.clear(); // starting the daemon starts every pool
        } else {
            held.remove(&what);
        }
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashSet<Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn publish_instances(&self, pool: &str, membership: Membership) {
        self.instances.insert(pool.to_string(), membership);
        self.status_changed.notify_one();
    }

    pub fn remove_instances(&self, pool: &str) {
        self.instances.remove(pool);
        self.status_changed.notify_one();
    }

    /// Records how reading a pool's (or one of its namespaces') mirroring state went: a
    /// failure (its text and bounded code) is logged, counted, and shown in the service map
    /// (`rbd mirror pool status` reports the daemon's health as ERROR with the text as a
    /// callout) and in `rbd mirror status` until a read of the same namespace succeeds. The
    /// pool's images keep replicating meanwhile.
    pub fn pool_health(
        &self,
        key: &PoolKey,
        namespace: &str,
        failure: Option<(String, &'static str)>,
    ) {
        let at = (key.clone(), namespace.to_string());
        let changed = match failure {
            Some((text, code)) => {
                let text = match namespace {
                    "" => text,
                    ns => format!("namespace '{ns}': {text}"),
                };
                tracing::error!(pool = %key.pool, peer = %key.peer, error = %text, "pool error");
                crate::metrics::pool_error(&key.pool, code);
                self.pool_errors.insert(at, text.clone()) != Some(text)
            }
            None => self.pool_errors.remove(&at).is_some(),
        };
        if changed {
            self.status_changed.notify_one();
        }
    }

    /// A pool replayer ended: its errors, in every namespace, go with it.
    pub fn pool_gone(&self, key: &PoolKey) {
        let before = self.pool_errors.len();
        self.pool_errors.retain(|(k, _), _| k != key);
        if self.pool_errors.len() != before {
            self.status_changed.notify_one();
        }
    }

    /// The pool errors of local pool `pool`, by what failed.
    pub fn pool_errors(&self, pool: &str) -> Vec<(PoolKey, String)> {
        let mut all: Vec<_> = (self.pool_errors.iter())
            .filter(|e| e.key().0.pool == pool)
            .map(|e| (e.key().0.clone(), e.value().clone()))
            .collect();
        all.sort();
        all
    }

    /// Every pool's membership, sorted by pool name.
    pub fn instances(&self) -> Vec<(String, Membership)> {
        sorted(&self.instances)
    }

    /// Resolves after the next membership or pool error change (one waiter: the service
    /// map status).
    pub async fn status_changed(&self) {
        self.status_changed.notified().await;
    }

    /// Our local client was blocklisted: the daemon restarts its work on a new one.
    pub fn fenced_here(&self) {
        self.fenced.notify_waiters();
    }

    /// Resolves when [`Self::fenced_here`] is called (no permit is stored: a round that
    /// already ended cannot restart the next one).
    pub async fn fenced(&self) {
        self.fenced.notified().await;
    }

    /// Asks this daemon's instances to give leadership to another instance.
    pub fn release_leadership(&self) {
        self.leader_releases.send_modify(|n| *n += 1);
    }

    pub fn leader_releases(&self) -> tokio::sync::watch::Receiver<u64> {
        self.leader_releases.subscribe()
    }

    /// Every image, sorted by key.
    pub fn snapshot(&self) -> Vec<(ImageKey, ImageView)> {
        sorted(&self.images)
    }
}

/// A copy of a map's entries, sorted by key (readers get a stable order).
fn sorted<K: Ord + Clone + std::hash::Hash, V: Clone>(map: &DashMap<K, V>) -> Vec<(K, V)> {
    let mut all: Vec<_> = map
        .iter()
        .map(|e| (e.key().clone(), e.value().clone()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}
