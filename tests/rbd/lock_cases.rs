//! The exclusive lock with a second client: lock requests answered like rbd-mirror
//! (-EROFS while the image is non-primary, release once it was promoted here, also on the
//! promotion's journal notify alone), a second
//! locker refused, a header moved by someone else stops writes until a refresh, a
//! blocklisted client stops writing at once, and a holder releasing while another client
//! looks for dead holders is not fenced; a contender waiting for a hand-over takes the
//! lock on the holder's release notify.

use std::time::Duration;

use bytes::Bytes;
use rbd_relay::cls::{self, image as cls_image, journal as cls_journal};
use rbd_relay::format::client_data::{TagData, TagPredecessor};
use rbd_relay::format::image::{SnapshotNamespace, oids};
use rbd_relay::format::journal::header_oid as journal_oid;
use rbd_relay::format::notify::{ClientId, HeaderNotify, ResponseMessage};
use rbd_relay::format::{Decode, Encode};
use rbd_relay::rados::faults::{Faults, FaultyIoCtx};
use rbd_relay::rados::{IoCtx, Rados, RadosOp, WriteOp};
use rbd_relay::rbd::fencing::{self, Dead};
use rbd_relay::rbd::{Image, LockState, RbdError};
use tokio_util::sync::CancellationToken;

use crate::cases::{OBJ, locked_image, pattern};

/// Sends a RequestLock as librbd does and returns the lock owner's answer.
pub async fn request_lock<I: IoCtx>(io: &I, header: &str) -> i32 {
    let msg = HeaderNotify::RequestLock {
        client_id: ClientId { gid: 1, handle: 2 },
        force: true,
    };
    let reply = io
        .notify(header, msg.to_bytes(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        reply.timeouts.is_empty(),
        "the owner answers at once: {reply:?}"
    );
    let answers: Vec<i32> = reply
        .acks
        .iter()
        .filter(|a| !a.payload.is_empty())
        .map(|a| {
            ResponseMessage::from_bytes(a.payload.clone())
                .unwrap()
                .result
        })
        .collect();
    assert_eq!(answers.len(), 1, "exactly the owner answers: {reply:?}");
    answers[0]
}

pub async fn lock_requests<R: Rados>(_c1: &R, io1: &R::IoCtx, _c2: &R, io2: &R::IoCtx) {
    let mut image = locked_image(io1, "lockreq").await;
    let header = oids::header(image.id());
    let mut other = Image::open(io2.clone(), image.id()).await.unwrap();
    let err = other.acquire_lock().await.unwrap_err();
    assert!(
        matches!(&err, RbdError::LockBusy { owner } if owner.contains("auto ")),
        "{err}"
    );

    assert_eq!(
        request_lock(io2, &header).await,
        -libc::EROFS,
        "non-primary: refused"
    );
    assert_eq!(*image.lock_state().borrow(), LockState::Held);

    // Promotion here allocates a tag owned by this site; then the lock may go.
    let tag = TagData {
        mirror_uuid: String::new(),
        predecessor: TagPredecessor::default(),
    };
    cls_journal::allocate_tag(io2, &journal_oid(image.id()), 0, tag.to_bytes())
        .await
        .unwrap();
    let mut state = image.lock_state();
    assert_eq!(request_lock(io2, &header).await, 0);
    state
        .wait_for(|s| *s == LockState::ReleaseRequested)
        .await
        .unwrap();
    image.write(0, pattern(1, 10)).await.unwrap(); // in-flight work may still finish
    image.release_lock().await.unwrap();
    other.acquire_lock().await.unwrap();
    assert_eq!(*other.lock_state().borrow(), LockState::Held);
    other.release_lock().await.unwrap();
}

/// `rbd mirror image promote` asks nobody for the lock: it allocates a tag owned here and
/// notifies the journal header. That notify alone must make the holder let go.
pub async fn promotion_notify_releases<R: Rados>(_c1: &R, io1: &R::IoCtx, _c2: &R, io2: &R::IoCtx) {
    let mut image = locked_image(io1, "promoted").await;
    let mut state = image.lock_state();
    let journal = journal_oid(image.id());
    let tag = TagData {
        mirror_uuid: String::new(),
        predecessor: TagPredecessor::default(),
    };
    cls_journal::allocate_tag(io2, &journal, 0, tag.to_bytes())
        .await
        .unwrap();
    assert_eq!(*state.borrow_and_update(), LockState::Held, "no notify yet");
    let reply = io2
        .notify(&journal, Bytes::new(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        reply.timeouts.is_empty(),
        "journal watch acks at once: {reply:?}"
    );
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| *s == LockState::ReleaseRequested),
    )
    .await
    .expect("promotion not noticed")
    .unwrap();
    image.release_lock().await.unwrap();
}

