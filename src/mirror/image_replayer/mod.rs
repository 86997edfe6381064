//! ImageReplayer: one actor per mirrored image. Replaces upstream's ImageReplayer (its
//! bootstrap, image sync and journal replay), with the journal followed by notification
//! instead of a 5 s poll, and parked images woken by notification instead of upstream's
//! 30 s image state check.
//!
//! ```text
//!  STARTING_REPLAY → bootstrap ──(skip: local primary, no primary)──► parked
//!        │                     ──(transient error)──► backoff ──► STARTING_REPLAY
//!        │                     ──(split-brain, disconnected, corrupt...)──► ERROR, parked
//!        ▼
//!  [SYNCING: image_sync]  (client meta says SYNCING)
//!        ▼
//!  REPLAYING ⇄ journal notifications / tail probe
//!        ├─ demotion replayed, resync requested ──► STARTING_REPLAY at once
//!        ├─ lock wanted (a promotion here) ──► release it, parked
//!        └─ lock lost, error ──► as above
//!  parked ──(either journal header notified, or the pool watcher's kick)──► STARTING_REPLAY
//!         (watches are armed before the look they cover; looks ≥ 250 ms apart)
//!  cancel (any state) ──► finish the batch, commit what is applied, release the lock,
//!                         final status
//! ```
//! Statuses go to the local pool's `rbd_mirroring` with upstream's states and wording, on
//! every state change and, while replaying, after commits (at most once a second).

mod bootstrap;
mod control;
mod image_sync;
mod parent;
mod prefix;
mod replay;
mod status;
mod wake;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::registry::{ImageKey, ImageView, PoolKey, ReplayState};
use super::{Connector, Env};
use crate::backoff::Backoff;
use crate::cls::{self, ClsError};
use crate::format::Encode;
use crate::format::client_data::{ClientData, MirrorPeerState};
use crate::format::journal::{ObjectSetPosition, header_oid};
use crate::journal::JournalError;
use crate::journal::follower::{Follower, FollowerStats};
use crate::metrics::ImageMetrics;
use crate::rados::{Fence, IoCtx, Rados};
use crate::rbd::{self, Image, LockState, RbdError};

pub use bootstrap::{image_client, newest_tag, replica_spec};
pub use prefix::replay_prefix;
pub use replay::{Epochs, mirrored_tag};

use bootstrap::Boot;
use replay::{Applied, Replay};
use wake::{ResyncWatch, Wakers};

pub use control::Control;

/// The pool × peer an image replayer works in (shared by all its images).
pub struct PoolCtx<I> {
    pub pool: String,
    /// The RBD namespace (`""`: the default one) both ioctxs are set to.
    pub namespace: String,
    pub peer: String,
    pub local_io: I,
    pub remote_io: I,
    /// Breaks a dead client's lock on a primary (a killed daemon's sync-point lock), and
    /// fences a dead predecessor's client there.
    pub remote_fence: Arc<dyn Fence>,
    /// Our client's address on the remote cluster (recorded with the local lock).
    pub remote_addr: String,
    pub local_uuid: String,
    pub remote_uuid: String,
}

