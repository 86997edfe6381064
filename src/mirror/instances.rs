//! Instances: the rbd-relay daemons of one site that serve a local pool, and which of them
//! are alive. Replaces upstream's `InstanceWatcher` + `LeaderWatcher` heartbeats (a leader
//! on `rbd_mirror_leader`, 5 s heartbeats, the instance list in `rbd_mirror_instances`)
//! with one object every instance watches and nothing else: placement needs no leader
//! (see `assignment`), so none is elected. The leader is the lowest live instance that has
//! not declined (`rbd mirror leader release`); its only duty is load balancing (`balance`),
//! which this actor also drives: every instance reports its images' rates, the leader moves.
//!
//! ```text
//!  JOIN: create + watch rbd_relay_instances (auto-acked) ──► omap set <our id> = {addr, started}
//!        ──► read the moves ──► PROBE(join)
//!  PROBE(kind): read the omap ──► notify kind (ping timeout) ──► every listed instance that
//!        did not ack is dead: blocklist its address (it can never write again), remove its
//!        entry, notify "leave" ──► publish the live set
//!  notify "join" / "leave" from another instance, or lagged ──► LOOK: re-read the omap, publish
//!  ping interval ──► PROBE(ping)                     (the backstop for killed daemons)
//!  balance interval ──► report our loads; leader: plan, apply, notify "moves"
//!  notify "moves" ──► re-read the moves, publish
//!  leader release ──► entry marked declined ──► PROBE(join)
//!  EBLOCKLISTED on our own client ──► tell the daemon (it starts over on a new client)
//!  watch error, or our own entry gone (fenced) ──► publish "nobody", backoff, JOIN again
//!  cancel ──► LEAVE: remove our entry and load report, notify "leave", unwatch
//! ```
//! Why a probe: RADOS tells nobody when another client's watch goes away, and a killed
//! daemon's watch lingers on the OSD for `osd_client_watch_timeout` (30 s). Every notify
//! we send doubles as a liveness check (the OSD answers at once for a watch already gone,
//! after the timeout for a frozen or killed one); joins and clean leaves are announced, so
//! only a crash waits for the periodic ping. The watch is acked by librados itself, so a
//! process that is alive but busy never looks dead; one frozen by SIGSTOP does, and is
//! fenced before its images move, which the image locks would enforce anyway.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::balance;
use super::registry::Registry;
use crate::backoff::Backoff;
use crate::config::InstanceSettings;
use crate::metrics::{self, Source};
use crate::rados::{AckMode, Errno, IoCtx, Rados, RadosError, RadosOp, Watch, WatchEvent, WriteOp};
use crate::rbd::fencing::BLOCKLIST_FOR;

/// The object every instance of a site watches in each mirrored pool; its omap lists them.
pub const INSTANCES_OBJECT: &str = "rbd_relay_instances";

const JOIN: &[u8] = b"join";
const LEAVE: &[u8] = b"leave";
const PING: &[u8] = b"ping";
/// The leader changed `balance`'s moves.
const MOVES: &[u8] = b"moves";

/// A registered daemon: its local client, as the omap entry records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The local client's global id (`client.<id>`), also the key of its entry.
    #[serde(skip)]
    pub id: u64,
    /// What fencing blocklists.
    pub addr: String,
    /// Unix seconds.
    pub started: u64,
    /// Gave leadership away (`rbd mirror leader release`): leads only if all others did.
    #[serde(default)]
    pub declined: bool,
}

/// Who serves a pool, as this instance last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub me: u64,
    /// Live instances by id; empty until our first probe (or after we were fenced):
    /// this instance then owns nothing.
    pub live: Vec<Instance>,
    /// The leader's load-balancing overrides: global id → instance (see `balance`).
    pub moves: BTreeMap<String, u64>,
}

impl Membership {
    /// The lowest live instance that has not released leadership (else the lowest).
    pub fn leader(&self) -> Option<u64> {
        let mut candidates = self.live.iter().filter(|i| !i.declined);
        candidates.next().or(self.live.first()).map(|i| i.id)
    }

    pub fn owner(&self, global_id: &str) -> Option<u64> {
        balance::owner(global_id, &self.ids(), &self.moves)
    }

    fn ids(&self) -> Vec<u64> {
        self.live.iter().map(|i| i.id).collect()
    }

    pub fn owns(&self, global_id: &str) -> bool {
        self.owner(global_id) == Some(self.me)
    }
}

