//! A primary image written the way librbd writes one, for the embedded demo and tests: every
//! operation is journaled first (events, then the change, then OpFinish for non-I/O ops),
//! and the image client's commit position follows, so the daemon sees exactly what it
//! would see from librbd. Not a replacement for librbd: one writer, sequential ops.

use bytes::Bytes;

use crate::format::codec::UTime;
use crate::format::event::{Event, EventEntry, MAX_PAYLOAD_BYTES};
use crate::format::image::SnapshotNamespace;
use crate::format::journal::ObjectSetPosition;
use crate::journal::JournalError;
use crate::journal::position::CommitPosition;
use crate::journal::writer::JournalWriter;
use crate::rados::IoCtx;
use crate::rbd::{self, Image, IoOp, LockState, NonPrimarySpec, RbdError};

#[derive(Debug, thiserror::Error)]
pub enum PrimaryError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Rbd(#[from] RbdError),
}

/// librbd's journaling feature bits plus what it needs (layering, exclusive-lock).
pub const FEATURES: u64 = 1 | 4 | 64;

pub struct PrimaryImage<I: IoCtx> {
    pub image: Image<I>,
    journal: JournalWriter<I>,
    commit: CommitPosition,
    next_op_tid: u64,
}

impl<I: IoCtx> PrimaryImage<I> {
    /// Creates a journaled, mirror-enabled primary image (its journal's first tag is ours).
    pub async fn create(
        io: I,
        name: &str,
        global_id: &str,
        size: u64,
        order: u8,
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
        };
        let id = rbd::create_non_primary(&io, &spec).await?;
        let mut image = Image::open(io.clone(), &id).await?;
        image.acquire_lock().await?;
        let journal = JournalWriter::open(io, &id).await?;
        Ok(PrimaryImage {
            image,
            commit: CommitPosition::new(4, &ObjectSetPosition::default()),
            journal,
            next_op_tid: 1,
        })
    }

    /// Hands the lock over when another client asked for it (librbd's default policy), and
    /// takes it back before the next change, with a new journal epoch, as librbd does.
    async fn ensure_lock(&mut self) -> Result<(), PrimaryError> {
        let state = *self.image.lock_state().borrow();
        if state == LockState::Held {
            return Ok(());
        }
        self.commit().await?;
        self.image.release_lock().await?;
        // Give the requester its turn before asking for the lock back.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        loop {
            match self.image.acquire_lock().await {
                Ok(()) => break,
                Err(RbdError::LockBusy { .. }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(e) => return Err(e.into()),
            }
        }
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

/// The non-I/O operations the demo workload runs.
#[derive(Debug, Clone)]
pub enum Op {
    Resize(u64),
    SnapCreate(String),
    SnapRemove(String),
    MetadataSet(String, String),
}
