//! A journal writer that appends the way librbd's recorder does (spec §3.6, §3.9), so that
//! librbd, `rbd journal inspect/export` and our follower all read what it writes.
//!
//!  CREATE (journal.create, tag 0 owned by `owner`, image client "")  -- or --  OPEN
//!    |                                   (a new tag per open, as librbd per lock acquisition)
//!  APPEND: entry `e` of the current tag goes to splay offset `e % W` of the active set,
//!          through cls `append` (refused with EOVERFLOW once the object is full)
//!    |--(entry would not fit, object reached 2^order, or EOVERFLOW)--> ADVANCE_SET:
//!          set_active_set(S+1), notify; the entry goes to the same offset of the new set
//!  COMMIT: the image client's position, then notify, so followers and trimming move on
//!
//! Appends are sequential (one in flight); the header is notified after every header change,
//! as librbd does, which is what wakes followers.

use std::time::Duration;

use bytes::Bytes;

use super::JournalError;
use crate::cls::journal::{self as cls, Geometry};
use crate::format::Encode;
use crate::format::client_data::{ClientData, IMAGE_CLIENT_ID, TagData, TagPredecessor};
use crate::format::entry::Entry;
use crate::format::event::EventEntry;
use crate::format::journal::{
    JournalGeometry, ObjectPosition, ObjectSetPosition, TAG_CLASS_NEW, data_oid, header_oid,
};
use crate::format::{Decode, DecodeError};
use crate::rados::{Errno, IoCtx};

/// librbd notifies journal headers with this timeout.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct JournalWriter<I> {
    io: I,
    journal_id: String,
    header: String,
    /// The numeric pool id in data object names (the header's pool when `pool_id` is -1).
    data_pool_id: i64,
    geometry: JournalGeometry,
    active_set: u64,
    tag_class: u64,
    tag_tid: u64,
    next_entry_tid: u64,
    /// Bytes this writer appended to each object of the active set (by splay offset).
    written: Vec<u64>,
}

impl<I: IoCtx> JournalWriter<I> {
    /// Creates a journal as librbd does for a new journaled image: the header with its
    /// geometry, tag 0 in a new class owned by `owner` (`""` primary, else the remote primary's
    /// mirror uuid), and the image client `""`. Then opens it.
    pub async fn create(
        io: I,
        journal_id: &str,
        order: u8,
        splay_width: u8,
        owner: &str,
    ) -> Result<Self, JournalError> {
        let header = header_oid(journal_id);
        cls::create(
            &io,
            &header,
            Geometry {
                order,
                splay_width,
                pool_id: -1,
            },
        )
        .await?;
        let tag = TagData {
            mirror_uuid: owner.into(),
            predecessor: TagPredecessor::default(),
        };
        cls::allocate_tag(&io, &header, TAG_CLASS_NEW, tag.to_bytes()).await?;
        let image = ClientData::Image {
            tag_class: 0,
            resync_requested: false,
        };
        cls::client_register(&io, &header, IMAGE_CLIENT_ID, image.to_bytes()).await?;
        notify(&io, &header).await;
        Self::open(io, journal_id).await
    }

    /// Opens an existing journal for appending and starts a new tag (an epoch), owned by
    /// this site, whose predecessor is the image client's last committed entry.
    pub async fn open(io: I, journal_id: &str) -> Result<Self, JournalError> {
        let header = header_oid(journal_id);
        let g = cls::geometry(&io, &header).await?;
        let geometry = JournalGeometry::new(g.order, g.splay_width)
            .map_err(|source| decode(&header, source))?;
        let image = cls::get_client(&io, &header, IMAGE_CLIENT_ID).await?;
        let tag_class = match ClientData::from_bytes(image.data.clone()) {
            Ok(ClientData::Image { tag_class, .. }) => tag_class,
            Ok(_) => 0,
            Err(source) => return Err(decode(&header, source)),
        };
        let last = image.commit_position.object_positions.first();
        let predecessor = TagPredecessor {
            mirror_uuid: String::new(),
            commit_valid: last.is_some(),
            tag_tid: last.map_or(0, |p| p.tag_tid),
            entry_tid: last.map_or(0, |p| p.entry_tid),
        };
        let tag = TagData {
            mirror_uuid: String::new(),
            predecessor,
        };
        let tag_tid = cls::allocate_tag(&io, &header, tag_class, tag.to_bytes()).await?;
        let active_set = cls::get_active_set(&io, &header).await?;
        notify(&io, &header).await;
        let data_pool_id = if g.pool_id < 0 {
            io.pool_id()
        } else {
            g.pool_id
        };
        Ok(JournalWriter {
            written: vec![0; usize::from(g.splay_width)],
            io,
            journal_id: journal_id.into(),
            header,
            data_pool_id,
            geometry,
            active_set,
            tag_class,
            tag_tid,
            next_entry_tid: 0,
        })
    }

