//! IMAGE_SYNC: a full copy of the primary into the fresh local image, from a sync-point
//! snapshot, so replay can start right after that snapshot. Replaces upstream's ImageSync
//! (SyncPointCreate → ImageCopy/deep copy → SyncPointPrune).
//!
//! ```text
//!  CREATE_SYNC_POINT  (skipped when the client meta already records one)
//!     take the primary's exclusive lock (librbd's owner releases on request), journal
//!     SnapCreate, create `.rbd-mirror.<our uuid>.<uuid>`, journal OpFinish, commit,
//!     release; record the sync point and set our journal client's commit position to the
//!     OpFinish entry: replay starts exactly after the snapshot
//!  COPY_SNAPSHOTS  every older user snapshot, oldest first: resize, copy its objects,
//!     create it locally (protected if it is), record primary → local snap id (snap_seqs)
//!                  <- resumes after the last recorded snapshot
//!  COPY_HEAD       objects as of the sync point, in parallel (bounded), checkpointing the
//!                  object number in the client meta  <- resumes at the checkpoint
//!  COPY_METADATA   image-meta as the primary has it now (replay re-applies later changes);
//!                  mark the client REPLAYING, the sync point still recorded
//!  PRUNE_SYNC_POINT  (while replay runs) remove the snapshot on the primary (journaled the
//!                  same way), then forget it
//! ```
//! Objects absent on the primary are removed locally (a rerun may have copied them before
//! the primary discarded them); only allocated objects move data, and the sync point's
//! object map (when trustworthy) spares reading the ones that never existed.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::cls::image as cls_image;
use crate::cls::journal as cls_journal;
use crate::format::Encode;
use crate::format::client_data::{
    ClientData, MirrorPeerClientMeta, MirrorPeerState, MirrorPeerSyncPoint,
};
use crate::format::codec::UTime;
use crate::format::event::{Event, EventEntry};
use crate::format::image::{ProtectionStatus, SnapshotInfo, SnapshotNamespace};
use crate::format::journal::{ObjectSetPosition, header_oid};
use crate::format::notify::{ClientId, HeaderNotify};
use crate::format::object_map::ObjectState;
use crate::journal::writer::JournalWriter;
use crate::rados::{Errno, Fence, IoCtx, NOSNAP, RadosError, RadosOp};
use crate::rbd::{Image, RbdError, fencing};

use super::{PoolCtx, ReplayError};

/// How long to wait for the primary's lock owner to hand the lock over.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// Checkpoint the copy at most this often.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// What the syncs of one daemon share: the tasks a clean stop waits for, and the object
/// slots that bound their memory together (each object in flight holds up to two
/// object-sized buffers, whichever image it belongs to).
#[derive(Clone)]
pub struct SyncShare {
    pub tasks: TaskTracker,
    pub slots: Arc<Semaphore>,
    /// The most objects one image copies at once (the slots' total).
    pub width: usize,
}

/// Reports progress as (objects done, objects total) of the current phase.
pub trait Progress {
    fn progress(&mut self, phase: &str, done: u64, total: u64);
    /// One object copied (`bytes` of data; 0 for an absent object).
    fn copied(&mut self, bytes: u64);
}

