//! REPLAY: applies the remote journal's events to the local image, in order, with the
//! invariants of design.md. Replaces upstream's journal Replayer + librbd's journal Replay.
//!
//! ```text
//!  fetch (Follower::next: notification / probe driven)
//!    → decode each entry (a corrupt one fails the image, naming the position)
//!    → Aio writes/discards/write-same gather into one batch  ──► Image::apply
//!        (objects in parallel, same object in order, one RADOS op per object)
//!    → AioFlush, CompareAndWrite, OpFinish, a new tag: barrier (apply the batch first)
//!    → op events (snap create, resize, ...) wait for their OpFinish and run only if the
//!      primary's op succeeded (r == 0), as librbd's replay does
//!    → ack entries in journal order once durable; an op event and everything after it stay
//!      unacked until the op ran, so a crash never commits past an unapplied op
//!    → before an op runs, the caller commits everything acked (apply returns early for it):
//!      after a crash only that one op can be replayed again. Replaying an older stretch
//!      is not harmless once snapshot names repeat: `remove snap-2 … create snap-2` replayed
//!      over a replica that already made the new snap-2 would remove it and re-create it
//!      from a later head
//!  lock lost ──► stop at once (nothing more is written, nothing unapplied is committed)
//! ```

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use crate::cls::journal as cls_journal;
use crate::format::Decode;
use crate::format::Encode;
use crate::format::client_data::{LOCAL_MIRROR_UUID, TagData, TagPredecessor};
use crate::format::entry::Entry;
use crate::format::event::{Event, EventEntry};
use crate::format::image::SnapshotNamespace;
use crate::format::journal::{ObjectPosition, header_oid};
use crate::rados::IoCtx;
use crate::rbd::{Image, IoOp, RbdError};

use super::{PoolCtx, ReplayError};

/// Where a replay reads the primary's epochs (its journal tags) and how it names the two
/// sites in the tags it records locally. Its own type, apart from the image written, so
/// the same replay can fill an image on another backend (`rbd-relay check-prefix`).
pub struct Epochs<'a, R> {
    pub remote_io: &'a R,
    pub local_uuid: &'a str,
    pub remote_uuid: &'a str,
}

impl<I> PoolCtx<I> {
    pub fn epochs(&self) -> Epochs<'_, I> {
        Epochs {
            remote_io: &self.remote_io,
            local_uuid: &self.local_uuid,
            remote_uuid: &self.remote_uuid,
        }
    }
}

/// What one batch did, for status and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Applied {
    pub entries: u64,
    pub bytes: u64,
    /// Primary timestamp of the newest applied event (zero when none carried one).
    pub newest: Option<SystemTime>,
}

/// What [`Replay::apply`] leaves to its caller.
pub struct Outcome {
    /// Applied entries that may be acked now, in journal order.
    pub ready: Vec<(Entry, ObjectPosition)>,
    /// Not processed yet: an op runs next. Ack `ready`, store the commit position, then
    /// pass these to `apply` again.
    pub rest: Vec<(Entry, ObjectPosition)>,
}

/// Replay state that outlives one batch.
pub struct Replay {
    /// Aio ops gathered since the last barrier.
    io: Vec<IoOp>,
    /// Op events waiting for their OpFinish, by op tid.
    ops: HashMap<u64, Event>,
    /// Fetched entries not yet acked, in journal order; `Some(tid)` marks an op event.
    unacked: VecDeque<(Entry, ObjectPosition, Option<u64>)>,
    /// The remote tag the last entry belonged to.
    tag: Option<u64>,
    /// Tag class of the local journal (where mirrored tags go).
    local_tag_class: u64,
    max_in_flight: usize,
    /// The op whose preceding entries the caller has committed; it may run now.
    committed_before: Option<u64>,
    /// The current remote tag is a demotion (no primary)…
    orphan: bool,
    /// …and its DemotePromote event was applied: the primary's history ends here.
    demoted: bool,
}

impl Replay {
    pub fn new(local_tag_class: u64, max_in_flight: usize) -> Self {
        Replay {
            io: Vec::new(),
            ops: HashMap::new(),
            unacked: VecDeque::new(),
            tag: None,
            local_tag_class,
            max_in_flight: max_in_flight.max(1),
            committed_before: None,
            orphan: false,
            demoted: false,
        }
    }

    /// Whether the last entry applied was the primary's demotion: once it is committed,
    /// there is nothing more to replay until an image is promoted.
    pub fn demoted(&self) -> bool {
        self.demoted
    }