    pub fn tag_tid(&self) -> u64 {
        self.tag_tid
    }

    pub fn tag_class(&self) -> u64 {
        self.tag_class
    }

    /// Appends one event as the next entry of the current tag; returns where it went.
    pub async fn append(&mut self, event: &EventEntry) -> Result<ObjectPosition, JournalError> {
        let entry = Entry {
            entry_tid: self.next_entry_tid,
            tag_tid: self.tag_tid,
            data: event.to_bytes(),
        };
        let bytes = entry.to_bytes();
        let soft_max = self.geometry.soft_max_size();
        let offset = self.geometry.splay_offset(entry.entry_tid);
        loop {
            let object_number = self.object_number(offset)?;
            let oid = data_oid(self.data_pool_id, &self.journal_id, object_number);
            if bytes.len() as u64 > soft_max {
                return Err(JournalError::EntryTooLarge {
                    object: oid,
                    len: bytes.len(),
                    max: soft_max,
                });
            }
            let written = self.written[usize::from(offset)];
            if written > 0 && written + bytes.len() as u64 > soft_max {
                // It would not fit: the set is closed and the entry goes to the next one.
                self.advance_set().await?;
                continue;
            }
            match cls::append(&self.io, &oid, soft_max, bytes.clone()).await {
                Err(e) if e.is(Errno::EOVERFLOW) => self.advance_set().await?,
                Err(e) => return Err(e.into()),
                Ok(()) => {
                    self.next_entry_tid += 1;
                    let written = &mut self.written[usize::from(offset)];
                    *written += bytes.len() as u64;
                    if *written >= soft_max {
                        // Full: close the whole set, as librbd's recorder does.
                        self.advance_set().await?;
                    }
                    return Ok(ObjectPosition {
                        object_number,
                        tag_tid: entry.tag_tid,
                        entry_tid: entry.entry_tid,
                    });
                }
            }
        }
    }

    /// Records the image client's commit position (newest first, one per splay offset).
    pub async fn commit(&self, position: ObjectSetPosition) -> Result<(), JournalError> {
        cls::client_commit(&self.io, &self.header, IMAGE_CLIENT_ID, position).await?;
        notify(&self.io, &self.header).await;
        Ok(())
    }

    fn object_number(&self, offset: u8) -> Result<u64, JournalError> {
        let overflow = || {
            decode(
                &self.header,
                DecodeError::BadValue {
                    what: "active_set",
                    value: self.active_set,
                },
            )
        };
        self.geometry
            .object_number(self.active_set, offset)
            .ok_or_else(overflow)
    }

    /// Moves appends to the next object set (or to whatever set another writer moved to).
    async fn advance_set(&mut self) -> Result<(), JournalError> {
        match cls::set_active_set(&self.io, &self.header, self.active_set + 1).await {
            Err(e) if e.is(Errno::ESTALE) => {}
            other => other?,
        }
        self.active_set = cls::get_active_set(&self.io, &self.header).await?;
        self.written.fill(0);
        notify(&self.io, &self.header).await;
        Ok(())
    }
}

fn decode(object: &str, source: DecodeError) -> JournalError {
    JournalError::Decode {
        object: object.into(),
        source,
    }
}

/// Tells watchers of the header that it changed (an empty payload, like the journal library).
/// A watcher that does not ack delays us by the timeout but loses nothing: it re-reads.
pub(crate) async fn notify<I: IoCtx>(io: &I, header: &str) {
    if let Err(e) = io.notify(header, Bytes::new(), NOTIFY_TIMEOUT).await {
        tracing::warn!(%e, "journal header notify failed");
    }
}
