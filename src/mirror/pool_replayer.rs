//! PoolReplayer: one local pool × one peer. Connects to the peer, follows the remote pool's
//! mirrored images (PoolWatcher) and keeps one ImageReplayer per image; removes the local
//! copy of an image that stopped being mirrored. Each RBD namespace with mirroring enabled
//! locally gets the same, into the same namespace (see `follow_namespaces`). With several daemons on the site, only
//! the images this instance owns (see `instances`, `assignment`) run here; a membership
//! change moves images: the old owner hands over (commits, releases the lock, writes no
//! final status), the new owner starts (its lock waits for the release, or fences a dead
//! owner). Replaces upstream's PoolReplayer + NamespaceReplayer + ImageDeleter, and the
//! leader's ImageMap placement.
//!
//! ```text
//!  CONNECT_PEER --(transient error)--> backoff --> CONNECT_PEER
//!    |
//!  OPEN_POOLS (same pool name remotely) + mirror uuids, PING the peer (it learns ours)
//!    |  ─ and beside it, per mirrored namespace: WATCH its local rbd_mirroring, then the same
//!  WATCH remote rbd_mirroring ──► LIST images ──► reconcile replayers
//!    ├─ ImageUpdated(enabled)   ──► start (or kick a parked) ImageReplayer
//!    ├─ ImageUpdated(disabling) ──► stop it ──► DELETE_LOCAL (non-primary copies only)
//!    │                               (failed: retried every delete retry interval)
//!    ├─ image state check interval ──► kick every replayer (one parked by an error retries)
//!    │                                  and LIST again if the last one failed
//!    LIST failed for good (an undecodable record) ──► pool error (status, metric), the
//!                                  images listed before keep replicating
//!    ├─ membership changed      ──► reconcile: hand over images now owned elsewhere
//!    └─ watch error / lag       ──► re-watch ──► LIST ──► reconcile
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::image_replayer::{self, ImageReplayerHandle, PoolCtx};
use super::instances::Membership;
use super::peer::PeerSite;
use super::pool_watcher::{self, ImageSet, Update};
use super::{Connector, Env};
use crate::backoff::Backoff;
use crate::cls::{self, ClsError};
use crate::format::Decode;
use crate::format::mirror::MIRRORING_OBJECT;
use crate::format::notify::MirroringNotify;
use crate::metrics::{self, Source};
use crate::rados::{AckMode, Errno, IoCtx, Rados, RadosError, RadosOp, Watch, WatchEvent};

pub struct PoolReplayerArgs {
    pub pool_id: i64,
    pub pool: String,
    pub peer: PeerSite,
    /// This site's name, given to the peer by `mirror_peer_ping`.
    pub site_name: String,
    /// The instances serving the local pool: decides which images run here.
    pub membership: watch::Receiver<Membership>,
}

