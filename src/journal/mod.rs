//! RBD journals at the RADOS level: the [`writer`] appends entries the way librbd's journal
//! recorder does (the embedded demo's primary, load generation, tests of the follower), and
//! the follower reads a remote journal in order (next step of issue 4).
//!
//! A journal is a header object `journal.<id>` (cls_journal omap: geometry, object sets,
//! clients with commit positions, tags) and data objects
//! `journal_data.<pool>.<id>.<n>` holding framed entries; see `format::journal`/`entry`.

pub mod follower;
pub mod player;
pub mod position;
pub mod reader;
pub mod writer;

use crate::cls::ClsError;
use crate::format::DecodeError;
use crate::rados::RadosError;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Cls(#[from] ClsError),
    #[error("{object}: {source}")]
    Decode { object: String, source: DecodeError },
    #[error("journal {journal}: our client {client} was disconnected by the primary")]
    Disconnected { journal: String, client: String },
    #[error("journal {journal}: {source}")]
    Play {
        journal: String,
        source: player::PlayError,
    },
    /// The header contradicts itself (e.g. an active set below the minimum set): nothing
    /// read by it can be placed in order.
    #[error("journal {journal}: impossible header: {reason}")]
    BadHeader { journal: String, reason: String },
    #[error("{object}: an entry of {len} bytes cannot fit objects of {max} bytes")]
    EntryTooLarge {
        object: String,
        len: usize,
        max: u64,
    },
}

impl From<RadosError> for JournalError {
    fn from(e: RadosError) -> Self {
        JournalError::Cls(ClsError::Rados(e))
    }
}

impl JournalError {
    pub fn is_transient(&self) -> bool {
        matches!(self, JournalError::Cls(e) if e.is_transient())
    }

    /// Bounded label for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            JournalError::Cls(e) => e.code(),
            JournalError::Decode { source, .. } => source.code(),
            JournalError::EntryTooLarge { .. } => "entry_too_large",
            JournalError::Play {
                source: player::PlayError::Decode { source, .. },
                ..
            } => source.code(),
            JournalError::Play {
                source: player::PlayError::Gap { .. },
                ..
            } => "gap",
            JournalError::Play {
                source: player::PlayError::Truncated { .. },
                ..
            } => "truncated",
            JournalError::Play {
                source: player::PlayError::EmptySet { .. },
                ..
            } => "bad_header",
            JournalError::BadHeader { .. } => "bad_header",
            JournalError::Disconnected { .. } => "disconnected",
        }
    }
}