/// Starts this instance's registration in `pool`; the receiver sees every membership change.
pub fn spawn<R: Rados>(
    local: R,
    io: R::IoCtx,
    settings: InstanceSettings,
    registry: Arc<Registry>,
    tasks: &tokio_util::task::TaskTracker,
    cancel: CancellationToken,
) -> watch::Receiver<Membership> {
    let me = Instance {
        id: local.instance_id(),
        addr: local.client_addr(),
        started: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        declined: false,
    };
    let (tx, rx) = watch::channel(Membership {
        me: me.id,
        ..Membership::default()
    });
    let actor = Instances {
        local,
        io,
        me,
        settings,
        registry,
        tx,
        replayed: HashMap::new(),
        measured_at: Instant::now(),
    };
    tasks.spawn(actor.run(cancel));
    rx
}

struct Instances<R: Rados> {
    local: R,
    io: R::IoCtx,
    me: Instance,
    settings: InstanceSettings,
    registry: Arc<Registry>,
    tx: watch::Sender<Membership>,
    /// Bytes each of our images had replayed at the last load report, and when.
    replayed: HashMap<String, u64>,
    measured_at: Instant,
}

impl<R: Rados> Instances<R> {
    async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), 2, Duration::from_secs(10));
        let every = Duration::from_millis(self.settings.ping_interval_ms.max(100));
        let balancing = self.settings.balance_interval_ms > 0;
        let mut balance = tokio::time::interval(Duration::from_millis(
            self.settings.balance_interval_ms.max(100),
        ));
        balance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut releases = self.registry.leader_releases();
        loop {
            // Not raced against the cancel: a half-made join would leave an entry behind
            // that the others would take for a dead instance and fence.
            let mut watch = match self.join().await {
                Ok(w) if cancel.is_cancelled() => {
                    self.leave(w.cookie).await;
                    break;
                }
                Ok(w) => w,
                Err(e) => {
                    self.check_fenced(e.errno);
                    tracing::warn!(pool = %self.io.pool_name(), %e, "joining the instances; retrying");
                    self.publish(Vec::new());
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff.next_delay()) => continue,
                    }
                }
            };
            backoff.reset();
            let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let broke = loop {
                let looked = tokio::select! {
                    _ = cancel.cancelled() => {
                        self.leave(watch.cookie).await;
                        return self.registry.remove_instances(self.io.pool_name());
                    }
                    _ = ping.tick() => self.probe(PING).await,
                    _ = balance.tick(), if balancing => self.balance().await,
                    Ok(()) = releases.changed() => self.decline().await,
                    ev = watch.next() => {
                        metrics::watch_event(Source::Instances, ev.as_ref());
                        match ev {
                            Some(WatchEvent::Notify(n)) if n.payload == PING => continue,
                            Some(WatchEvent::Notify(n)) if n.payload == MOVES => self.read_moves().await,
                            Some(WatchEvent::Notify(_) | WatchEvent::Lagged) => self.look().await,
                            Some(WatchEvent::Error(errno)) => break errno,
                            None => break Errno::ENOTCONN,
                        }
                    }
                };
                if let Err(e) = looked {
                    // Our entry gone means someone fenced us: stop owning anything.
                    if e.errno == Errno::ENOENT || e.errno == Errno::EBLOCKLISTED {
                        break e.errno;
                    }
                    tracing::warn!(pool = %self.io.pool_name(), %e, "reading the instances");
                }
            };
            self.check_fenced(broke);
            tracing::warn!(pool = %self.io.pool_name(), %broke, "instance registration lost; joining again");
            self.publish(Vec::new());
            let _ = self.io.unwatch(watch.cookie).await;
            metrics::rewatch(Source::Instances);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
        self.registry.remove_instances(self.io.pool_name());
    }

    /// Watch first, then the entry: whoever lists us can already reach our watch.
    async fn join(&self) -> Result<Watch, RadosError> {
        // The first instance ever creates the object (a watch needs one).
        self.io
            .operate_write(INSTANCES_OBJECT, WriteOp::new().create(false))
            .await?;
        let watch = self.io.watch_with(INSTANCES_OBJECT, AckMode::Auto).await?;
        let joined = async {
            self.register().await?;
            self.read_moves().await?;
            self.probe(JOIN).await
        };
        if let Err(e) = joined.await {
            let _ = self.io.unwatch(watch.cookie).await;
            return Err(e);
        }
        tracing::info!(pool = %self.io.pool_name(), instance = self.me.id, "joined the instances");
        Ok(watch)
    }

    /// A blocklisted client can never write again: the daemon must start over on a new one.
    fn check_fenced(&self, errno: Errno) {
        if errno == Errno::EBLOCKLISTED {
            tracing::error!(pool = %self.io.pool_name(), "this instance was fenced (blocklisted)");
            self.registry.fenced_here();
        }
    }

    /// Writes our entry.
    async fn register(&self) -> Result<(), RadosError> {
        let entry = serde_json::to_vec(&self.me).unwrap_or_default();
        let kv = BTreeMap::from([(self.me.id.to_string(), Bytes::from(entry))]);
        self.io.omap_set(INSTANCES_OBJECT, kv).await
    }

    /// `rbd mirror leader release`: marks our entry, and the others look again.
    async fn decline(&mut self) -> Result<(), RadosError> {
        self.me.declined = true;
        tracing::info!(pool = %self.io.pool_name(), instance = self.me.id, "releasing leadership");
        self.register().await?;
        self.probe(JOIN).await
    }

    /// Reports our images' replay rates; the leader then adjusts the moves.
    async fn balance(&mut self) -> Result<(), RadosError> {
        let loads = self.loads();
        balance::report(&self.io, self.me.id, loads).await?;
        let m = self.tx.borrow().clone();
        if m.leader() == Some(self.me.id) {
            let ids = m.ids();
            let seen = balance::Snapshot::read(&self.io, &ids).await?;
            let min_gap = self.settings.balance_min_gap_bytes;
            let mut changes = balance::plan(&ids, &seen.moves(), &seen.loads, min_gap);
            let settle = 2 * self.settings.balance_interval_ms.div_ceil(1000);
            for gone in seen.gone(settle) {
                if !changes.contains(&gone) {
                    changes.push(gone);
                }
            }
            balance::apply(&self.io, &changes, &seen).await?;
            if !changes.is_empty() {
                let pool = self.io.pool_name();
                tracing::info!(pool, ?changes, "balancing replay load");
                metrics::balance_changes(pool, changes.len() as u64);
                let timeout = Duration::from_millis(self.settings.ping_timeout_ms);
                let _ = self
                    .io
                    .notify(INSTANCES_OBJECT, Bytes::from_static(MOVES), timeout)
                    .await;
            }
        }
        self.read_moves().await
    }

    /// Bytes per second each image of ours replayed since the last report.
    fn loads(&mut self) -> balance::Loads {
        let secs = self.measured_at.elapsed().as_secs_f64().max(0.001);
        self.measured_at = Instant::now();
        let pool = self.io.pool_name();
        let now: HashMap<String, u64> = self
            .registry
            .snapshot()
            .into_iter()
            .filter(|(k, _)| k.pool == pool)
            .map(|(k, v)| (k.global_id, v.bytes_replayed))
            .collect();
        let before = std::mem::replace(&mut self.replayed, now);
        self.replayed
            .iter()
            .map(|(g, &bytes)| {
                // A restarted replayer counts from zero again.
                let since = before.get(g).copied().filter(|&b| b <= bytes).unwrap_or(0);
                (g.clone(), ((bytes - since) as f64 / secs) as u64)
            })
            .collect()
    }

    async fn read_moves(&self) -> Result<(), RadosError> {
        let moves = balance::moves(&self.io).await?;
        self.update(|m| {
            let changed = m.moves != moves;
            m.moves = moves;
            changed
        });
        Ok(())
    }

    /// Bounded: a shutdown does not wait on others for more than a second.
    async fn leave(&self, cookie: u64) {
        let me = self.me.id.to_string();
        if let Err(e) = self.io.omap_rm_keys(INSTANCES_OBJECT, &[&me]).await {
            tracing::warn!(pool = %self.io.pool_name(), %e, "removing our instance entry");
        }
        if let Err(e) = balance::withdraw(&self.io, self.me.id).await {
            tracing::warn!(pool = %self.io.pool_name(), %e, "removing our load report");
        }
        let _ = self.io.unwatch(cookie).await;
        let _ = self
            .io
            .notify(
                INSTANCES_OBJECT,
                Bytes::from_static(LEAVE),
                Duration::from_secs(1),
            )
            .await;
    }

    /// Re-reads the registered instances and trusts them (a dead one is found by a probe).
    async fn look(&self) -> Result<(), RadosError> {
        let listed = self.list().await?;
        self.check_listed(&listed)?;
        self.publish(listed);
        self.read_moves().await
    }

    /// Notifies `kind` and fences every listed instance that did not answer.
    async fn probe(&self, kind: &'static [u8]) -> Result<(), RadosError> {
        let listed = self.list().await?;
        self.check_listed(&listed)?;
        let timeout = Duration::from_millis(self.settings.ping_timeout_ms);
        let reply = self
            .io
            .notify(INSTANCES_OBJECT, Bytes::from_static(kind), timeout)
            .await?;
        let acked: HashSet<u64> = reply.acks.iter().map(|a| a.notifier_id).collect();
        let was_listed: HashSet<u64> = listed.iter().map(|i| i.id).collect();
        let silent = |i: &Instance| i.id != self.me.id && !acked.contains(&i.id);
        // A clean leave removes its entry before its watch, and a join adds its entry
        // after its watch: only an instance listed before and after the notify that did
        // not answer is dead. The second look is only needed when someone was silent.
        let listed = if listed.iter().any(silent) {
            self.list().await?
        } else {
            listed
        };
        let mut live = Vec::with_capacity(listed.len());
        let mut fenced = false;
        for instance in listed {
            if !silent(&instance) || !was_listed.contains(&instance.id) {
                live.push(instance);
            } else if self.fence(&instance).await {
                fenced = true;
            } else {
                live.push(instance); // not fenced: its images stay with it (and its locks)
            }
        }
        self.publish(live);
        if fenced {
            let _ = self
                .io
                .notify(INSTANCES_OBJECT, Bytes::from_static(LEAVE), timeout)
                .await;
        }
        Ok(())
    }

    /// Blocklists a silent instance, then removes its entry; false if it could not be fenced.
    async fn fence(&self, instance: &Instance) -> bool {
        let pool = self.io.pool_name();
        tracing::warn!(pool, instance = instance.id, addr = %instance.addr,
            "instance did not answer; blocklisting it before its images move");
        if let Err(e) = self
            .local
            .blocklist_add(&instance.addr, BLOCKLIST_FOR)
            .await
        {
            tracing::error!(pool, instance = instance.id, %e, "could not fence a silent instance; its images stay");
            return false;
        }
        metrics::instance_fenced(pool);
        let key = instance.id.to_string();
        if let Err(e) = self.io.omap_rm_keys(INSTANCES_OBJECT, &[&key]).await {
            tracing::warn!(pool, %e, "removing a fenced instance's entry");
        }
        true
    }

    async fn list(&self) -> Result<Vec<Instance>, RadosError> {
        let entries = self.io.omap_get_all(INSTANCES_OBJECT, "").await?;
        let mut listed: Vec<Instance> = entries
            .into_iter()
            .filter_map(|(key, value)| {
                let id = key.parse().ok()?;
                match serde_json::from_slice::<Instance>(&value) {
                    Ok(i) => Some(Instance { id, ..i }),
                    Err(e) => {
                        tracing::warn!(%key, %e, "ignoring an undecodable instance entry");
                        None
                    }
                }
            })
            .collect();
        listed.sort_by_key(|i| i.id);
        Ok(listed)
    }

    /// Our own entry gone: we were fenced (or an operator removed it).
    fn check_listed(&self, listed: &[Instance]) -> Result<(), RadosError> {
        if listed.iter().any(|i| i.id == self.me.id) {
            return Ok(());
        }
        Err(RadosError::new(
            RadosOp::Read,
            INSTANCES_OBJECT,
            Errno::ENOENT,
        ))
    }

    fn publish(&self, live: Vec<Instance>) {
        self.update(|m| {
            let changed = m.live != live;
            m.live = live;
            changed
        });
    }

    /// Applies `change` (true if it changed something) and tells everyone who cares.
    fn update(&self, change: impl FnOnce(&mut Membership) -> bool) {
        let pool = self.io.pool_name();
        if self.tx.send_if_modified(change) {
            let m = self.tx.borrow().clone();
            tracing::info!(pool, live = ?m.ids(), leader = ?m.leader(), moves = m.moves.len(),
                "instances changed");
            metrics::instances(pool, m.live.len(), m.leader() == Some(m.me));
            self.registry.publish_instances(pool, m);
        }
    }
}
