//! ClusterWatcher: which local pools mirror, from which peers. Replaces upstream's
//! ClusterWatcher + the pool-replayer refresh of `Mirror`.
//!
//! ```text
//!  REFRESH_POOLS (pool list) ──► REFRESH_POOL per pool:
//!     mode (cls mirror_mode_get) ──(disabled)──► stop its pool replayers, unwatch
//!        | enabled
//!     WATCH rbd_mirroring (kept: it also makes our image statuses "up")
//!     JOIN the pool's instances (kept while mirroring is enabled; see `instances`)
//!     PEERS (peer list, rx or rx-tx only) + their mon host / key from config-key
//!     reconcile: start a PoolReplayer per new peer, stop those of peers gone or changed
//!  rbd_mirroring notify ModeUpdated (or undecodable) ──► REFRESH_POOL (that pool)
//!  watch error ──► drop the watch ──► REFRESH_POOL (re-watch, re-read everything)
//!  mode or peers undecodable ──► pool error (status, metric); what runs keeps running
//!  refresh interval ──► REFRESH_POOLS
//! ```
//! Ceph notifies `rbd_mirroring` for mode and image changes only; peer changes, the site
//! name and new pools have no notification, so a refresh interval (upstream's 30 s
//! default, configurable) picks those up. Mode changes apply at once.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::instances::{self, Membership};
use super::peer::{PeerSite, pool_peers};
use super::pool_replayer::{self, PoolReplayerArgs};
use super::registry::PoolKey;
use super::{Connector, Env};
use crate::cls::{self, ClsError};
use crate::format::Decode;
use crate::format::mirror::{MIRRORING_OBJECT, MirrorMode};
use crate::format::notify::MirroringNotify;
use crate::metrics::{self, Source};
use crate::rados::{AckMode, IoCtx, Rados, WatchEvent};

/// The registry key of a local pool's own errors (no peer involved).
fn local_key(pool: &str) -> PoolKey {
    PoolKey {
        pool: pool.to_string(),
        peer: String::new(),
    }
}

/// Config-key holding this site's name (`rbd mirror pool enable --site-name`).
const SITE_NAME_KEY: &str = "rbd/mirror/site_name";

struct PoolState {
    name: String,
    watch: Option<u64>,
    /// Our registration among the pool's instances, while mirroring is enabled.
    instances: Option<(CancellationToken, watch::Receiver<Membership>)>,
    replayers: HashMap<PeerSite, CancellationToken>,
}

impl PoolState {
    fn stop(&mut self) {
        self.replayers.values().for_each(CancellationToken::cancel);
        if let Some((token, _)) = self.instances.take() {
            token.cancel();
        }
    }
}

pub struct ClusterWatcher<R: Rados, C> {
    env: Env<R, C>,
    pools: BTreeMap<i64, PoolState>,
    events_tx: mpsc::Sender<(i64, WatchEvent)>,
    events: mpsc::Receiver<(i64, WatchEvent)>,
}

