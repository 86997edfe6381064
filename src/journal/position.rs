//! Commit positions as librbd records them (spec §3.8): for each splay offset the newest
//! entry committed there, newest first, at most one per offset. A consumer advances it
//! over entries in journal order once they are durably applied; the result is what
//! `client_commit` stores and what a restarted reader resumes after.

use crate::format::journal::{ObjectPosition, ObjectSetPosition};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPosition {
    splay_width: u64,
    /// Newest first.
    positions: Vec<ObjectPosition>,
}

impl CommitPosition {
    /// Continues from a stored position (`splay_width` > 0, as every journal header has).
    pub fn new(splay_width: u8, start: &ObjectSetPosition) -> Self {
        CommitPosition {
            splay_width: u64::from(splay_width.max(1)),
            positions: start.object_positions.clone(),
        }
    }

    /// Records that `p`, the next entry in journal order, is durably applied.
    pub fn advance(&mut self, p: ObjectPosition) {
        let offset = p.object_number % self.splay_width;
        self.positions
            .retain(|q| q.object_number % self.splay_width != offset);
        self.positions.insert(0, p);
    }

    pub fn position(&self) -> ObjectSetPosition {
        ObjectSetPosition {
            object_positions: self.positions.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(object_number: u64, tag_tid: u64, entry_tid: u64) -> ObjectPosition {
        ObjectPosition {
            object_number,
            tag_tid,
            entry_tid,
        }
    }

    #[test]
    fn newest_per_offset_newest_first() {
        let mut c = CommitPosition::new(2, &ObjectSetPosition::default());
        for (o, e) in [(0, 0), (1, 1), (0, 2), (1, 3), (2, 4)] {
            c.advance(p(o, 1, e));
        }
        assert_eq!(c.position().object_positions, vec![p(2, 1, 4), p(1, 1, 3)]);
    }
}
