//! The image's exclusive lock, librbd's way (spec §5.6): cls_lock `rbd_lock` on the header,
//! exclusive, tag `internal`, cookie `auto <watch handle>`, held together with a watch on
//! the header (Consumer mode: lock requests must be answered). Replaces librbd's
//! `ManagedLock` / `ExclusiveLock` and `ImageWatcher`, with the policy rbd-mirror installs
//! on its local images (`MirrorExclusiveLockPolicy`).
//!
//!  UNLOCKED --acquire_lock: watch header, cls lock, AcquiredLock notify--> HELD
//!  HELD --RequestLock from another client:
//!        |  local journal tag owned here ("" = promoted) or no journal
//!        |      --> ack 0, RELEASE_REQUESTED (caller drains and calls release_lock)
//!        \  otherwise (still non-primary) --> ack ResponseMessage(-EROFS), stay HELD
//!  HELD --notify on the local journal header, whose newest tag is now owned here
//!        (`rbd mirror image promote`)--> RELEASE_REQUESTED
//!  HELD | RELEASE_REQUESTED --release_lock: cls unlock, ReleasedLock notify, unwatch,
//!        stop watch task--> UNLOCKED
//!  HELD | RELEASE_REQUESTED --watch error (blocklist, disconnect) or EBLOCKLISTED on a
//!        write--> LOST: every write fails with LockLost at once
//!
//! Checked in Pacific's `rbd_mirror/image_replayer/OpenLocalImageRequest.cc`: the policy
//! answers every lock request, forced or not, with -EROFS while the local journal is not
//! the tag owner, and releases once it is (after `rbd mirror image promote`, which
//! allocates a local-owned tag). librbd's own requests are always "forced".
//!
//! Observed on 16.2.15: `rbd mirror image promote --force` asks nobody for the lock. It
//! allocates the local-owned tag in the journal, notifies the journal header and returns
//! (within ~100 ms), leaving our lock in place; only the first librbd client that then
//! writes sends a RequestLock. rbd-mirror stops replaying at the promotion itself: its
//! local journal's listener sees the new tag (`handle_promoted`). So we also watch the
//! local journal's header while the lock is held, and a notify after which the newest tag
//! is ours turns HELD into RELEASE_REQUESTED: the replayer stops writing into an image that
//! has just become primary, rather than at the next librbd client's lock request. A broken
//! journal watch counts as a lost lock: a promotion could no longer be seen.
//!
//! The header watch is served by one task per locked image (spawned here, against the
//! crate's usual rule, because librbd waits up to 5 s for every unanswered watcher and
//! the answer must not depend on the caller polling); it stops on release or drop. It also
//! raises the stale flag when another client's notify shows a newer snap context.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{Image, RbdError};
use crate::cls::{self, image as cls_image, journal as cls_journal};
use crate::format::client_data::{LOCAL_MIRROR_UUID, TagData};
use crate::format::entity::EntityName;
use crate::format::image::features;
use crate::format::journal::header_oid as journal_oid;
use crate::format::lock::{LockOp, LockType, RBD_LOCK_NAME, RBD_LOCK_TAG, rbd_lock_cookie};
use crate::format::notify::{ClientId, HeaderNotify, ResponseMessage};
use crate::format::{Decode, Encode};
use crate::rados::{AckMode, Errno, IoCtx, Notification, RadosError, Watch, WatchEvent};

/// Where the exclusive lock stands; published through [`Image::lock_state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    Unlocked,
    Held,
    /// Another client may take the lock now (the image was promoted here): finish
    /// in-flight writes and call `release_lock`.
    ReleaseRequested,
    /// Blocklisted, broken or the watch failed: stop writing now.
    Lost,
}

/// State shared between an image and its header watch task.
pub(crate) struct Shared {
    state: watch::Sender<LockState>,
    /// Another client moved the snap context: writes wait for a refresh.
    stale: AtomicBool,
    /// The snap context seq of our cached header.
    snap_seq: AtomicU64,
    /// Counts notifications of the local journal's header seen by the lock's watch: the
    /// image replayer looks for resync requests on them rather than holding a second watch
    /// on the same object (each watch costs the OSD a keep-alive read every 5 s).
    journal_notified: watch::Sender<u64>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            state: watch::Sender::new(LockState::Unlocked),
            stale: AtomicBool::new(false),
            snap_seq: AtomicU64::new(0),
            journal_notified: watch::Sender::new(0),
        }
    }
}

impl Shared {
    pub(super) fn subscribe(&self) -> watch::Receiver<LockState> {
        self.state.subscribe()
    }

