//! cls_lock through the typed client (`rbd_relay::cls::lock`), with two clients, on both
//! backends: the exclusive lock librbd puts on image headers (name `rbd_lock`, tag
//! `internal`, cookie `auto <watch handle>`) excludes a second locker, renews only on
//! request, is visible with its holder, and can be broken by another client; shared locks
//! coexist under one tag.

use rbd_relay::cls::lock as l;
use rbd_relay::format::UTime;
use rbd_relay::format::entity::EntityName;
use rbd_relay::format::lock::{
    LOCK_FLAG_MAY_RENEW, LockOp, LockType, RBD_LOCK_NAME, RBD_LOCK_TAG, rbd_lock_cookie,
};
use rbd_relay::rados::{Errno, Rados};

use crate::harness::name;

fn op(lock_type: LockType, cookie: &str, tag: &str, flags: u8) -> LockOp {
    LockOp {
        name: RBD_LOCK_NAME.into(),
        lock_type,
        cookie: cookie.into(),
        tag: tag.into(),
        description: String::new(),
        duration: UTime::ZERO,
        flags,
    }
}

fn errno<T>(r: rbd_relay::cls::ClsResult<T>) -> Errno {
    match r {
        Ok(_) => panic!("expected an error, got success"),
        Err(e) => e.errno().expect("a RADOS error"),
    }
}

pub async fn exclusive_lock<R: Rados>(c1: &R, io1: &R::IoCtx, _c2: &R, io2: &R::IoCtx) {
    let oid = name("rbd_header");
    assert_eq!(
        errno(l::get_info(io1, &oid, RBD_LOCK_NAME).await),
        Errno::ENOENT,
        "no object"
    );
    let cookie = rbd_lock_cookie(94070268372096);
    let excl = op(LockType::Exclusive, &cookie, RBD_LOCK_TAG, 0);
    l::lock(io1, &oid, &excl).await.unwrap(); // creates the object
    assert_eq!(
        errno(l::lock(io1, &oid, &excl).await),
        Errno::EEXIST,
        "already held"
    );
    l::lock(
        io1,
        &oid,
        &op(
            LockType::Exclusive,
            &cookie,
            RBD_LOCK_TAG,
            LOCK_FLAG_MAY_RENEW,
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        errno(
            l::lock(
                io2,
                &oid,
                &op(LockType::Exclusive, "auto 1", RBD_LOCK_TAG, 0)
            )
            .await
        ),
        Errno::EBUSY
    );
    assert_eq!(
        errno(l::lock(io2, &oid, &op(LockType::Shared, "auto 1", RBD_LOCK_TAG, 0)).await),
        Errno::EBUSY
    );

    let info = l::get_info(io2, &oid, RBD_LOCK_NAME).await.unwrap();
    assert_eq!(
        (info.lock_type, info.tag.as_str()),
        (LockType::Exclusive, RBD_LOCK_TAG)
    );
    let holders: Vec<_> = info
        .lockers
        .keys()
        .map(|k| (k.locker, k.cookie.clone()))
        .collect();
    assert_eq!(
        holders,
        [(EntityName::client(c1.instance_id() as i64), cookie.clone())]
    );
    assert_eq!(l::list_locks(io2, &oid).await.unwrap(), [RBD_LOCK_NAME]);

    // Only the holder can unlock; another client breaks it instead, then takes it.
    assert_eq!(
        errno(l::unlock(io2, &oid, RBD_LOCK_NAME, &cookie).await),
        Errno::ENOENT
    );
    let holder = EntityName::client(c1.instance_id() as i64);
    l::break_lock(io2, &oid, RBD_LOCK_NAME, holder, &cookie)
        .await
        .unwrap();
    assert_eq!(
        errno(l::break_lock(io2, &oid, RBD_LOCK_NAME, holder, &cookie).await),
        Errno::ENOENT
    );
    l::lock(
        io2,
        &oid,
        &op(LockType::Exclusive, "auto 2", RBD_LOCK_TAG, 0),
    )
    .await
    .unwrap();
    assert_eq!(
        errno(l::unlock(io1, &oid, RBD_LOCK_NAME, &cookie).await),
        Errno::ENOENT,
        "broken: not ours"
    );
    l::unlock(io2, &oid, RBD_LOCK_NAME, "auto 2").await.unwrap();
    assert!(
        l::get_info(io1, &oid, RBD_LOCK_NAME)
            .await
            .unwrap()
            .lockers
            .is_empty()
    );
}

pub async fn shared_lock<R: Rados>(_c1: &R, io1: &R::IoCtx, _c2: &R, io2: &R::IoCtx) {
    let oid = name("shared");
    l::lock(io1, &oid, &op(LockType::Shared, "a", "t", 0))
        .await
        .unwrap();
    l::lock(io2, &oid, &op(LockType::Shared, "b", "t", 0))
        .await
        .unwrap();
    assert_eq!(
        errno(l::lock(io2, &oid, &op(LockType::Shared, "c", "other", 0)).await),
        Errno::EBUSY,
        "tag"
    );
    assert_eq!(
        errno(l::lock(io2, &oid, &op(LockType::Exclusive, "d", "t", 0)).await),
        Errno::EBUSY
    );
    let info = l::get_info(io1, &oid, RBD_LOCK_NAME).await.unwrap();
    assert_eq!((info.lock_type, info.lockers.len()), (LockType::Shared, 2));
    l::unlock(io1, &oid, RBD_LOCK_NAME, "a").await.unwrap();
    l::unlock(io2, &oid, RBD_LOCK_NAME, "b").await.unwrap();
}
