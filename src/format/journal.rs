//! The generic journal's metadata as cls_journal keeps it on `journal.<id>` (spec §3.1–§3.4,
//! §3.6): positions, clients, tags, header omap keys, object names and splay arithmetic, and
//! the inputs of the `journal.*` methods.
//!
//! Replaces `cls/journal/cls_journal_types.{h,cc}`, the argument packing of
//! `cls/journal/cls_journal_client.cc` and the object-number helpers scattered over
//! `journal/JournalMetadata.cc` / `journal/Utils.cc`. Client and tag payloads stay opaque
//! [`Bytes`] here: librbd's meaning for them lives in `client_data`.

use bytes::Bytes;

use super::codec::{DecodeError, Result, framed_struct, wire_enum, wire_struct};

/// `tag_create`'s "allocate a new tag class" marker.
pub const TAG_CLASS_NEW: u64 = u64::MAX;
/// `client_list` page size used by Ceph (`JOURNAL_MAX_RETURN`).
pub const CLIENT_LIST_MAX_RETURN: u64 = 256;

/// Journal header object: `journal.<journal_id>` (the journal id is the image id).
pub fn header_oid(journal_id: &str) -> String {
    format!("journal.{journal_id}")
}

/// Journal data object: `journal_data.<pool_id>.<journal_id>.<object_number>`, decimal.
/// `pool_id` is the real numeric id of the pool holding the data objects, never -1.
pub fn data_oid(pool_id: i64, journal_id: &str, object_number: u64) -> String {
    format!("journal_data.{pool_id}.{journal_id}.{object_number}")
}

/// Header omap keys (spec §3.2).
pub mod keys {
    pub const ORDER: &str = "order";
    pub const SPLAY_WIDTH: &str = "splay_width";
    pub const POOL_ID: &str = "pool_id";
    pub const MINIMUM_SET: &str = "minimum_set";
    pub const ACTIVE_SET: &str = "active_set";
    pub const NEXT_TAG_TID: &str = "next_tag_tid";
    pub const NEXT_TAG_CLASS: &str = "next_tag_class";
    pub const CLIENT_PREFIX: &str = "client_";
    pub const TAG_PREFIX: &str = "tag_";

    /// `client_<id>`; librbd's own client (id "") is just `client_`.
    pub fn client(id: &str) -> String {
        format!("{CLIENT_PREFIX}{id}")
    }
    /// `tag_<tid as 16 lower-case hex digits>`, so omap order is tid order.
    pub fn tag(tid: u64) -> String {
        format!("{TAG_PREFIX}{tid:016x}")
    }
}

/// Object geometry of one journal: `order` (object size `2^order`) and `splay_width`
/// (objects written in parallel per object set). Construction validates both, so the
/// arithmetic below cannot divide by zero or overflow a shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalGeometry {
    order: u8,
    splay_width: u8,
}

impl JournalGeometry {
    /// librbd accepts orders 12..=64; we accept any order below 64 and a non-zero width.
    pub fn new(order: u8, splay_width: u8) -> Result<Self> {
        if order >= 64 {
            return Err(DecodeError::BadValue {
                what: "journal order",
                value: order.into(),
            });
        }
        if splay_width == 0 {
            return Err(DecodeError::BadValue {
                what: "journal splay_width",
                value: 0,
            });
        }
        Ok(JournalGeometry { order, splay_width })
    }

    pub fn order(self) -> u8 {
        self.order
    }

    pub fn splay_width(self) -> u8 {
        self.splay_width
    }

    /// The soft object size limit passed to `append`: `2^order` bytes.
    pub fn soft_max_size(self) -> u64 {
        1u64 << self.order
    }

    /// The object set an object belongs to.
    pub fn object_set(self, object_number: u64) -> u64 {
        object_number / u64::from(self.splay_width)
    }

    /// The splay offset (position within its set) of an object.
    pub fn splay_offset(self, object_number: u64) -> u8 {
        // The remainder is below splay_width, itself a u8.
        (object_number % u64::from(self.splay_width)) as u8
    }

    /// Object `splay_offset` of `object_set`; `None` if the number would overflow.
    pub fn object_number(self, object_set: u64, splay_offset: u8) -> Option<u64> {
        object_set
            .checked_mul(self.splay_width.into())?
            .checked_add(u64::from(splay_offset % self.splay_width))
    }

    /// Where the writer puts entry `entry_tid` of a tag while `active_set` is open.
    pub fn object_for_entry(self, active_set: u64, entry_tid: u64) -> Option<u64> {
        self.object_number(active_set, self.splay_offset(entry_tid))
    }

