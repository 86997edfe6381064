//! What librbd and rbd-mirror put inside cls_journal's opaque blobs (spec §4.3–§4.4): the
//! `ClientData` of a registered client and the `TagData` of a tag, plus the well-known
//! client ids and tag owners.
//!
//! `ClientData` is a v2/compat 1 frame with a `u32` meta type; `TagData`, `TagPredecessor`
//! and `MirrorPeerSyncPoint` have no frame of their own (the sync point's optional namespace
//! depends on the enclosing `ClientData` version). Replaces `librbd/journal/Types.{h,cc}`
//! (client and tag part) and the constants of `librbd/Journal.cc`.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::codec::{Decode, Decoder, Encode, Encoder, Result, wire_enum, wire_struct};
use super::image::SnapshotNamespace;

/// librbd's own journal client id.
pub const IMAGE_CLIENT_ID: &str = "";
/// Tag owner meaning "primary here".
pub const LOCAL_MIRROR_UUID: &str = "";
/// Tag owner written by a demotion.
pub const ORPHAN_MIRROR_UUID: &str = "<orphan>";

/// The `ClientData` frame version we write and the newest we read.
const CLIENT_DATA_VERSION: u8 = 2;

wire_enum! {
    /// Where an rbd-mirror peer client is in its life.
    pub enum MirrorPeerState: u32 { Syncing = 0, Replaying = 1 }
}

/// One in-progress image sync point (a snapshot on the primary being copied).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MirrorPeerSyncPoint {
    pub snap_name: String,
    pub from_snap_name: String,
    /// Copy progress (objects done), absent before the first checkpoint.
    pub object_number: Option<u64>,
    /// Absent in v1 `ClientData` (defaults to a user snapshot).
    pub snap_namespace: SnapshotNamespace,
}

impl MirrorPeerSyncPoint {
    fn encode(&self, e: &mut Encoder) {
        e.string(&self.snap_name);
        e.string(&self.from_snap_name);
        e.put(&self.object_number);
        e.put(&self.snap_namespace);
    }

    fn decode(version: u8, d: &mut Decoder) -> Result<Self> {
        Ok(MirrorPeerSyncPoint {
            snap_name: d.get()?,
            from_snap_name: d.get()?,
            object_number: d.get()?,
            snap_namespace: if version >= 2 {
                d.get()?
            } else {
                SnapshotNamespace::User
            },
        })
    }
}

/// The client meta of an rbd-mirror peer registered on a primary's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPeerClientMeta {
    /// The replica's image id on the mirror site ("" before it exists).
    pub image_id: String,
    pub state: MirrorPeerState,
    pub sync_object_count: u64,
    pub sync_points: Vec<MirrorPeerSyncPoint>,
    /// Primary snap id → replica snap id.
    pub snap_seqs: BTreeMap<u64, u64>,
}

/// `librbd::journal::ClientData`: who a journal client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientData {
    /// librbd itself (client id ""): its tag class and whether a resync was requested.
    Image {
        tag_class: u64,
        resync_requested: bool,
    },
    MirrorPeer(MirrorPeerClientMeta),
    /// The `rbd` CLI (e.g. `rbd journal ...`).
    Cli,
    /// A meta type from a newer release, body kept verbatim.
    Unknown {
        client_meta_type: u32,
        body: Bytes,
    },
}

impl ClientData {
    pub fn client_meta_type(&self) -> u32 {
        match self {
            ClientData::Image { .. } => 0,
            ClientData::MirrorPeer(_) => 1,
            ClientData::Cli => 2,
            ClientData::Unknown {
                client_meta_type, ..
            } => *client_meta_type,
        }
    }
}

