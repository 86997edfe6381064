//! A primary image written the way librbd writes one, for the embedded demo and tests: every
//! operation is journaled first (events, then the change, then OpFinish for non-I/O ops),
//! and the image client's commit position follows, so the daemon sees exactly what it
//! would see from librbd. Not a replacement for librbd: one writer, sequential ops.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::format::codec::UTime;
use crate::format::event::{Event, EventEntry, MAX_PAYLOAD_BYTES};
use crate::format::image::SnapshotNamespace;
use crate::format::journal::ObjectSetPosition;
use crate::journal::JournalError;
use crate::journal::position::CommitPosition;
use crate::journal::writer::JournalWriter;
use crate::rados::{Fence, IoCtx, Rados};
use crate::rbd::{self, CloneOf, Image, IoOp, LockState, NonPrimarySpec, RbdError};

#[derive(Debug, thiserror::Error)]
pub enum PrimaryError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Rbd(#[from] RbdError),
}

/// librbd's journaling feature bits plus what it needs (layering, exclusive-lock).
pub const FEATURES: u64 = 1 | 4 | 64;

/// A primary image with librbd's lock manners: a servant task hands the exclusive lock to
/// whoever requests it (e.g. the daemon creating a sync point), and the next operation takes
/// it back. Operations go through [`PrimaryImage::writer`].
pub struct PrimaryImage<I: IoCtx> {
    writer: Arc<Mutex<Writer<I>>>,
    id: String,
    _servant: DropGuard,
}

/// The journaling writer behind a [`PrimaryImage`].
pub struct Writer<I: IoCtx> {
    pub image: Image<I>,
    /// Breaks a dead client's lock (a daemon killed while it held ours for a sync point).
    fence: Arc<dyn Fence>,
    journal: JournalWriter<I>,
    commit: CommitPosition,
    next_op_tid: u64,
}

impl<I: IoCtx> PrimaryImage<I> {
    /// Creates a journaled, mirror-enabled primary image (its journal's first tag is ours)
    /// in pool `pool` of `rados`.
    /// `io`: the pool (and namespace) to create the image in.
    pub async fn create<R: Rados<IoCtx = I>>(
        rados: &R,
        io: I,
        name: &str,
        global_id: &str,
        size: u64,
        order: u8,
    ) -> Result<Self, PrimaryError> {
        Self::create_with(rados, io, name, global_id, (size, order), None).await
    }