pub async fn run<I: IoCtx>(
    ctx: &PoolCtx<I>,
    share: &SyncShare,
    remote_image_id: &str,
    local: &mut Image<I>,
    meta: &mut MirrorPeerClientMeta,
    progress: &mut (dyn Progress + Send),
) -> Result<(), ReplayError> {
    let header = header_oid(remote_image_id);
    // CREATE_SYNC_POINT
    if meta.sync_points.is_empty() {
        let name = format!("{}{}", sync_point_prefix(ctx), uuid::Uuid::new_v4());
        let position = journaled_snap_op(ctx, &share.tasks, remote_image_id, &name, true).await?;
        meta.sync_points.push(MirrorPeerSyncPoint {
            snap_name: name,
            from_snap_name: String::new(),
            object_number: None,
            snap_namespace: SnapshotNamespace::User,
        });
        save_meta(ctx, &header, meta).await?;
        cls_journal::client_commit(&ctx.remote_io, &header, &ctx.local_uuid, position).await?;
    }
    let sync_point = meta.sync_points[0].clone();
    let remote = Image::open(ctx.remote_io.clone(), remote_image_id).await?;
    let Some(point) = remote
        .snapshot_by_name(&sync_point.snap_name, &SnapshotNamespace::User)
        .cloned()
    else {
        // Pruned by someone else: start the sync over.
        meta.sync_points.clear();
        save_meta(ctx, &header, meta).await?;
        return Err(ReplayError::SyncPointLost(sync_point.snap_name));
    };
    // COPY_SNAPSHOTS
    let older: Vec<SnapshotInfo> = remote
        .snapshots()
        .iter()
        .filter(|s| s.id < point.id && s.snapshot_namespace == SnapshotNamespace::User)
        .filter(|s| !s.name.starts_with(".rbd-mirror."))
        .filter(|s| !meta.snap_seqs.contains_key(&s.id))
        .cloned()
        .collect();
    for snap in &older {
        let phase = format!("snapshot {}", snap.name);
        copy_objects(&remote, local, snap, 0, share, progress, None).await?;
        progress.progress(&phase, 1, 1);
        let local_id = match local.snap_create(&snap.name, SnapshotNamespace::User).await {
            Err(RbdError::Exists(_)) => local
                .snapshot_by_name(&snap.name, &SnapshotNamespace::User)
                .map(|s| s.id)
                .unwrap_or(NOSNAP),
            other => other?,
        };
        let status =
            cls_image::get_protection_status(remote.io(), &remote_header(&remote), snap.id).await?;
        if status == ProtectionStatus::Protected {
            local.snap_protect(&snap.name).await?;
        }
        meta.snap_seqs.insert(snap.id, local_id);
        save_meta(ctx, &header, meta).await?;
    }
    // COPY_HEAD
    let start = sync_point.object_number.unwrap_or(0);
    if start > 0 {
        // What operators (and the lab's kill-during-sync check) look for after a crash.
        tracing::info!(sync_point = %sync_point.snap_name, object = start, "resuming image sync");
    }
    let head = Checkpoint {
        ctx,
        header: &header,
        meta,
    };
    copy_objects(&remote, local, &point, start, share, progress, Some(head)).await?;
    // COPY_METADATA: image-meta set before mirroring is not in the journal.
    for (key, value) in remote.metadata() {
        if local.metadata().get(key) != Some(value) {
            local
                .metadata_set(key, &String::from_utf8_lossy(value))
                .await?;
        }
    }
    let stale: Vec<String> = local
        .metadata()
        .keys()
        .filter(|k| !remote.metadata().contains_key(*k))
        .cloned()
        .collect();
    for key in stale {
        local.metadata_remove(&key).await?;
    }
    // The copy is complete: replay may start. The sync point stays recorded until
    // `prune_sync_point` removes it, so a crash before that leaves no orphan.
    meta.state = MirrorPeerState::Replaying;
    meta.sync_object_count = remote.object_count();
    save_meta(ctx, &header, meta).await?;
    Ok(())
}

/// PRUNE_SYNC_POINT, off replay's critical path (the snapshot removal goes through the
/// monitors and took 0.6–0.8 s on the lab, a third of a 512 MiB sync): removes the sync
/// point `run` left recorded on a replaying client, journaled like any snapshot removal,
/// then forgets it. Idempotent, so a replay start after a crash finishes the job.
pub async fn prune_sync_point<I: IoCtx>(
    ctx: &PoolCtx<I>,
    tasks: &TaskTracker,
    remote_image_id: &str,
    meta: &mut MirrorPeerClientMeta,
) -> Result<(), ReplayError> {
    let Some(point) = meta.sync_points.first() else {
        return Ok(());
    };
    journaled_snap_op(ctx, tasks, remote_image_id, &point.snap_name.clone(), false).await?;
    meta.sync_points.clear();
    save_meta(ctx, &header_oid(remote_image_id), meta).await
}

fn remote_header<I: IoCtx>(remote: &Image<I>) -> String {
    crate::format::image::oids::header(remote.id())
}

/// Where the head copy records how far it got.
struct Checkpoint<'a, I> {
    ctx: &'a PoolCtx<I>,
    header: &'a str,
    meta: &'a mut MirrorPeerClientMeta,
}

