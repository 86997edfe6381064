//! Errors of the storage seam. Ceph reports failures as negative errno values; we keep the
//! errno (positive) so both backends produce the same, comparable error, and callers can
//! branch on it (`ENOENT` means "absent", `ECANCELED` a failed compare, ...).

use std::fmt;

/// A positive POSIX errno as Ceph returns it (negated) from every call.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const E2BIG: Errno = Errno(libc::E2BIG);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EFBIG: Errno = Errno(libc::EFBIG);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    pub const ENOMSG: Errno = Errno(libc::ENOMSG);
    pub const EOVERFLOW: Errno = Errno(libc::EOVERFLOW);
    pub const EBADMSG: Errno = Errno(libc::EBADMSG);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const ENOTCONN: Errno = Errno(libc::ENOTCONN);
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);
    pub const ESTALE: Errno = Errno(libc::ESTALE);
    pub const ECANCELED: Errno = Errno(libc::ECANCELED);
    pub const ENOEXEC: Errno = Errno(libc::ENOEXEC);
    pub const EROFS: Errno = Errno(libc::EROFS);
    pub const ESHUTDOWN: Errno = Errno(libc::ESHUTDOWN);
    /// Ceph's "blocklisted" error (EBLOCKLISTED == ESHUTDOWN on Linux).
    pub const EBLOCKLISTED: Errno = Errno(libc::ESHUTDOWN);

    /// From a librados return value (negative on error).
    pub fn from_ret(ret: i32) -> Errno {
        Errno(ret.abs())
    }

    /// Bounded label for metrics and logs, e.g. `"ENOENT"`; unknown codes are `"errno"`.
    pub fn name(self) -> &'static str {
        match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EIO => "EIO",
            libc::E2BIG => "E2BIG",
            libc::EAGAIN => "EAGAIN",
            libc::EACCES => "EACCES",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::EINVAL => "EINVAL",
            libc::EFBIG => "EFBIG",
            libc::ENOSPC => "ENOSPC",
            libc::ERANGE => "ERANGE",
            libc::ENODATA => "ENODATA",
            libc::ENOMSG => "ENOMSG",
            libc::EOVERFLOW => "EOVERFLOW",
            libc::EBADMSG => "EBADMSG",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::ENOTCONN => "ENOTCONN",
            libc::ESHUTDOWN => "ESHUTDOWN",
            libc::ETIMEDOUT => "ETIMEDOUT",
            libc::ESTALE => "ESTALE",
            libc::ECANCELED => "ECANCELED",
            libc::ENOEXEC => "ENOEXEC",
            libc::EROFS => "EROFS",
            libc::ENOTEMPTY => "ENOTEMPTY",
            libc::EDQUOT => "EDQUOT",
            _ => "errno",
        }
    }

    /// Errors that go away by retrying (after a reconnect where the client was blocklisted).
    pub fn is_transient(self) -> bool {
        matches!(
            self.0,
            libc::ETIMEDOUT | libc::ENOTCONN | libc::EAGAIN | libc::ESHUTDOWN
        )
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Which kind of call it is (or failed); a bounded label for metrics. A new kind goes
/// last, and into [`RadosOp::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RadosOp {
    Connect,
    PoolLookup,
    PoolList,
    Read,
    Write,
    Exec,
    Watch,
    WatchCheck,
    Unwatch,
    Notify,
    NotifyAck,
    SnapCreate,
    SnapRemove,
    SnapRollback,
    List,
    ConfigKey,
    Blocklist,
    /// librbd's `rbd_mirror_image_demote` / `_promote` (the promotion helper).
    MirrorDemote,
    MirrorPromote,
}

impl RadosOp {
    /// Every kind, in declaration order (`ALL[op as usize] == op`): the metrics layer
    /// registers one counter per kind up front and indexes it without a lookup.
    pub const ALL: [RadosOp; 19] = [
        RadosOp::Connect,
        RadosOp::PoolLookup,
        RadosOp::PoolList,
        RadosOp::Read,
        RadosOp::Write,
        RadosOp::Exec,
        RadosOp::Watch,
        RadosOp::WatchCheck,
        RadosOp::Unwatch,
        RadosOp::Notify,
        RadosOp::NotifyAck,
        RadosOp::SnapCreate,
        RadosOp::SnapRemove,
        RadosOp::SnapRollback,
        RadosOp::List,
        RadosOp::ConfigKey,
        RadosOp::Blocklist,
        RadosOp::MirrorDemote,
        RadosOp::MirrorPromote,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RadosOp::Connect => "connect",
            RadosOp::PoolLookup => "pool_lookup",
            RadosOp::PoolList => "pool_list",
            RadosOp::Read => "read",
            RadosOp::Write => "write",
            RadosOp::Exec => "exec",
            RadosOp::Watch => "watch",
            RadosOp::WatchCheck => "watch_check",
            RadosOp::Unwatch => "unwatch",
            RadosOp::Notify => "notify",
            RadosOp::NotifyAck => "notify_ack",
            RadosOp::SnapCreate => "snap_create",
            RadosOp::SnapRemove => "snap_remove",
            RadosOp::SnapRollback => "snap_rollback",
            RadosOp::List => "list",
            RadosOp::ConfigKey => "config_key",
            RadosOp::Blocklist => "blocklist",
            RadosOp::MirrorDemote => "mirror_demote",
            RadosOp::MirrorPromote => "mirror_promote",
        }
    }
}

impl fmt::Display for RadosOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed RADOS call; `errno` shows as "ENOENT (2)" and is the same on both backends.
/// `object` is the object name, pool name or config key the call was about (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} {object}: {errno}")]
pub struct RadosError {
    pub op: RadosOp,
    pub object: String,
    pub errno: Errno,
}

impl RadosError {
    /// Every failed call of both backends is built here, so it is also where it is counted.
    pub fn new(op: RadosOp, object: impl Into<String>, errno: Errno) -> Self {
        crate::metrics::rados_error(op.name(), errno.name());
        RadosError {
            op,
            object: object.into(),
            errno,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.errno.is_transient()
    }

    /// Bounded label for metrics.
    pub fn code(&self) -> &'static str {
        self.errno.name()
    }

    pub fn is_not_found(&self) -> bool {
        self.errno == Errno::ENOENT
    }
}

pub type RadosResult<T> = Result<T, RadosError>;

#[cfg(test)]
mod tests {
    use super::RadosOp;

    #[test]
    fn all_is_indexed_by_discriminant() {
        for (i, op) in RadosOp::ALL.into_iter().enumerate() {
            assert_eq!(op as usize, i, "{op}");
        }
        assert_eq!(RadosOp::ALL.len(), RadosOp::MirrorPromote as usize + 1);
    }
}
