//! Reads a journal in order from a commit position: the I/O half of the [`Player`]. It reads
//! the header once (geometry, pool, sets), fetches exactly the objects the player asks for
//! (from the byte where it stopped, so a live tail costs one small read), and after a wake-up
//! re-reads the active set. The notification-driven follower builds on it.

use bytes::Bytes;

use crate::cls::journal as cls;
use crate::format::entry::Entry;
use crate::format::journal::{
    JournalGeometry, ObjectPosition, ObjectSetPosition, data_oid, header_oid,
};
use crate::rados::{Errno, IoCtx};

use super::JournalError;
use super::player::{Next, PlayError, Player};

pub struct JournalReader<I> {
    io: I,
    journal_id: String,
    header: String,
    data_pool_id: i64,
    splay_width: u8,
    player: Player,
    active_set: u64,
    /// Entries out of the player, not yet returned (see `read`).
    taken: Vec<(Entry, ObjectPosition)>,
}

/// The most a fetch reads of one journal object at a time (librbd splits events at
/// `rbd_journal_max_payload_bytes`, 16 KiB by default, so a piece holds many entries).
/// 256 KiB: a lab backlog reads at 275 MB/s (1 MiB: ~300) and a drain peaks 5 MiB lower.
const READ_CHUNK: u64 = 256 << 10;

/// The largest piece while a read has found nothing to play yet: a replayer starting at a
/// commit position deep in an object (taking an image over) scans the entries before it,
/// doubling the piece each round, so 1 MiB takes three round trips instead of four and
/// 16 MiB 17 instead of 64; at most W pieces of this size are held at once.
const SKIP_CHUNK: u64 = 1 << 20;

/// `len` bytes of a data object from `from` (0: to its end); nothing when it does not
/// exist (trimmed, or not written yet).
async fn read_from<I: IoCtx>(
    io: &I,
    oid: &str,
    from: u64,
    len: u64,
) -> Result<Bytes, JournalError> {
    match io.read(oid, from, len).await {
        Err(e) if e.errno == Errno::ENOENT => Ok(Bytes::new()),
        other => Ok(other?),
    }
}

impl<I: IoCtx> JournalReader<I> {
    /// Opens the journal `journal_id` in `io`'s pool to read after `committed`.
    pub async fn open(
        io: I,
        journal_id: &str,
        committed: &ObjectSetPosition,
    ) -> Result<Self, JournalError> {
        let header = header_oid(journal_id);
        // One round trip: a replayer taking an image over waits for this.
        let (g, minimum_set, active_set) = futures::try_join!(
            cls::geometry(&io, &header),
            cls::get_minimum_set(&io, &header),
            cls::get_active_set(&io, &header),
        )?;
        let geometry = JournalGeometry::new(g.order, g.splay_width).map_err(|source| {
            JournalError::Decode {
                object: header.clone(),
                source,
            }
        })?;
        if active_set < minimum_set {
            return Err(JournalError::BadHeader {
                journal: journal_id.into(),
                reason: format!("active set {active_set} is below the minimum set {minimum_set}"),
            });
        }
        let data_pool_id = if g.pool_id < 0 {
            io.pool_id()
        } else {
            g.pool_id
        };
        let player = Player::new(geometry, minimum_set, committed);
        Ok(JournalReader {
            io,
            journal_id: journal_id.into(),
            header,
            data_pool_id,
            splay_width: g.splay_width,
            player,
            active_set,
            taken: Vec::new(),
        })
    }

    /// The journal's splay width, as its header gives it.
    pub fn splay_width(&self) -> u8 {
        self.splay_width
    }

    /// Everything readable now, in journal order: at most `max` entries, and no more entries
    /// once they hold `max_bytes` (at least one, however large). An empty result means
    /// caught up: call [`wake`](Self::wake) when the journal may have changed.
    /// Cancel safe: entries taken from the player before a cancelled fetch are kept and
    /// returned by the next call.
    pub async fn read(
        &mut self,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Entry, ObjectPosition)>, JournalError> {
        let mut bytes: usize = self.taken.iter().map(|(e, _)| e.data.len()).sum();
        let mut chunk = READ_CHUNK;
        while self.taken.len() < max && bytes < max_bytes {
            match self
                .player
                .next(self.active_set)
                .map_err(|e| self.play_error(e))?
            {
                Next::Entry(e, p) => {
                    bytes += e.data.len();
                    self.taken.push((e, p));
                }
                Next::CaughtUp => break,
                Next::Fetch { .. } => {
                    // The asked-for object and every other cursor's, read concurrently, a
                    // bounded piece of each: a backlog costs W reads in flight and at most
                    // W × READ_CHUNK bytes beyond the entries the prefetch budget counts
                    // (W × SKIP_CHUNK while it passes committed entries).
                    let reads = self
                        .player
                        .wanted()
                        .into_iter()
                        .map(|(object_number, from)| {
                            let oid = data_oid(self.data_pool_id, &self.journal_id, object_number);
                            let io = &self.io;
                            async move {
                                let bytes = read_from(io, &oid, from, chunk).await?;
                                Ok::<_, JournalError>((oid, object_number, from, bytes))
                            }
                        });
                    for (oid, object_number, from, bytes) in
                        futures::future::try_join_all(reads).await?
                    {
                        let to_end = (bytes.len() as u64) < chunk;
                        let taken = self
                            .player
                            .feed(object_number, from, bytes, to_end)
                            .map_err(|e| self.play_error(e))?;
                        if !to_end && taken == 0 {
                            // One entry larger than a piece: take the object's rest (as
                            // large as the object is, never what a length field claims).
                            let rest = read_from(&self.io, &oid, from, 0).await?;
                            self.player
                                .feed(object_number, from, rest, true)
                                .map_err(|e| self.play_error(e))?;
                        }
                    }
                    if self.taken.is_empty() {
                        chunk = (chunk * 2).min(SKIP_CHUNK);
                    }
                }
            }
        }
        Ok(std::mem::take(&mut self.taken))
    }

    /// Gives back the tail of what [`read`](Self::read) returned, not delivered after all
    /// (no room in the prefetch budget): the next read returns it first.
    pub fn unread(&mut self, mut rest: Vec<(Entry, ObjectPosition)>) {
        rest.append(&mut self.taken);
        self.taken = rest;
    }

    /// Journal bytes not returned yet, as far as known without a read: entries taken from
    /// the player, and what [`Player::bytes_behind`] counts against the active set as last
    /// read.
    pub fn bytes_behind(&self) -> u64 {
        let taken: u64 = self.taken.iter().map(|(e, _)| e.data.len() as u64).sum();
        taken + self.player.bytes_behind(self.active_set)
    }

    /// The journal may have moved (a header notification, or the tail probe): re-read the
    /// active set, then the objects where play stands.
    pub async fn wake(&mut self) -> Result<(), JournalError> {
        let active_set = cls::get_active_set(&self.io, &self.header).await?;
        if active_set < self.active_set {
            return Err(JournalError::BadHeader {
                journal: self.journal_id.clone(),
                reason: format!(
                    "active set went back from {} to {active_set}",
                    self.active_set
                ),
            });
        }
        self.active_set = active_set;
        self.player.wake();
        Ok(())
    }

    fn play_error(&self, e: PlayError) -> JournalError {
        JournalError::Play {
            journal: self.journal_id.clone(),
            source: e,
        }
    }
}
