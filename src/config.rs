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
//!
//! rbd-mirror's own options that mean something here (`rbd_mirror_journal_poll_age` and
//! friends, see [`CEPH_OPTIONS`]) are honoured from the conf file, `CEPH_ARGS` and the
//! command line, over the TOML file. A few can change while the daemon runs (`config set`
//! on the admin socket): those are read through [`LiveSettings`].

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
    pub instances: InstanceSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplaySettings {
    /// Safety-net probe of an idle journal: first delay after entries arrived…
    pub probe_floor_ms: u64,
    /// …doubling up to this (upstream's `rbd_mirror_journal_poll_age` is 5 s); 0: no
    /// probe at all (notifications only).
    pub probe_ceiling_ms: u64,
    /// At the ceiling, while the journal watch is confirmed alive, the probe reads only
    /// this long after the journal was last read (an idle image costs no reads otherwise).
    pub probe_idle_ms: u64,
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
    /// Objects copied at once by full syncs, across all images of the daemon (one image
    /// alone may use them all): bounds sync memory at about two object-sized buffers each.
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
    /// `rbd_mirroring_delete_delay`).
    pub delete_delay_ms: u64,
    /// A local copy that could not be deleted is tried again this often (upstream:
    /// `rbd_mirror_delete_retry_interval`).
    pub delete_retry_interval_ms: u64,
    /// Image replayers parked by an error retry at least this often even without an update
    /// of their image (upstream: `rbd_mirror_image_state_check_interval`).
    pub image_state_check_interval_ms: u64,
}

/// Several daemons per site (see `mirror::instances`): how fast a dead one is found.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstanceSettings {
    /// Each instance notifies the others this often; a killed daemon is noticed within
    /// this plus `ping_timeout_ms` (joins and clean leaves are announced at once).
    pub ping_interval_ms: u64,
    /// An instance that does not ack a notify within this is fenced and its images move.
    /// librados acks by itself, so only a dead or frozen process misses it.
    pub ping_timeout_ms: u64,
    /// Every instance reports its images' replay rates this often, and the leader moves
    /// at most one image per interval to even out the load (0: count-based placement only).
    pub balance_interval_ms: u64,
    /// The leader moves an image only when the busiest and idlest instances differ by at
    /// least this many replayed bytes per second.
    pub balance_min_gap_bytes: u64,
}

impl Default for InstanceSettings {
    fn default() -> Self {
        InstanceSettings {
            ping_interval_ms: 1_000,
            ping_timeout_ms: 2_000,
            balance_interval_ms: 30_000,
            balance_min_gap_bytes: 4 << 20,
        }
    }
}

impl Default for ReplaySettings {
    fn default() -> Self {
        ReplaySettings {
            probe_floor_ms: 50,
            probe_ceiling_ms: 5_000,
            probe_idle_ms: 300_000,
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
            objects_in_flight: 32,
        }
    }
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            refresh_interval_ms: 30_000,
            delete_delay_ms: 0,
            delete_retry_interval_ms: 30_000,
            image_state_check_interval_ms: 30_000,
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

/// A Ceph option mapped onto one of our settings.
pub struct CephOption {
    pub name: &'static str,
    field: Field,
    /// Changes while running take effect (read through [`LiveSettings`]).
    pub live: bool,
}

/// Where a Ceph option lands, and how its text reads.
enum Field {
    /// Seconds (fractions allowed), kept as our milliseconds.
    Seconds(fn(&mut Settings) -> &mut u64),
    /// A boolean as Ceph parses them (true/false, yes/no, on/off, 1/0).
    Flag(fn(&mut Settings) -> &mut bool),
}

/// rbd-mirror's options that have a meaning for rbd-relay. Upstream re-reads the journal
/// every `rbd_mirror_journal_poll_age`; here that bounds the safety-net probe.
pub const CEPH_OPTIONS: &[CephOption] = &[
    CephOption::seconds("rbd_mirror_journal_poll_age", false, |s| {
        &mut s.replay.probe_ceiling_ms
    }),
    CephOption::seconds("rbd_mirror_pool_replayers_refresh_interval", false, |s| {
        &mut s.pools.refresh_interval_ms
    }),
    CephOption::seconds("rbd_mirror_image_state_check_interval", true, |s| {
        &mut s.pools.image_state_check_interval_ms
    }),
    CephOption::seconds("rbd_mirror_delete_retry_interval", true, |s| {
        &mut s.pools.delete_retry_interval_ms
    }),
    CephOption::seconds("rbd_mirroring_delete_delay", true, |s| {
        &mut s.pools.delete_delay_ms
    }),
    // Read at each bootstrap (image-meta `conf_rbd_mirroring_resync_after_disconnect` wins).
    CephOption {
        name: "rbd_mirroring_resync_after_disconnect",
        field: Field::Flag(|s| &mut s.replay.resync_after_disconnect),
        live: false,
    },
];

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum OptionError {
    #[error("{name}: '{value}' is not a valid value")]
    BadValue { name: String, value: String },
}

impl CephOption {
    const fn seconds(name: &'static str, live: bool, field: fn(&mut Settings) -> &mut u64) -> Self {
        CephOption {
            name,
            field: Field::Seconds(field),
            live,
        }
    }

