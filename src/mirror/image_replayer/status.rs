//! Image statuses in upstream's format, so `rbd mirror image status` and `rbd mirror pool
//! status --verbose` read them as rbd-mirror's: state words, and while replaying the
//! description `replaying, {"bytes_per_second":…,"entries_behind_primary":…,
//! "entries_per_second":…,"non_primary_position":{…},"primary_position":{…}}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{PoolCtx, REMOTE_GRACE};
use crate::cls::journal as cls_journal;
use crate::cls::{self, ClsError};
use crate::format::Decode;
use crate::format::client_data::{IMAGE_CLIENT_ID, LOCAL_MIRROR_UUID, ORPHAN_MIRROR_UUID, TagData};
use crate::format::codec::UTime;
use crate::format::journal::{ObjectPosition, ObjectSetPosition, header_oid};
use crate::format::mirror::{MirrorImageSiteStatus, MirrorImageStatusState};
use crate::journal::follower::{FollowerStats, watch_alive};
use crate::mirror::registry::ReplayState;
use crate::rados::{Errno, IoCtx, RadosError, RadosOp};

/// See [`writer`]: how often an idle replaying image's status is looked at.
pub const IDLE_REFRESH: Duration = Duration::from_secs(5);

/// An idle status is written again at least this often, so its `last_update` stays as
/// fresh as upstream's (rbd-mirror writes every 30 s).
const IDLE_REWRITE: Duration = Duration::from_secs(30);

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
/// librbd's own client's commit. A primary that cannot be read within [`REMOTE_GRACE`]
/// keeps its last known position (so the count is a lower bound, not a false "caught up"),
/// and the description says since when it is unreachable.
pub async fn replaying_description<I: IoCtx>(
    ctx: &PoolCtx<I>,
    remote_image_id: &str,
    ours: &ObjectSetPosition,
    tags: &mut TagChain,
    primary: &mut PrimarySeen,
) -> (String, u64) {
    let header = header_oid(remote_image_id);
    let read = cls_journal::get_client(&ctx.remote_io, &header, IMAGE_CLIENT_ID);
    let errno = match tokio::time::timeout(REMOTE_GRACE, read).await {
        Ok(Ok(client)) => {
            primary.position = client.commit_position;
            None
        }
        // No librbd client (yet): nothing committed, as upstream shows it.
        Ok(Err(e)) if e.is_not_found() => {
            primary.position = ObjectSetPosition::default();
            None
        }
        Ok(Err(e)) => Some(e.errno().unwrap_or(Errno::EIO)),
        // Counted as the call's failure: the OSD op timeout would take 30 s to say so.
        Err(_) => Some(RadosError::new(RadosOp::Exec, &header, Errno::ETIMEDOUT).errno),
    };
    let theirs = primary.position.object_positions.first();
    let behind = match errno {
        None => {
            primary.unreachable_since = None;
            tags.entries_behind(
                &ctx.remote_io,
                &header,
                theirs,
                ours.object_positions.first(),
            )
            .await
        }
        // No further remote reads: what the known tags give.
        Some(_) => tags.known_behind(theirs, ours.object_positions.first()),
    };
    let mut body = json!({
        "entries_behind_primary": behind,
        "non_primary_position": position_json(ours),
        "primary_position": position_json(&primary.position),
    });
    if let Some(errno) = errno {
        let since = *primary.unreachable_since.get_or_insert_with(Instant::now);
        body["primary_unreachable"] = json!(format!("{errno} for {} s", since.elapsed().as_secs()));
    }
    (format!("replaying, {body}"), behind)
}

/// The primary's position as last read, and since when it cannot be read.
#[derive(Debug, Default)]
pub struct PrimarySeen {
    position: ObjectSetPosition,
    unreachable_since: Option<Instant>,
}