    pub(super) fn journal_notifications(&self) -> watch::Receiver<u64> {
        self.journal_notified.subscribe()
    }

    pub(super) fn state(&self) -> LockState {
        *self.state.borrow()
    }

    fn set(&self, state: LockState) {
        self.state.send_replace(state);
    }

    pub(super) fn refreshed(&self, snap_seq: u64) {
        self.snap_seq.store(snap_seq, Ordering::Release);
        self.stale.store(false, Ordering::Release);
    }

    /// Whether a write may go out now.
    pub(super) fn check_writable(&self) -> Result<(), RbdError> {
        match self.state() {
            LockState::Held | LockState::ReleaseRequested => {}
            LockState::Lost => return Err(RbdError::LockLost),
            LockState::Unlocked => return Err(RbdError::LockNotHeld),
        }
        if self.stale.load(Ordering::Acquire) {
            return Err(RbdError::StaleSnapContext);
        }
        Ok(())
    }

    /// Maps a failed write: blocklisted means the lock is gone for good.
    pub(super) fn write_error(&self, e: RadosError) -> RbdError {
        if e.errno == Errno::EBLOCKLISTED && self.state() != LockState::Unlocked {
            self.set(LockState::Lost);
            return RbdError::LockLost;
        }
        e.into()
    }
}

/// The held lock, if any.
#[derive(Default)]
pub(super) struct ExclusiveLock {
    held: Option<Held>,
    /// Stored with the lock (cls_lock's description, which librbd leaves empty): who else
    /// a holder that dies must be fenced from, see [`super::fencing`].
    description: String,
}

struct Held {
    watch_cookie: u64,
    lock_cookie: String,
    /// Our client id as Ceph recorded it on the lock (`client.<gid>`).
    gid: u64,
    cancel: CancellationToken,
    /// The watch on the local journal's header, which a promotion notifies (None: the
    /// image has no journal).
    journal_watch: Option<u64>,
    /// Stops the watch task if the image is dropped without release.
    _stop_on_drop: DropGuard,
    task: JoinHandle<()>,
}

impl<I: IoCtx> Image<I> {
    /// What the next lock acquisition records as its description.
    pub fn describe_lock(&mut self, description: String) {
        self.lock.description = description;
    }