impl<I: IoCtx> PoolCtx<I> {
    /// The same pool × peer in another RBD namespace: the same mirror uuids (the pool's,
    /// as upstream uses for every namespace), both ioctxs set to `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Self {
        PoolCtx {
            pool: self.pool.clone(),
            namespace: namespace.to_string(),
            peer: self.peer.clone(),
            local_io: self.local_io.with_namespace(namespace),
            remote_io: self.remote_io.with_namespace(namespace),
            remote_fence: self.remote_fence.clone(),
            remote_addr: self.remote_addr.clone(),
            local_uuid: self.local_uuid.clone(),
            remote_uuid: self.remote_uuid.clone(),
        }
    }

    /// The pool replayer this context belongs to (any namespace).
    pub fn key(&self) -> PoolKey {
        PoolKey {
            pool: self.pool.clone(),
            peer: self.peer.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The primary dropped our journal client (it lagged too far, or an operator did):
    /// entries may be gone. Upstream's status word.
    #[error("disconnected")]
    Disconnected,
    /// The local image's history does not continue into the remote's (a forced promotion).
    #[error("split-brain")]
    SplitBrain,
    #[error("corrupt journal data at {position}: {reason}")]
    Corrupt { position: String, reason: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("sync point {0} vanished on the primary; restarting the sync")]
    SyncPointLost(String),
    #[error("lost the local image's exclusive lock")]
    LockLost,
    /// A clone waits for its parent's replica (or the parent snapshot) to exist here.
    #[error("waiting for {0}")]
    WaitingForParent(String),
    #[error(transparent)]
    Journal(JournalError),
    #[error(transparent)]
    Rbd(#[from] RbdError),
    #[error(transparent)]
    Cls(#[from] ClsError),
}

impl From<JournalError> for ReplayError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Disconnected { .. } => ReplayError::Disconnected,
            e => ReplayError::Journal(e),
        }
    }
}

impl From<crate::rados::RadosError> for ReplayError {
    fn from(e: crate::rados::RadosError) -> Self {
        ReplayError::Cls(e.into())
    }
}

impl ReplayError {
    pub fn is_transient(&self) -> bool {
        match self {
            ReplayError::SyncPointLost(_)
            | ReplayError::LockLost
            | ReplayError::WaitingForParent(_) => true,
            ReplayError::Journal(e) => e.is_transient(),
            ReplayError::Rbd(e) => e.is_transient(),
            ReplayError::Cls(e) => e.is_transient(),
            _ => false,
        }
    }

    /// Bounded label for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ReplayError::Disconnected => "disconnected",
            ReplayError::SplitBrain => "split_brain",
            ReplayError::Corrupt { .. } => "corrupt",
            ReplayError::Unsupported(_) => "unsupported",
            ReplayError::SyncPointLost(_) => "sync_point_lost",
            ReplayError::LockLost => "lock_lost",
            ReplayError::WaitingForParent(_) => "waiting_for_parent",
            ReplayError::Journal(e) => e.code(),
            ReplayError::Rbd(e) => e.code(),
            ReplayError::Cls(e) => e.code(),
        }
    }
}

/// Cheap to clone: the pool replayer keeps one per image.
#[derive(Clone)]
pub struct ImageReplayerHandle {
    kick: Arc<Notify>,
    cancel: CancellationToken,
    /// Another instance owns the image now: stop without a last status, which would
    /// race the new owner's.
    handed_over: CancellationToken,
}

impl ImageReplayerHandle {
    /// The image was updated on the primary: a parked replayer retries. Never blocks.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Stops as `stop` does (commit, release the lock) and leaves the status to the image's
    /// new owner.
    pub fn hand_over(&self) {
        self.handed_over.cancel();
        self.cancel.cancel();
    }
}

