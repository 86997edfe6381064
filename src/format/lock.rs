//! cls_lock method inputs and replies (class `"lock"`): what librbd's exclusive lock and
//! rbd-mirror's leader lock are made of (spec §5.6).
//!
//! Layouts are \[SRC\]: read from Ceph's `cls/lock/cls_lock_ops.h` and
//! `cls/lock/cls_lock_types.h`, not captured from a live cluster, except `cls_lock_lock_op`,
//! whose field list the spec confirms \[LIVE\] (the bytes themselves were not captured).
//! Every struct is a v1/compat 1 frame. Ceph's decoders also accept a pre-framing legacy
//! form (`DECODE_START_LEGACY_COMPAT_LEN`); no Pacific daemon writes it and we do not read it.
//! Replaces the encoders of those two headers.

use std::collections::BTreeMap;

use super::codec::{UTime, framed_struct, wire_enum};
use super::entity::{EntityAddr, EntityName};

/// The lock librbd uses on `rbd_header.<id>` for the exclusive-lock feature.
pub const RBD_LOCK_NAME: &str = "rbd_lock";
/// The tag librbd puts on that lock.
pub const RBD_LOCK_TAG: &str = "internal";
/// Cookie prefix of librbd's managed lock: `auto <watch handle>`.
pub const RBD_LOCK_COOKIE_PREFIX: &str = "auto ";

/// `cls_lock_lock_op.flags`: take the lock again if we already hold it.
pub const LOCK_FLAG_MAY_RENEW: u8 = 0x1;
/// `cls_lock_lock_op.flags`: fail unless we already hold it.
pub const LOCK_FLAG_MUST_RENEW: u8 = 0x2;

/// librbd's cookie for a lock taken under watch `handle`.
pub fn rbd_lock_cookie(watch_handle: u64) -> String {
    format!("{RBD_LOCK_COOKIE_PREFIX}{watch_handle}")
}

wire_enum! {
    /// `ClsLockType` (a `u8` on the wire).
    pub enum LockType: u8 { None = 0, Exclusive = 1, Shared = 2, ExclusiveEphemeral = 3 }
}

framed_struct! {
    /// `cls_lock_lock_op`: input of `lock`.
    pub struct LockOp(1, 1) {
        pub name: String,
        pub lock_type: LockType,
        pub cookie: String,
        pub tag: String,
        pub description: String,
        /// Zero = until unlocked.
        pub duration: UTime,
        pub flags: u8,
    }
}

framed_struct! {
    /// `cls_lock_unlock_op`: input of `unlock`.
    pub struct UnlockOp(1, 1) {
        pub name: String,
        pub cookie: String,
    }
}

framed_struct! {
    /// `cls_lock_break_op`: input of `break_lock`.
    pub struct BreakLockOp(1, 1) {
        pub name: String,
        pub locker: EntityName,
        pub cookie: String,
    }
}

framed_struct! {
    /// `cls_lock_get_info_op`: input of `get_info`.
    pub struct GetInfoOp(1, 1) {
        pub name: String,
    }
}

framed_struct! {
    /// `cls_lock_assert_op`: input of `assert_locked`.
    pub struct AssertOp(1, 1) {
        pub name: String,
        pub lock_type: LockType,
        pub cookie: String,
        pub tag: String,
    }
}

framed_struct! {
    /// `locker_id_t`: one holder of a lock. Ordered like Ceph (locker, then cookie), which
    /// is the order of the lockers map on the wire.
    #[derive(PartialOrd, Ord)]
    pub struct LockerId(1, 1) {
        pub locker: EntityName,
        pub cookie: String,
    }
}

framed_struct! {
    /// `locker_info_t`: what cls recorded about a holder.
    pub struct LockerInfo(1, 1) {
        /// Zero = no expiry.
        pub expiration: UTime,
        /// The holder's address (matched against header watchers to detect dead owners).
        pub addr: EntityAddr,
        pub description: String,
    }
}