    /// The same splay offset one object set later.
    pub fn next_object(self, object_number: u64) -> Option<u64> {
        object_number.checked_add(self.splay_width.into())
    }
}

framed_struct! {
    /// `cls::journal::ObjectPosition`: the last committed entry within one data object.
    pub struct ObjectPosition(1, 1) {
        pub object_number: u64,
        pub tag_tid: u64,
        pub entry_tid: u64,
    }
}

framed_struct! {
    /// `cls::journal::ObjectSetPosition`: newest first, at most one per splay offset.
    #[derive(Default)]
    pub struct ObjectSetPosition(1, 1) {
        pub object_positions: Vec<ObjectPosition>,
    }
}

wire_enum! {
    /// Whether a registered client still counts for trimming.
    pub enum ClientState: u8 { Connected = 0, Disconnected = 1 }
}

framed_struct! {
    /// `cls::journal::Client`: a registered consumer or producer (`client_<id>`).
    pub struct Client(1, 1) {
        pub id: String,
        /// Opaque to cls; librbd stores a `ClientData` here.
        pub data: Bytes,
        pub commit_position: ObjectSetPosition,
        pub state: ClientState,
    }
}

framed_struct! {
    /// `cls::journal::Tag`: an epoch of entries (`tag_<tid>`).
    pub struct Tag(1, 1) {
        pub tid: u64,
        pub tag_class: u64,
        /// Opaque to cls; librbd stores a `TagData` here.
        pub data: Bytes,
    }
}

// ---- journal.* method inputs (spec §3.4) --------------------------------------------------
// `client_list` takes `codec::ListInput`. Single-value inputs use the plain type: `u64` (set_minimum_set, set_active_set, get_tag,
// guard_append), `String` (get_client, client_unregister). Outputs: `u8` order / splay width,
// `i64` pool id, `u64` sets and tids, `Client`, `Tag`, `Vec<Client>` (client_list's
// `set<Client>`, ordered by id), `Vec<Tag>` (tag_list's `set<Tag>`, ordered by tid).

wire_struct! {
    /// `create` input.
    pub struct CreateInput {
        pub order: u8,
        pub splay_width: u8,
        /// -1: data objects live in the header's pool.
        pub pool_id: i64,
    }
}

wire_struct! {
    /// `client_register` and `client_update_data` input.
    pub struct ClientDataInput {
        pub id: String,
        pub data: Bytes,
    }
}

wire_struct! {
    /// `client_update_state` input.
    pub struct ClientUpdateStateInput {
        pub id: String,
        pub state: ClientState,
    }
}

wire_struct! {
    /// `client_commit` input.
    pub struct ClientCommitInput {
        pub id: String,
        pub commit_position: ObjectSetPosition,
    }
}

wire_struct! {
    /// `tag_create` input; `tag_tid` must equal `next_tag_tid`.
    pub struct TagCreateInput {
        pub tag_tid: u64,
        /// [`TAG_CLASS_NEW`] allocates a class.
        pub tag_class: u64,
        pub data: Bytes,
    }
}

wire_struct! {
    /// `tag_list` input.
    pub struct TagListInput {
        /// 0 lists from the beginning.
        pub start_after_tag_tid: u64,
        pub max_return: u64,
        /// Tags this client's commit position no longer needs are hidden.
        pub client_id: String,
        pub tag_class: Option<u64>,
    }
}