    pub fn find(name: &str) -> Option<&'static CephOption> {
        CEPH_OPTIONS.iter().find(|o| o.name == name)
    }

    /// Sets it from Ceph's text.
    pub fn apply(&self, settings: &mut Settings, value: &str) -> Result<(), OptionError> {
        let bad = || OptionError::BadValue {
            name: self.name.into(),
            value: value.into(),
        };
        match self.field {
            Field::Seconds(field) => {
                let secs = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .ok_or_else(bad)?;
                *field(settings) = (secs * 1000.0).round() as u64;
            }
            Field::Flag(field) => *field(settings) = parse_flag(value).ok_or_else(bad)?,
        }
        Ok(())
    }

    /// The current value in Ceph's text.
    pub fn show(&self, settings: &Settings) -> String {
        let mut s = settings.clone();
        match self.field {
            Field::Seconds(field) => format!("{}", *field(&mut s) as f64 / 1000.0),
            Field::Flag(field) => field(&mut s).to_string(),
        }
    }
}

/// A boolean the way Ceph's config parser reads one.
pub fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// The settings that can change while the daemon runs; readers take them at each use
/// from the daemon's `watch` channel (see `mirror::Env::live`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveSettings {
    pub delete_delay: Duration,
    pub delete_retry_interval: Duration,
    pub image_state_check_interval: Duration,
}

impl Settings {
    pub fn live(&self) -> LiveSettings {
        // A zero interval would spin: at least 100 ms, as the refresh interval.
        let floor = |ms: u64| Duration::from_millis(ms.max(100));
        LiveSettings {
            delete_delay: Duration::from_millis(self.pools.delete_delay_ms),
            delete_retry_interval: floor(self.pools.delete_retry_interval_ms),
            image_state_check_interval: floor(self.pools.image_state_check_interval_ms),
        }
    }
}

impl ReplaySettings {
    pub fn follower(&self) -> FollowerConfig {
        FollowerConfig {
            probe_floor: Duration::from_millis(self.probe_floor_ms),
            probe_ceiling: (self.probe_ceiling_ms > 0)
                .then(|| Duration::from_millis(self.probe_ceiling_ms)),
            probe_idle: Duration::from_millis(self.probe_idle_ms),
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
    fn ceph_options_are_seconds_mapped_to_our_milliseconds() {
        let mut s = Settings::default();
        let poll = CephOption::find("rbd_mirror_journal_poll_age").unwrap();
        poll.apply(&mut s, "0.25").unwrap();
        assert_eq!(s.replay.probe_ceiling_ms, 250);
        assert_eq!(poll.show(&s), "0.25");
        let delay = CephOption::find("rbd_mirroring_delete_delay").unwrap();
        delay.apply(&mut s, "3").unwrap();
        assert_eq!(s.live().delete_delay, Duration::from_secs(3));
        assert!(delay.apply(&mut s, "soon").is_err());
        assert!(delay.apply(&mut s, "-1").is_err());
        assert!(CephOption::find("rbd_mirror_concurrent_image_syncs").is_none());
        let resync = CephOption::find("rbd_mirroring_resync_after_disconnect").unwrap();
        resync.apply(&mut s, "True").unwrap();
        assert!(s.replay.resync_after_disconnect);
        assert_eq!(resync.show(&s), "true");
        assert!(resync.apply(&mut s, "maybe").is_err());
    }

    #[test]
    fn a_typo_is_an_error() {
        assert!(toml::from_str::<Settings>("[replay]\nprobe_ceilin_ms = 1\n").is_err());
    }
}
