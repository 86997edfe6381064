//! What the actors publish about themselves, for `rbd-relay status`, the admin socket and
//! the demo: one [`ImageView`] per image replayer, written only by that replayer, read by
//! anyone; each image replayer's [`Control`] and each running pool replayer, so that admin
//! commands exist exactly while their image or pool does. Read-mostly `DashMap`s, per
//! design.md's one exception to "no shared mutable state".

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use dashmap::DashMap;
use serde::Serialize;

use super::image_replayer::Control;

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
}

/// Keeps a pool replayer listed while alive.
pub struct PoolEntry {
    registry: Arc<Registry>,
    key: PoolKey,
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

    /// Every image, sorted by key.
    pub fn snapshot(&self) -> Vec<(ImageKey, ImageView)> {
        let mut all: Vec<_> = self
            .images
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
