//! PoolReplayer: one local pool × one peer. Connects to the peer, follows the remote pool's
//! mirrored images (PoolWatcher) and keeps one ImageReplayer per image; removes the local
//! copy of an image that stopped being mirrored. Replaces upstream's PoolReplayer +
//! NamespaceReplayer + ImageDeleter (the leader / instance placement comes with HA).
//!
//! ```text
//!  CONNECT_PEER --(transient error)--> backoff --> CONNECT_PEER
//!    |
//!  OPEN_POOLS (same pool name remotely) + mirror uuids, PING the peer (it learns ours)
//!    |
//!  WATCH remote rbd_mirroring ──► LIST images ──► reconcile replayers
//!    ├─ ImageUpdated(enabled)   ──► start (or kick a parked) ImageReplayer
//!    ├─ ImageUpdated(disabling) ──► stop it ──► DELETE_LOCAL (non-primary copies only)
//!    │                               (failed: retried every delete retry interval)
//!    ├─ image state check interval ──► kick every replayer (one parked by an error retries)
//!    └─ watch error / lag       ──► re-watch ──► LIST ──► reconcile
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::image_replayer::{self, ImageReplayerHandle, PoolCtx};
use super::peer::PeerSite;
use super::pool_watcher::{self, ImageSet, Update};
use super::{Connector, Env};
use crate::backoff::Backoff;
use crate::cls::{self, ClsError};
use crate::format::mirror::MIRRORING_OBJECT;
use crate::metrics::{self, Source};
use crate::rados::{AckMode, IoCtx, Rados, Watch, WatchEvent};

pub struct PoolReplayerArgs {
    pub pool_id: i64,
    pub pool: String,
    pub peer: PeerSite,
    /// This site's name, given to the peer by `mirror_peer_ping`.
    pub site_name: String,
}

pub fn spawn<R: Rados, C: Connector<Rados = R>>(
    env: Env<R, C>,
    args: PoolReplayerArgs,
    cancel: CancellationToken,
) {
    let tasks = env.tasks.clone();
    tasks.spawn(async move {
        // Its admin commands exist while it does.
        let _listed = env.registry.add_pool(&args.pool, &args.peer.site_name);
        let mut backoff = Backoff::new(Duration::from_millis(500), 2, Duration::from_secs(30));
        loop {
            match run(&env, &args, &cancel).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(pool = %args.pool, peer = %args.peer.site_name, %e,
                        "pool replayer failed; retrying");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    });
}

struct Running {
    handle: ImageReplayerHandle,
    task: JoinHandle<()>,
}

/// Returns `Ok` when cancelled, `Err` when the peer or a pool could not be used.
async fn run<R: Rados, C: Connector<Rados = R>>(
    env: &Env<R, C>,
    args: &PoolReplayerArgs,
    cancel: &CancellationToken,
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
        peer: args.peer.site_name.clone(),
        local_io,
        remote_io,
        remote_fence: Arc::new(remote.clone()),
        remote_addr: remote.client_addr(),
        local_uuid,
        remote_uuid,
    });
    let mut replayers: HashMap<String, Running> = HashMap::new();
    // Local copies whose removal failed: retried on a timer.
    let mut undeleted = HashSet::new();
    let mut watch = watch_remote(&ctx.remote_io).await?;
    let mut images = pool_watcher::list(&ctx.remote_io).await?;
    reconcile(env, &ctx, &images, &mut replayers, &mut undeleted, cancel).await;
    let live = || *env.live.borrow();
    let mut state_check = tokio::time::Instant::now() + live().image_state_check_interval;
    let mut delete_retry = tokio::time::Instant::now() + live().delete_retry_interval;
    tracing::info!(pool = %args.pool, peer = %args.peer.site_name, images = images.len(),
        "pool replayer running");
    let result = loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            _ = tokio::time::sleep_until(state_check) => {
                state_check = tokio::time::Instant::now() + live().image_state_check_interval;
                replayers.values().for_each(|r| r.handle.kick());
                continue;
            }
            _ = tokio::time::sleep_until(delete_retry), if !undeleted.is_empty() => {
                delete_retry = tokio::time::Instant::now() + live().delete_retry_interval;
                undeleted.retain(|g| !images.contains_key(g)); // mirrored again: keep it
                for global_id in std::mem::take(&mut undeleted) {
                    delete(&ctx, global_id, &mut undeleted).await;
                }
                continue;
            }
            ev = watch.next() => ev,
        };
        metrics::watch_event(Source::Mirroring, ev.as_ref());
        let update = match ev {
            Some(WatchEvent::Notify(n)) => pool_watcher::decode(n.payload),
            Some(WatchEvent::Lagged) => Update::Relist,
            Some(WatchEvent::Error(_)) | None => {
                let _ = ctx.remote_io.unwatch(watch.cookie).await;
                match watch_remote(&ctx.remote_io).await {
                    Ok(w) => {
                        watch = w;
                        metrics::rewatch(Source::Mirroring);
                    }
                    Err(e) => break Err(e),
                }
                Update::Relist
            }
        };
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
            Update::Relist => match pool_watcher::list(&ctx.remote_io).await {
                Ok(set) => images = set,
                Err(e) => break Err(e),
            },
        }
        reconcile(env, &ctx, &images, &mut replayers, &mut undeleted, cancel).await;
    };
    let _ = ctx.remote_io.unwatch(watch.cookie).await;
    for (_, r) in replayers.drain() {
        r.handle.stop();
        let _ = r.task.await;
    }
    result
}

/// Removes a local copy; a failure is remembered for the retry timer.
async fn delete<I: IoCtx>(ctx: &PoolCtx<I>, global_id: String, undeleted: &mut HashSet<String>) {
    if let Err(e) = image_replayer::delete_local(ctx, &global_id).await {
        tracing::warn!(pool = %ctx.pool, %global_id, %e, "removing local copy; will retry");
        undeleted.insert(global_id);
    }
}

async fn watch_remote<I: IoCtx>(io: &I) -> Result<Watch, ClsError> {
    Ok(io.watch_with(MIRRORING_OBJECT, AckMode::Auto).await?)
}

/// Starts replayers for new images, kicks the others (a parked replayer retries), stops and
/// deletes the local copies of images no longer mirrored.
async fn reconcile<R: Rados, C: Connector<Rados = R>>(
    env: &Env<R, C>,
    ctx: &Arc<PoolCtx<R::IoCtx>>,
    images: &ImageSet,
    replayers: &mut HashMap<String, Running>,
    undeleted: &mut HashSet<String>,
    cancel: &CancellationToken,
) {
    let gone: Vec<String> = replayers
        .keys()
        .filter(|g| !images.contains_key(*g))
        .cloned()
        .collect();
    for global_id in gone {
        if let Some(r) = replayers.remove(&global_id) {
            r.handle.stop();
            let _ = r.task.await;
        }
        let delay = env.live.borrow().delete_delay;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delete(ctx, global_id, undeleted).await;
    }
    for (global_id, image_id) in images {
        match replayers.get(global_id) {
            Some(r) if !r.task.is_finished() => r.handle.kick(),
            _ => {
                let (handle, task) = image_replayer::spawn(
                    env.clone(),
                    ctx.clone(),
                    global_id.clone(),
                    image_id.clone(),
                    cancel.child_token(),
                );
                replayers.insert(global_id.clone(), Running { handle, task });
            }
        }
    }
}