/// The primary journal's tags between our position and the primary's, each mapped to its
/// predecessor (the last entry of the epoch before it), so entries behind count across a
/// librbd restart or a promotion, which start a new tag whose entry tids begin at 0 again
/// (upstream: rbd-mirror's `ReplayStatusFormatter`). `None`: the chain ends there (the
/// epoch before was replayed from another site, had no committed entry, or its tag is
/// gone). Tags never change, so they are read once; the ones below our position are
/// dropped as it passes them.
#[derive(Debug, Default)]
pub struct TagChain {
    predecessors: HashMap<u64, Option<ObjectPosition>>,
}

/// One walk down the chain: the count, or the tag to read first (with the count so far).
#[derive(Debug, PartialEq)]
enum Walk {
    Done(u64),
    Need { tag_tid: u64, so_far: u64 },
}

impl TagChain {
    /// Entries the primary committed that we have not: all of each newer epoch (its entry
    /// tids start at 0, so one more than upstream's count per epoch crossed), then the rest
    /// of ours. A tag that cannot be read now leaves the count so far, a lower bound.
    async fn entries_behind<I: IoCtx>(
        &mut self,
        io: &I,
        header: &str,
        primary: Option<&ObjectPosition>,
        ours: Option<&ObjectPosition>,
    ) -> u64 {
        if let Some(o) = ours {
            self.predecessors.retain(|&tid, _| tid > o.tag_tid);
        }
        loop {
            let (tag_tid, so_far) = match self.walk(primary, ours) {
                Walk::Done(n) => return n,
                Walk::Need { tag_tid, so_far } => (tag_tid, so_far),
            };
            let predecessor = match cls_journal::get_tag(io, header, tag_tid).await {
                Ok(tag) => TagData::from_bytes(tag.data)
                    .ok()
                    .and_then(local_predecessor),
                Err(e) if e.is(Errno::ENOENT) => None,
                Err(e) => {
                    tracing::debug!(%e, tag_tid, "reading a tag for entries behind");
                    return so_far;
                }
            };
            self.predecessors.insert(tag_tid, predecessor);
        }
    }

    /// The count from the tags already read: a lower bound when one is missing.
    fn known_behind(&self, primary: Option<&ObjectPosition>, ours: Option<&ObjectPosition>) -> u64 {
        match self.walk(primary, ours) {
            Walk::Done(n) | Walk::Need { so_far: n, .. } => n,
        }
    }

    fn walk(&self, primary: Option<&ObjectPosition>, ours: Option<&ObjectPosition>) -> Walk {
        let Some(mut at) = primary.cloned() else {
            return Walk::Done(0);
        };
        let mut behind = 0;
        loop {
            match ours {
                Some(o) if at.tag_tid < o.tag_tid => return Walk::Done(behind),
                Some(o) if at.tag_tid == o.tag_tid => {
                    return Walk::Done(behind + at.entry_tid.saturating_sub(o.entry_tid));
                }
                _ => {}
            }
            behind += at.entry_tid + 1;
            match self.predecessors.get(&at.tag_tid) {
                None => {
                    return Walk::Need {
                        tag_tid: at.tag_tid,
                        so_far: behind,
                    };
                }
                Some(None) => return Walk::Done(behind),
                Some(Some(p)) => at = p.clone(),
            }
        }
    }
}

