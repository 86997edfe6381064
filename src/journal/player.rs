//! The journal player: puts the entries of a journal's data objects back into journal order,
//! from a commit position onwards (spec §3.7). Pure state, no I/O: the reader feeds it the
//! bytes of the objects it asks for and takes entries out. Replaces the ordering logic of
//! Ceph's `JournalPlayer`/`ObjectPlayer`, in our words:
//!
//! - Entry `e` of a tag lives at splay offset `e % W`, in the active set of the moment it was
//!   appended; so the next entry is always at the front of one known offset's objects.
//! - Each offset has a cursor: the object it reads, the bytes of it already scanned, and the
//!   complete entries scanned but not yet played. A truncated tail is left for a re-read.
//! - A cursor moves to the next object of its offset (`+W`) only when its object is used up
//!   and belongs to a set older than the header's active set.
//! - Entries of older tags, and of the current tag below the expected entry (committed or
//!   already played), are dropped. When the current tag has no next entry and a newer tag's
//!   entries are in sight, play continues at entry 0 of the next tag that has one.
//! - A gap inside a tag is corruption (Ceph says "missing prior journal entry"): an error.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::format::DecodeError;
use crate::format::entry::{Entry, EntryScanner};
use crate::format::journal::{JournalGeometry, ObjectPosition, ObjectSetPosition};

/// What the player needs or has.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The next entry in journal order, and where it was.
    Entry(Entry, ObjectPosition),
    /// Read `object_number` from byte `from` to its end, then [`Player::feed`] it.
    Fetch { object_number: u64, from: u64 },
    /// Nothing more until the journal changes (a notification, or the tail probe).
    CaughtUp,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlayError {
    #[error("object {object_number} at offset {offset}: {source}")]
    Decode {
        object_number: u64,
        offset: u64,
        source: DecodeError,
    },
    #[error(
        "missing journal entry: expected tag {tag_tid} entry {entry_tid}, found entry {found} in object {object_number}"
    )]
    Gap {
        tag_tid: u64,
        entry_tid: u64,
        found: u64,
        object_number: u64,
    },
}

#[derive(Debug)]
struct Cursor {
    object_number: u64,
    /// Bytes of the object already scanned into `pending`.
    scanned: u64,
    pending: VecDeque<Entry>,
    /// Read since the last wake-up (so a used-up cursor in the active set means caught up).
    fresh: bool,
}

/// Where play stands in the tag sequence.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Entry `entry` of tag `tag`.
    Next { tag: u64, entry: u64 },
    /// Entry 0 of the first tag newer than `after` (`None`: of any tag).
    FirstOf { after: Option<u64> },
}

#[derive(Debug)]
pub struct Player {
    geometry: JournalGeometry,
    cursors: Vec<Cursor>,
    expect: Expect,
}

impl Player {
    /// Starts after `committed` (empty: at the oldest entry still in the journal).
    pub fn new(geometry: JournalGeometry, minimum_set: u64, committed: &ObjectSetPosition) -> Self {
        let w = geometry.splay_width();
        let cursors = (0..w)
            .map(|k| {
                let at = committed
                    .object_positions
                    .iter()
                    .find(|p| geometry.splay_offset(p.object_number) == k);
                let object_number = at
                    .map(|p| p.object_number)
                    .or_else(|| geometry.object_number(minimum_set, k));
                Cursor {
                    object_number: object_number.unwrap_or(u64::MAX),
                    scanned: 0,
                    pending: VecDeque::new(),
                    fresh: false,
                }
            })
            .collect();
        let expect = match committed.object_positions.first() {
            Some(p) => Expect::Next {
                tag: p.tag_tid,
                entry: p.entry_tid + 1,
            },
            None => Expect::FirstOf { after: None },
        };
        Player {
            geometry,
            cursors,
            expect,
        }
    }

    /// Every read the player can use now besides the one [`next`](Self::next) asked for:
    /// the other cursors not read since the last wake-up. Reading them together fetches a
    /// backlog a set of objects at a time instead of one object after another.
    pub fn wanted(&self) -> Vec<(u64, u64)> {
        self.cursors
            .iter()
            .filter(|c| !c.fresh)
            .map(|c| (c.object_number, c.scanned))
            .collect()
    }

    /// The journal may have changed: every cursor is read again from where it stopped.
    pub fn wake(&mut self) {
        for c in &mut self.cursors {
            c.fresh = false;
        }
    }