    /// Like [`Self::create`]; with `parent`, a clone of a snapshot of another image here.
    pub async fn create_with<R: Rados<IoCtx = I>>(
        rados: &R,
        io: I,
        name: &str,
        global_id: &str,
        (size, order): (u64, u8),
        parent: Option<CloneOf>,
    ) -> Result<Self, PrimaryError> {
        let fence = Arc::new(rados.clone());
        let writer = Writer::create(fence, io, name, global_id, (size, order), parent).await?;
        let id = writer.image.id().to_string();
        let mut state = writer.image.lock_state();
        let writer = Arc::new(Mutex::new(writer));
        let cancel = CancellationToken::new();
        let (w, stop) = (writer.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    changed = state.changed() => if changed.is_err() { return },
                }
                if *state.borrow_and_update() == LockState::ReleaseRequested
                    && let Err(e) = w.lock().await.hand_over().await
                {
                    tracing::warn!(%e, "demo primary: handing the lock over");
                }
            }
        });
        Ok(PrimaryImage {
            writer,
            id,
            _servant: cancel.drop_guard(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Exclusive access for operations (the servant waits meanwhile).
    pub async fn writer(&self) -> MutexGuard<'_, Writer<I>> {
        self.writer.lock().await
    }
}

impl<I: IoCtx> Writer<I> {
    async fn create(
        fence: Arc<dyn Fence>,
        io: I,
        name: &str,
        global_id: &str,
        (size, order): (u64, u8),
        parent: Option<CloneOf>,
    ) -> Result<Self, PrimaryError> {
        let spec = NonPrimarySpec {
            name: name.into(),
            global_image_id: global_id.into(),
            size,
            order,
            features: FEATURES,
            stripe_unit: 1 << order,
            stripe_count: 1,
            journal_order: 16,
            journal_splay_width: 4,
            // "" owns the first tag: this site is primary.
            primary_mirror_uuid: String::new(),
            data_pool: None,
            parent,
        };
        let id = rbd::create_non_primary(&io, &spec).await?;
        let mut image = Image::open(io.clone(), &id).await?;
        // The image is mirror-enabled from birth, so a daemon may already hold the lock
        // for a sync point: wait for it, as librbd's lock request would.
        acquire(fence.as_ref(), &mut image).await?;
        let journal = JournalWriter::open(io, &id).await?;
        Ok(Writer {
            image,
            fence,
            commit: CommitPosition::new(4, &ObjectSetPosition::default()),
            journal,
            next_op_tid: 1,
        })
    }

    /// Commits and releases the lock: another client asked for it (librbd's default policy).
    async fn hand_over(&mut self) -> Result<(), PrimaryError> {
        if *self.image.lock_state().borrow() == LockState::Unlocked {
            return Ok(());
        }
        self.commit().await?;
        self.image.release_lock().await?;
        Ok(())
    }

    /// Takes the lock back before the next change, with a new journal epoch, as librbd does.
    async fn ensure_lock(&mut self) -> Result<(), PrimaryError> {
        let state = *self.image.lock_state().borrow();
        if state == LockState::Held {
            return Ok(());
        }
        self.hand_over().await?;
        // Let a requester that was just handed the lock take it first.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        acquire(self.fence.as_ref(), &mut self.image).await?;
        self.journal = JournalWriter::open(self.image.io().clone(), self.image.id()).await?;
        Ok(())
    }

    async fn journal(&mut self, event: Event) -> Result<(), PrimaryError> {
        self.ensure_lock().await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let entry = EventEntry {
            event,
            timestamp: UTime::from_duration(now),
        };
        let pos = self.journal.append(&entry).await?;
        self.commit.advance(pos);
        Ok(())
    }

    /// Stores the commit position (librbd does this every `rbd_journal_commit_age`) and
    /// notifies the journal header: the daemon's wake-up.
    pub async fn commit(&mut self) -> Result<(), PrimaryError> {
        self.journal.commit(self.commit.position()).await?;
        Ok(())
    }

    pub async fn write(&mut self, offset: u64, data: Bytes) -> Result<(), PrimaryError> {
        // librbd splits events at its max payload; so do we.
        let chunk = MAX_PAYLOAD_BYTES - 64;
        let mut at = 0;
        while at < data.len() {
            let part = data.slice(at..(at + chunk).min(data.len()));
            let len = part.len() as u64;
            self.journal(Event::AioWrite {
                offset: offset + at as u64,
                length: len,
                data: part,
            })
            .await?;
            at += chunk;
        }
        self.image.write(offset, data).await?;
        Ok(())
    }

    pub async fn discard(&mut self, offset: u64, length: u64) -> Result<(), PrimaryError> {
        self.journal(Event::AioDiscard {
            offset,
            length,
            skip_partial_discard: true,
            discard_granularity_bytes: 1 << self.image.order(),
        })
        .await?;
        self.image
            .apply(&[IoOp::Discard { offset, length }], 1)
            .await?;
        Ok(())
    }

    pub async fn write_zeroes(&mut self, offset: u64, length: u64) -> Result<(), PrimaryError> {
        self.journal(Event::AioDiscard {
            offset,
            length,
            skip_partial_discard: false,
            discard_granularity_bytes: 0,
        })
        .await?;
        self.image.write_zeroes(offset, length).await?;
        Ok(())
    }

    pub async fn write_same(
        &mut self,
        offset: u64,
        length: u64,
        pattern: Bytes,
    ) -> Result<(), PrimaryError> {
        self.journal(Event::AioWriteSame {
            offset,
            length,
            data: pattern.clone(),
        })
        .await?;
        self.image.write_same(offset, length, pattern).await?;
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), PrimaryError> {
        self.journal(Event::AioFlush).await?;
        self.commit().await
    }

    /// One random operation of the demo's mix: mostly 4 KiB writes, then flushes,
    /// discards, write-zeroes, write-same, snapshots, resizes and image-meta.
    pub async fn random_op(
        &mut self,
        rng: &mut impl rand::RngExt,
        snaps: &mut u32,
    ) -> Result<(), PrimaryError> {
        let size = self.image.size();
        let block = 4096u64;
        let offset = rng.random_range(0..size / block) * block;
        match rng.random_range(0..1000) {
            0..900 => {
                let byte: u8 = rng.random();
                self.write(offset, Bytes::from(vec![byte; block as usize]))
                    .await?;
            }
            900..940 => self.flush().await?,
            940..960 => self.discard(offset, (4 << 20).min(size - offset)).await?,
            960..975 => self.write_zeroes(offset, block).await?,
            975..990 => {
                let pattern = Bytes::from(vec![rng.random::<u8>(); 512]);
                self.write_same(offset, 8 * 512, pattern).await?;
            }
            990..994 => {
                *snaps += 1;
                self.op(Op::SnapCreate(format!("snap-{snaps}"))).await?;
            }
            994..996 if *snaps > 0 => {
                let name = format!("snap-{snaps}");
                if self
                    .image
                    .snapshot_by_name(&name, &SnapshotNamespace::User)
                    .is_some()
                {
                    self.op(Op::SnapRemove(name)).await?;
                }
            }
            996..998 => {
                let grow = rng.random_bool(0.5);
                let new = if grow {
                    size + (4 << 20)
                } else {
                    (size - (4 << 20)).max(16 << 20)
                };
                self.op(Op::Resize(new)).await?;
            }
            _ => {
                let n: u8 = rng.random();
                self.op(Op::MetadataSet(
                    format!("key-{}", n % 4),
                    format!("value-{n}"),
                ))
                .await?;
            }
        }
        Ok(())
    }

    /// A non-I/O op: journaled, run, finished with its result, committed.
    pub async fn op(&mut self, op: Op) -> Result<(), PrimaryError> {
        let op_tid = self.next_op_tid;
        self.next_op_tid += 1;
        let user = SnapshotNamespace::User;
        let event = match &op {
            Op::Resize(size) => Event::Resize {
                op_tid,
                size: *size,
            },
            Op::SnapCreate(name) => Event::SnapCreate {
                op_tid,
                snap_name: name.clone(),
                snap_namespace: user.clone(),
            },
            Op::SnapRemove(name) => Event::SnapRemove {
                op_tid,
                snap_name: name.clone(),
                snap_namespace: user.clone(),
            },
            Op::MetadataSet(key, value) => Event::MetadataSet {
                op_tid,
                key: key.clone(),
                value: value.clone(),
            },
        };
        self.journal(event).await?;
        let r = match op {
            Op::Resize(size) => self.image.resize(size).await,
            Op::SnapCreate(name) => self.image.snap_create(&name, user).await.map(drop),
            Op::SnapRemove(name) => self.image.snap_remove(&name, &user).await,
            Op::MetadataSet(key, value) => self.image.metadata_set(&key, &value).await,
        };
        let code = if r.is_ok() { 0 } else { -22 };
        self.journal(Event::OpFinish { op_tid, r: code }).await?;
        self.commit().await?;
        Ok(r?)
    }
}

/// Takes the exclusive lock, waiting while another client (the daemon) holds it briefly and
/// breaking the lock of a holder whose watch is gone, as librbd does.
async fn acquire<I: IoCtx>(fence: &dyn Fence, image: &mut Image<I>) -> Result<(), RbdError> {
    loop {
        match rbd::fencing::acquire(fence, None, rbd::fencing::Dead::Unwatched, image).await {
            Err(RbdError::LockBusy { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            done => return done,
        }
    }
}

/// The non-I/O operations the demo workload runs.
#[derive(Debug, Clone)]
pub enum Op {
    Resize(u64),
    SnapCreate(String),
    SnapRemove(String),
    MetadataSet(String, String),
}