/// Copies every object of `remote` as of `snap` into `local`'s head, from `start` on.
/// Completions arrive in object order, so a checkpoint is a safe resume point.
async fn copy_objects<I: IoCtx>(
    remote: &Image<I>,
    local: &mut Image<I>,
    snap: &SnapshotInfo,
    start: u64,
    share: &SyncShare,
    progress: &mut (dyn Progress + Send),
    mut checkpoint: Option<Checkpoint<'_, I>>,
) -> Result<(), ReplayError> {
    shape_overlap(remote, local, snap).await?;
    if local.size() != snap.image_size {
        local.resize(snap.image_size).await?;
    }
    let total = crate::rbd::layout::object_count(remote.order(), snap.image_size);
    // Objects the snapshot's map says never existed are neither read nor written (a fresh
    // copy's map says they are absent here too); the rest are marked in the local map up
    // front, one update per run instead of one per object.
    let map = remote.snapshot_object_map(snap).await?;
    let absent = |n: u64| map.as_ref().and_then(|m| m.get(n)) == Some(ObjectState::Nonexistent);
    let present: Vec<u64> = (start..total).filter(|&n| !absent(n)).collect();
    local.mark_exists(&present).await?;
    let clone_with_snapshots = local.head_overlap() > 0 && !local.snapshots().is_empty();
    let local_ref: &Image<I> = local;
    let mut copies = futures::stream::iter(start..total)
        .map(|n| async move {
            let _slot = share
                .slots
                .acquire()
                .await
                .expect("sync slots are never closed");
            let data: Option<Bytes> = if absent(n) {
                None
            } else {
                remote.read_object(n, Some(snap.id)).await?
            };
            let bytes = data.as_ref().map_or(0, |d| d.len() as u64);
            let removing = data.is_none();
            if !removing && clone_with_snapshots {
                // What the clone's snapshots read through the parent stays theirs.
                local_ref.copyup(n, None).await?;
            }
            match local_ref.write_object(n, data).await {
                // Removing what is not there: nothing to do.
                Err(e) if removing && e.errno() == Some(crate::rados::Errno::ENOENT) => {}
                other => other?,
            }
            Ok::<_, RbdError>((n, bytes))
        })
        .buffered(share.width.max(1));
    let mut saved = Instant::now();
    while let Some((n, bytes)) = copies.try_next().await? {
        progress.copied(bytes);
        if let Some(cp) = checkpoint.as_mut() {
            progress.progress("image", n + 1, total);
            if saved.elapsed() >= CHECKPOINT_EVERY {
                saved = Instant::now();
                cp.meta.sync_points[0].object_number = Some(n + 1);
                save_meta(cp.ctx, cp.header, cp.meta).await?;
            }
        }
    }
    Ok(())
}

/// A clone reads through its parent no further than the primary did at `snap` (a shrink
/// or a flatten there lowered it since the clone was made): shrinking lowers the overlap
/// with the size (cls_rbd), and objects past it are copied from the primary anyway.
async fn shape_overlap<I: IoCtx>(
    remote: &Image<I>,
    local: &mut Image<I>,
    snap: &SnapshotInfo,
) -> Result<(), ReplayError> {
    if local.head_overlap() == 0 {
        return Ok(());
    }
    let header = remote_header(remote);
    let want = cls_image::parent_overlap_get(remote.io(), &header, snap.id).await?;
    match want {
        Some(w) if w >= local.head_overlap() => {}
        Some(w) if w > 0 => local.resize(w).await?,
        _ => local.unlink_parent().await?,
    }
    Ok(())
}

async fn save_meta<I: IoCtx>(
    ctx: &PoolCtx<I>,
    header: &str,
    meta: &MirrorPeerClientMeta,
) -> Result<(), ReplayError> {
    let data = ClientData::MirrorPeer(meta.clone()).to_bytes();
    cls_journal::client_update_data(&ctx.remote_io, header, &ctx.local_uuid, data).await?;
    Ok(())
}