impl<R: Rados, C: Connector<Rados = R>> ClusterWatcher<R, C> {
    pub fn new(env: Env<R, C>) -> Self {
        let (events_tx, events) = mpsc::channel(64);
        metrics::queue(metrics::Queue::PoolEvents, &events_tx);
        ClusterWatcher {
            env,
            pools: BTreeMap::new(),
            events_tx,
            events,
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let every = Duration::from_millis(self.env.settings.pools.refresh_interval_ms.max(100));
        let mut refresh = tokio::time::interval(every);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = refresh.tick() => self.refresh_pools(&cancel).await,
                Some((pool_id, ev)) = self.events.recv() => self.on_event(pool_id, ev, &cancel).await,
            }
        }
        for (pool_id, mut state) in std::mem::take(&mut self.pools) {
            state.stop();
            if let (Some(cookie), Ok(io)) = (state.watch, self.env.local.ioctx_by_id(pool_id).await)
            {
                let _ = io.unwatch(cookie).await;
            }
        }
    }

    async fn on_event(&mut self, pool_id: i64, ev: WatchEvent, cancel: &CancellationToken) {
        match ev {
            WatchEvent::Notify(n) => match MirroringNotify::from_bytes(n.payload) {
                Ok(MirroringNotify::ModeUpdated { .. }) => self.refresh_pool(pool_id, cancel).await,
                // Local image updates concern the replayers' own images; the peers' image
                // lists come from the remote pools.
                Ok(_) => {}
                // Whatever it meant, re-reading everything cannot miss it.
                Err(e) => {
                    tracing::warn!(pool_id, %e, "undecodable rbd_mirroring notification");
                    self.refresh_pool(pool_id, cancel).await;
                }
            },
            WatchEvent::Lagged => self.refresh_pool(pool_id, cancel).await,
            WatchEvent::Error(errno) => {
                tracing::warn!(pool_id, %errno, "rbd_mirroring watch broke; re-watching");
                if let Some(p) = self.pools.get_mut(&pool_id) {
                    p.watch = None;
                }
                self.refresh_pool(pool_id, cancel).await;
                if self.pools.get(&pool_id).is_some_and(|p| p.watch.is_some()) {
                    metrics::rewatch(Source::Mirroring);
                }
            }
        }
    }

    async fn refresh_pools(&mut self, cancel: &CancellationToken) {
        let pools = match self.env.local.pool_list().await {
            Ok(p) => p,
            Err(e) => return tracing::warn!(%e, "listing pools"),
        };
        let gone: Vec<i64> = self
            .pools
            .keys()
            .filter(|id| !pools.iter().any(|(p, _)| p == *id))
            .copied()
            .collect();
        for id in gone {
            if let Some(mut state) = self.pools.remove(&id) {
                state.stop();
            }
        }
        for (id, name) in pools {
            self.pools.entry(id).or_insert_with(|| PoolState {
                name,
                watch: None,
                instances: None,
                replayers: HashMap::new(),
            });
            self.refresh_pool(id, cancel).await;
        }
    }

    async fn refresh_pool(&mut self, pool_id: i64, cancel: &CancellationToken) {
        let Some(name) = self.pools.get(&pool_id).map(|p| p.name.clone()) else {
            return;
        };
        match self.read_pool(pool_id).await {
            Ok(Some((peers, site_name))) => {
                self.ensure_watch(pool_id).await;
                self.ensure_instances(pool_id, cancel).await;
                self.reconcile(pool_id, &name, peers, site_name, cancel);
            }
            Ok(None) => {
                self.reconcile(pool_id, &name, Vec::new(), String::new(), cancel);
                if let Some((token, _)) = self
                    .pools
                    .get_mut(&pool_id)
                    .and_then(|p| p.instances.take())
                {
                    token.cancel();
                }
            }
            // Unreachable for now: keep what runs; the next event or refresh retries.
            Err(e) if e.is_transient() => {
                tracing::warn!(pool = %name, %e, "reading mirroring configuration")
            }
            // Undecodable: keep what runs too, and say so until a read succeeds.
            Err(e) => {
                let text = format!("cannot read the pool's mirroring configuration: {e}");
                self.env
                    .registry
                    .pool_health(&local_key(&name), "", Some((text, e.code())));
                return;
            }
        }
        self.env.registry.pool_health(&local_key(&name), "", None);
    }

    /// `None` when mirroring is disabled (or never enabled) in the pool.
    async fn read_pool(&self, pool_id: i64) -> Result<Option<(Vec<PeerSite>, String)>, ClsError> {
        let io = self.env.local.ioctx_by_id(pool_id).await?;
        let mode = match cls::mirror::mode_get(&io).await {
            Err(e) if e.is_not_found() => MirrorMode::Disabled,
            other => other?,
        };
        if !mode.is_enabled() {
            return Ok(None);
        }
        let peers = pool_peers(&self.env.local, pool_id, &io).await?;
        let site_name = match self.env.local.config_key_get(SITE_NAME_KEY).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => self.env.local.fsid(),
        };
        Ok(Some((peers, site_name)))
    }

    async fn ensure_watch(&mut self, pool_id: i64) {
        if self.pools.get(&pool_id).is_none_or(|p| p.watch.is_some()) {
            return;
        }
        let io = match self.env.local.ioctx_by_id(pool_id).await {
            Ok(io) => io,
            Err(e) => return tracing::warn!(pool_id, %e, "opening pool"),
        };
        match io.watch_with(MIRRORING_OBJECT, AckMode::Auto).await {
            Ok(mut watch) => {
                if let Some(p) = self.pools.get_mut(&pool_id) {
                    p.watch = Some(watch.cookie);
                }
                let tx = self.events_tx.clone();
                tokio::spawn(async move {
                    while let Some(ev) = watch.next().await {
                        metrics::watch_event(Source::Mirroring, Some(&ev));
                        let last = matches!(ev, WatchEvent::Error(_));
                        if tx.send((pool_id, ev)).await.is_err() || last {
                            break;
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(pool_id, %e, "watching rbd_mirroring"),
        }
    }

    async fn ensure_instances(&mut self, pool_id: i64, cancel: &CancellationToken) {
        if self
            .pools
            .get(&pool_id)
            .is_none_or(|p| p.instances.is_some())
        {
            return;
        }
        let io = match self.env.local.ioctx_by_id(pool_id).await {
            Ok(io) => io,
            Err(e) => return tracing::warn!(pool_id, %e, "opening pool"),
        };
        let token = cancel.child_token();
        let membership = instances::spawn(
            self.env.local.clone(),
            io,
            self.env.settings.instances,
            self.env.registry.clone(),
            &self.env.tasks,
            token.clone(),
        );
        if let Some(p) = self.pools.get_mut(&pool_id) {
            p.instances = Some((token, membership));
        }
    }

    fn reconcile(
        &mut self,
        pool_id: i64,
        pool: &str,
        peers: Vec<PeerSite>,
        site_name: String,
        cancel: &CancellationToken,
    ) {
        let Some(state) = self.pools.get_mut(&pool_id) else {
            return;
        };
        state.replayers.retain(|peer, token| {
            let keep = peers.contains(peer);
            if !keep {
                tracing::info!(pool, peer = %peer.site_name, "stopping pool replayer");
                token.cancel();
            }
            keep
        });
        let Some((_, membership)) = &state.instances else {
            return; // mirroring disabled: no peers either
        };
        for peer in peers {
            if state.replayers.contains_key(&peer) {
                continue;
            }
            tracing::info!(pool, peer = %peer.site_name, "starting pool replayer");
            let token = cancel.child_token();
            let args = PoolReplayerArgs {
                pool_id,
                pool: pool.to_string(),
                peer: peer.clone(),
                site_name: site_name.clone(),
                membership: membership.clone(),
            };
            pool_replayer::spawn(self.env.clone(), args, token.clone());
            state.replayers.insert(peer, token);
        }
    }
}
