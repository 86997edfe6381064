//! `rbd-relay promote --wait-caught-up`: a planned failover that proves nothing is lost,
//! run on the secondary site. Upstream has no such helper: an operator demotes the primary,
//! watches `rbd mirror image status` until the secondary looks idle, then promotes.
//!
//! ```text
//!  FIND_LOCAL (name -> image id, global id, newest local tag)
//!    |
//!  CONNECT_PEER (the pool's one rx peer, found as the daemon finds it; <= PEER_GRACE)
//!    |--(unreachable, --force)--> PROMOTE_LOCAL (forced) --> Ok(Forced)
//!    |--(unreachable)--> Err(PeerUnreachable)                        nothing changed
//!  FIND_REMOTE (global id -> remote image id, newest remote tag) --> judge
//!    |--(local primary)--> remote not primary: Ok(AlreadyPrimary); else Err(Refused)
//!    |--(histories not linked)--> Err(Refused)                       nothing changed
//!    |--(remote primary)--> DEMOTE_REMOTE (librbd) --\
//!    |--(remote demoted)------------------------------+
//!    |                                                v
//!    |   WAIT_CAUGHT_UP: local newest tag == the remote's demotion tag as we mirror it
//!    |     |--(timeout or error, we demoted)--> PROMOTE_REMOTE (restore) --> Err(TimedOut)
//!    |--(remote follows us: we demoted last)----------+
//!    v                                                v
//!  PROMOTE_LOCAL (librbd, not forced: librbd itself allows it only on an orphan) --> Ok
//! ```
//! Why the tag proves it: the daemon records each remote epoch in the local journal only
//! after applying everything before it (`replay::mirrored_tag`), and a demotion is the
//! primary's last epoch, so a local newest tag equal to the mirrored demotion means the
//! copy holds every write the primary acknowledged. librbd's demote asks a live writer for
//! the exclusive lock (the writer's in-flight writes are journaled before it lets go).
//! The wait watches the local journal header (the daemon notifies it on each new tag) and
//! re-reads every [`RECHECK`] in case a notification is lost.

use std::time::Duration;

use tokio::time::Instant;

use crate::ceph_conf::LibradosConnector;
use crate::cls::{self, ClsError};
use crate::format::client_data::{LOCAL_MIRROR_UUID, TagData};
use crate::format::journal::header_oid;
use crate::format::mirror::{MirrorImageMode, MirrorImageState};
use crate::mirror::image_replayer::{ReplayError, mirrored_tag, newest_tag};
use crate::mirror::peer::{Connector, PeerSite, pool_peers};
use crate::rados::librados::{LibradosCluster, LibradosIoCtx};
use crate::rados::{AckMode, IoCtx, Rados, RadosError, WatchEvent};

/// Reaching the peer and reading its image: an unreachable peer fails within this.
pub const PEER_GRACE: Duration = Duration::from_secs(15);

/// Backstop re-read of the local journal while waiting, should a notification be lost.
const RECHECK: Duration = Duration::from_secs(5);

pub struct PromoteArgs {
    pub pool: String,
    pub image: String,
    /// How long to wait for the local copy to replay up to the demotion.
    pub timeout: Duration,
    /// With the peer unreachable: promote anyway (forced), losing what was not replayed.
    pub force: bool,
}