/// Creates (or removes) a snapshot on the primary the way librbd would as lock owner:
/// under the exclusive lock, journaled in a new epoch, committed. Returns the position of
/// the op's last entry.
///
/// The op runs to its end on a task of its own (tracked, so a clean stop waits for it): a
/// replayer stopped meanwhile (a hand-over to another instance, an operator's stop) drops
/// only the wait. Dropped halfway, a lock the OSD had granted but the image had not yet
/// recorded stayed with our live client (whose watch librados keeps acking), and every
/// instance's sync of the image waited on it until the process died. A sync point made
/// for a sync that stopped meanwhile is never recorded; the next sync removes it.
async fn journaled_snap_op<I: IoCtx>(
    ctx: &PoolCtx<I>,
    tasks: &TaskTracker,
    image_id: &str,
    name: &str,
    create: bool,
) -> Result<ObjectSetPosition, ReplayError> {
    let (io, fence) = (ctx.remote_io.clone(), ctx.remote_fence.clone());
    let (id, snap, ours) = (
        image_id.to_string(),
        name.to_string(),
        sync_point_prefix(ctx),
    );
    let op = tasks.spawn(async move {
        let mut image = Image::open(io.clone(), &id).await?;
        let result = async {
            take_lock(fence.as_ref(), &mut image).await?;
            if create {
                // Sync points of ours that were made and never recorded (a crash, or a
                // stopped sync's op finishing after the stop) would stay on the primary for
                // good. Looked for under the lock, so one still being made is seen.
                let orphans: Vec<String> = image
                    .snapshots()
                    .iter()
                    .filter(|s| s.name.starts_with(&ours))
                    .map(|s| s.name.clone())
                    .collect();
                for orphan in orphans {
                    locked_snap_op(&io, &mut image, &id, &orphan, false).await?;
                }
            }
            locked_snap_op(&io, &mut image, &id, &snap, create).await
        }
        .await;
        image.release_lock().await?;
        result
    });
    match op.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels it.
        Err(_) => {
            let kind = if create {
                RadosOp::SnapCreate
            } else {
                RadosOp::SnapRemove
            };
            Err(RadosError::new(kind, name, Errno::ESHUTDOWN).into())
        }
    }
}

/// Our sync points' names start with this (`.rbd-mirror.<local mirror uuid>.`).
fn sync_point_prefix<I>(ctx: &PoolCtx<I>) -> String {
    format!(".rbd-mirror.{}.", ctx.local_uuid)
}

/// One journaled snapshot op, the lock held.
async fn locked_snap_op<I: IoCtx>(
    io: &I,
    image: &mut Image<I>,
    image_id: &str,
    name: &str,
    create: bool,
) -> Result<ObjectSetPosition, ReplayError> {
    let mut journal = JournalWriter::open(io.clone(), image_id).await?;
    let ns = SnapshotNamespace::User;
    let event = if create {
        Event::SnapCreate {
            op_tid: 1,
            snap_name: name.into(),
            snap_namespace: ns.clone(),
        }
    } else {
        Event::SnapRemove {
            op_tid: 1,
            snap_name: name.into(),
            snap_namespace: ns.clone(),
        }
    };
    journal.append(&stamped(event)).await?;
    let r = if create {
        image.snap_create(name, ns).await.map(drop)
    } else {
        match image.snap_remove(name, &ns).await {
            Err(RbdError::SnapshotNotFound(_)) => Ok(()),
            other => other,
        }
    };
    let errno = match &r {
        Ok(()) => 0,
        Err(_) => -5,
    };
    let finish = journal
        .append(&stamped(Event::OpFinish {
            op_tid: 1,
            r: errno,
        }))
        .await?;
    let position = ObjectSetPosition {
        object_positions: vec![finish],
    };
    journal.commit(position.clone()).await?;
    r?;
    Ok(position)
}

/// Takes the primary's lock, asking a live owner (librbd releases on request) meanwhile and
/// breaking a dead one's (a daemon killed while it held the lock for a sync point).
async fn take_lock<I: IoCtx>(fence: &dyn Fence, image: &mut Image<I>) -> Result<(), ReplayError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match fencing::acquire(fence, None, fencing::Dead::Unwatched, image).await {
            Ok(()) => return Ok(()),
            Err(RbdError::LockBusy { .. }) if Instant::now() < deadline => {
                let request = HeaderNotify::RequestLock {
                    client_id: ClientId { gid: 0, handle: 0 },
                    force: false,
                };
                let header = crate::format::image::oids::header(image.id());
                let _ = image
                    .io()
                    .notify(&header, request.to_bytes(), Duration::from_secs(5))
                    .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn stamped(event: Event) -> EventEntry {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    EventEntry {
        event,
        timestamp: UTime::from_duration(now),
    }
}