pub fn spawn<R: Rados, C: Connector<Rados = R>>(
    env: Env<R, C>,
    ctx: Arc<PoolCtx<R::IoCtx>>,
    global_id: String,
    remote_image_id: String,
    taken_at: Option<std::time::Instant>,
    cancel: CancellationToken,
) -> (ImageReplayerHandle, JoinHandle<()>) {
    let kick = Arc::new(Notify::new());
    let key = ImageKey {
        pool: ctx.pool.clone(),
        namespace: ctx.namespace.clone(),
        global_id: global_id.clone(),
    };
    let mut metrics = ImageMetrics::new(&key);
    if let Some(at) = taken_at {
        metrics.taken_over(at);
    }
    let control = env.registry.attach(&key, &ctx.peer);
    let handed_over = CancellationToken::new();
    let actor = ImageReplayer {
        view: ImageView {
            name: String::new(),
            peer: ctx.peer.clone(),
            state: ReplayState::StartingReplay,
            description: "starting replay".into(),
            entries_replayed: 0,
            bytes_replayed: 0,
            entries_behind: 0,
            lag_seconds: 0.0,
            sync_fraction: 0.0,
            updated: SystemTime::now(),
        },
        env: env.clone(),
        ctx,
        key,
        global_id,
        remote_image_id,
        kick: kick.clone(),
        control,
        status: tokio::sync::watch::Sender::new(status::Published {
            state: ReplayState::StartingReplay,
            description: String::new(),
            committed: None,
        }),
        stats: Arc::new(FollowerStats::default()),
        metrics,
        handed_over: handed_over.clone(),
    };
    env.tasks.spawn(status::writer(
        actor.ctx.clone(),
        actor.global_id.clone(),
        actor.remote_image_id.clone(),
        actor.status.subscribe(),
        actor.metrics.entries_behind(),
        handed_over.clone(),
        actor.stats.clone(),
        status::IDLE_REFRESH,
    ));
    let task = env.tasks.spawn(actor.run(cancel.clone()));
    let handle = ImageReplayerHandle {
        kick,
        cancel,
        handed_over,
    };
    (handle, task)
}

struct ImageReplayer<R: Rados, C> {
    env: Env<R, C>,
    ctx: Arc<PoolCtx<R::IoCtx>>,
    key: ImageKey,
    global_id: String,
    remote_image_id: String,
    kick: Arc<Notify>,
    /// An operator's stop / start / restart / flush (the admin socket).
    control: Arc<Control>,
    view: ImageView,
    /// Read by this image's status writer task.
    status: tokio::sync::watch::Sender<status::Published>,
    stats: Arc<FollowerStats>,
    /// This image's series; dropped (zeroed) when the replayer ends.
    metrics: ImageMetrics,
    /// See [`ImageReplayerHandle::hand_over`].
    handed_over: CancellationToken,
}

/// Why a cycle ended without an error.
enum Stopped {
    Cancelled,
    /// Nothing to do until an owner changes (a journal notification) or the pool watcher
    /// kicks; `watch_remote`: the remote journal's changes matter too.
    Parked {
        watch_remote: bool,
    },
    /// Look again at once: the owners changed under the replay (demotion replayed,
    /// resync requested).
    Restart,
}

/// How long a replayer on its way out (or parking) waits for the remote cluster.
pub(crate) const REMOTE_GRACE: Duration = Duration::from_secs(5);

/// How long a replayer waits for a live holder of its image's lock (another instance) to
/// release it: a clean hand-over does within a few hundred milliseconds, and its release
/// notify ends the wait. Longer, and the replayer bootstraps again (what it found may
/// have changed meanwhile).
const HANDOVER_WAIT: Duration = Duration::from_secs(1);

/// How soon a replayer tries again for a lock a live holder kept past `HANDOVER_WAIT`; a
/// dead holder is fenced at the next try after its watch stops answering.
fn lock_busy_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), 2, Duration::from_millis(500))
}

/// Parked looks are at least this far apart: a busy primary's journal header is notified
/// after every commit, which must not become a bootstrap per write.
const MIN_RECHECK: Duration = Duration::from_millis(250);