wire_struct! {
    /// `append` input: refused with `-EOVERFLOW` once the object holds `soft_max_size` bytes.
    pub struct AppendInput {
        pub soft_max_size: u64,
        pub data: Bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::codec::{Decode, Encode};
    use crate::format::testutil::*;
    use proptest::prelude::*;

    const IMAGE_CLIENT_4: &str = "01 01 9e000000 00000000
        13000000 02010d000000 00000000 0000000000000000 00
        01 01 7c000000 04000000
        01 01 18000000 0000000000000000 0800000000000000 0000000000000000
        01 01 18000000 0100000000000000 0600000000000000 0100000000000000
        01 01 18000000 0300000000000000 0500000000000000 0300000000000000
        01 01 18000000 0200000000000000 0500000000000000 0200000000000000
        00";
    const REPLICA_CLIENT: &str =
        "010144000000 00000000 13000000 02010d000000 00000000 0000000000000000 00
        010122000000 01000000 010118000000 0000000000000000 0800000000000000 0000000000000000 00";
    const MIRROR_CLIENT: &str = "0101dd000000
        24000000 33643030653261302d313065652d343730312d396233362d366434386562646131386433
        2e000000 020128000000 01000000 0c000000 313032363162353866393634 01000000
                 5000000000000000 00000000 00000000
        01017c000000 04000000
          010118000000 0000000000000000 0800000000000000 0000000000000000
          010118000000 0100000000000000 0600000000000000 0100000000000000
          010118000000 0300000000000000 0500000000000000 0300000000000000
          010118000000 0200000000000000 0500000000000000 0200000000000000
        00";
    const TAG_A2: &str = "01012d000000 0200000000000000 0000000000000000
        19000000 00000000 00000000 01 0100000000000000 1500000000000000";
    const TAG_B0: &str = "010151000000 0000000000000000 0000000000000000
        3d000000 24000000 37373563326363362d396530642d346633322d616432392d313631613463346435373638
        00000000 00 0000000000000000 0000000000000000";

    fn pos(o: u64, t: u64, e: u64) -> ObjectPosition {
        ObjectPosition {
            object_number: o,
            tag_tid: t,
            entry_tid: e,
        }
    }

    #[test]
    fn golden_clients() {
        let raw = hex(IMAGE_CLIENT_4);
        assert_eq!(raw.len(), 164);
        let c = Client::from_bytes(raw.clone()).unwrap();
        assert_eq!(c.id, "");
        assert_eq!(c.data, hex("02010d000000 00000000 0000000000000000 00"));
        assert_eq!(
            c.commit_position.object_positions,
            vec![pos(0, 8, 0), pos(1, 6, 1), pos(3, 5, 3), pos(2, 5, 2)]
        );
        assert_eq!(c.state, ClientState::Connected);
        assert_eq!(c.to_bytes(), raw);

        let raw = hex(REPLICA_CLIENT);
        assert_eq!(raw.len(), 74);
        let c = Client::from_bytes(raw.clone()).unwrap();
        assert_eq!(c.commit_position.object_positions, vec![pos(0, 8, 0)]);
        assert_eq!(c.to_bytes(), raw);

        let raw = hex(MIRROR_CLIENT);
        assert_eq!(raw.len(), 227);
        let c = Client::from_bytes(raw.clone()).unwrap();
        assert_eq!(c.id, "3d00e2a0-10ee-4701-9b36-6d48ebda18d3");
        assert_eq!(c.data.len(), 0x2e);
        assert_eq!(c.commit_position.object_positions.len(), 4);
        assert_eq!(c.to_bytes(), raw);
    }

    #[test]
    fn golden_tags() {
        let raw = hex(TAG_A2);
        assert_eq!(raw.len(), 51);
        let t = Tag::from_bytes(raw.clone()).unwrap();
        assert_eq!((t.tid, t.tag_class, t.data.len()), (2, 0, 0x19));
        assert_eq!(t.to_bytes(), raw);
        let raw = hex(TAG_B0);
        assert_eq!(raw.len(), 87);
        let t = Tag::from_bytes(raw.clone()).unwrap();
        assert_eq!((t.tid, t.data.len()), (0, 0x3d));
        assert_eq!(t.to_bytes(), raw);
        let get_tag_1 = hex(
            "01012d000000 0100000000000000 0000000000000000 19000000 00000000 00000000 00 0000000000000000 0000000000000000",
        );
        assert_eq!(
            Tag::from_bytes(get_tag_1.clone()).unwrap().to_bytes(),
            get_tag_1
        );
    }

    #[test]
    fn golden_method_inputs() {
        let c = CreateInput {
            order: 20,
            splay_width: 2,
            pool_id: -1,
        };
        assert_eq!(c.to_bytes(), hex("14 02 ffffffffffffffff"));

        let t = TagCreateInput {
            tag_tid: 0,
            tag_class: TAG_CLASS_NEW,
            data: hex("00000000 00000000 00 0000000000000000 0000000000000000"),
        };
        let raw = hex(
            "0000000000000000 ffffffffffffffff 19000000 00000000 00000000 00 0000000000000000 0000000000000000",
        );
        assert_eq!(t.to_bytes(), raw);
        assert_eq!(TagCreateInput::from_bytes(raw).unwrap(), t);

        let r = ClientDataInput {
            id: String::new(),
            data: hex("02010d000000 00000000 0000000000000000 00"),
        };
        assert_eq!(
            r.to_bytes(),
            hex("00000000 13000000 02010d000000 00000000 0000000000000000 00")
        );

        let cc = ClientCommitInput {
            id: String::new(),
            commit_position: ObjectSetPosition {
                object_positions: vec![pos(3, 1, 5), pos(2, 1, 4)],
            },
        };
        let raw = hex("00000000 010140000000 02000000
            010118000000 0300000000000000 0100000000000000 0500000000000000
            010118000000 0200000000000000 0100000000000000 0400000000000000");
        assert_eq!(cc.to_bytes(), raw);
        assert_eq!(ClientCommitInput::from_bytes(raw).unwrap(), cc);

        let tl = TagListInput {
            start_after_tag_tid: 0,
            max_return: 256,
            client_id: String::new(),
            tag_class: None,
        };
        assert_eq!(
            tl.to_bytes(),
            hex("0000000000000000 0001000000000000 00000000 00")
        );
        let tl = TagListInput {
            tag_class: Some(0),
            ..tl
        };
        assert_eq!(
            tl.to_bytes(),
            hex("0000000000000000 0001000000000000 00000000 01 0000000000000000")
        );

        let cl = crate::format::codec::ListInput {
            start_after: String::new(),
            max_return: CLIENT_LIST_MAX_RETURN,
        };
        assert_eq!(cl.to_bytes(), hex("00000000 0001000000000000"));

        let a = AppendInput {
            soft_max_size: 16,
            data: Bytes::from_static(b"0123456789"),
        };
        assert_eq!(
            a.to_bytes(),
            hex("1000000000000000 0a000000 30313233343536373839")
        );
    }

    #[test]
    fn golden_header_scalars_and_names() {
        assert_eq!(u8::from_bytes(hex("10")).unwrap(), 16);
        assert_eq!(i64::from_bytes(hex("ffffffffffffffff")).unwrap(), -1);
        assert_eq!(u64::from_bytes(hex("0900000000000000")).unwrap(), 9);
        assert_eq!(keys::tag(8), "tag_0000000000000008");
        assert_eq!(keys::client(""), "client_");
        assert_eq!(header_oid("102944c9623c"), "journal.102944c9623c");
        assert_eq!(
            data_oid(1, "102944c9623c", 3),
            "journal_data.1.102944c9623c.3"
        );
    }

    #[test]
    fn splay_arithmetic() {
        assert!(JournalGeometry::new(24, 0).is_err());
        assert!(JournalGeometry::new(64, 4).is_err());
        let g = JournalGeometry::new(12, 2).unwrap();
        assert_eq!(g.soft_max_size(), 4096);
        // Spec §3.6: order 12, splay 2; entry 6 of the tag went to object 2 in set 1.
        assert_eq!(g.object_for_entry(1, 6), Some(2));
        assert_eq!(g.object_for_entry(1, 7), Some(3));
        assert_eq!(g.object_set(7), 3);
        assert_eq!(g.splay_offset(7), 1);
        assert_eq!(g.next_object(5), Some(7));
        assert_eq!(g.object_number(u64::MAX, 1), None);
    }

    #[test]
    fn mutated_goldens_never_panic() {
        mutate_all(&hex(MIRROR_CLIENT), Client::from_bytes);
        mutate_all(&hex(TAG_B0), Tag::from_bytes);
    }

    fn position() -> impl Strategy<Value = ObjectPosition> {
        any::<(u64, u64, u64)>().prop_map(|(o, t, e)| pos(o, t, e))
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..160)) {
            let _ = Client::from_bytes(data.clone());
            let _ = Tag::from_bytes(data.clone());
            let _ = Vec::<Client>::from_bytes(data.clone());
            let _ = TagListInput::from_bytes(data.clone());
            let _ = ClientCommitInput::from_bytes(data);
        }

        #[test]
        fn round_trips(id in ".{0,40}", data in proptest::collection::vec(any::<u8>(), 0..40),
                       positions in proptest::collection::vec(position(), 0..5), st in any::<u8>(),
                       tid in any::<u64>(), class in any::<u64>()) {
            let c = Client { id, data: Bytes::from(data.clone()),
                commit_position: ObjectSetPosition { object_positions: positions },
                state: ClientState::from_raw(st) };
            prop_assert_eq!(Client::from_bytes(c.to_bytes()).unwrap(), c);
            let t = Tag { tid, tag_class: class, data: Bytes::from(data) };
            prop_assert_eq!(Tag::from_bytes(t.to_bytes()).unwrap(), t);
        }

        #[test]
        fn geometry_never_panics(order in any::<u8>(), w in any::<u8>(), n in any::<u64>(), s in any::<u64>()) {
            if let Ok(g) = JournalGeometry::new(order, w) {
                let _ = (g.soft_max_size(), g.object_set(n), g.splay_offset(n), g.object_number(s, w),
                         g.object_for_entry(s, n), g.next_object(n));
                if let Some(obj) = g.object_number(g.object_set(n), g.splay_offset(n)) {
                    prop_assert_eq!(obj, n);
                }
            }
        }
    }
}