pub fn spawn<R: Rados, C: Connector<Rados = R>>(
    env: Env<R, C>,
    args: PoolReplayerArgs,
    cancel: CancellationToken,
) {
    let tasks = env.tasks.clone();
    tasks.spawn(async move {
        // Its admin commands exist while it does.
        let listed = env.registry.add_pool(&args.pool, &args.peer.site_name);
        let mut backoff = Backoff::new(Duration::from_millis(500), 2, Duration::from_secs(30));
        loop {
            match run(&env, &args, &cancel, &mut backoff).await {
                Ok(()) => return env.registry.pool_gone(listed.key()),
                Err(e) => {
                    tracing::warn!(pool = %args.pool, peer = %args.peer.site_name, %e,
                        "pool replayer failed; retrying");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return env.registry.pool_gone(listed.key()),
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    });
}

struct Running {
    handle: ImageReplayerHandle,
    task: JoinHandle<()>,
}

/// Returns `Ok` when cancelled, `Err` when the peer or a pool could not be used; `backoff`
/// is reset once running (see [`replay_namespace`]).
async fn run<R: Rados, C: Connector<Rados = R>>(
    env: &Env<R, C>,
    args: &PoolReplayerArgs,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), ClsError> {
    let remote = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        r = env.connector.connect(&args.peer) => r?,
    };
    let local_io = env.local.ioctx_by_id(args.pool_id).await?;
    let remote_io = remote.ioctx(&args.pool).await?;
    let local_uuid = cls::mirror::uuid_get(&local_io).await?;
    let remote_uuid = cls::mirror::uuid_get(&remote_io).await?;
    if let Err(e) = cls::mirror::peer_ping(&remote_io, &args.site_name, &local_uuid).await {
        tracing::debug!(%e, "mirror_peer_ping");
    }
    let ctx = Arc::new(PoolCtx {
        pool: args.pool.clone(),
        namespace: String::new(),
        peer: args.peer.site_name.clone(),
        local_io,
        remote_io,
        remote_fence: Arc::new(remote.clone()),
        remote_addr: remote.client_addr(),
        local_uuid,
        remote_uuid,
    });
    let mut spaces = HashMap::new();
    let result = tokio::select! {
        r = replay_namespace(env, ctx.clone(), args.membership.clone(), cancel, backoff) => r,
        () = follow_namespaces(env, &ctx, &args.membership, &mut spaces, cancel) => Ok(()),
    };
    for (_, space) in spaces.drain() {
        space.cancel.cancel();
        let _ = space.task.await;
    }
    result
}

/// A namespace's replayer, running beside the default namespace's.
struct Namespace {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Keeps one namespace replayer per RBD namespace of the local pool that has mirroring
/// enabled (`rbd mirror pool enable <pool>/<namespace> image|pool`), with the pool's peer
/// and mirror uuids, as upstream's PoolReplayer does; its images replicate into the same
/// namespace on this site. Namespaces and their modes have no notification of their own
/// until mirrored (then their `rbd_mirroring` is watched): looked at every refresh
/// interval, and at once when a running namespace's mode changes. Never returns.
async fn follow_namespaces<R: Rados, C: Connector<Rados = R>>(
    env: &Env<R, C>,
    ctx: &Arc<PoolCtx<R::IoCtx>>,
    members: &watch::Receiver<Membership>,
    spaces: &mut HashMap<String, Namespace>,
    cancel: &CancellationToken,
) {
    let every = Duration::from_millis(env.settings.pools.refresh_interval_ms.max(100));
    let changed = Arc::new(tokio::sync::Notify::new());
    loop {
        match mirrored_namespaces(&ctx.local_io).await {
            Ok(wanted) => {
                spaces.retain(|name, space| {
                    let keep = wanted.contains(name) && !space.task.is_finished();
                    if !keep {
                        tracing::info!(pool = %ctx.pool, namespace = %name, "stopping namespace replayer");
                        space.cancel.cancel();
                        env.registry.pool_health(&ctx.key(), name, None);
                    }
                    keep
                });
                for name in wanted {
                    if spaces.contains_key(&name) {
                        continue;
                    }
                    tracing::info!(pool = %ctx.pool, namespace = %name, "starting namespace replayer");
                    let space = Arc::new(ctx.in_namespace(&name));
                    let token = cancel.child_token();
                    let task = env.tasks.spawn(serve_namespace(
                        env.clone(),
                        space,
                        members.clone(),
                        changed.clone(),
                        token.clone(),
                    ));
                    spaces.insert(
                        name,
                        Namespace {
                            cancel: token,
                            task,
                        },
                    );
                }
            }
            Err(e) => tracing::warn!(pool = %ctx.pool, %e, "listing namespaces"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return std::future::pending().await,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The local pool's namespaces (`rbd_namespace`) whose mirroring is enabled.
async fn mirrored_namespaces<I: IoCtx>(io: &I) -> Result<HashSet<String>, ClsError> {
    let names = match io.omap_get_all(NAMESPACES_OBJECT, NAMESPACE_KEY).await {
        Ok(keys) => keys,
        Err(e) if e.is_not_found() => return Ok(HashSet::new()),
        Err(e) => return Err(e.into()),
    };
    let mut mirrored = HashSet::new();
    for key in names.into_keys() {
        let name = key[NAMESPACE_KEY.len()..].to_string();
        match cls::mirror::mode_get(&io.with_namespace(&name)).await {
            Ok(mode) if mode.is_enabled() => {
                mirrored.insert(name);
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(mirrored)
}

/// Lists a pool's namespaces in its default namespace (cls_rbd's `namespace_add`).
const NAMESPACES_OBJECT: &str = "rbd_namespace";
const NAMESPACE_KEY: &str = "name_";

/// One namespace's replayer, retried with backoff on errors (a remote namespace that does
/// not exist yet, say) without disturbing the pool's other namespaces. It watches the
/// namespace's local `rbd_mirroring`, which makes its image statuses "up" there (the
/// cluster watcher does that for the default namespace); a mode change wakes the follower.
async fn serve_namespace<R: Rados, C: Connector<Rados = R>>(
    env: Env<R, C>,
    ctx: Arc<PoolCtx<R::IoCtx>>,
    members: watch::Receiver<Membership>,
    changed: Arc<tokio::sync::Notify>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), 2, Duration::from_secs(30));
    loop {
        let result = match watch_mirroring(&ctx.local_io).await {
            Ok(mut local) => {
                let mode_changes = async {
                    loop {
                        let errno = match local.next().await {
                            Some(WatchEvent::Notify(n)) => {
                                let notify = MirroringNotify::from_bytes(n.payload);
                                if matches!(notify, Ok(MirroringNotify::ModeUpdated { .. })) {
                                    changed.notify_one();
                                }
                                continue;
                            }
                            Some(WatchEvent::Lagged) => {
                                changed.notify_one();
                                continue;
                            }
                            Some(WatchEvent::Error(errno)) => errno,
                            None => Errno::ENOTCONN,
                        };
                        return ClsError::from(RadosError::new(
                            RadosOp::Watch,
                            MIRRORING_OBJECT,
                            errno,
                        ));
                    }
                };
                let result = tokio::select! {
                    r = replay_namespace(&env, ctx.clone(), members.clone(), &cancel, &mut backoff) => r,
                    e = mode_changes => Err(e),
                };
                let _ = ctx.local_io.unwatch(local.cookie).await;
                result
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) => tracing::warn!(pool = %ctx.pool, namespace = %ctx.namespace, %e,
                "namespace replayer failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// One namespace of the pool × peer: follows the remote namespace's mirrored images and
/// runs the replayers of those owned here. Returns `Ok` when cancelled. Resets its
/// caller's `backoff` once running: a fault after hours of service (the peer blocklisted
/// our client, its cluster restarted) is retried at once, not after the delay earlier
/// faults grew.
async fn replay_namespace<R: Rados, C: Connector<Rados = R>>(
    env: &Env<R, C>,
    ctx: Arc<PoolCtx<R::IoCtx>>,
    mut members: watch::Receiver<Membership>,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<(), ClsError> {
    let mut watch = watch_mirroring(&ctx.remote_io).await?;
    let mut images = ImageSet::new();
    let mut listed = relist(env, &ctx, &mut images).await?;
    let mut owned = Owned {
        members: members.borrow_and_update().clone(),
        replayers: HashMap::new(),
        undeleted: HashSet::new(),
    };
    owned.reconcile(env, &ctx, &images, None, cancel).await;
    let live = || *env.live.borrow();
    let mut state_check = tokio::time::Instant::now() + live().image_state_check_interval;
    let mut delete_retry = tokio::time::Instant::now() + live().delete_retry_interval;
    // Deletions found by a sweep wait the usual delay, then go through the retry timer.
    let swept = async |owned: &mut Owned, images: &ImageSet, retry: &mut tokio::time::Instant| {
        if owned.sweep(&ctx, images).await {
            *retry = (*retry).min(tokio::time::Instant::now() + live().delete_delay);
        }
    };
    if listed {
        swept(&mut owned, &images, &mut delete_retry).await;
    }
    backoff.reset();
    // fault-check finds the client to blocklist on the peer through `addr`.
    tracing::info!(pool = %ctx.pool, namespace = %ctx.namespace, peer = %ctx.peer,
        images = images.len(), addr = %ctx.remote_addr, "pool replayer running");
    let result = loop {
        let update = tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            _ = tokio::time::sleep_until(state_check) => {
                state_check = tokio::time::Instant::now() + live().image_state_check_interval;
                owned.replayers.values().for_each(|r| r.handle.kick());
                if listed {
                    continue;
                }
                Update::Relist // the last list failed: try again
            }
            _ = tokio::time::sleep_until(delete_retry), if !owned.undeleted.is_empty() => {
                delete_retry = tokio::time::Instant::now() + live().delete_retry_interval;
                owned.undeleted.retain(|g| !images.contains_key(g)); // mirrored again: keep it
                for global_id in std::mem::take(&mut owned.undeleted) {
                    delete(&ctx, global_id, &mut owned.undeleted).await;
                }
                continue;
            }
            Ok(()) = members.changed() => {
                let was_serving = !owned.members.live.is_empty();
                owned.members = members.borrow_and_update().clone();
                let taken_at = was_serving.then(std::time::Instant::now);
                let (taken, handed) = owned.reconcile(env, &ctx, &images, taken_at, cancel).await;
                if was_serving {
                    metrics::images_moved(&ctx.pool, taken, handed);
                }
                if listed {
                    swept(&mut owned, &images, &mut delete_retry).await;
                }
                continue;
            }
            ev = watch.next() => {
                metrics::watch_event(Source::Mirroring, ev.as_ref());
                match ev {
                    Some(WatchEvent::Notify(n)) => pool_watcher::decode(n.payload),
                    Some(WatchEvent::Lagged) => Update::Relist,
                    Some(WatchEvent::Error(_)) | None => {
                        let _ = ctx.remote_io.unwatch(watch.cookie).await;
                        match watch_mirroring(&ctx.remote_io).await {
                            Ok(w) => {
                                watch = w;
                                metrics::rewatch(Source::Mirroring);
                            }
                            Err(e) => break Err(e),
                        }
                        Update::Relist
                    }
                }
            }
        };
        let relisted = matches!(update, Update::Relist);
        match update {
            Update::Enabled {
                global_id,
                image_id,
            } => {
                images.insert(global_id, image_id);
            }
            Update::Removed { global_id } => {
                images.remove(&global_id);
            }
            Update::Relist => match relist(env, &ctx, &mut images).await {
                Ok(ok) => listed = ok,
                Err(e) => break Err(e),
            },
        }
        owned.reconcile(env, &ctx, &images, None, cancel).await;
        // Only a complete list may show a copy's primary gone.
        if relisted && listed {
            swept(&mut owned, &images, &mut delete_retry).await;
        }
    };
    let _ = ctx.remote_io.unwatch(watch.cookie).await;
    for (_, r) in owned.replayers.drain() {
        r.handle.stop();
        let _ = r.task.await;
    }
    result
}

/// Reads the remote pool's mirrored images into `images`. A permanent failure (an
/// `rbd_mirroring` record that does not decode: Ceph's `mirror_image_list` answers EIO)
/// keeps the last list, so the images known keep replicating, and reports the pool error
/// until a list succeeds: `Ok(false)`. A transient one is the caller's to retry.
async fn relist<R: Rados, C>(
    env: &Env<R, C>,
    ctx: &PoolCtx<R::IoCtx>,
    images: &mut ImageSet,
) -> Result<bool, ClsError> {
    let key = &ctx.key();
    match pool_watcher::list(&ctx.remote_io).await {
        Ok(set) => {
            *images = set;
            env.registry.pool_health(key, &ctx.namespace, None);
            Ok(true)
        }
        Err(e) if e.is_transient() => Err(e),
        Err(e) => {
            let text = format!("cannot list the peer's mirrored images: {e}");
            env.registry
                .pool_health(key, &ctx.namespace, Some((text, e.code())));
            Ok(false)
        }
    }
}

/// Removes a local copy; a failure is remembered for the retry timer.
async fn delete<I: IoCtx>(ctx: &PoolCtx<I>, global_id: String, undeleted: &mut HashSet<String>) {
    if let Err(e) = image_replayer::delete_local(ctx, &global_id).await {
        tracing::warn!(pool = %ctx.pool, %global_id, %e, "removing local copy; will retry");
        undeleted.insert(global_id);
    }
}

async fn watch_mirroring<I: IoCtx>(io: &I) -> Result<Watch, ClsError> {
    Ok(io.watch_with(MIRRORING_OBJECT, AckMode::Auto).await?)
}

/// This instance's share of the pool: the replayers of the images it owns.
struct Owned {
    members: Membership,
    replayers: HashMap<String, Running>,
    /// Local copies whose removal failed: retried on a timer.
    undeleted: HashSet<String>,
}

impl Owned {
    /// Finds local copies of this peer's images whose primary went away while no replayer
    /// was watching (deleted, trashed or mirror-disabled while the daemon was down; upstream
    /// finds them by watching the local pool too) and queues those owned here for deletion.
    /// Only a copy whose newest local tag names this peer as owner counts: a local primary,
    /// a demoted image, another peer's copy are never touched. True if any was found.
    async fn sweep<I: IoCtx>(&mut self, ctx: &PoolCtx<I>, images: &ImageSet) -> bool {
        let local = match pool_watcher::list(&ctx.local_io).await {
            Ok(local) => local,
            Err(e) => {
                tracing::warn!(pool = %ctx.pool, %e, "listing local mirrored images");
                return false;
            }
        };
        let mut found = false;
        for (global_id, image_id) in local {
            let known = images.contains_key(&global_id)
                || self.replayers.contains_key(&global_id)
                || self.undeleted.contains(&global_id);
            if known || !self.members.owns(&global_id) {
                continue;
            }
            match image_replayer::copy_of_peer(ctx, &image_id).await {
                Ok(true) => {
                    tracing::info!(pool = %ctx.pool, %global_id, image_id,
                        "the primary of this copy is gone; deleting it");
                    self.undeleted.insert(global_id);
                    found = true;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(pool = %ctx.pool, %global_id, %e, "reading a local copy's owner")
                }
            }
        }
        found
    }

    /// Starts replayers for images owned here, kicks the others (a parked replayer retries),
    /// hands over images now owned elsewhere, stops images no longer mirrored and deletes
    /// their local copies. Returns how many images were taken over and handed over.
    /// `taken_at`: the membership change being reconciled, if any: images started now are
    /// take-overs, timed until they replay.
    async fn reconcile<R: Rados, C: Connector<Rados = R>>(
        &mut self,
        env: &Env<R, C>,
        ctx: &Arc<PoolCtx<R::IoCtx>>,
        images: &ImageSet,
        taken_at: Option<std::time::Instant>,
        cancel: &CancellationToken,
    ) -> (u64, u64) {
        let (mut taken, mut handed) = (0, 0);
        let elsewhere: Vec<String> = self
            .replayers
            .keys()
            .filter(|g| images.contains_key(*g) && !self.members.owns(g))
            .cloned()
            .collect();
        // All at once: each new owner waits for its lock only as long as its own image's
        // batch takes, not behind every other image handed over.
        let mut handing = Vec::new();
        for global_id in elsewhere {
            if let Some(r) = self.replayers.remove(&global_id) {
                tracing::info!(pool = %ctx.pool, %global_id, owner = ?self.members.owner(&global_id),
                    "handing the image over");
                r.handle.hand_over();
                handing.push(r.task);
                handed += 1;
            }
        }
        futures::future::join_all(handing).await;
        let gone: Vec<String> = self
            .replayers
            .keys()
            .filter(|g| !images.contains_key(*g))
            .cloned()
            .collect();
        for global_id in gone {
            if let Some(r) = self.replayers.remove(&global_id) {
                r.handle.stop();
                let _ = r.task.await;
            }
            let delay = env.live.borrow().delete_delay;
            tokio::select! {
                _ = cancel.cancelled() => return (taken, handed),
                _ = tokio::time::sleep(delay) => {}
            }
            delete(ctx, global_id, &mut self.undeleted).await;
        }
        for (global_id, image_id) in images {
            match self.replayers.get(global_id) {
                Some(r) if !r.task.is_finished() => r.handle.kick(),
                _ if !self.members.owns(global_id) => {}
                running => {
                    taken += u64::from(running.is_none());
                    let (handle, task) = image_replayer::spawn(
                        env.clone(),
                        ctx.clone(),
                        global_id.clone(),
                        image_id.clone(),
                        taken_at,
                        cancel.child_token(),
                    );
                    self.replayers
                        .insert(global_id.clone(), Running { handle, task });
                }
            }
        }
        (taken, handed)
    }
}