impl<R: Rados, C: Connector<Rados = R>> ImageReplayer<R, C> {
    async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(250), 2, Duration::from_secs(30));
        let mut lock_busy = lock_busy_backoff();
        // While parked: armed before each look, so a change right after it is not missed.
        let mut wakers: Option<Wakers<R::IoCtx>> = None;
        // After a transient error the status keeps its reason ("retrying: ...") through the
        // next attempt: a bootstrap waiting on an unreachable primary must not look healthy.
        let mut retrying = false;
        loop {
            if self.control.is_held() {
                retrying = false;
                wake::disarm(&mut wakers).await;
                self.set_state(ReplayState::Stopped, "stopped by an operator")
                    .await;
                if !self.control.released(&cancel).await {
                    break;
                }
            }
            if wakers.is_none() && !retrying {
                self.set_state(ReplayState::StartingReplay, "starting replay")
                    .await;
            }
            // An operator's stop or restart cancels this cycle (and its wait) only.
            let cycle = self.control.cycle(&cancel);
            let looked = Instant::now();
            let mut replayed = false;
            let result = self.cycle(&cycle, &mut wakers, &mut replayed).await;
            retrying = matches!(&result, Err(e) if e.is_transient());
            let park = match result {
                Ok(Stopped::Cancelled) if cancel.is_cancelled() => break,
                Ok(Stopped::Cancelled) => {
                    wake::disarm(&mut wakers).await;
                    continue;
                }
                Ok(Stopped::Parked { watch_remote }) => {
                    // Handed the lock over (a promotion): look again once armed.
                    replayed = false;
                    Some(watch_remote)
                }
                Ok(Stopped::Restart) => None,
                Err(e) if e.is_transient() => {
                    self.metrics.error(e.code());
                    tracing::warn!(image = %self.view.name, global_id = %self.global_id, %e,
                        "image replay interrupted; retrying");
                    self.set_state(ReplayState::StartingReplay, &format!("retrying: {e}"))
                        .await;
                    wake::disarm(&mut wakers).await;
                    // Another instance holds the lock while it hands the image over (or
                    // until fencing finds it dead): retry soon, or a grown backoff would
                    // outlast the hand-over by many seconds.
                    let delay = match e {
                        ReplayError::Rbd(RbdError::LockBusy { .. }) => lock_busy.next_delay(),
                        _ => backoff.next_delay(),
                    };
                    tokio::select! {
                        _ = cycle.cancelled() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                    if cancel.is_cancelled() {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    self.metrics.error(e.code());
                    self.metrics
                        .split_brain(matches!(e, ReplayError::SplitBrain));
                    let reason = e.to_string();
                    // Parked images wake on every change of the primary (under a workload:
                    // each commit); the same failure is logged once.
                    if self.view.state == ReplayState::Error && self.view.description == reason {
                        tracing::debug!(image = %self.view.name, %e, "image replay failed again");
                    } else {
                        tracing::error!(image = %self.view.name, global_id = %self.global_id, %e,
                            "image replay failed");
                    }
                    self.set_state(ReplayState::Error, &reason).await;
                    // Only a resync request (a local journal change) or a kick helps now.
                    Some(false)
                }
            };
            backoff.reset();
            lock_busy.reset();
            let Some(watch_remote) = park else {
                continue;
            };
            // A look made without armed watches is repeated once they are (a change in
            // between is not missed) — unless the cycle got past bootstrap and failed in
            // replay: that waits for a change (or a kick) rather than running again at once.
            let waiting = match wakers.take() {
                Some(w) => Some(w),
                None if replayed => Some(self.arm(watch_remote).await),
                None => None,
            };
            if let Some(mut w) = waiting {
                tokio::select! {
                    _ = cycle.cancelled() => {}
                    _ = self.kick.notified() => {}
                    _ = w.changed() => {}
                }
                w.disarm().await;
                if cancel.is_cancelled() {
                    break;
                }
                if cycle.is_cancelled() {
                    continue;
                }
                tokio::select! {
                    _ = cycle.cancelled() => continue,
                    _ = tokio::time::sleep_until(looked + MIN_RECHECK) => {}
                }
            }
            wakers = Some(self.arm(watch_remote).await);
        }
        wake::disarm(&mut wakers).await;
        if !self.handed_over.is_cancelled() {
            self.set_state(ReplayState::Stopped, "stopped").await;
        }
        self.env.registry.remove(&self.key);
    }

    async fn arm(&self, watch_remote: bool) -> Wakers<R::IoCtx> {
        Wakers::arm(
            &self.ctx,
            &self.global_id,
            &self.remote_image_id,
            watch_remote,
        )
        .await
    }

    /// One bootstrap → [sync] → replay pass.
    async fn cycle(
        &mut self,
        cancel: &CancellationToken,
        wakers: &mut Option<Wakers<R::IoCtx>>,
        replayed: &mut bool,
    ) -> Result<Stopped, ReplayError> {
        let resync = self.env.settings.replay.resync_after_disconnect;
        let boot = tokio::select! {
            _ = cancel.cancelled() => return Ok(Stopped::Cancelled),
            b = bootstrap::bootstrap(&self.ctx, &self.global_id, &self.remote_image_id, resync) => b?,
        };
        let ready = match boot {
            Boot::Skip {
                state,
                description,
                both_primary,
            } => {
                self.metrics.split_brain(both_primary);
                if self.view.state != state || self.view.description != description {
                    self.set_state(state, &description).await;
                }
                return Ok(Stopped::Parked { watch_remote: true });
            }
            Boot::Ready(r) => *r,
        };
        self.metrics.split_brain(false);
        *replayed = true;
        wake::disarm(wakers).await;
        let bootstrap::Ready {
            mut local,
            mut meta,
            local_tag_class,
        } = ready;
        self.view.name = local.name().to_string();
        local.describe_lock(rbd::fencing::peer_client_description(&self.ctx.remote_addr));
        match rbd::fencing::acquire_handed_over(
            &self.env.local,
            Some(self.ctx.remote_fence.as_ref()),
            rbd::fencing::Dead::Silent,
            &mut local,
            HANDOVER_WAIT,
            cancel,
        )
        .await
        {
            // A stop while waiting for the holder is no failure to report.
            Err(RbdError::LockBusy { .. }) if cancel.is_cancelled() => {
                return Ok(Stopped::Cancelled);
            }
            other => other?,
        }
        // A promotion takes this lock: holding it, we see the owner it left for good.
        if bootstrap::newest_tag(local.io(), &header_oid(local.id()))
            .await?
            .is_local()
        {
            local.release_lock().await?;
            return Ok(Stopped::Restart);
        }
        let result = self
            .sync_and_replay(&mut local, &mut meta, local_tag_class, cancel)
            .await;
        if let Err(e) = local.release_lock().await {
            tracing::warn!(image = %self.view.name, %e, "releasing the local image lock");
        }
        match result {
            // Bootstrap decides what a disconnection means (error, or a resync).
            Err(ReplayError::Disconnected) => Ok(Stopped::Restart),
            other => other,
        }
    }

    async fn sync_and_replay(
        &mut self,
        local: &mut Image<R::IoCtx>,
        meta: &mut crate::format::client_data::MirrorPeerClientMeta,
        local_tag_class: u64,
        cancel: &CancellationToken,
    ) -> Result<Stopped, ReplayError> {
        if meta.state == MirrorPeerState::Syncing {
            self.set_state(ReplayState::Syncing, "bootstrapping, IMAGE_SYNC")
                .await;
            let share = image_sync::SyncShare {
                tasks: self.env.tasks.clone(),
                slots: self.env.sync_slots.clone(),
                width: self.env.settings.sync.objects_in_flight,
            };
            let ctx = self.ctx.clone();
            let remote_id = self.remote_image_id.clone();
            let mut progress = SyncProgress {
                view: &mut self.view,
                metrics: &mut self.metrics,
                status: &self.status,
            };
            tokio::select! {
                _ = cancel.cancelled() => return Ok(Stopped::Cancelled),
                r = image_sync::run(&ctx, &share, &remote_id, local, meta, &mut progress) => r?,
            }
            tracing::info!(image = %self.view.name, "image sync complete");
        }
        let prune = self.prune_sync_point(meta);
        let data = ClientData::MirrorPeer(meta.clone()).to_bytes();
        let mut follower = Follower::open(
            self.ctx.remote_io.clone(),
            &self.remote_image_id,
            &self.ctx.local_uuid,
            data,
            self.env.settings.replay.follower(),
            self.env.prefetch.clone(),
            self.stats.clone(),
        )
        .await?;
        self.view.sync_fraction = 1.0;
        self.set_state(ReplayState::Replaying, "replaying").await;
        let mut resync = ResyncWatch::arm(local);
        let result = self
            .replay(local, &mut follower, &mut resync, local_tag_class, cancel)
            .await;
        // Only acked (durably applied) entries are in the position: always safe to store.
        // Bounded: an unreachable primary must not keep the local lock from a promotion
        // (an uncommitted stretch is replayed again, which the op barrier makes safe).
        match tokio::time::timeout(REMOTE_GRACE, follower.flush_commit()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(image = %self.view.name, %e, "final commit"),
            Err(_) => tracing::warn!(image = %self.view.name, "final commit: primary unreachable"),
        }
        let _ = tokio::time::timeout(REMOTE_GRACE, follower.close()).await;
        if let Some(prune) = prune {
            let _ = tokio::time::timeout(REMOTE_GRACE, prune).await;
        }
        result
    }

    /// A sync point still recorded on a replaying client (the copy just finished, or a
    /// crash cut a prune short) is removed from the primary while replay runs.
    fn prune_sync_point(
        &self,
        meta: &crate::format::client_data::MirrorPeerClientMeta,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if meta.state != MirrorPeerState::Replaying || meta.sync_points.is_empty() {
            return None;
        }
        let (ctx, remote_id, name) = (
            self.ctx.clone(),
            self.remote_image_id.clone(),
            self.view.name.clone(),
        );
        let mut meta = meta.clone();
        let tasks = self.env.tasks.clone();
        Some(self.env.tasks.spawn(async move {
            if let Err(e) = image_sync::prune_sync_point(&ctx, &tasks, &remote_id, &mut meta).await {
                tracing::warn!(image = %name, %e, "removing the sync point on the primary (retried at the next start)");
            }
        }))
    }

    async fn replay(
        &mut self,
        local: &mut Image<R::IoCtx>,
        follower: &mut Follower<R::IoCtx>,
        resync: &mut ResyncWatch<R::IoCtx>,
        local_tag_class: u64,
        cancel: &CancellationToken,
    ) -> Result<Stopped, ReplayError> {
        let mut replay = Replay::new(local_tag_class, self.env.settings.replay.max_in_flight);
        let mut lock = local.lock_state();
        loop {
            // Follower::next is cancel safe: a lock change loses no fetched entry.
            let batch = tokio::select! {
                _ = cancel.cancelled() => return Ok(Stopped::Cancelled),
                _ = lock.changed() => match *lock.borrow_and_update() {
                    LockState::Held => continue,
                    LockState::Lost => return Err(ReplayError::LockLost),
                    // Wanted here (a promotion): hand the lock over, look again on the next
                    // change of either journal.
                    LockState::ReleaseRequested | LockState::Unlocked => {
                        return Ok(Stopped::Parked { watch_remote: true })
                    }
                },
                // Bootstrap acts on it (or on whatever broke the watch).
                _ = resync.requested() => return Ok(Stopped::Restart),
                _ = self.control.flush_requested() => {
                    let flushed = follower.flush_commit().await;
                    self.control.answer_flushes(flushed.as_ref().map(drop).map_err(ToString::to_string));
                    flushed?;
                    continue;
                }
                b = follower.next() => b?,
            };
            if batch.is_empty() {
                // Nothing deliverable now (the image budget is full; see Follower::next).
                tokio::task::yield_now().await;
                continue;
            }
            (self.metrics).batch_received(follower.received().into_std(), follower.bytes_behind());
            let mut applied = Applied::default();
            let mut batch = batch;
            // The newest acked entry: the status describes our position by it.
            let mut newest = None;
            loop {
                let out = replay
                    .apply(
                        &self.ctx.epochs(),
                        &self.remote_image_id,
                        local,
                        batch,
                        &mut applied,
                    )
                    .await?;
                for (entry, position) in &out.ready {
                    follower.ack(entry, position.clone()).await?;
                }
                newest = out.ready.last().map(|(_, p)| p.clone()).or(newest);
                if out.rest.is_empty() {
                    break;
                }
                // An op runs next: everything before it is committed first.
                follower.flush_commit().await?;
                batch = out.rest;
            }
            self.metrics.batch_applied(
                applied.entries,
                applied.bytes,
                self.env.prefetch.used(),
                follower.bytes_behind(),
            );
            self.view.entries_replayed += applied.entries;
            self.view.bytes_replayed += applied.bytes;
            if let Some(t) = applied.newest {
                self.view.lag_seconds = replay::age(t).as_secs_f64();
            }
            self.publish();
            if replay.demoted() {
                // Stored before the look: the demotion must be committed to be replayed.
                follower.flush_commit().await?;
                return Ok(Stopped::Restart);
            }
            // The status writer builds the description from our position, off this path.
            if let Some(newest) = newest {
                self.status.send_replace(status::Published {
                    state: ReplayState::Replaying,
                    description: String::new(),
                    committed: Some(ObjectSetPosition {
                        object_positions: vec![newest],
                    }),
                });
            }
        }
    }

    /// Publishes the view, and the status for the writer task.
    async fn set_state(&mut self, state: ReplayState, description: &str) {
        self.view.state = state;
        self.view.description = description.to_string();
        self.publish();
        self.status.send_replace(status::Published {
            state,
            description: description.to_string(),
            committed: None,
        });
    }

    fn publish(&mut self) {
        self.view.updated = SystemTime::now();
        self.metrics.publish(&self.view);
        self.env.registry.publish(&self.key, self.view.clone());
    }
}

