//! cls_lock calls (class `"lock"`): the advisory locks RADOS keeps on an object. librbd's
//! exclusive lock is one of them on the image header (name `rbd_lock`, tag `internal`,
//! cookie `auto <watch handle>`, spec §5.6); HA fencing builds on it. Replaces
//! `cls/lock/cls_lock_client.cc`.

use bytes::Bytes;

use super::{ClsResult, enc, read, write};
use crate::format::entity::EntityName;
use crate::format::lock::{BreakLockOp, GetInfoOp, GetInfoReply, ListLocksReply, LockOp, UnlockOp};
use crate::rados::IoCtx;

const CLASS: &str = "lock";

/// Takes a lock; `EBUSY` when another locker holds it, `EEXIST` when we already do (unless
/// the op allows renewal).
pub async fn lock<I: IoCtx>(io: &I, oid: &str, op: &LockOp) -> ClsResult<()> {
    write(io, oid, CLASS, "lock", enc(op)).await
}

/// Releases our lock; `ENOENT` when we do not hold it.
pub async fn unlock<I: IoCtx>(io: &I, oid: &str, name: &str, cookie: &str) -> ClsResult<()> {
    write(
        io,
        oid,
        CLASS,
        "unlock",
        enc(&UnlockOp {
            name: name.into(),
            cookie: cookie.into(),
        }),
    )
    .await
}

/// Breaks another client's lock; `ENOENT` when that locker does not hold it.
pub async fn break_lock<I: IoCtx>(
    io: &I,
    oid: &str,
    name: &str,
    locker: EntityName,
    cookie: &str,
) -> ClsResult<()> {
    let op = BreakLockOp {
        name: name.into(),
        locker,
        cookie: cookie.into(),
    };
    write(io, oid, CLASS, "break_lock", enc(&op)).await
}

/// Who holds a lock, its type and tag (an unheld lock has no lockers).
pub async fn get_info<I: IoCtx>(io: &I, oid: &str, name: &str) -> ClsResult<GetInfoReply> {
    read(
        io,
        oid,
        CLASS,
        "get_info",
        enc(&GetInfoOp { name: name.into() }),
    )
    .await
}

/// The names of the locks on an object.
pub async fn list_locks<I: IoCtx>(io: &I, oid: &str) -> ClsResult<Vec<String>> {
    let reply: ListLocksReply = read(io, oid, CLASS, "list_locks", Bytes::new()).await?;
    Ok(reply.locks)
}
