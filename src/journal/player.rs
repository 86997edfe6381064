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
//! - So are two things a closed set (older than the active one) can never hold, since
//!   librbd appends whole records and closes a set only once one of its objects filled:
//!   a truncated record, and no record at all in any of its objects. A header whose
//!   active set lies far beyond the objects that exist would otherwise have the reader
//!   walk (and read) every missing object up to it.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::format::DecodeError;
use crate::format::entry::{Entry, EntryScanner, max_data_len};
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
    #[error("object {object_number}: {source}")]
    Decode {
        object_number: u64,
        source: DecodeError,
    },
    #[error(
        "object {object_number}: truncated entry at offset {offset}, in a set the primary closed"
    )]
    Truncated { object_number: u64, offset: u64 },
    #[error(
        "object set {set} holds no entry, yet the header's active set is {active_set} (minimum {minimum_set})"
    )]
    EmptySet {
        set: u64,
        active_set: u64,
        minimum_set: u64,
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
    /// The last read to the object's end left bytes of an incomplete record after `scanned`.
    partial: bool,
}

/// Where play stands in the tag sequence.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Entry `entry` of tag `tag`.
    Next { tag: u64, entry: u64 },
    /// Entry 0 of the first tag newer than `after` (`None`: of any tag).
    FirstOf { after: Option<u64> },
}

impl Expect {
    /// The entry is behind play: already played, or of a finished tag.
    fn passed(self, e: &Entry) -> bool {
        match self {
            Expect::Next { tag, entry } => {
                e.tag_tid < tag || (e.tag_tid == tag && e.entry_tid < entry)
            }
            Expect::FirstOf { after } => after.is_some_and(|a| e.tag_tid <= a),
        }
    }
}

#[derive(Debug)]
pub struct Player {
    geometry: JournalGeometry,
    cursors: Vec<Cursor>,
    expect: Expect,
    /// The header's minimum set when play started (named in errors).
    minimum_set: u64,
    /// Per closed set, how many of its objects were passed without a record in them.
    empty_objects: BTreeMap<u64, u8>,
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
                    partial: false,
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
            minimum_set,
            empty_objects: BTreeMap::new(),
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