struct SyncProgress<'a> {
    view: &'a mut ImageView,
    metrics: &'a mut ImageMetrics,
    /// The percent reaches `rbd mirror image status` too, as upstream's does.
    status: &'a tokio::sync::watch::Sender<status::Published>,
}

impl image_sync::Progress for SyncProgress<'_> {
    fn copied(&mut self, bytes: u64) {
        self.metrics.sync_copied(bytes);
    }

    fn progress(&mut self, phase: &str, done: u64, total: u64) {
        self.view.sync_fraction = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        self.metrics.sync_progress(self.view.sync_fraction);
        self.view.description = format!(
            "bootstrapping, IMAGE_SYNC/COPY {phase} {}%",
            (self.view.sync_fraction * 100.0) as u32
        );
        // Only a new percent wakes the status writer.
        self.status.send_if_modified(|p| {
            let changed = p.description != self.view.description;
            p.description.clone_from(&self.view.description);
            changed
        });
    }
}

/// Whether the local image `image_id` is this peer's copy: its newest tag names the peer.
pub async fn copy_of_peer<I: IoCtx>(ctx: &PoolCtx<I>, image_id: &str) -> Result<bool, ReplayError> {
    let header = crate::format::journal::header_oid(image_id);
    Ok(bootstrap::newest_tag(&ctx.local_io, &header)
        .await?
        .mirror_uuid
        == ctx.remote_uuid)
}

/// Removes the local copy of an image no longer mirrored from this peer: only a
/// non-primary copy whose epochs came from this peer; a primary is never touched.
pub async fn delete_local<I: IoCtx>(ctx: &PoolCtx<I>, global_id: &str) -> Result<(), ReplayError> {
    let id = match cls::mirror::image_get_image_id(&ctx.local_io, global_id).await {
        Err(e) if e.is_not_found() => return Ok(()),
        other => other?,
    };
    let owner =
        bootstrap::newest_tag(&ctx.local_io, &crate::format::journal::header_oid(&id)).await?;
    if owner.is_local() {
        return Ok(());
    }
    tracing::info!(pool = %ctx.pool, %global_id, image_id = %id, "deleting local non-primary copy");
    rbd::remove_image(&ctx.local_io, &id).await?;
    Ok(())
}