    /// Applies a batch of entries, up to the next op that must wait for a commit.
    pub async fn apply<R: IoCtx, I: IoCtx>(
        &mut self,
        epochs: &Epochs<'_, R>,
        remote_journal: &str,
        image: &mut Image<I>,
        batch: Vec<(Entry, ObjectPosition)>,
        applied: &mut Applied,
    ) -> Result<Outcome, ReplayError> {
        let mut entries = batch.into_iter();
        let mut rest = Vec::new();
        while let Some((entry, pos)) = entries.next() {
            let position = || {
                format!(
                    "object {} tag {} entry {}",
                    pos.object_number, pos.tag_tid, pos.entry_tid
                )
            };
            if self.tag != Some(entry.tag_tid) {
                self.flush(image).await?;
                self.orphan = match self
                    .mirror_tag(epochs, remote_journal, image, entry.tag_tid)
                    .await
                {
                    // librbd allocates a tag before writing under it: an entry naming a
                    // tag the header does not hold was not written by it.
                    Err(ReplayError::Cls(e)) if e.is_not_found() => {
                        return Err(ReplayError::Corrupt {
                            position: position(),
                            reason: format!(
                                "tag {} does not exist in the primary's journal header",
                                entry.tag_tid
                            ),
                        });
                    }
                    other => other?,
                };
                self.demoted = false;
                self.tag = Some(entry.tag_tid);
            }
            let ev = EventEntry::from_bytes(entry.data.clone()).map_err(|source| {
                ReplayError::Corrupt {
                    position: position(),
                    reason: source.to_string(),
                }
            })?;
            if let Event::Unknown { event_type, .. } = ev.event {
                // Skipping it could lose a write; applying it is impossible.
                return Err(ReplayError::Unsupported(format!(
                    "event type {event_type} at {}",
                    position()
                )));
            }
            if let Event::OpFinish { op_tid, r } = &ev.event
                && *r >= 0
                && self.ops.contains_key(op_tid)
                && self.committed_before != Some(*op_tid)
            {
                self.committed_before = Some(*op_tid);
                rest.push((entry, pos));
                rest.extend(entries);
                break;
            }
            applied.entries += 1;
            applied.bytes += entry.data.len() as u64;
            if !ev.timestamp.is_zero() {
                applied.newest = Some(SystemTime::UNIX_EPOCH + ev.timestamp.to_duration());
            }
            let blocker = self.step(image, ev.event).await?;
            self.unacked.push_back((entry, pos, blocker));
        }
        self.flush(image).await?;
        let mut ready = Vec::new();
        while let Some((_, _, blocker)) = self.unacked.front() {
            if blocker.is_some_and(|tid| self.ops.contains_key(&tid)) {
                break;
            }
            let (e, p, _) = self.unacked.pop_front().expect("front exists");
            ready.push((e, p));
        }
        Ok(Outcome { ready, rest })
    }