    /// The journal bytes ahead of play that this player knows of without another read:
    /// the payloads of the entries queued and not played, plus, for every cursor whose
    /// object belongs to a set older than `active_set` (the primary closed it), the unread
    /// rest of that object and every object of its offset in the sets up to the active
    /// one, each counted at `2^order` bytes (the writer closes an object once it reaches
    /// that size, so this is right within an entry per object). What the active set holds
    /// beyond the reads is not known, hence not counted: this is a lower bound, exact
    /// once the cursors have read the active set.
    pub fn bytes_behind(&self, active_set: u64) -> u64 {
        let g = self.geometry;
        let object_size = g.soft_max_size();
        let queued: u64 = (self.cursors.iter())
            .flat_map(|c| &c.pending)
            .filter(|e| !self.expect.passed(e))
            .map(|e| e.data.len() as u64)
            .sum();
        // A cursor without an object (u64::MAX) is in no set older than the active one.
        let unread: u64 = (self.cursors.iter())
            .map(|c| {
                let sets_ahead = active_set.saturating_sub(g.object_set(c.object_number));
                let rest_of_own = object_size.saturating_sub(c.scanned);
                match sets_ahead {
                    0 => 0,
                    n => rest_of_own.saturating_add((n - 1).saturating_mul(object_size)),
                }
            })
            .fold(0, u64::saturating_add);
        queued.saturating_add(unread)
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
        let len = bytes.len();
        let base = usize::try_from(from).unwrap_or(usize::MAX);
        let max = max_data_len(self.geometry.soft_max_size());
        let mut scanner = EntryScanner::in_object(bytes, base, max);
        for item in scanner.by_ref() {
            let scanned = item.map_err(|source| PlayError::Decode {
                object_number,
                source,
            })?;
            c.pending.push_back(scanned.entry);
        }
        let taken = scanner.tail_offset();
        c.partial = to_end && taken < len;
        c.scanned += taken as u64;
        Ok(taken as u64)
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
            while c.pending.front().is_some_and(|e| self.expect.passed(e)) {
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
            if let Some(step) = self.advance_used_up(active_set)? {
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
    /// written since (a newer tag, the rest of this one) stays out of sight, then asks for
    /// the lowest object not read yet: cursors move through the sets together, so an empty
    /// set is seen whole. A closed object ending in a truncated record, or a closed set
    /// without any record, is an error.
    fn advance_used_up(&mut self, active_set: u64) -> Result<Option<Next>, PlayError> {
        let g = self.geometry;
        // Sets every cursor has left cannot gain an empty object any more.
        let oldest = (self.cursors.iter())
            .map(|c| g.object_set(c.object_number))
            .min();
        self.empty_objects
            .retain(|&set, _| oldest.is_some_and(|o| set >= o));
        let expect = self.expect;
        for c in &mut self.cursors {
            // Entries already played would keep a cursor in place while the expected one
            // walks on alone, and an empty set would never be seen whole.
            while c.pending.front().is_some_and(|e| expect.passed(e)) {
                c.pending.pop_front();
            }
            let set = g.object_set(c.object_number);
            if !(c.fresh && c.pending.is_empty() && set < active_set) {
                continue;
            }
            if c.partial {
                return Err(PlayError::Truncated {
                    object_number: c.object_number,
                    offset: c.scanned,
                });
            }
            let Some(next) = g.next_object(c.object_number) else {
                continue;
            };
            if c.scanned == 0 {
                let empty = self.empty_objects.entry(set).or_default();
                *empty += 1;
                if *empty >= g.splay_width() {
                    return Err(PlayError::EmptySet {
                        set,
                        active_set,
                        minimum_set: self.minimum_set,
                    });
                }
            }
            c.object_number = next;
            c.scanned = 0;
            c.fresh = false;
        }
        Ok((self.cursors.iter())
            .filter(|c| !c.fresh)
            .min_by_key(|c| c.object_number)
            .map(|c| Next::Fetch {
                object_number: c.object_number,
                from: c.scanned,
            }))
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    const SIZE: u64 = 4096;

    /// Objects of 4 KiB, two splay offsets.
    fn player(committed: &[(u64, u64, u64)]) -> Player {
        let g = JournalGeometry::new(12, 2).unwrap();
        let committed = ObjectSetPosition {
            object_positions: (committed.iter())
                .map(|&(object_number, tag_tid, entry_tid)| ObjectPosition {
                    object_number,
                    tag_tid,
                    entry_tid,
                })
                .collect(),
        };
        Player::new(g, 0, &committed)
    }

    /// Entries `tids` of tag 0, each with a payload of `len` bytes, framed.
    fn entries(tids: &[u64], len: usize) -> Bytes {
        let mut out = BytesMut::new();
        for &entry_tid in tids {
            let data = Bytes::from(vec![7u8; len]);
            Entry {
                entry_tid,
                tag_tid: 0,
                data,
            }
            .encode_to(&mut out);
        }
        out.freeze()
    }

    /// Plays until it must fetch, feeding `objects` (object number → bytes; absent: empty)
    /// read to their end.
    fn play(p: &mut Player, active_set: u64, objects: &[(u64, Bytes)]) -> Result<Next, PlayError> {
        loop {
            match p.next(active_set)? {
                Next::Fetch {
                    object_number,
                    from,
                } => {
                    let bytes = (objects.iter())
                        .find(|(n, _)| *n == object_number)
                        .map_or_else(Bytes::new, |(_, b)| b.slice(from as usize..));
                    p.feed(object_number, from, bytes, true)?;
                }
                other => return Ok(other),
            }
        }
    }

    #[test]
    fn a_truncated_entry_waits_in_the_active_set_and_fails_in_a_closed_one() {
        let whole = entries(&[0, 2], 100);
        let cut = whole.slice(..whole.len() - 10);
        let mut p = player(&[]);
        assert!(matches!(
            play(&mut p, 0, &[(0, cut.clone())]),
            Ok(Next::Entry(..))
        ));
        assert_eq!(play(&mut p, 0, &[(0, cut.clone())]), Ok(Next::CaughtUp));
        // The primary moved on to set 1: entry 2 can never complete.
        p.wake();
        assert_eq!(
            play(&mut p, 1, &[(0, cut)]),
            Err(PlayError::Truncated {
                object_number: 0,
                offset: 133
            })
        );
    }

    #[test]
    fn a_closed_set_without_entries_is_an_impossible_header() {
        let mut p = player(&[]);
        assert_eq!(
            play(&mut p, u64::MAX, &[]),
            Err(PlayError::EmptySet {
                set: 0,
                active_set: u64::MAX,
                minimum_set: 0
            })
        );
        // One object with entries per set is enough.
        let mut p = player(&[]);
        let objects = [(0, entries(&[0], 10)), (3, entries(&[1], 10))];
        for tid in [0, 1] {
            let next = play(&mut p, 2, &objects);
            assert!(
                matches!(&next, Ok(Next::Entry(e, _)) if e.entry_tid == tid),
                "{next:?}"
            );
        }
        assert_eq!(play(&mut p, 2, &objects), Ok(Next::CaughtUp));
    }

    #[test]
    fn played_entries_on_other_cursors_do_not_hide_an_empty_set() {
        // Restarted after entry 1: entry 0 comes back on cursor 0, entry 2 is not written.
        let mut p = player(&[(1, 0, 1)]);
        let objects = [(0, entries(&[0], 10)), (1, entries(&[1], 10))];
        let err = play(&mut p, 1_000_000, &objects).unwrap_err();
        assert_eq!(
            err,
            PlayError::EmptySet {
                set: 1,
                active_set: 1_000_000,
                minimum_set: 0
            }
        );
    }

    #[test]
    fn a_length_beyond_the_object_size_fails_at_once() {
        let mut rec = entries(&[0], 10).to_vec();
        rec[25..29].copy_from_slice(&(SIZE as u32).to_le_bytes());
        let mut p = player(&[]);
        let err = play(&mut p, 0, &[(0, Bytes::from(rec))]).unwrap_err();
        assert!(
            matches!(
                err,
                PlayError::Decode {
                    object_number: 0,
                    source: DecodeError::EntryTooLong { offset: 0, .. }
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn closed_sets_count_whole_objects() {
        let p = player(&[]);
        // Both cursors in set 0, the primary writing set 3: sets 0, 1 and 2 are closed.
        assert_eq!(p.bytes_behind(3), 2 * 3 * SIZE);
        assert_eq!(p.bytes_behind(0), 0, "the active set's fill is not known");
    }

    #[test]
    fn reads_replace_the_estimate_of_their_object() {
        let mut p = player(&[]);
        let bytes = entries(&[0, 2], 100);
        let read = p.feed(0, 0, bytes, true).unwrap();
        // Object 0: its two queued payloads, and its unread rest; object 1 untouched.
        assert_eq!(p.bytes_behind(1), 200 + (SIZE - read) + SIZE);
        assert_eq!(
            p.bytes_behind(0),
            200,
            "in the active set only what was read"
        );
    }

    #[test]
    fn played_and_committed_entries_are_not_behind() {
        // Committed up to entry 1 (offset 1): entries 0 and 2 of object 0 come back.
        let mut p = player(&[(1, 0, 1)]);
        p.feed(0, 0, entries(&[0, 2], 100), true).unwrap();
        assert_eq!(p.bytes_behind(0), 100, "entry 0 is committed");
        assert!(matches!(p.next(0).unwrap(), Next::Entry(e, _) if e.entry_tid == 2));
        assert_eq!(p.bytes_behind(0), 0, "entry 2 was played");
    }
}
