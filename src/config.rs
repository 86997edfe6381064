//! rbd-relay's own settings, with their defaults. Ceph connection options (cluster, id,
//! conf, keyring) come from the command line the way Ceph tools take them; everything here
//! can also be set in an optional TOML file (`rbd-relay run --config FILE`), e.g.
//!
//! ```toml
//! metrics_addr = "127.0.0.1:9290"
//! [replay]
//! probe_ceiling_ms = 5000
//! ```
//! Units are in the names. Unknown keys are an error, so a typo never silently keeps a
//! default.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::journal::follower::FollowerConfig;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Prometheus endpoint (`None`: no exporter). Loopback by default: metrics name pools
    /// and images, which is nobody else's business.
    pub metrics_addr: Option<SocketAddr>,
    pub replay: ReplaySettings,
    pub sync: SyncSettings,
    pub pools: PoolSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplaySettings {
    /// Safety-net probe of an idle journal: first delay after entries arrived…
    pub probe_floor_ms: u64,
    /// …doubling up to this (upstream's `rbd_mirror_journal_poll_age` is 5 s).
    pub probe_ceiling_ms: u64,
    /// Entries read per batch from the remote journal.
    pub batch_entries: usize,
    /// Journal bytes one image may hold between fetch and apply.
    pub image_prefetch_bytes: usize,
    /// Journal bytes all images together may hold (the daemon's memory bound).
    pub total_prefetch_bytes: usize,
    /// The commit position is stored at most this old…
    pub commit_age_ms: u64,
    /// …or after this many applied entries, whichever comes first.
    pub commit_entries: usize,
    /// RADOS writes one image keeps in flight while applying a batch.
    pub max_in_flight: usize,
    /// When the primary disconnects our journal client, copy the image again instead of
    /// stopping in `error: disconnected` (Ceph's `rbd_mirroring_resync_after_disconnect`;
    /// image-meta `conf_rbd_mirroring_resync_after_disconnect` overrides it per image).
    pub resync_after_disconnect: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSettings {
    /// Objects copied concurrently per image during a full sync.
    pub objects_in_flight: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// Ceph does not notify peer or site-name changes (only mode and image updates), nor
    /// pool creation: this is how often a cheap version check looks for them (upstream:
    /// `rbd_mirror_pool_replayers_refresh_interval`, 30 s).
    pub refresh_interval_ms: u64,
    /// Delay before a non-primary image whose primary is gone is deleted locally (upstream:
    /// `rbd_mirror_delete_retry_interval`-like grace).
    pub delete_delay_ms: u64,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        ReplaySettings {
            probe_floor_ms: 50,
            probe_ceiling_ms: 5_000,
            batch_entries: 512,
            image_prefetch_bytes: 32 << 20,
            total_prefetch_bytes: 1 << 30,
            commit_age_ms: 100,
            commit_entries: 1024,
            max_in_flight: 64,
            resync_after_disconnect: false,
        }
    }
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            objects_in_flight: 16,
        }
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            refresh_interval_ms: 30_000,
            delete_delay_ms: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
}

impl Settings {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: shown,
            source,
        })
    }
}

impl ReplaySettings {
    pub fn follower(&self) -> FollowerConfig {
        FollowerConfig {
            probe_floor: Duration::from_millis(self.probe_floor_ms),
            probe_ceiling: Some(Duration::from_millis(self.probe_ceiling_ms)),
            batch_entries: self.batch_entries,
            image_budget_bytes: self.image_prefetch_bytes,
            commit_age: Duration::from_millis(self.commit_age_ms),
            commit_entries: self.commit_entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let s: Settings = toml::from_str("[replay]\nprobe_ceiling_ms = 250\n").unwrap();
        assert_eq!(s.replay.probe_ceiling_ms, 250);
        assert_eq!(s.replay.probe_floor_ms, 50);
        assert!(s.metrics_addr.is_none());
    }

    #[test]
    fn a_typo_is_an_error() {
        assert!(toml::from_str::<Settings>("[replay]\nprobe_ceilin_ms = 1\n").is_err());
    }
}