/// How a promotion ended well.
#[derive(Debug)]
pub enum Promoted {
    /// Proven caught up, then promoted; `waited` from the start of WAIT_CAUGHT_UP.
    CaughtUp {
        demoted_peer: bool,
        waited: Duration,
    },
    /// Already primary here and the peer is not: a rerun after success.
    AlreadyPrimary,
    /// Forced with the peer unreachable.
    Forced { peer: String },
}

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("cannot prove zero loss; nothing changed: {0}")]
    Refused(String),
    #[error(
        "peer {peer} unreachable ({reason}); nothing changed. `--force` promotes anyway, \
         losing the writes this copy had not replayed yet"
    )]
    PeerUnreachable { peer: String, reason: String },
    #[error("could not finish ({reason}); {peer} was promoted again, as before")]
    Restored { peer: String, reason: String },
    #[error(
        "could not finish ({reason}), and promoting {peer} \
         again failed ({error}): NO SITE IS PRIMARY. `rbd mirror image promote` on {peer} \
         restores the previous state"
    )]
    NotRestored {
        peer: String,
        reason: String,
        error: RadosError,
    },
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Rados(#[from] RadosError),
    #[error(transparent)]
    Cls(#[from] ClsError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

impl PromoteError {
    /// The documented exit status (README "Failover and failback"): 3 refused, nothing
    /// changed; 4 timed out, previous state restored; 5 timed out, no primary; 1 other.
    pub fn exit_code(&self) -> i32 {
        match self {
            PromoteError::Refused(_) | PromoteError::PeerUnreachable { .. } => 3,
            PromoteError::Restored { .. } => 4,
            PromoteError::NotRestored { .. } => 5,
            _ => 1,
        }
    }
}

/// What the two newest tags allow.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    AlreadyPrimary,
    DemotePeer,
    /// The peer is demoted: wait until the local newest tag is this one.
    WaitFor(TagData),
    /// We were the last primary and demoted ourselves: everything is here.
    CaughtUp,
    Refuse(String),
}

fn judge(local: &TagData, remote: &TagData, local_uuid: &str, remote_uuid: &str) -> Verdict {
    if local.is_local() {
        return if remote.is_local() {
            Verdict::Refuse("both images are primary (split-brain); resync one of them".into())
        } else {
            Verdict::AlreadyPrimary
        };
    }
    if remote.is_local() {
        return Verdict::DemotePeer;
    }
    let ours_last = local.is_orphan() && local.predecessor.mirror_uuid == LOCAL_MIRROR_UUID;
    if remote.is_orphan() {
        let want = mirrored_tag(remote.clone(), local_uuid, remote_uuid);
        // Still following the peer, or demoted at an earlier epoch of it: the daemon
        // catches up (the wait times out otherwise).
        if local.is_orphan() || local.mirror_uuid == remote_uuid {
            return Verdict::WaitFor(want);
        }
    } else if remote.mirror_uuid == local_uuid && ours_last {
        return Verdict::CaughtUp;
    }
    Verdict::Refuse(format!(
        "the local copy (newest tag {local:?}) does not follow the peer's image (newest tag \
         {remote:?})"
    ))
}

/// The peer side, once reached.
struct Remote {
    site: String,
    io: LibradosIoCtx,
    image_id: String,
    tag: TagData,
    uuid: String,
}

pub async fn promote(
    local: &LibradosCluster,
    args: &PromoteArgs,
) -> Result<Promoted, PromoteError> {
    // FIND_LOCAL
    let io = local.ioctx(&args.pool).await?;
    let spec = format!("{}/{}", args.pool, args.image);
    let image_id = match cls::dir::get_id(&io, &args.image).await {
        Err(e) if e.is_not_found() => return Err(PromoteError::Setup(format!("no image {spec}"))),
        other => other?,
    };
    let mirror = match cls::mirror::image_get(&io, &image_id).await {
        Err(e) if e.is_not_found() => None,
        other => Some(other?),
    };
    let Some(mirror) = mirror
        .filter(|m| m.state == MirrorImageState::Enabled && m.mode == MirrorImageMode::Journal)
    else {
        return Err(PromoteError::Setup(format!(
            "{spec} is not journal-mirrored"
        )));
    };
    let header = header_oid(&image_id);
    let local_tag = newest_tag(&io, &header).await?;
    let local_uuid = cls::mirror::uuid_get(&io).await?;
    let pool_id = local.pool_lookup(&args.pool).await?;
    let peer = match pool_peers(local, pool_id, &io).await?.as_slice() {
        [peer] => peer.clone(),
        [] => {
            return Err(PromoteError::Setup(format!(
                "pool {} has no rx peer",
                args.pool
            )));
        }
        _ => {
            return Err(PromoteError::Setup(format!(
                "pool {} has several rx peers; promote with the rbd CLI",
                args.pool
            )));
        }
    };
    // CONNECT_PEER + FIND_REMOTE
    let reached = tokio::time::timeout(
        PEER_GRACE,
        find_remote(&peer, &args.pool, &mirror.global_image_id),
    )
    .await;
    let remote = match reached {
        Ok(Ok(remote)) => remote,
        Ok(Err(e @ (PromoteError::Refused(_) | PromoteError::Setup(_)))) => return Err(e),
        unreachable => {
            let reason = match unreachable {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {PEER_GRACE:?}"),
            };
            if local_tag.is_local() {
                return Err(PromoteError::Refused(format!(
                    "{spec} is already primary here, and whether {} is primary too cannot \
                     be checked: {reason}",
                    peer.site_name
                )));
            }
            if !args.force {
                return Err(PromoteError::PeerUnreachable {
                    peer: peer.site_name,
                    reason,
                });
            }
            tracing::warn!(peer = %peer.site_name, %reason, image = %spec,
                "peer unreachable: promoting by force");
            io.mirror_image_promote(&image_id, true).await?;
            return Ok(Promoted::Forced {
                peer: peer.site_name,
            });
        }
    };
    // judge
    let (want, demoted_peer) = match judge(&local_tag, &remote.tag, &local_uuid, &remote.uuid) {
        Verdict::AlreadyPrimary => return Ok(Promoted::AlreadyPrimary),
        Verdict::Refuse(why) => return Err(PromoteError::Refused(why)),
        Verdict::CaughtUp => (None, false),
        Verdict::WaitFor(want) => (Some(want), false),
        Verdict::DemotePeer => {
            tracing::info!(peer = %remote.site, image = %spec, "demoting the peer's image");
            remote.io.mirror_image_demote(&remote.image_id).await?;
            let demotion = newest_tag(&remote.io, &header_oid(&remote.image_id)).await;
            match demotion {
                Ok(t) if t.is_orphan() => (Some(mirrored_tag(t, &local_uuid, &remote.uuid)), true),
                Ok(t) => {
                    let reason = format!("after the demotion the peer's newest tag is {t:?}");
                    return Err(restore(&remote, reason).await);
                }
                Err(e) => return Err(restore(&remote, e.to_string()).await),
            }
        }
    };
    // WAIT_CAUGHT_UP
    let started = Instant::now();
    if let Some(want) = want {
        tracing::info!(image = %spec, timeout = ?args.timeout, "waiting for the local copy to replay up to the demotion");
        let reason = match wait_caught_up(&io, &header, &want, args.timeout).await {
            Ok(true) => None,
            Ok(false) => Some(format!("not caught up within {:?}", args.timeout)),
            Err(e) => Some(e.to_string()),
        };
        if let Some(reason) = reason {
            return Err(if demoted_peer {
                restore(&remote, reason).await
            } else {
                PromoteError::Refused(format!(
                    "the local copy did not reach the peer's demotion ({reason})"
                ))
            });
        }
    }
    let waited = started.elapsed();
    // PROMOTE_LOCAL
    if let Err(e) = io.mirror_image_promote(&image_id, false).await {
        return Err(if demoted_peer {
            restore(&remote, format!("promoting here failed: {e}")).await
        } else {
            e.into()
        });
    }
    Ok(Promoted::CaughtUp {
        demoted_peer,
        waited,
    })
}

async fn find_remote(peer: &PeerSite, pool: &str, global_id: &str) -> Result<Remote, PromoteError> {
    let cluster = LibradosConnector.connect(peer).await?;
    let io = cluster.ioctx(pool).await?;
    let image_id = match cls::mirror::image_get_image_id(&io, global_id).await {
        Err(e) if e.is_not_found() => {
            return Err(PromoteError::Refused(format!(
                "{} has no image with global id {global_id}",
                peer.site_name
            )));
        }
        other => other?,
    };
    let tag = newest_tag(&io, &header_oid(&image_id)).await?;
    let uuid = cls::mirror::uuid_get(&io).await?;
    Ok(Remote {
        site: peer.site_name.clone(),
        io,
        image_id,
        tag,
        uuid,
    })
}

/// Puts the peer back as it was (primary), after we demoted it and could not finish.
async fn restore(remote: &Remote, reason: String) -> PromoteError {
    tracing::warn!(peer = %remote.site, %reason, "promoting the peer's image again");
    match remote
        .io
        .mirror_image_promote(&remote.image_id, false)
        .await
    {
        Ok(()) => PromoteError::Restored {
            peer: remote.site.clone(),
            reason,
        },
        Err(error) => PromoteError::NotRestored {
            peer: remote.site.clone(),
            reason,
            error,
        },
    }
}

/// Whether the newest tag of journal `header` became `want` within `timeout`. The header
/// watch is armed before each look, so a tag allocated in between still wakes us.
async fn wait_caught_up<I: IoCtx>(
    io: &I,
    header: &str,
    want: &TagData,
    timeout: Duration,
) -> Result<bool, ReplayError> {
    let deadline = Instant::now() + timeout;
    let mut watch = match io.watch_with(header, AckMode::Auto).await {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(%header, %e, "watching the local journal; re-reading every {RECHECK:?}");
            None
        }
    };
    let result = loop {
        match newest_tag(io, header).await {
            Ok(t) if t == *want => break Ok(true),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
        let changed = async {
            match watch.as_mut() {
                Some(w) => w.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break Ok(false),
            _ = tokio::time::sleep(RECHECK) => {}
            ev = changed => if !matches!(ev, Some(WatchEvent::Notify(_) | WatchEvent::Lagged)) {
                // A broken watch: the backstop re-read carries on alone.
                watch = None;
            },
        }
    };
    if let Some(w) = watch {
        let _ = io.unwatch(w.cookie).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Encode;
    use crate::format::client_data::{ORPHAN_MIRROR_UUID, test_tag as tag};
    use crate::format::journal::TAG_CLASS_NEW;

    const US: &str = "uuid-b";
    const THEM: &str = "uuid-a";

    #[test]
    fn judge_each_edge() {
        let primary = tag(LOCAL_MIRROR_UUID, ORPHAN_MIRROR_UUID, 0);
        let following = tag(THEM, ORPHAN_MIRROR_UUID, 0);
        let their_demotion = tag(ORPHAN_MIRROR_UUID, LOCAL_MIRROR_UUID, 4);
        let mirrored = tag(ORPHAN_MIRROR_UUID, THEM, 4);
        assert_eq!(judge(&following, &primary, US, THEM), Verdict::DemotePeer);
        assert_eq!(
            judge(&following, &their_demotion, US, THEM),
            Verdict::WaitFor(mirrored.clone())
        );
        assert_eq!(
            judge(&mirrored, &their_demotion, US, THEM),
            Verdict::WaitFor(mirrored.clone())
        );
        // Already done: we are primary and the peer follows us.
        assert_eq!(
            judge(&primary, &tag(US, ORPHAN_MIRROR_UUID, 2), US, THEM),
            Verdict::AlreadyPrimary
        );
        assert!(matches!(
            judge(&primary, &primary, US, THEM),
            Verdict::Refuse(_)
        ));
        // We demoted ourselves last and the peer has not replayed it yet.
        let our_demotion = tag(ORPHAN_MIRROR_UUID, LOCAL_MIRROR_UUID, 3);
        assert_eq!(
            judge(&our_demotion, &tag(US, LOCAL_MIRROR_UUID, 2), US, THEM),
            Verdict::CaughtUp
        );
        // A copy following a third site says nothing about this peer.
        assert!(matches!(
            judge(&tag("uuid-c", "", 1), &their_demotion, US, THEM),
            Verdict::Refuse(_)
        ));
    }

    #[tokio::test]
    async fn wait_wakes_on_the_mirrored_tag() {
        let header = header_oid("img");
        let io = cls::journal::test_journal(&header).await;
        let following = tag(THEM, ORPHAN_MIRROR_UUID, 0).to_bytes();
        cls::journal::allocate_tag(&io, &header, TAG_CLASS_NEW, following)
            .await
            .unwrap();
        let want = tag(ORPHAN_MIRROR_UUID, THEM, 4);
        let started = Instant::now();
        let writer = {
            let (io, header, data) = (io.clone(), header.clone(), want.to_bytes());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                cls::journal::allocate_tag(&io, &header, 0, data)
                    .await
                    .unwrap();
                crate::journal::writer::notify(&io, &header).await;
            })
        };
        let done = wait_caught_up(&io, &header, &want, Duration::from_secs(10)).await;
        assert!(done.unwrap());
        assert!(started.elapsed() < RECHECK, "woken by the notification");
        writer.await.unwrap();
        let other = tag(ORPHAN_MIRROR_UUID, THEM, 9);
        let late = wait_caught_up(&io, &header, &other, Duration::from_millis(300)).await;
        assert!(!late.unwrap());
    }
}