/// Where the epoch before this tag ended, if its entries are the primary's own (owned here
/// or demoted) rather than replayed from another site.
fn local_predecessor(tag: TagData) -> Option<ObjectPosition> {
    let p = tag.predecessor;
    let own = p.mirror_uuid == LOCAL_MIRROR_UUID || p.mirror_uuid == ORPHAN_MIRROR_UUID;
    (own && p.commit_valid).then_some(ObjectPosition {
        object_number: 0,
        tag_tid: p.tag_tid,
        entry_tid: p.entry_tid,
    })
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
/// second while replaying or syncing (upstream: every 30 s), off the replay path; the last
/// value is always written. While replaying with nothing new it looks again every
/// `idle_refresh` ([`IDLE_REFRESH`]), since an idle replayer publishes nothing: when the
/// follower's journal watch is not confirmed alive (the primary may be gone: the status
/// must say so) or a notification came (the primary committed: its position moved), it
/// reads the primary's position again; otherwise it reads nothing and only rewrites the
/// status every [`IDLE_REWRITE`]. Ends when the replayer drops its sender, or at once when
/// the image was handed over to another instance (whose statuses must not be overwritten by
/// ours).
#[allow(clippy::too_many_arguments)]
pub async fn writer<I: IoCtx>(
    ctx: Arc<PoolCtx<I>>,
    global_id: String,
    remote_image_id: String,
    mut rx: watch::Receiver<Published>,
    entries_behind: Arc<AtomicU64>,
    handed_over: CancellationToken,
    follower: Arc<FollowerStats>,
    idle_refresh: Duration,
) {
    let mut tags = TagChain::default();
    let mut primary = PrimarySeen::default();
    let mut replaying = false;
    // A change arrived while the last write's figures were being held back: write at once.
    let mut pending = false;
    // The replaying description last written, when, and the follower's notification count
    // then.
    let mut last = (String::new(), Instant::now(), 0);
    loop {
        let mut idle = false;
        if !pending {
            tokio::select! {
                _ = handed_over.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(idle_refresh), if replaying => idle = true,
            }
        }
        let p = rx.borrow_and_update().clone();
        replaying = p.committed.is_some();
        let notified = follower.notifications.load(Ordering::Relaxed);
        let description = match &p.committed {
            Some(_)
                if idle && notified == last.2 && watch_alive(&ctx.remote_io, &follower).await =>
            {
                if last.1.elapsed() < IDLE_REWRITE {
                    continue;
                }
                last.0.clone()
            }
            Some(pos) => {
                let (description, behind) =
                    replaying_description(&ctx, &remote_image_id, pos, &mut tags, &mut primary)
                        .await;
                entries_behind.store(behind, Ordering::Relaxed);
                description
            }
            None => p.description.clone(),
        };
        if let Err(e) = write(&ctx.local_io, &global_id, p.state, &description).await {
            tracing::debug!(%e, "writing image status");
        }
        last = (description, Instant::now(), notified);
        // Sync progress and replay figures at most once a second; a new state at once (a
        // sync's end showed as `replaying` up to a second late).
        pending = false;
        if matches!(p.state, ReplayState::Replaying | ReplayState::Syncing) {
            let until = Instant::now() + Duration::from_secs(1);
            loop {
                tokio::select! {
                    _ = handed_over.cancelled() => return,
                    _ = tokio::time::sleep_until(until) => break,
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        pending = true;
                        if rx.borrow().state != p.state {
                            break;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Encode;
    use crate::format::client_data::test_tag;
    use crate::format::journal::TAG_CLASS_NEW;

    fn pos(tag_tid: u64, entry_tid: u64) -> ObjectPosition {
        ObjectPosition {
            object_number: 0,
            tag_tid,
            entry_tid,
        }
    }

    /// A chain where each `(tag, predecessor)` is known.
    fn chain(links: &[(u64, Option<(u64, u64)>)]) -> TagChain {
        let links = links
            .iter()
            .map(|&(t, p)| (t, p.map(|(pt, pe)| pos(pt, pe))));
        TagChain {
            predecessors: links.collect(),
        }
    }

    fn walk(c: &TagChain, primary: Option<(u64, u64)>, ours: Option<(u64, u64)>) -> Walk {
        let (p, o) = (
            primary.map(|(t, e)| pos(t, e)),
            ours.map(|(t, e)| pos(t, e)),
        );
        c.walk(p.as_ref(), o.as_ref())
    }

    #[test]
    fn same_tag_counts_the_gap_and_never_goes_negative() {
        let c = TagChain::default();
        assert_eq!(walk(&c, Some((3, 10)), Some((3, 4))), Walk::Done(6));
        assert_eq!(walk(&c, Some((3, 4)), Some((3, 10))), Walk::Done(0));
        assert_eq!(walk(&c, None, Some((3, 4))), Walk::Done(0));
        assert_eq!(walk(&c, Some((2, 9)), Some((3, 0))), Walk::Done(0));
    }

    #[test]
    fn a_newer_tag_is_read_before_counting_across_it() {
        let c = TagChain::default();
        let need = Walk::Need {
            tag_tid: 4,
            so_far: 3,
        };
        assert_eq!(walk(&c, Some((4, 2)), Some((3, 1))), need);
    }

    /// librbd restarted twice: tag 3 ended at entry 9, tag 4 at entry 5, tag 5 has 0..=2.
    #[test]
    fn counts_every_entry_of_each_newer_epoch_and_the_rest_of_ours() {
        let c = chain(&[(5, Some((4, 5))), (4, Some((3, 9)))]);
        assert_eq!(walk(&c, Some((5, 2)), Some((3, 7))), Walk::Done(3 + 6 + 2));
        assert_eq!(walk(&c, Some((5, 2)), Some((4, 5))), Walk::Done(3));
        assert_eq!(walk(&c, Some((5, 0)), Some((4, 5))), Walk::Done(1));
        // Nothing committed by us yet: the whole chain.
        let c = chain(&[(5, Some((4, 5))), (4, None)]);
        assert_eq!(walk(&c, Some((5, 2)), None), Walk::Done(3 + 6));
    }

    #[test]
    fn the_chain_ends_where_the_epoch_before_is_not_the_primarys_own() {
        let c = chain(&[(5, None)]);
        assert_eq!(walk(&c, Some((5, 2)), Some((3, 7))), Walk::Done(3));
        assert_eq!(local_predecessor(test_tag("", "", 4)), Some(pos(4, 7)));
        let demoted = test_tag("", ORPHAN_MIRROR_UUID, 4);
        assert_eq!(local_predecessor(demoted), Some(pos(4, 7)));
        assert_eq!(local_predecessor(test_tag("", "site-b-uuid", 4)), None);
        let mut uncommitted = test_tag("", "", 4);
        uncommitted.predecessor.commit_valid = false;
        assert_eq!(local_predecessor(uncommitted), None);
    }

    type FaultyIo = crate::rados::faults::FaultyIoCtx<crate::rados::memory::MemoryIoCtx>;

    /// A primary journal "img" whose librbd client committed entry 9 of tag 0, on a
    /// connection with a fault plan (also the local pool here).
    async fn primary_at_9() -> (crate::rados::faults::Faults, Arc<PoolCtx<FaultyIo>>) {
        use crate::rados::Rados;
        use crate::rados::faults::{Faults, FaultyRados};
        let header = header_oid("img");
        let cluster = crate::rados::memory::MemoryCluster::default();
        cluster.create_pool("rbd").unwrap();
        let faults = Faults::new(1);
        let remote = FaultyRados::new(cluster.connect(), faults.clone());
        let io = remote.ioctx("rbd").await.unwrap();
        let geometry = cls_journal::Geometry {
            order: 24,
            splay_width: 4,
            pool_id: -1,
        };
        cls_journal::create(&io, &header, geometry).await.unwrap();
        let mut tag = test_tag("", "", 0);
        tag.predecessor.commit_valid = false;
        cls_journal::allocate_tag(&io, &header, TAG_CLASS_NEW, tag.to_bytes())
            .await
            .unwrap();
        cls_journal::client_register(&io, &header, IMAGE_CLIENT_ID, bytes::Bytes::new())
            .await
            .unwrap();
        cls_journal::client_commit(&io, &header, IMAGE_CLIENT_ID, at(9))
            .await
            .unwrap();
        let ctx = PoolCtx {
            pool: "rbd".into(),
            namespace: String::new(),
            peer: "site-a".into(),
            local_io: io.clone(),
            remote_io: io,
            remote_fence: Arc::new(remote.clone()),
            remote_addr: remote.client_addr(),
            local_uuid: "local".into(),
            remote_uuid: "remote".into(),
        };
        (faults, Arc::new(ctx))
    }

    fn at(entry_tid: u64) -> ObjectSetPosition {
        ObjectSetPosition {
            object_positions: vec![pos(0, entry_tid)],
        }
    }

    /// The primary's journal header answers none of its next `times` cls calls.
    fn primary_fails(faults: &crate::rados::faults::Faults, times: u32) {
        faults.fail(crate::rados::faults::OpFault {
            op: RadosOp::Exec,
            object_prefix: header_oid("img"),
            errno: Errno::ETIMEDOUT,
            skip: 0,
            times,
        });
    }

    /// The status writer of image "img" (global id "gid") on `ctx`.
    fn spawn_writer(
        ctx: &Arc<PoolCtx<FaultyIo>>,
        rx: watch::Receiver<Published>,
        behind: Arc<AtomicU64>,
        stop: &CancellationToken,
        follower: Arc<FollowerStats>,
        refresh: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let (gid, img) = ("gid".into(), "img".into());
        tokio::spawn(writer(
            ctx.clone(),
            gid,
            img,
            rx,
            behind,
            stop.clone(),
            follower,
            refresh,
        ))
    }

    /// A primary that stops answering keeps its last known position in the status (not
    /// "0 behind, position {}"), says since when, and clears once it answers again.
    #[tokio::test]
    async fn an_unreachable_primary_keeps_its_last_position_and_is_shown() {
        let (faults, ctx) = primary_at_9().await;
        let (mut tags, mut primary) = (TagChain::default(), PrimarySeen::default());
        let ours = at(4);
        let (d, behind) = replaying_description(&ctx, "img", &ours, &mut tags, &mut primary).await;
        assert_eq!(behind, 5);
        assert!(!d.contains("primary_unreachable"), "{d}");
        primary_fails(&faults, 1);
        let (d, behind) = replaying_description(&ctx, "img", &ours, &mut tags, &mut primary).await;
        assert_eq!(faults.injected(), 1);
        assert_eq!(behind, 5, "the last known position still counts");
        assert!(d.contains(r#""primary_position":{"entry_tid":9"#), "{d}");
        assert!(
            d.contains(r#""primary_unreachable":"ETIMEDOUT (110) for 0 s""#),
            "{d}"
        );
        let (d, behind) = replaying_description(&ctx, "img", &ours, &mut tags, &mut primary).await;
        assert_eq!(behind, 5);
        assert!(!d.contains("primary_unreachable"), "{d}");
    }

    /// An idle replayer publishes nothing: the writer looks at the primary again by itself,
    /// so the status shows the primary gone (and back) without a new publish.
    #[tokio::test]
    async fn an_idle_image_status_shows_the_primary_going_and_coming_back() {
        let refresh = Duration::from_millis(100);
        use crate::format::mirror::{MirrorImage, MirrorImageMode, MirrorImageState, MirrorMode};
        let (faults, ctx) = primary_at_9().await;
        // Statuses are kept for mirrored images only.
        cls::mirror::uuid_set(&ctx.local_io, "local").await.unwrap();
        cls::mirror::mode_set(&ctx.local_io, MirrorMode::Image)
            .await
            .unwrap();
        let image = MirrorImage {
            global_image_id: "gid".into(),
            state: MirrorImageState::Enabled,
            mode: MirrorImageMode::Journal,
        };
        cls::mirror::image_set(&ctx.local_io, "img", &image)
            .await
            .unwrap();
        let (tx, rx) = watch::channel(Published {
            state: ReplayState::Replaying,
            description: String::new(),
            committed: None,
        });
        let behind = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let task = spawn_writer(&ctx, rx, behind.clone(), &stop, Default::default(), refresh);
        let description = async || {
            let status = cls::mirror::image_status_get(&ctx.local_io, "gid")
                .await
                .unwrap();
            status.local.unwrap().description
        };
        tx.send_replace(Published {
            state: ReplayState::Replaying,
            description: String::new(),
            committed: Some(at(4)),
        });
        tokio::time::sleep(refresh).await;
        assert!(!description().await.contains("primary_unreachable"));
        primary_fails(&faults, 1_000_000);
        // Past the 1 s pause after each write, and one refresh.
        tokio::time::sleep(Duration::from_secs(1) + 3 * refresh).await;
        let d = description().await;
        assert!(d.contains("primary_unreachable"), "{d}");
        assert_eq!(behind.load(Ordering::Relaxed), 5, "not a false 'caught up'");
        faults.clear();
        // Past the 1 s pause after each write, and one refresh.
        tokio::time::sleep(Duration::from_secs(1) + 3 * refresh).await;
        let d = description().await;
        assert!(!d.contains("primary_unreachable"), "{d}");
        stop.cancel();
        task.await.unwrap();
    }

    /// With the follower's journal watch alive and no notification, an idle status reads
    /// nothing of the primary (so a failing primary goes unseen); a notification makes the
    /// next look read it.
    #[tokio::test]
    async fn an_idle_status_reads_the_primary_only_when_notified_or_the_watch_is_not_alive() {
        let refresh = Duration::from_millis(50);
        let (faults, ctx) = primary_at_9().await;
        let follower = Arc::new(FollowerStats::default());
        let watch = ctx
            .remote_io
            .watch_with(&header_oid("img"), crate::rados::AckMode::Auto)
            .await
            .unwrap();
        follower.watch.store(watch.cookie, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Published {
            state: ReplayState::StartingReplay,
            description: String::new(),
            committed: None,
        });
        let stop = CancellationToken::new();
        let task = spawn_writer(
            &ctx,
            rx,
            Default::default(),
            &stop,
            follower.clone(),
            refresh,
        );
        // The first write (a publish) reads the primary; then idle looks read nothing.
        tx.send_replace(Published {
            state: ReplayState::Replaying,
            description: String::new(),
            committed: Some(at(4)),
        });
        tokio::time::sleep(Duration::from_secs(1) + 2 * refresh).await;
        primary_fails(&faults, 1_000_000);
        tokio::time::sleep(10 * refresh).await;
        assert_eq!(faults.injected(), 0, "an idle look read the primary");
        follower.notifications.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(3 * refresh).await;
        assert!(
            faults.injected() > 0,
            "a notification made no look read the primary"
        );
        // The watch gone: every look reads.
        follower.watch.store(0, Ordering::Relaxed);
        let before = faults.injected();
        tokio::time::sleep(Duration::from_secs(1) + 3 * refresh).await;
        assert!(faults.injected() > before);
        stop.cancel();
        task.await.unwrap();
    }

    /// Tags come from the primary's journal, are read once, and are dropped once our
    /// position passes them.
    #[tokio::test]
    async fn reads_missing_tags_from_the_journal_once() {
        let header = header_oid("img");
        let io = cls_journal::test_journal(&header).await;
        // A client with no commit position yet keeps every tag from expiring.
        cls_journal::client_register(&io, &header, "ours", bytes::Bytes::new())
            .await
            .unwrap();
        let mut first = test_tag("", "", 0);
        first.predecessor.commit_valid = false;
        let tags = [first, test_tag("", "", 0), test_tag("", "", 1)];
        for (class, tag) in [TAG_CLASS_NEW, 0, 0].into_iter().zip(tags) {
            cls_journal::allocate_tag(&io, &header, class, tag.to_bytes())
                .await
                .unwrap();
        }
        let mut tags = TagChain::default();
        let (primary, ours) = (pos(2, 2), pos(0, 5));
        let behind = tags.entries_behind(&io, &header, Some(&primary), Some(&ours));
        assert_eq!(behind.await, 3 + 8 + 2);
        assert_eq!(tags.predecessors.len(), 2);
        let ours = pos(1, 7);
        let behind = tags.entries_behind(&io, &header, Some(&primary), Some(&ours));
        assert_eq!(behind.await, 3);
        assert_eq!(tags.predecessors.keys().collect::<Vec<_>>(), [&2]);
    }
}