/// Another client snapshots the image and tells the header's watchers, as librbd does;
/// the new snapshot's id.
pub async fn snapshot_behind_our_back<I: IoCtx>(io: &I, image_id: &str, name: &str) -> u64 {
    let header = oids::header(image_id);
    let snap = io.selfmanaged_snap_create().await.unwrap();
    cls_image::snapshot_add(io, &header, snap, name, SnapshotNamespace::User)
        .await
        .unwrap();
    io.notify(
        &header,
        HeaderNotify::HeaderUpdate.to_bytes(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    snap
}

pub async fn stale_snap_context<R: Rados>(_c1: &R, io1: &R::IoCtx, _c2: &R, io2: &R::IoCtx) {
    let mut image = locked_image(io1, "stale").await;
    image.write(0, pattern(1, 100)).await.unwrap();
    let snap = snapshot_behind_our_back(io2, image.id(), "sneaky").await;
    let err = image.write(0, pattern(2, 100)).await.unwrap_err();
    assert!(matches!(err, RbdError::StaleSnapContext), "{err}");
    assert!(err.is_transient());
    image.refresh().await.unwrap();
    assert_eq!(image.snap_context().snaps, vec![snap]);
    image.write(0, pattern(2, 100)).await.unwrap();
    assert_eq!(
        image.read(0, 100, Some(snap)).await.unwrap(),
        pattern(1, 100),
        "the snapshot kept its data"
    );
    assert_eq!(image.read(0, 100, None).await.unwrap(), pattern(2, 100));
    image.release_lock().await.unwrap();
}

pub async fn blocklisted_client_stops_writing<R: Rados>(
    c1: &R,
    io1: &R::IoCtx,
    c2: &R,
    io2: &R::IoCtx,
) {
    let image = locked_image(io2, "fenced").await;
    let mut state = image.lock_state();
    image.write(0, pattern(1, 100)).await.unwrap();
    c1.blocklist_add(&c2.client_addr(), Duration::from_secs(120))
        .await
        .unwrap();
    // Whichever comes first, the broken watch or a refused write, writing stops for good.
    let err = image.write(OBJ, pattern(2, 100)).await.unwrap_err();
    assert!(matches!(err, RbdError::LockLost), "{err}");
    assert_eq!(*state.borrow_and_update(), LockState::Lost);
    assert!(matches!(
        image.write(0, Bytes::from_static(b"x")).await,
        Err(RbdError::LockLost)
    ));
    // The fenced client's lock can now be broken and taken by another writer.
    let header = oids::header(image.id());
    let info = cls::lock::get_info(io1, &header, "rbd_lock").await.unwrap();
    let (locker, _) = info.lockers.into_iter().next().unwrap();
    cls::lock::break_lock(io1, &header, "rbd_lock", locker.locker, &locker.cookie)
        .await
        .unwrap();
    let mut taker = Image::open(io1.clone(), image.id()).await.unwrap();
    taker.acquire_lock().await.unwrap();
    assert_eq!(taker.read(0, 100, None).await.unwrap(), pattern(1, 100));
    assert!(
        taker
            .read(OBJ, 100, None)
            .await
            .unwrap()
            .iter()
            .all(|&b| b == 0),
        "the fenced write never landed"
    );
    taker.release_lock().await.unwrap();
}

/// The race ha-check once lost: a holder stopping cleanly unlocks, then unwatches. A
/// contender that listed the lock before the unlock and notified after the unwatch hears
/// nothing from it; it must see the lock gone and take it, not blocklist a live client.
pub async fn releasing_holder_is_not_fenced<R: Rados>(
    c1: &R,
    io1: &R::IoCtx,
    _c2: &R,
    io2: &R::IoCtx,
) {
    let mut holder = locked_image(io2, "releasing").await;
    let faults = Faults::new(1);
    // The contender's liveness notify leaves after the holder's release.
    faults.delay(RadosOp::Notify, "rbd_header.", Duration::from_millis(1500));
    let io = FaultyIoCtx::new(io1.clone(), faults);
    let mut taker = Image::open(io, holder.id()).await.unwrap();
    let release = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        holder.release_lock().await.unwrap();
    };
    let (taken, ()) = tokio::join!(
        fencing::acquire(c1, None, Dead::Silent, &mut taker),
        release
    );
    taken.unwrap();
    assert_eq!(*taker.lock_state().borrow(), LockState::Held);
    io2.operate_write(
        "releasing-holder-alive",
        WriteOp::new().write_full(pattern(3, 10)),
    )
    .await
    .expect("the holder that released is not blocklisted");
    taker.release_lock().await.unwrap();
}

/// A contender waiting for a live holder (a daemon handing the image over) takes the lock
/// when the holder's release notify arrives, well before its wait ends; a holder that
/// keeps the lock leaves it `LockBusy` after the wait, neither fenced.
pub async fn handed_over_on_release_notify<R: Rados>(
    c1: &R,
    io1: &R::IoCtx,
    _c2: &R,
    io2: &R::IoCtx,
) {
    let mut holder = locked_image(io2, "handover").await;
    let mut taker = Image::open(io1.clone(), holder.id()).await.unwrap();
    let cancel = CancellationToken::new();
    let kept = fencing::acquire_handed_over(
        c1,
        None,
        Dead::Silent,
        &mut taker,
        Duration::from_millis(300),
        &cancel,
    )
    .await;
    assert!(matches!(kept, Err(RbdError::LockBusy { .. })), "{kept:?}");
    assert_eq!(*holder.lock_state().borrow(), LockState::Held);

    let release = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        holder.release_lock().await.unwrap();
    };
    // Only the release notify can end this wait in time: no retry timer runs meanwhile.
    let (taken, ()) = tokio::join!(
        fencing::acquire_handed_over(
            c1,
            None,
            Dead::Silent,
            &mut taker,
            Duration::from_secs(20),
            &cancel,
        ),
        release
    );
    taken.unwrap();
    assert_eq!(*taker.lock_state().borrow(), LockState::Held);
    io2.operate_write(
        "handover-holder-alive",
        WriteOp::new().write_full(pattern(4, 10)),
    )
    .await
    .expect("the holder that handed over is not blocklisted");
    taker.release_lock().await.unwrap();
}