framed_struct! {
    /// `cls_lock_get_info_reply`: output of `get_info`.
    pub struct GetInfoReply(1, 1) {
        pub lockers: BTreeMap<LockerId, LockerInfo>,
        pub lock_type: LockType,
        pub tag: String,
    }
}

framed_struct! {
    /// `cls_lock_list_locks_reply`: output of `list_locks`.
    pub struct ListLocksReply(1, 1) {
        pub locks: Vec<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::codec::{Decode, Encode};
    use crate::format::testutil::*;
    use proptest::prelude::*;

    fn rbd_lock() -> LockOp {
        LockOp {
            name: RBD_LOCK_NAME.into(),
            lock_type: LockType::Exclusive,
            cookie: rbd_lock_cookie(94070268372096),
            tag: RBD_LOCK_TAG.into(),
            description: String::new(),
            duration: UTime::ZERO,
            flags: 0,
        }
    }

    #[test]
    fn lock_op_layout() {
        // Built by hand from the field list (spec §5.6): name, type, cookie, tag, description,
        // duration, flags inside one v1 frame.
        let want = hex(
            r#"01 01 3d000000 08000000"rbd_lock" 01 13000000"auto 94070268372096"
            08000000"internal" 00000000 00000000 00000000 00"#,
        );
        assert_eq!(rbd_lock().to_bytes(), want);
        assert_eq!(LockOp::from_bytes(want).unwrap(), rbd_lock());
    }

    #[test]
    fn get_info_reply_round_trip() {
        let addr = EntityAddr::new(
            EntityAddr::TYPE_ANY,
            0xac74b4fc,
            "127.0.0.1:0".parse().unwrap(),
        );
        let reply = GetInfoReply {
            lockers: [(
                LockerId {
                    locker: EntityName::client(4134),
                    cookie: rbd_lock_cookie(94070268372096),
                },
                LockerInfo {
                    expiration: UTime::ZERO,
                    addr,
                    description: String::new(),
                },
            )]
            .into(),
            lock_type: LockType::Exclusive,
            tag: RBD_LOCK_TAG.into(),
        };
        let raw = reply.to_bytes();
        assert_eq!(GetInfoReply::from_bytes(raw.clone()).unwrap(), reply);
        mutate_all(&raw, GetInfoReply::from_bytes);
    }

    #[test]
    fn other_ops_round_trip() {
        let u = UnlockOp {
            name: "n".into(),
            cookie: "c".into(),
        };
        assert_eq!(
            u.to_bytes(),
            hex(r#"01 01 0a000000 01000000"n" 01000000"c""#)
        );
        let b = BreakLockOp {
            name: "n".into(),
            locker: EntityName::client(7),
            cookie: "c".into(),
        };
        assert_eq!(BreakLockOp::from_bytes(b.to_bytes()).unwrap(), b);
        let l = ListLocksReply {
            locks: vec![RBD_LOCK_NAME.into()],
        };
        assert_eq!(ListLocksReply::from_bytes(l.to_bytes()).unwrap(), l);
        let a = AssertOp {
            name: "n".into(),
            lock_type: LockType::Shared,
            cookie: "".into(),
            tag: "t".into(),
        };
        assert_eq!(AssertOp::from_bytes(a.to_bytes()).unwrap(), a);
        let g = GetInfoOp {
            name: RBD_LOCK_NAME.into(),
        };
        assert_eq!(GetInfoOp::from_bytes(g.to_bytes()).unwrap(), g);
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..160)) {
            let _ = LockOp::from_bytes(data.clone());
            let _ = BreakLockOp::from_bytes(data.clone());
            let _ = GetInfoReply::from_bytes(data);
        }

        #[test]
        fn lock_op_round_trip(name in ".{0,12}", t in any::<u8>(), cookie in ".{0,20}", tag in ".{0,8}",
                              desc in ".{0,8}", d in any::<(u32, u32)>(), flags in any::<u8>()) {
            let op = LockOp { name, lock_type: LockType::from_raw(t), cookie, tag, description: desc,
                              duration: UTime::new(d.0, d.1), flags };
            prop_assert_eq!(LockOp::from_bytes(op.to_bytes()).unwrap(), op);
        }
    }
}