    /// Handles one event; returns the op tid when it is an op event awaiting its finish.
    async fn step<I: IoCtx>(
        &mut self,
        image: &mut Image<I>,
        event: Event,
    ) -> Result<Option<u64>, ReplayError> {
        match event {
            Event::AioWrite { offset, data, .. } => self.io.push(IoOp::Write { offset, data }),
            Event::AioDiscard {
                offset,
                length,
                discard_granularity_bytes,
                ..
            } => self.io.push(if discard_granularity_bytes == 0 {
                IoOp::WriteZeroes { offset, length }
            } else {
                IoOp::Discard { offset, length }
            }),
            Event::AioWriteSame {
                offset,
                length,
                data,
            } => self.io.push(IoOp::WriteSame {
                offset,
                length,
                pattern: data,
            }),
            Event::AioCompareAndWrite {
                offset,
                cmp_data,
                write_data,
                ..
            } => {
                self.flush(image).await?;
                let op = IoOp::CompareAndWrite {
                    offset,
                    cmp: cmp_data,
                    data: write_data,
                };
                let Some(op) = op.clip(image.size()) else {
                    return Ok(None);
                };
                match image.apply(&[op], 1).await {
                    // The primary journals a compare-and-write before comparing: a
                    // mismatch there is a mismatch here, and a no-op on both sides.
                    Ok(()) | Err(RbdError::CompareMismatch { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Event::AioFlush => self.flush(image).await?,
            Event::DemotePromote => {
                self.flush(image).await?;
                self.demoted = self.orphan;
            }
            Event::OpFinish { op_tid, r } => {
                self.flush(image).await?;
                // An op event before our start position was applied by the image sync.
                if let Some(op) = self.ops.remove(&op_tid)
                    && r >= 0
                {
                    // Op tids repeat across epochs: the barrier served this op only.
                    self.committed_before = None;
                    apply_op(image, op).await?;
                }
            }
            op => {
                let Some(tid) = op.op_tid() else {
                    return Err(ReplayError::Unsupported(op.name().to_string()));
                };
                self.flush(image).await?;
                self.ops.insert(tid, op);
                return Ok(Some(tid));
            }
        }
        Ok(None)
    }

    /// Applies the gathered I/O (a barrier).
    async fn flush<I: IoCtx>(&mut self, image: &Image<I>) -> Result<(), ReplayError> {
        if self.io.is_empty() {
            return Ok(());
        }
        let size = image.size();
        let ops: Vec<IoOp> = std::mem::take(&mut self.io)
            .into_iter()
            .filter_map(|op| op.clip(size))
            .collect();
        image.apply(&ops, self.max_in_flight).await?;
        Ok(())
    }

    /// Records a remote epoch in the local journal, as upstream does: the local tag names
    /// the remote primary as owner and carries the remote tag's predecessor with its
    /// "this site" uuid translated, so a later promotion / failback can tell whether the
    /// histories diverged. Returns whether the epoch is a demotion.
    async fn mirror_tag<R: IoCtx, I: IoCtx>(
        &self,
        epochs: &Epochs<'_, R>,
        remote_journal: &str,
        image: &Image<I>,
        tag_tid: u64,
    ) -> Result<bool, ReplayError> {
        let remote =
            cls_journal::get_tag(epochs.remote_io, &header_oid(remote_journal), tag_tid).await?;
        let data = super::bootstrap::decode_tag(remote.data, format!("remote tag {tag_tid}"))?;
        let local = mirrored_tag(data, epochs.local_uuid, epochs.remote_uuid);
        let header = header_oid(image.id());
        let io = image.io();
        // After a restart the newest local tag may already be this one.
        let next = cls_journal::get_next_tag_tid(io, &header).await?;
        if let Some(newest) = next.checked_sub(1) {
            let tag = cls_journal::get_tag(io, &header, newest).await?;
            if TagData::from_bytes(tag.data).is_ok_and(|t| t == local) {
                return Ok(local.is_orphan());
            }
        }
        cls_journal::allocate_tag(io, &header, self.local_tag_class, local.to_bytes()).await?;
        // As the journal library does after a new tag: `rbd-relay promote` waits for this.
        // Off the replay path: a dead watcher (a killed daemon or promote) would hold each
        // epoch change up to the notify timeout.
        let io = io.clone();
        tokio::spawn(async move { crate::journal::writer::notify(&io, &header).await });
        Ok(local.is_orphan())
    }
}

/// A remote epoch's tag as the local journal records it: "this site" (`""`) there is the
/// remote's mirror uuid here, and our own mirror uuid there is `""` here.
pub fn mirrored_tag(remote: TagData, local_uuid: &str, remote_uuid: &str) -> TagData {
    let translate = |uuid: String| {
        if uuid == LOCAL_MIRROR_UUID {
            remote_uuid.to_string()
        } else if uuid == local_uuid {
            LOCAL_MIRROR_UUID.to_string()
        } else {
            uuid
        }
    };
    TagData {
        mirror_uuid: translate(remote.mirror_uuid),
        predecessor: TagPredecessor {
            mirror_uuid: translate(remote.predecessor.mirror_uuid),
            ..remote.predecessor
        },
    }
}

/// Runs one non-I/O operation the primary completed. Each is idempotent against a replay
/// after a crash (the op ran, the commit did not): "already done" is success.
async fn apply_op<I: IoCtx>(image: &mut Image<I>, op: Event) -> Result<(), RbdError> {
    let done = |r: Result<(), RbdError>, already: fn(&RbdError) -> bool| match r {
        Err(e) if already(&e) => Ok(()),
        other => other,
    };
    let exists = |e: &RbdError| matches!(e, RbdError::Exists(_));
    let missing = |e: &RbdError| matches!(e, RbdError::SnapshotNotFound(_) | RbdError::NotFound(_));
    match op {
        Event::SnapCreate {
            snap_name,
            snap_namespace,
            ..
        } => done(
            image
                .snap_create(&snap_name, snap_namespace)
                .await
                .map(drop),
            exists,
        ),
        Event::SnapRemove {
            snap_name,
            snap_namespace,
            ..
        } => done(
            image.snap_remove(&snap_name, &snap_namespace).await,
            missing,
        ),
        Event::SnapRename {
            dst_snap_name,
            src_snap_name,
            ..
        } => {
            if image
                .snapshot_by_name(&dst_snap_name, &SnapshotNamespace::User)
                .is_some()
            {
                return Ok(());
            }
            image.snap_rename(&src_snap_name, &dst_snap_name).await
        }
        Event::SnapProtect { snap_name, .. } => image.snap_protect(&snap_name).await,
        Event::SnapUnprotect { snap_name, .. } => image.snap_unprotect(&snap_name).await,
        Event::SnapLimit { limit, .. } => {
            image
                .snap_set_limit((limit != u64::MAX).then_some(limit))
                .await
        }
        Event::Rename { image_name, .. } => {
            if image.name() == image_name {
                return Ok(());
            }
            image.rename(&image_name).await
        }
        Event::Resize { size, .. } => image.resize(size).await,
        Event::MetadataSet { key, value, .. } => image.metadata_set(&key, &value).await,
        Event::MetadataRemove { key, .. } => done(image.metadata_remove(&key).await, missing),
        Event::UpdateFeatures {
            features, enabled, ..
        } => image.update_features(features, enabled).await,
        Event::Flatten { .. } => image.flatten().await,
        Event::SnapRollback { snap_name, .. } => Err(RbdError::Unsupported(format!(
            "snapshot rollback to {snap_name}"
        ))),
        other => Err(RbdError::Unsupported(other.name().to_string())),
    }
}

/// How long ago a primary timestamp was (0 if in the future: clocks differ).
pub fn age(t: SystemTime) -> Duration {
    SystemTime::now().duration_since(t).unwrap_or_default()
}
