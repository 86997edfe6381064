//! What the actors publish about themselves, for `rbd-relay status` and the demo: one
//! [`ImageView`] per image replayer, written only by that replayer, read by anyone. A
//! read-mostly `DashMap`, per design.md's one exception to "no shared mutable state".

use std::time::SystemTime;

use dashmap::DashMap;
use serde::Serialize;

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

#[derive(Default)]
pub struct Registry {
    images: DashMap<ImageKey, ImageView>,
}

impl Registry {
    pub fn publish(&self, key: &ImageKey, view: ImageView) {
        self.images.insert(key.clone(), view);
    }

    pub fn remove(&self, key: &ImageKey) {
        self.images.remove(key);
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
