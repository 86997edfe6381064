//! REPLAY_PREFIX: the daemon's own reader and replay, run over the primary's journal from
//! its first entry up to a commit position, into an image of the caller's choosing. What
//! `rbd-relay check-prefix` builds its reference from (an image on the embedded backend).
//!
//! ```text
//!  OPEN_READER at the journal's start (no client: nothing is registered or committed)
//!    |
//!  READ a batch --(caught up before the position)--> Err(Corrupt): the entry is gone
//!    |          --(an entry past the position, never the position itself)--> Err(Corrupt)
//!  APPLY with `Replay` (the same barriers, ops and tag mirroring as the daemon), until the
//!    |  entry at the position is applied
//!    v
//!  Ok(entries applied)
//! ```
//! Being the daemon's code, a reference built this way cannot catch a bug in how an event
//! is applied (the same bug is in both): what the comparison proves is the rest, that the
//! secondary got every entry up to its commit position, in order, once, and no entry past
//! it (transport, ordering, batching, commit logic).

use crate::format::entry::Entry;
use crate::format::journal::{ObjectPosition, ObjectSetPosition};
use crate::journal::reader::JournalReader;
use crate::rados::IoCtx;
use crate::rbd::Image;

use super::ReplayError;
use super::replay::{Applied, Epochs, Replay};

/// Entries read and applied at a time.
const BATCH: usize = 256;
/// Writes applied concurrently (as the daemon's default).
const IN_FLIGHT: usize = 16;

/// Replays the primary's journal `remote_image_id` from its start through the entry at
/// `until` (the newest entry of a commit position) into `image`, whose journal records
/// the epochs in tag class `local_tag_class`. Returns how many entries were applied.
pub async fn replay_prefix<R: IoCtx, I: IoCtx>(
    epochs: &Epochs<'_, R>,
    remote_image_id: &str,
    until: &ObjectPosition,
    image: &mut Image<I>,
    local_tag_class: u64,
) -> Result<u64, ReplayError> {
    let start = ObjectSetPosition::default();
    let mut reader = JournalReader::open(epochs.remote_io.clone(), remote_image_id, &start).await?;
    let mut replay = Replay::new(local_tag_class, IN_FLIGHT);
    let mut applied = Applied::default();
    loop {
        let mut batch = reader.read(BATCH, usize::MAX).await?;
        let end = batch
            .iter()
            .position(|(_, p)| (p.tag_tid, p.entry_tid) == (until.tag_tid, until.entry_tid));
        if let Some(i) = end {
            batch.truncate(i + 1);
        } else if let Some((_, p)) = batch.iter().find(|(_, p)| past(p, until)) {
            return Err(missing(until, &format!("play went on to {}", describe(p))));
        } else if batch.is_empty() {
            return Err(missing(until, "the journal ends before it"));
        }
        apply_all(
            &mut replay,
            epochs,
            remote_image_id,
            image,
            batch,
            &mut applied,
        )
        .await?;
        if end.is_some() {
            return Ok(applied.entries);
        }
    }
}

/// Applies a whole batch: the daemon commits before each op (`rest`); here nothing is
/// committed, so the rest follows at once.
async fn apply_all<R: IoCtx, I: IoCtx>(
    replay: &mut Replay,
    epochs: &Epochs<'_, R>,
    remote_image_id: &str,
    image: &mut Image<I>,
    mut batch: Vec<(Entry, ObjectPosition)>,
    applied: &mut Applied,
) -> Result<(), ReplayError> {
    while !batch.is_empty() {
        batch = replay
            .apply(epochs, remote_image_id, image, batch, applied)
            .await?
            .rest;
    }
    Ok(())
}

/// Whether `p` comes after `until` in play order (the player plays tags oldest first).
fn past(p: &ObjectPosition, until: &ObjectPosition) -> bool {
    (p.tag_tid, p.entry_tid) > (until.tag_tid, until.entry_tid)
}

fn describe(p: &ObjectPosition) -> String {
    format!(
        "object {} tag {} entry {}",
        p.object_number, p.tag_tid, p.entry_tid
    )
}

fn missing(until: &ObjectPosition, why: &str) -> ReplayError {
    ReplayError::Corrupt {
        position: describe(until),
        reason: format!("the commit position's entry was never read: {why}"),
    }
}