    /// Hands over the bytes of a cursor's object read from `from` (empty: the object does not
    /// exist, or has nothing new); `to_end` when the read reached the object's end, else the
    /// cursor asks for the rest next. Complete entries are queued; a truncated tail waits.
    /// Returns how many bytes of complete entries were taken.
    pub fn feed(
        &mut self,
        object_number: u64,
        from: u64,
        bytes: Bytes,
        to_end: bool,
    ) -> Result<u64, PlayError> {
        let Some(c) = self
            .cursors
            .iter_mut()
            .find(|c| c.object_number == object_number)
        else {
            return Ok(0); // the cursor moved on meanwhile
        };
        c.fresh = to_end;
        if from != c.scanned {
            return Ok(0); // a stale read; the cursor asks again
        }
        let mut scanner = EntryScanner::new(bytes);
        for item in scanner.by_ref() {
            let scanned = item.map_err(|source| PlayError::Decode {
                object_number,
                offset: from,
                source,
            })?;
            c.pending.push_back(scanned.entry);
        }
        let taken = scanner.tail_offset() as u64;
        c.scanned += taken;
        Ok(taken)
    }

    /// The next step, given the header's current active set.
    pub fn next(&mut self, active_set: u64) -> Result<Next, PlayError> {
        loop {
            let (k, tag_floor) = match self.expect {
                Expect::Next { tag, entry } => {
                    (self.geometry.splay_offset(entry), Some((tag, entry)))
                }
                Expect::FirstOf { .. } => (0, None),
            };
            let c = &mut self.cursors[usize::from(k)];
            // Drop what is already played or belongs to a finished tag.
            while let Some(front) = c.pending.front() {
                let stale = match self.expect {
                    Expect::Next { tag, entry } => {
                        front.tag_tid < tag || (front.tag_tid == tag && front.entry_tid < entry)
                    }
                    Expect::FirstOf { after } => after.is_some_and(|a| front.tag_tid <= a),
                };
                if !stale {
                    break;
                }
                c.pending.pop_front();
            }
            if let Some(front) = c.pending.front() {
                let position = |e: &Entry| ObjectPosition {
                    object_number: c.object_number,
                    tag_tid: e.tag_tid,
                    entry_tid: e.entry_tid,
                };
                match (self.expect, tag_floor) {
                    (Expect::Next { tag, entry }, _)
                        if front.tag_tid == tag && front.entry_tid == entry =>
                    {
                        let e = c.pending.pop_front().expect("front exists");
                        self.expect = Expect::Next {
                            tag,
                            entry: entry + 1,
                        };
                        let p = position(&e);
                        return Ok(Next::Entry(e, p));
                    }
                    (Expect::Next { tag, .. }, _) if front.tag_tid > tag => {
                        // A newer epoch is where ours would continue: ours ended.
                        self.expect = Expect::FirstOf { after: Some(tag) };
                        continue;
                    }
                    (Expect::FirstOf { .. }, _) if front.entry_tid == 0 => {
                        let e = c.pending.pop_front().expect("front exists");
                        self.expect = Expect::Next {
                            tag: e.tag_tid,
                            entry: 1,
                        };
                        let p = position(&e);
                        return Ok(Next::Entry(e, p));
                    }
                    (expect, _) => {
                        let (tag_tid, entry_tid) = match expect {
                            Expect::Next { tag, entry } => (tag, entry),
                            Expect::FirstOf { .. } => (front.tag_tid, 0),
                        };
                        let (found, object_number) = (front.entry_tid, c.object_number);
                        return Err(PlayError::Gap {
                            tag_tid,
                            entry_tid,
                            found,
                            object_number,
                        });
                    }
                }
            }
            // The expected offset has nothing queued: read, move on, or wait.
            if !c.fresh {
                return Ok(Next::Fetch {
                    object_number: c.object_number,
                    from: c.scanned,
                });
            }
            if let Some(step) = self.advance_used_up(active_set) {
                return Ok(step);
            }
            if let Expect::Next { tag, .. } = self.expect
                && self
                    .cursors
                    .iter()
                    .any(|c| c.pending.iter().any(|e| e.tag_tid > tag))
            {
                self.expect = Expect::FirstOf { after: Some(tag) };
                continue;
            }
            return Ok(Next::CaughtUp);
        }
    }

    /// Moves every used-up cursor of an older set to its next object, so that nothing
    /// written since (a newer tag, the rest of this one) stays out of sight.
    fn advance_used_up(&mut self, active_set: u64) -> Option<Next> {
        let g = self.geometry;
        for c in &mut self.cursors {
            if c.fresh && c.pending.is_empty() && g.object_set(c.object_number) < active_set {
                c.object_number = g.next_object(c.object_number)?;
                c.scanned = 0;
                c.fresh = false;
            }
            if !c.fresh {
                return Some(Next::Fetch {
                    object_number: c.object_number,
                    from: c.scanned,
                });
            }
        }
        None
    }
}