    /// Takes the exclusive lock (idempotent while held). `LockBusy` when another client
    /// holds it; librbd clients of a non-primary image never do for long (they fail with
    /// EROFS), so the caller retries later.
    pub async fn acquire_lock(&mut self) -> Result<(), RbdError> {
        match (self.lock.held.is_some(), self.shared.state()) {
            (true, LockState::Held) => return Ok(()),
            (true, _) => self.release_lock().await?, // lost or releasing: start over
            (false, _) => {}
        }
        let watch = self.io.watch(&self.header_oid).await?;
        let watch_cookie = watch.cookie;
        let lock_cookie = rbd_lock_cookie(watch_cookie);
        let op = LockOp {
            name: RBD_LOCK_NAME.into(),
            lock_type: LockType::Exclusive,
            cookie: lock_cookie.clone(),
            tag: RBD_LOCK_TAG.into(),
            description: self.lock.description.clone(),
            duration: Default::default(),
            flags: 0,
        };
        let locked = match cls::lock::lock(&self.io, &self.header_oid, &op).await {
            Ok(()) => self.locker_gid(&lock_cookie).await,
            Err(e) if e.is(Errno::EBUSY) || e.is(Errno::EEXIST) => Err(self.busy().await),
            Err(e) => Err(e.into()),
        };
        let gid = match locked {
            Ok(gid) => gid,
            Err(e) => {
                let _ = self.io.unwatch(watch_cookie).await;
                return Err(e);
            }
        };
        let journal = match self.watch_journal().await {
            Ok(journal) => journal,
            Err(e) => {
                let _ = cls::lock::unlock(&self.io, &self.header_oid, RBD_LOCK_NAME, &lock_cookie)
                    .await;
                let _ = self.io.unwatch(watch_cookie).await;
                return Err(e);
            }
        };
        let journal_watch = journal.as_ref().map(|w| w.cookie);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve_watch(
            self.io.clone(),
            self.header_oid.clone(),
            self.id.clone(),
            (watch, journal),
            self.shared.clone(),
            cancel.clone(),
        ));
        self.lock.held = Some(Held {
            watch_cookie,
            lock_cookie,
            gid,
            journal_watch,
            _stop_on_drop: cancel.clone().drop_guard(),
            cancel,
            task,
        });
        self.shared.set(LockState::Held);
        // Lock audits (scripts/ha-check) pair this line with "releasing the exclusive lock"
        // across daemons' logs.
        tracing::info!(image = %self.id, gid, "exclusive lock acquired");
        self.notify_lock(HeaderNotify::AcquiredLock {
            client_id: ClientId {
                gid,
                handle: watch_cookie,
            },
        })
        .await;
        if let Err(e) = self.refresh().await {
            self.release_lock().await?;
            return Err(e);
        }
        if let Err(e) = self.load_object_map().await {
            self.release_lock().await?;
            return Err(e);
        }
        Ok(())
    }

    /// Releases the lock (a no-op when not held). After a lost lock it only cleans up.
    pub async fn release_lock(&mut self) -> Result<(), RbdError> {
        let Some(held) = self.lock.held.take() else {
            return Ok(());
        };
        let lost = self.shared.state() == LockState::Lost;
        self.object_map.unload();
        // Logged before the unlock: another daemon may take the lock (and log it) before
        // our unlock's reply arrives. Nothing is written here after this line. A lost lock
        // is someone else's now: not ours to release.
        if !lost {
            tracing::info!(image = %self.id, gid = held.gid, "releasing the exclusive lock");
        }
        let unlocked =
            cls::lock::unlock(&self.io, &self.header_oid, RBD_LOCK_NAME, &held.lock_cookie).await;
        if unlocked.is_ok() {
            tracing::debug!(image = %self.id, gid = held.gid, "exclusive lock released");
        }
        if !lost {
            self.notify_lock(HeaderNotify::ReleasedLock {
                client_id: ClientId {
                    gid: held.gid,
                    handle: held.watch_cookie,
                },
            })
            .await;
        }
        // The watch task answers until the lock is gone: a client checking whether the
        // holder lives (fencing) must get its ack, or it would blocklist us.
        let _ = self.io.unwatch(held.watch_cookie).await;
        if let Some(cookie) = held.journal_watch {
            let _ = self.io.unwatch(cookie).await;
        }
        held.cancel.cancel();
        let _ = held.task.await;
        self.shared.set(LockState::Unlocked);
        match unlocked {
            Err(e) if !lost && !e.is_not_found() => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Watches the local journal's header (auto-acked: its notifiers want no answer), if
    /// the image is journaled and not primary yet: only a promotion is looked for (an image
    /// that is primary already sees its own commits there all the time).
    async fn watch_journal(&self) -> Result<Option<Watch>, RbdError> {
        if self.header.features & features::JOURNALING == 0
            || tag_owner_here(&self.io, &self.id).await
        {
            return Ok(None);
        }
        match self
            .io
            .watch_with(&journal_oid(&self.id), AckMode::Auto)
            .await
        {
            Ok(w) => Ok(Some(w)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Our global id, as cls_lock recorded it next to our cookie.
    async fn locker_gid(&self, cookie: &str) -> Result<u64, RbdError> {
        let info = cls::lock::get_info(&self.io, &self.header_oid, RBD_LOCK_NAME).await?;
        info.lockers
            .keys()
            .find(|l| l.cookie == cookie && l.locker.kind == EntityName::TYPE_CLIENT)
            .map(|l| l.locker.num as u64)
            .ok_or(RbdError::LockLost)
    }

    /// The error for a lock someone else holds, naming the holder.
    async fn busy(&self) -> RbdError {
        let owner = match cls::lock::get_info(&self.io, &self.header_oid, RBD_LOCK_NAME).await {
            Ok(info) => info
                .lockers
                .keys()
                .map(|l| format!("client.{} ({})", l.locker.num, l.cookie))
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => format!("unknown ({e})"),
        };
        RbdError::LockBusy { owner }
    }

    async fn notify_lock(&self, msg: HeaderNotify) {
        let timeout = super::image::NOTIFY_TIMEOUT;
        if let Err(e) = self
            .io
            .notify(&self.header_oid, msg.to_bytes(), timeout)
            .await
        {
            tracing::warn!(image = %self.id, error = %e, "lock notify failed");
        }
    }

    /// Checks, before header changes, that we still own the image.
    pub(super) async fn assert_locked(&self) -> Result<(), RbdError> {
        self.shared.check_writable()?;
        let held = self.lock.held.as_ref().ok_or(RbdError::LockNotHeld)?;
        let info = cls::lock::get_info(&self.io, &self.header_oid, RBD_LOCK_NAME)
            .await
            .map_err(|e| match e {
                cls::ClsError::Rados(r) => self.shared.write_error(r),
                other => other.into(),
            })?;
        if info.lockers.keys().any(|l| l.cookie == held.lock_cookie) {
            Ok(())
        } else {
            self.shared.set(LockState::Lost);
            Err(RbdError::LockLost)
        }
    }
}

/// How long a header notify's ack may wait for the snap context check.
const STALE_CHECK_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves the header watch while the lock is held: answers lock requests, acks everything
/// else at once, notices a moved snap context, and reports a broken watch as a lost lock.
/// Also follows the journal watch, for a promotion.
async fn serve_watch<I: IoCtx>(
    io: I,
    header: String,
    image_id: String,
    (mut watch, mut journal): (Watch, Option<Watch>),
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = watch.next() => ev,
            Some(ev) = next_event(&mut journal) => {
                if let WatchEvent::Error(errno) = ev {
                    tracing::warn!(image = %image_id, %errno, "journal watch broke: lock lost");
                    shared.set(LockState::Lost);
                    return;
                }
                shared.journal_notified.send_modify(|n| *n = n.wrapping_add(1));
                if tag_owner_here(&io, &image_id).await && shared.state() == LockState::Held {
                    tracing::info!(image = %image_id, "promoted here: releasing the lock");
                    shared.set(LockState::ReleaseRequested);
                }
                continue;
            }
        };
        match event {
            Some(WatchEvent::Notify(n)) => {
                let reply = answer(&io, &header, &image_id, &n, &shared).await;
                if let Err(e) = io.notify_ack(&header, n.notify_id, n.cookie, reply).await {
                    tracing::warn!(image = %image_id, error = %e, "header notify ack failed");
                }
            }
            Some(WatchEvent::Lagged) => check_stale(&io, &header, &shared).await,
            Some(WatchEvent::Error(errno)) => {
                tracing::warn!(image = %image_id, %errno, "header watch broke: lock lost");
                shared.set(LockState::Lost);
                return;
            }
            None => return,
        }
    }
}

/// The next event of an optional watch (never ready without one).
async fn next_event(watch: &mut Option<Watch>) -> Option<WatchEvent> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// The ack payload for one header notification.
async fn answer<I: IoCtx>(
    io: &I,
    header: &str,
    image_id: &str,
    n: &Notification,
    shared: &Shared,
) -> bytes::Bytes {
    match HeaderNotify::from_payload(n.payload.clone()) {
        Ok(HeaderNotify::RequestLock { client_id, force }) => {
            let result = if tag_owner_here(io, image_id).await {
                if shared.state() == LockState::Held {
                    shared.set(LockState::ReleaseRequested);
                }
                0
            } else {
                -Errno::EROFS.0
            };
            tracing::info!(image = %image_id, gid = client_id.gid, force, result, "lock requested");
            ResponseMessage { result }.to_bytes()
        }
        Ok(HeaderNotify::AcquiredLock { .. } | HeaderNotify::ReleasedLock { .. }) => {
            bytes::Bytes::new()
        }
        // Anything else may come with a header change, which must be flagged before the
        // ack: whoever snapshots and notifies expects no write with the old snap context
        // after it. But an ack delayed by a busy OSD makes us look dead to a fencing peer
        // (see `fencing`): past a bound, assume stale.
        _ => {
            let checked = tokio::time::timeout(STALE_CHECK_BOUND, check_stale(io, header, shared));
            if checked.await.is_err() {
                shared.stale.store(true, Ordering::Release);
            }
            bytes::Bytes::new()
        }
    }
}

/// Raises the stale flag when the header's snap context moved past our cached one.
async fn check_stale<I: IoCtx>(io: &I, header: &str, shared: &Shared) {
    if let Ok(snapc) = cls_image::get_snapcontext(io, header).await
        && snapc.seq > shared.snap_seq.load(Ordering::Acquire)
    {
        shared.stale.store(true, Ordering::Release);
    }
}

/// Whether the local journal's newest tag is owned here (the image was promoted), or the
/// image has no journal: then rbd-mirror's policy lets the lock go.
async fn tag_owner_here<I: IoCtx>(io: &I, image_id: &str) -> bool {
    let oid = journal_oid(image_id);
    let next = match cls_journal::get_next_tag_tid(io, &oid).await {
        Ok(next) => next,
        Err(e) => return e.is_not_found(),
    };
    let Some(newest) = next.checked_sub(1) else {
        return false;
    };
    match cls_journal::get_tag(io, &oid, newest).await {
        Ok(tag) => TagData::from_bytes(tag.data).is_ok_and(|t| t.mirror_uuid == LOCAL_MIRROR_UUID),
        Err(_) => false,
    }
}
