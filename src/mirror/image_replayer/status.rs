//! Image statuses in upstream's format, so `rbd mirror image status` and `rbd mirror pool
//! status --verbose` read them as rbd-mirror's: state words, and while replaying the
//! description `replaying, {"bytes_per_second":…,"entries_behind_primary":…,
//! "entries_per_second":…,"non_primary_position":{…},"primary_position":{…}}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::PoolCtx;
use crate::cls::journal as cls_journal;
use crate::cls::{self, ClsError};
use crate::format::client_data::IMAGE_CLIENT_ID;
use crate::format::codec::UTime;
use crate::format::journal::{ObjectSetPosition, header_oid};
use crate::format::mirror::{MirrorImageSiteStatus, MirrorImageStatusState};
use crate::mirror::registry::ReplayState;
use crate::rados::IoCtx;

pub async fn write<I: IoCtx>(
    io: &I,
    global_id: &str,
    state: ReplayState,
    description: &str,
) -> Result<(), ClsError> {
    let state = match state {
        ReplayState::StartingReplay => MirrorImageStatusState::StartingReplay,
        ReplayState::Syncing => MirrorImageStatusState::Syncing,
        ReplayState::Replaying => MirrorImageStatusState::Replaying,
        ReplayState::Stopped => MirrorImageStatusState::Stopped,
        ReplayState::Error => MirrorImageStatusState::Error,
        ReplayState::Unknown => MirrorImageStatusState::Unknown,
    };
    let status = MirrorImageSiteStatus {
        mirror_uuid: String::new(),
        state,
        description: description.to_string(),
        last_update: UTime::ZERO,
        up: true,
    };
    cls::mirror::image_status_set(io, global_id, &status).await
}

fn position_json(p: &ObjectSetPosition) -> serde_json::Value {
    match p.object_positions.first() {
        Some(p) => json!({
            "entry_tid": p.entry_tid, "object_number": p.object_number, "tag_tid": p.tag_tid,
        }),
        None => json!({}),
    }
}

/// The replaying description, and the entries behind in it; the primary's position is
/// librbd's own client's commit.
pub async fn replaying_description<I: IoCtx>(
    ctx: &PoolCtx<I>,
    remote_image_id: &str,
    ours: &ObjectSetPosition,
) -> (String, u64) {
    let header = header_oid(remote_image_id);
    let primary = cls_journal::get_client(&ctx.remote_io, &header, IMAGE_CLIENT_ID)
        .await
        .map(|c| c.commit_position)
        .unwrap_or_default();
    let behind = match (
        primary.object_positions.first(),
        ours.object_positions.first(),
    ) {
        (Some(p), Some(o)) if p.tag_tid == o.tag_tid => p.entry_tid.saturating_sub(o.entry_tid),
        (Some(p), None) => p.entry_tid + 1,
        _ => 0,
    };
    let body = json!({
        "entries_behind_primary": behind,
        "non_primary_position": position_json(ours),
        "primary_position": position_json(&primary),
    });
    (format!("replaying, {body}"), behind)
}

/// What the replayer last published; the status writer turns it into a status.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub state: ReplayState,
    pub description: String,
    /// While replaying: the newest applied entry (the description is built from it).
    pub committed: Option<ObjectSetPosition>,
}

/// Writes the image's status whenever the replayer publishes a change, at most once a
/// second while replaying (upstream: every 30 s), off the replay path; the last value is
/// always written. Ends when the replayer drops its sender.
pub async fn writer<I: IoCtx>(
    ctx: Arc<PoolCtx<I>>,
    global_id: String,
    remote_image_id: String,
    mut rx: watch::Receiver<Published>,
    entries_behind: Arc<AtomicU64>,
) {
    while rx.changed().await.is_ok() {
        let p = rx.borrow_and_update().clone();
        let description = match &p.committed {
            Some(pos) => {
                let (description, behind) =
                    replaying_description(&ctx, &remote_image_id, pos).await;
                entries_behind.store(behind, Ordering::Relaxed);
                description
            }
            None => p.description.clone(),
        };
        if let Err(e) = write(&ctx.local_io, &global_id, p.state, &description).await {
            tracing::debug!(%e, "writing image status");
        }
        if p.state == ReplayState::Replaying {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
