//! Taking an image's exclusive lock when its holder died (a daemon killed with -9, a host
//! lost): the lock stays in the header until someone breaks it. A holder is alive when its
//! header watch answers a notify; every live client does at once (librbd, and our lock
//! servant task). How long a silent holder is given depends on whose image it is
//! ([`Dead`]): on our own replicas one silent for the notify's timeout is taken for dead
//! (librbd would wait for the OSD to drop the watch, 30 s after a kill; we wait 5 s). That
//! is safe because the holder is blocklisted before its lock is broken, so even a
//! frozen-but-alive process can never write again after we start (fencing); it only loses
//! its turn. On a primary the holder may be a user's librbd (a VM): there only a holder
//! whose watch is gone counts, librbd's own rule, so a slow client is never fenced.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Image, RbdError};
use crate::cls;
use crate::format::Encode;
use crate::format::image::oids;
use crate::format::lock::RBD_LOCK_NAME;
use crate::format::notify::HeaderNotify;
use crate::rados::{AckMode, Fence, IoCtx, WatchEvent};

/// How long a fenced client stays blocklisted (librbd: `rbd_blocklist_expire_seconds`, whose
/// 0 means the cluster default of one hour).
pub(crate) const BLOCKLIST_FOR: Duration = Duration::from_secs(3600);

/// A lock description naming the holder's client on a peer cluster: a replayer writes
/// to the peer too (its journal commit position), so a dead holder is fenced there as well.
/// Otherwise a frozen old replayer could, on waking, store a commit position past entries
/// its successor has not re-applied yet, and a crash of the successor would skip them.
pub fn peer_client_description(peer_addr: &str) -> String {
    format!("{PEER_CLIENT}{peer_addr}")
}

const PEER_CLIENT: &str = "rbd-relay peer client ";

/// When a lock holder that does not answer is dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dead {
    /// Silent for the notify's timeout (our replicas: only rbd-relay holds their locks).
    Silent,
    /// Its header watch is gone (a primary: librbd's rule, see the module doc).
    Unwatched,
}

/// [`acquire`], and while the holder lives, up to `wait` for it to hand the lock over. A
/// daemon handing an image to another (a clean stop, a join, a balance move) releases
/// within a few hundred milliseconds and notifies `ReleasedLock` on the header: hearing
/// it ends the wait at once, where a retry timer would add up to its period to every
/// hand-over. `LockBusy` when the holder still has the lock after `wait` (or on cancel).
pub async fn acquire_handed_over<I: IoCtx>(
    fence: &dyn Fence,
    peer: Option<&dyn Fence>,
    dead: Dead,
    image: &mut Image<I>,
    wait: Duration,
    cancel: &CancellationToken,
) -> Result<(), RbdError> {
    match acquire(fence, peer, dead, image).await {
        Err(RbdError::LockBusy { .. }) => {}
        other => return other,
    }
    let io = image.io().clone();
    let mut watch = io
        .watch_with(&oids::header(image.id()), AckMode::Auto)
        .await?;
    let deadline = Instant::now() + wait;
    // Each attempt follows the watch, so a release right after it is heard. An attempt is
    // never cut short (a lock taken but not recorded would be orphaned): only waits are.
    let result = loop {
        match image.acquire_lock().await {
            Err(e @ RbdError::LockBusy { .. }) => {
                let released = tokio::select! {
                    _ = cancel.cancelled() => false,
                    _ = tokio::time::sleep_until(deadline) => false,
                    r = released(&mut watch) => r,
                };
                if !released {
                    break Err(e);
                }
            }
            other => break other,
        }
    };
    let _ = io.unwatch(watch.cookie).await;
    result
}

/// Waits for a `ReleasedLock` notify: true then, or when notifies were dropped (one may
/// have been it); false when the watch broke (the caller's retry timer takes over).
async fn released(watch: &mut crate::rados::Watch) -> bool {
    while let Some(event) = watch.next().await {
        match event {
            WatchEvent::Notify(n) => {
                if let Ok(HeaderNotify::ReleasedLock { .. }) = HeaderNotify::from_payload(n.payload)
                {
                    return true;
                }
            }
            WatchEvent::Lagged => return true,
            WatchEvent::Error(_) => return false,
        }
    }
    false
}

/// Acquires the lock, breaking a dead holder's lock first. `LockBusy` when the holder lives.
/// librbd does the same before it takes a lock (its `BreakRequest`), so this serves both
/// our local replicas and the primaries we lock briefly for a sync point. `peer`: where a
/// dead holder's peer client (see [`peer_client_description`]) is blocklisted too.
pub async fn acquire<I: IoCtx>(
    fence: &dyn Fence,
    peer: Option<&dyn Fence>,
    dead: Dead,
    image: &mut Image<I>,
) -> Result<(), RbdError> {
    match image.acquire_lock().await {
        Err(RbdError::LockBusy { .. }) => {}
        other => return other,
    }
    let io = image.io().clone();
    let header = oids::header(image.id());
    let info = cls::lock::get_info(&io, &header, RBD_LOCK_NAME).await?;
    let reply = io
        .notify(
            &header,
            HeaderNotify::HeaderUpdate.to_bytes(),
            Duration::from_secs(5),
        )
        .await?;
    let silent: Vec<_> = info
        .lockers
        .iter()
        .filter(|(locker, _)| {
            let gid = locker.locker.num as u64;
            let handle = locker
                .cookie
                .strip_prefix("auto ")
                .and_then(|h| h.parse::<u64>().ok());
            let watching = |g: u64, c: u64| g == gid && Some(c) == handle;
            let answered = reply.acks.iter().any(|a| watching(a.notifier_id, a.cookie));
            let watched = reply.timeouts.iter().any(|&(g, c)| watching(g, c));
            !(answered || (watched && dead == Dead::Unwatched))
        })
        .collect();
    // A holder that released while we looked unlocked before it unwatched: silent now, but
    // alive, and fencing it would blocklist a daemon that stopped cleanly. Only a holder
    // still in the lock after the notify is dead.
    let now = if silent.is_empty() {
        Default::default()
    } else {
        cls::lock::get_info(&io, &header, RBD_LOCK_NAME)
            .await?
            .lockers
    };
    for (locker, holder) in silent {
        if !now.contains_key(locker) {
            continue;
        }
        if let Some(sock) = holder.addr.socket_addr() {
            let addr = format!("{sock}/{}", holder.addr.nonce);
            tracing::warn!(image = %image.name(), id = %image.id(), holder = %locker.locker.num,
                %addr, "breaking the lock of a dead holder (blocklisting it first)");
            fence.fence(&addr, BLOCKLIST_FOR).await?;
        }
        if let (Some(peer), Some(addr)) = (peer, holder.description.strip_prefix(PEER_CLIENT)) {
            tracing::warn!(image = %image.name(), holder = %locker.locker.num, peer_addr = %addr,
                "fencing the dead holder's peer client too");
            peer.fence(addr, BLOCKLIST_FOR).await?;
        }
        match cls::lock::break_lock(&io, &header, RBD_LOCK_NAME, locker.locker, &locker.cookie)
            .await
        {
            Err(e) if e.is_not_found() => {}
            other => other?,
        }
    }
    image.acquire_lock().await
}