impl Encode for ClientData {
    fn encode(&self, e: &mut Encoder) {
        e.frame(CLIENT_DATA_VERSION, 1, |e| {
            e.u32(self.client_meta_type());
            match self {
                ClientData::Image {
                    tag_class,
                    resync_requested,
                } => {
                    e.u64(*tag_class);
                    e.bool(*resync_requested);
                }
                ClientData::MirrorPeer(m) => {
                    e.string(&m.image_id);
                    e.put(&m.state);
                    e.u64(m.sync_object_count);
                    e.len_u32(m.sync_points.len());
                    m.sync_points.iter().for_each(|p| p.encode(e));
                    e.put(&m.snap_seqs);
                }
                ClientData::Cli => {}
                ClientData::Unknown { body, .. } => e.raw(body),
            }
        });
    }
}

impl Decode for ClientData {
    const MIN_LEN: usize = 10;
    fn decode(d: &mut Decoder) -> Result<Self> {
        let mut f = d.frame("ClientData", CLIENT_DATA_VERSION)?;
        let v = f.version;
        let b = &mut f.body;
        Ok(match b.u32()? {
            0 => ClientData::Image {
                tag_class: b.get()?,
                resync_requested: b.get()?,
            },
            1 => {
                let image_id = b.get()?;
                let state = b.get()?;
                let sync_object_count = b.get()?;
                // Smallest sync point: two empty strings and an absent optional.
                let n = b.count("sync_points", 9)?;
                let mut sync_points = Vec::with_capacity(n);
                for _ in 0..n {
                    sync_points.push(MirrorPeerSyncPoint::decode(v, b)?);
                }
                let snap_seqs = b.get()?;
                ClientData::MirrorPeer(MirrorPeerClientMeta {
                    image_id,
                    state,
                    sync_object_count,
                    sync_points,
                    snap_seqs,
                })
            }
            2 => ClientData::Cli,
            client_meta_type => ClientData::Unknown {
                client_meta_type,
                body: b.rest(),
            },
        })
    }
}

/// The journal client id of `rbd-relay check-prefix --hold`.
pub const CHECK_HOLD_CLIENT_ID: &str = "rbd-relay-check-prefix";

/// The data of `rbd-relay check-prefix`'s hold on a primary's journal: to librbd and
/// rbd-mirror a CLI client (meta type 2, whose body they do not read: their decoders skip
/// the rest of a frame), to us also the image size when the hold began, which the journal
/// does not record and the reference image of the check must start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckHold {
    pub image_size: u64,
}

impl Encode for CheckHold {
    fn encode(&self, e: &mut Encoder) {
        e.frame(CLIENT_DATA_VERSION, 1, |e| {
            e.u32(2);
            e.u64(self.image_size);
        });
    }
}

impl Decode for CheckHold {
    const MIN_LEN: usize = 18;
    fn decode(d: &mut Decoder) -> Result<Self> {
        let mut f = d.frame("CheckHold", CLIENT_DATA_VERSION)?;
        let b = &mut f.body;
        match b.u32()? {
            2 => Ok(CheckHold {
                image_size: b.get()?,
            }),
            value => Err(super::codec::DecodeError::BadValue {
                what: "CheckHold client meta type",
                value: value.into(),
            }),
        }
    }
}

wire_struct! {
    /// The last committed entry of the previous tag epoch.
    #[derive(Default)]
    pub struct TagPredecessor {
        pub mirror_uuid: String,
        /// False when the previous epoch had no committed entry.
        pub commit_valid: bool,
        pub tag_tid: u64,
        pub entry_tid: u64,
    }
}

wire_struct! {
    /// `librbd::journal::TagData` (no frame): who owns this epoch and where the last ended.
    #[derive(Default)]
    pub struct TagData {
        /// `""` = primary here, `"<orphan>"` = demoted, else the remote primary's mirror uuid.
        pub mirror_uuid: String,
        pub predecessor: TagPredecessor,
    }
}

impl TagData {
    /// Whether the epoch's owner is this site (the image is primary if this is the newest tag).
    pub fn is_local(&self) -> bool {
        self.mirror_uuid == LOCAL_MIRROR_UUID
    }

