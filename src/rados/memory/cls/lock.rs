//! cls_lock for the embedded backend (class `"lock"`): advisory locks kept in the object's
//! `lock.<name>` xattr, as the OSD keeps them. librbd's exclusive lock on an image header is
//! one of these, so the embedded mode fences image writers the way Ceph does: a second
//! exclusive locker gets `EBUSY`, a different tag `EBUSY`, re-locking without the renew flag
//! `EEXIST`, releasing a lock one does not hold `ENOENT`.

use std::time::UNIX_EPOCH;

use bytes::Bytes;

use super::{ClsContext, ClsFlags, ClsRegistry};
use crate::format::entity::{EntityAddr, EntityName};
use crate::format::lock::{
    BreakLockOp, GetInfoOp, GetInfoReply, LOCK_FLAG_MAY_RENEW, LOCK_FLAG_MUST_RENEW,
    ListLocksReply, LockOp, LockType, LockerId, LockerInfo, UnlockOp,
};
use crate::format::{Decode, Encode, UTime};
use crate::rados::Errno;

type Result<T> = std::result::Result<T, Errno>;

const XATTR_PREFIX: &str = "lock.";

pub(super) fn register(r: &mut ClsRegistry) {
    r.register("lock", "lock", ClsFlags::ReadWrite, lock);
    r.register("lock", "unlock", ClsFlags::ReadWrite, unlock);
    r.register("lock", "break_lock", ClsFlags::ReadWrite, break_lock);
    r.register("lock", "get_info", ClsFlags::Read, get_info);
    r.register("lock", "list_locks", ClsFlags::Read, list_locks);
}

fn input<T: Decode>(b: Bytes) -> Result<T> {
    T::from_bytes(b).map_err(|_| Errno::EINVAL)
}

/// The lock's state; a lock never taken has no lockers (`ENOENT` only for a missing object).
fn read(ctx: &ClsContext<'_>, name: &str) -> Result<GetInfoReply> {
    match ctx.xattr_get(&format!("{XATTR_PREFIX}{name}")) {
        Ok(b) => {
            let mut info = GetInfoReply::from_bytes(b).map_err(|_| Errno::EIO)?;
            let now = now(ctx);
            info.lockers
                .retain(|_, l| l.expiration.is_zero() || l.expiration > now);
            Ok(info)
        }
        Err(e) if e == Errno::ENODATA => Ok(unlocked()),
        Err(e) => Err(e),
    }
}

fn write(ctx: &mut ClsContext<'_>, name: &str, info: &GetInfoReply) {
    ctx.xattr_set(&format!("{XATTR_PREFIX}{name}"), info.to_bytes());
}

fn now(ctx: &ClsContext<'_>) -> UTime {
    UTime::from_duration(ctx.now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn me(ctx: &ClsContext<'_>, cookie: String) -> LockerId {
    LockerId {
        locker: EntityName::client(ctx.caller().gid as i64),
        cookie,
    }
}

fn lock(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let op: LockOp = input(inp)?;
    if !matches!(
        op.lock_type,
        LockType::Exclusive | LockType::Shared | LockType::ExclusiveEphemeral
    ) {
        return Err(Errno::EINVAL);
    }
    let mut info = if ctx.exists() {
        read(ctx, &op.name)?
    } else {
        unlocked()
    };
    let id = me(ctx, op.cookie.clone());
    let held = info.lockers.contains_key(&id);
    if op.flags & LOCK_FLAG_MUST_RENEW != 0 && !held {
        return Err(Errno::ENOENT);
    }
    if held && op.flags & (LOCK_FLAG_MAY_RENEW | LOCK_FLAG_MUST_RENEW) == 0 {
        return Err(Errno::EEXIST);
    }
    let others = info.lockers.keys().any(|k| *k != id);
    if others {
        let exclusive =
            |t: LockType| matches!(t, LockType::Exclusive | LockType::ExclusiveEphemeral);
        if info.tag != op.tag || exclusive(info.lock_type) || exclusive(op.lock_type) {
            return Err(Errno::EBUSY);
        }
    } else {
        info.lock_type = op.lock_type;
        info.tag = op.tag.clone();
    }
    let expiration = if op.duration.is_zero() {
        UTime::ZERO
    } else {
        UTime::from_duration(now(ctx).to_duration() + op.duration.to_duration())
    };
    let caller = ctx.caller();
    let addr = EntityAddr::new(
        EntityAddr::TYPE_ANY,
        caller.nonce,
        ([127, 0, 0, 1], 0).into(),
    );
    info.lockers.insert(
        id,
        LockerInfo {
            expiration,
            addr,
            description: op.description,
        },
    );
    write(ctx, &op.name, &info);
    Ok(Bytes::new())
}

fn unlocked() -> GetInfoReply {
    GetInfoReply {
        lockers: Default::default(),
        lock_type: LockType::None,
        tag: String::new(),
    }
}

fn release(ctx: &mut ClsContext<'_>, name: &str, id: &LockerId) -> Result<Bytes> {
    let mut info = read(ctx, name)?;
    if info.lockers.remove(id).is_none() {
        return Err(Errno::ENOENT);
    }
    write(ctx, name, &info);
    Ok(Bytes::new())
}

fn unlock(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let op: UnlockOp = input(inp)?;
    let id = me(ctx, op.cookie);
    release(ctx, &op.name, &id)
}

fn break_lock(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let op: BreakLockOp = input(inp)?;
    release(
        ctx,
        &op.name,
        &LockerId {
            locker: op.locker,
            cookie: op.cookie,
        },
    )
}

fn get_info(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let op: GetInfoOp = input(inp)?;
    if !ctx.exists() {
        return Err(Errno::ENOENT);
    }
    Ok(read(ctx, &op.name)?.to_bytes())
}

fn list_locks(ctx: &mut ClsContext<'_>, _inp: Bytes) -> Result<Bytes> {
    let locks = ctx
        .xattr_names()?
        .into_iter()
        .filter_map(|n| n.strip_prefix(XATTR_PREFIX).map(str::to_string))
        .collect();
    Ok(ListLocksReply { locks }.to_bytes())
}