    pub fn is_orphan(&self) -> bool {
        self.mirror_uuid == ORPHAN_MIRROR_UUID
    }
}

/// For tests: an epoch owned by `owner` whose predecessor is `pred_owner`'s tag `pred_tid`
/// (committed, entry 7).
#[cfg(test)]
pub fn test_tag(owner: &str, pred_owner: &str, pred_tid: u64) -> TagData {
    TagData {
        mirror_uuid: owner.into(),
        predecessor: TagPredecessor {
            mirror_uuid: pred_owner.into(),
            commit_valid: true,
            tag_tid: pred_tid,
            entry_tid: 7,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::testutil::*;
    use proptest::prelude::*;

    const IMAGE_META: &str = "02010d000000 00000000 0000000000000000 00";
    const PEER_PRUNED: &str = "020128000000 01000000 0c000000 313032363162353866393634 01000000
        5000000000000000 00000000 00000000";
    const PEER_SEQS: &str = r#"020138000000 01000000 0c000000"10261b58f964" 01000000 5000000000000000 00000000
        01000000 0600000000000000 0400000000000000"#;
    const A: &str = "775c2cc6-9e0d-4f32-ad29-161a4c4d5768";

    #[test]
    fn check_hold_is_a_cli_client_to_ceph() {
        let hold = CheckHold {
            image_size: 64 << 20,
        };
        let raw = hold.to_bytes();
        assert_eq!(CheckHold::from_bytes(raw.clone()).unwrap(), hold);
        // What librbd (and our own ClientData) read of it: a CLI client.
        assert_eq!(ClientData::from_bytes(raw).unwrap(), ClientData::Cli);
        let image = hex(IMAGE_META);
        assert!(CheckHold::from_bytes(image).is_err());
    }

    #[test]
    fn golden_client_data() {
        let raw = hex(IMAGE_META);
        let c = ClientData::from_bytes(raw.clone()).unwrap();
        assert_eq!(
            c,
            ClientData::Image {
                tag_class: 0,
                resync_requested: false
            }
        );
        assert_eq!(c.to_bytes(), raw);

        for (h, seqs) in [(PEER_PRUNED, vec![]), (PEER_SEQS, vec![(6, 4)])] {
            let raw = hex(h);
            let c = ClientData::from_bytes(raw.clone()).unwrap();
            let want = MirrorPeerClientMeta {
                image_id: "10261b58f964".into(),
                state: MirrorPeerState::Replaying,
                sync_object_count: 80,
                sync_points: vec![],
                snap_seqs: seqs.into_iter().collect(),
            };
            assert_eq!(c, ClientData::MirrorPeer(want));
            assert_eq!(c.to_bytes(), raw);
        }
    }

    #[test]
    fn golden_tag_data() {
        let cases = [
            (
                "00000000 00000000 01 0100000000000000 1500000000000000",
                "",
                "",
                true,
                1,
                21,
            ),
            (
                r#"08000000 "<orphan>" 00000000 01 0600000000000000 0100000000000000"#,
                ORPHAN_MIRROR_UUID,
                "",
                true,
                6,
                1,
            ),
            (
                &format!(r#"24000000 "{A}" 00000000 00 0000000000000000 0000000000000000"#),
                A,
                "",
                false,
                0,
                0,
            ),
            (
                r#"00000000 08000000 "<orphan>" 01 0700000000000000 0100000000000000"#,
                "",
                ORPHAN_MIRROR_UUID,
                true,
                7,
                1,
            ),
        ];
        for (h, owner, pred_owner, valid, tag, entry) in cases {
            let raw = hex(h);
            let t = TagData::from_bytes(raw.clone()).unwrap();
            let want = TagData {
                mirror_uuid: owner.into(),
                predecessor: TagPredecessor {
                    mirror_uuid: pred_owner.into(),
                    commit_valid: valid,
                    tag_tid: tag,
                    entry_tid: entry,
                },
            };
            assert_eq!(t, want);
            assert_eq!(t.to_bytes(), raw);
        }
        assert!(TagData::default().is_local());
        // A.4: the tag_create payload for a fresh primary journal.
        assert_eq!(
            TagData::default().to_bytes(),
            hex("00000000 00000000 00 0000000000000000 0000000000000000")
        );
    }

    #[test]
    fn sync_points_round_trip_and_v1_omits_namespace() {
        let meta = MirrorPeerClientMeta {
            image_id: "i".into(),
            state: MirrorPeerState::Syncing,
            sync_object_count: 0,
            sync_points: vec![
                MirrorPeerSyncPoint {
                    snap_name: ".rbd-mirror.x.y".into(),
                    from_snap_name: "".into(),
                    object_number: Some(7),
                    snap_namespace: SnapshotNamespace::User,
                },
                MirrorPeerSyncPoint::default(),
            ],
            snap_seqs: [(1, 2), (3, 4)].into(),
        };
        let c = ClientData::MirrorPeer(meta);
        assert_eq!(ClientData::from_bytes(c.to_bytes()).unwrap(), c);
        // v1: sync point without namespace.
        let raw = hex(
            r#"010127000000 01000000 01000000"i" 00000000 0000000000000000 01000000
            01000000"s" 00000000 00 00000000"#,
        );
        let ClientData::MirrorPeer(m) = ClientData::from_bytes(raw).unwrap() else {
            panic!()
        };
        assert_eq!(
            m.sync_points,
            vec![MirrorPeerSyncPoint {
                snap_name: "s".into(),
                ..Default::default()
            }]
        );
    }

    #[test]
    fn unknown_meta_type_is_kept() {
        let raw = hex("020106000000 07000000 aabb");
        let c = ClientData::from_bytes(raw.clone()).unwrap();
        assert_eq!(
            c,
            ClientData::Unknown {
                client_meta_type: 7,
                body: hex("aabb")
            }
        );
        assert_eq!(c.to_bytes(), raw);
        assert_eq!(
            ClientData::from_bytes(hex("020104000000 02000000")).unwrap(),
            ClientData::Cli
        );
    }

    #[test]
    fn mutated_goldens_never_panic() {
        mutate_all(&hex(PEER_SEQS), ClientData::from_bytes);
        mutate_all(
            &hex(r#"08000000 "<orphan>" 00000000 01 0600000000000000 0100000000000000"#),
            TagData::from_bytes,
        );
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = ClientData::from_bytes(data.clone());
            let _ = TagData::from_bytes(data);
        }

        #[test]
        fn round_trip(id in ".{0,16}", st in any::<u32>(), count in any::<u64>(),
                      points in proptest::collection::vec((".{0,8}", ".{0,8}", any::<Option<u64>>()), 0..3),
                      seqs in proptest::collection::btree_map(any::<u64>(), any::<u64>(), 0..4),
                      owner in ".{0,40}", valid in any::<bool>(), tag in any::<u64>(), entry in any::<u64>()) {
            let c = ClientData::MirrorPeer(MirrorPeerClientMeta {
                image_id: id, state: MirrorPeerState::from_raw(st), sync_object_count: count,
                sync_points: points.into_iter().map(|(s, f, o)| MirrorPeerSyncPoint {
                    snap_name: s, from_snap_name: f, object_number: o, snap_namespace: SnapshotNamespace::User }).collect(),
                snap_seqs: seqs });
            prop_assert_eq!(ClientData::from_bytes(c.to_bytes()).unwrap(), c);
            let t = TagData { mirror_uuid: owner.clone(),
                predecessor: TagPredecessor { mirror_uuid: owner, commit_valid: valid, tag_tid: tag, entry_tid: entry } };
            prop_assert_eq!(TagData::from_bytes(t.to_bytes()).unwrap(), t);
        }
    }
}
