//! librbd's journal events: the `EventEntry` carried in every journal record (spec §4.1).
//!
//! An event is a v5/compat 1 frame holding a `u32` event type and that event's fields, then
//! (when the frame's version is at least 4) a second v1 frame with the creation timestamp.
//! Fields added over time are read only when the frame's version has them; unknown event
//! types keep their body verbatim and are skipped by the frame length. We always write v5.
//! Replaces `librbd/journal/Types.{h,cc}` (event part).
//!
//! Traps this layout holds (spec Appendix B): OpFinish writes its op tid twice; SnapRename
//! is op tid, *destination* name, source snap id, source name; AioWrite payloads are
//! `Bytes` slices of the record, never copied.

use bytes::Bytes;

use super::codec::{Decode, DecodeError, Decoder, Encode, Encoder, Result, UTime};
use super::image::SnapshotNamespace;

/// The event frame version we write and the newest we read.
pub const EVENT_VERSION: u8 = 5;
/// Bytes an `EventEntry` adds around its fields: event frame + type + metadata frame.
pub const EVENT_OVERHEAD: usize = 6 + 4 + 14;
/// librbd's default cap on one encoded event (`rbd_journal_max_payload_bytes`).
pub const MAX_PAYLOAD_BYTES: usize = 16384;

/// One librbd journal event and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Discard (or write-zeroes, when `discard_granularity_bytes == 0`).
    AioDiscard {
        offset: u64,
        length: u64,
        /// Written by librbd as `discard_granularity_bytes > 0`; kept separately so a
        /// decode/encode round trip is exact.
        skip_partial_discard: bool,
        discard_granularity_bytes: u32,
    },
    AioWrite {
        offset: u64,
        length: u64,
        data: Bytes,
    },
    AioFlush,
    /// Completion of the op event with the same `op_tid`.
    OpFinish {
        op_tid: u64,
        r: i32,
    },
    SnapCreate {
        op_tid: u64,
        snap_name: String,
        snap_namespace: SnapshotNamespace,
    },
    SnapRemove {
        op_tid: u64,
        snap_name: String,
        snap_namespace: SnapshotNamespace,
    },
    /// `snap_id` is the primary's id of the source snapshot.
    SnapRename {
        op_tid: u64,
        dst_snap_name: String,
        snap_id: u64,
        src_snap_name: String,
    },
    SnapProtect {
        op_tid: u64,
        snap_name: String,
        snap_namespace: SnapshotNamespace,
    },
    SnapUnprotect {
        op_tid: u64,
        snap_name: String,
        snap_namespace: SnapshotNamespace,
    },
    SnapRollback {
        op_tid: u64,
        snap_name: String,
        snap_namespace: SnapshotNamespace,
    },
    Rename {
        op_tid: u64,
        image_name: String,
    },
    Resize {
        op_tid: u64,
        size: u64,
    },
    Flatten {
        op_tid: u64,
    },
    /// Written on demotion and promotion; its timestamp is 0.
    DemotePromote,
    SnapLimit {
        op_tid: u64,
        limit: u64,
    },
    /// `features` is the mask of bits being changed.
    UpdateFeatures {
        op_tid: u64,
        features: u64,
        enabled: bool,
    },
    MetadataSet {
        op_tid: u64,
        key: String,
        value: String,
    },
    MetadataRemove {
        op_tid: u64,
        key: String,
    },
    /// `data` is the pattern repeated over `[offset, offset + length)`.
    AioWriteSame {
        offset: u64,
        length: u64,
        data: Bytes,
    },
    AioCompareAndWrite {
        offset: u64,
        length: u64,
        cmp_data: Bytes,
        write_data: Bytes,
    },
    /// A type from a newer release: the bytes after the type, as found.
    Unknown {
        event_type: u32,
        body: Bytes,
    },
}

impl Event {
    /// The wire discriminator.
    pub fn event_type(&self) -> u32 {
        match self {
            Event::AioDiscard { .. } => 0,
            Event::AioWrite { .. } => 1,
            Event::AioFlush => 2,
            Event::OpFinish { .. } => 3,
            Event::SnapCreate { .. } => 4,
            Event::SnapRemove { .. } => 5,
            Event::SnapRename { .. } => 6,
            Event::SnapProtect { .. } => 7,
            Event::SnapUnprotect { .. } => 8,
            Event::SnapRollback { .. } => 9,
            Event::Rename { .. } => 10,
            Event::Resize { .. } => 11,
            Event::Flatten { .. } => 12,
            Event::DemotePromote => 13,
            Event::SnapLimit { .. } => 14,
            Event::UpdateFeatures { .. } => 15,
            Event::MetadataSet { .. } => 16,
            Event::MetadataRemove { .. } => 17,
            Event::AioWriteSame { .. } => 18,
            Event::AioCompareAndWrite { .. } => 19,
            Event::Unknown { event_type, .. } => *event_type,
        }
    }

    /// A stable name for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Event::AioDiscard { .. } => "AioDiscard",
            Event::AioWrite { .. } => "AioWrite",
            Event::AioFlush => "AioFlush",
            Event::OpFinish { .. } => "OpFinish",
            Event::SnapCreate { .. } => "SnapCreate",
            Event::SnapRemove { .. } => "SnapRemove",
            Event::SnapRename { .. } => "SnapRename",
            Event::SnapProtect { .. } => "SnapProtect",
            Event::SnapUnprotect { .. } => "SnapUnprotect",
            Event::SnapRollback { .. } => "SnapRollback",
            Event::Rename { .. } => "Rename",
            Event::Resize { .. } => "Resize",
            Event::Flatten { .. } => "Flatten",
            Event::DemotePromote => "DemotePromote",
            Event::SnapLimit { .. } => "SnapLimit",
            Event::UpdateFeatures { .. } => "UpdateFeatures",
            Event::MetadataSet { .. } => "MetadataSet",
            Event::MetadataRemove { .. } => "MetadataRemove",
            Event::AioWriteSame { .. } => "AioWriteSame",
            Event::AioCompareAndWrite { .. } => "AioCompareAndWrite",
            Event::Unknown { .. } => "Unknown",
        }
    }

    /// The op tid of an operation event (or of OpFinish), `None` for I/O events.
    pub fn op_tid(&self) -> Option<u64> {
        match self {
            Event::OpFinish { op_tid, .. }
            | Event::SnapCreate { op_tid, .. }
            | Event::SnapRemove { op_tid, .. }
            | Event::SnapRename { op_tid, .. }
            | Event::SnapProtect { op_tid, .. }
            | Event::SnapUnprotect { op_tid, .. }
            | Event::SnapRollback { op_tid, .. }
            | Event::Rename { op_tid, .. }
            | Event::Resize { op_tid, .. }
            | Event::Flatten { op_tid }
            | Event::SnapLimit { op_tid, .. }
            | Event::UpdateFeatures { op_tid, .. }
            | Event::MetadataSet { op_tid, .. }
            | Event::MetadataRemove { op_tid, .. } => Some(*op_tid),
            _ => None,
        }
    }

    fn encode_fields(&self, e: &mut Encoder) {
        match self {
            Event::AioDiscard {
                offset,
                length,
                skip_partial_discard,
                discard_granularity_bytes,
            } => {
                e.u64(*offset);
                e.u64(*length);
                e.bool(*skip_partial_discard);
                e.u32(*discard_granularity_bytes);
            }
            Event::AioWrite {
                offset,
                length,
                data,
            }
            | Event::AioWriteSame {
                offset,
                length,
                data,
            } => {
                e.u64(*offset);
                e.u64(*length);
                e.blob(data);
            }
            Event::AioFlush | Event::DemotePromote => {}
            Event::OpFinish { op_tid, r } => {
                e.u64(*op_tid);
                e.u64(*op_tid);
                e.i32(*r);
            }
            Event::SnapCreate {
                op_tid,
                snap_name,
                snap_namespace,
            }
            | Event::SnapRemove {
                op_tid,
                snap_name,
                snap_namespace,
            }
            | Event::SnapProtect {
                op_tid,
                snap_name,
                snap_namespace,
            }
            | Event::SnapUnprotect {
                op_tid,
                snap_name,
                snap_namespace,
            }
            | Event::SnapRollback {
                op_tid,
                snap_name,
                snap_namespace,
            } => {
                e.u64(*op_tid);
                e.string(snap_name);
                e.put(snap_namespace);
            }
            Event::SnapRename {
                op_tid,
                dst_snap_name,
                snap_id,
                src_snap_name,
            } => {
                e.u64(*op_tid);
                e.string(dst_snap_name);
                e.u64(*snap_id);
                e.string(src_snap_name);
            }
            Event::Rename { op_tid, image_name } => {
                e.u64(*op_tid);
                e.string(image_name);
            }
            Event::Resize { op_tid, size: v } | Event::SnapLimit { op_tid, limit: v } => {
                e.u64(*op_tid);
                e.u64(*v);
            }
            Event::Flatten { op_tid } => e.u64(*op_tid),
            Event::UpdateFeatures {
                op_tid,
                features,
                enabled,
            } => {
                e.u64(*op_tid);
                e.u64(*features);
                e.bool(*enabled);
            }
            Event::MetadataSet { op_tid, key, value } => {
                e.u64(*op_tid);
                e.string(key);
                e.string(value);
            }
            Event::MetadataRemove { op_tid, key } => {
                e.u64(*op_tid);
                e.string(key);
            }
            Event::AioCompareAndWrite {
                offset,
                length,
                cmp_data,
                write_data,
            } => {
                e.u64(*offset);
                e.u64(*length);
                e.blob(cmp_data);
                e.blob(write_data);
            }
            Event::Unknown { body, .. } => e.raw(body),
        }
    }

    /// Snapshot events other than SnapCreate gained their namespace in v4; SnapCreate also
    /// carried it in v3.
    fn decode_snap(
        v: u8,
        min_ns_version: u8,
        d: &mut Decoder,
    ) -> Result<(u64, String, SnapshotNamespace)> {
        let op_tid = d.u64()?;
        let snap_name = d.string()?;
        let ns = if v >= min_ns_version {
            d.get()?
        } else {
            SnapshotNamespace::User
        };
        Ok((op_tid, snap_name, ns))
    }

    fn decode_fields(event_type: u32, v: u8, d: &mut Decoder) -> Result<Self> {
        Ok(match event_type {
            0 => {
                let offset = d.u64()?;
                let length = d.u64()?;
                let skip_partial_discard = if v >= 4 { d.bool()? } else { false };
                let discard_granularity_bytes = if v >= 5 {
                    d.u32()?
                } else if skip_partial_discard {
                    u32::MAX
                } else {
                    0
                };
                Event::AioDiscard {
                    offset,
                    length,
                    skip_partial_discard,
                    discard_granularity_bytes,
                }
            }
            1 => Event::AioWrite {
                offset: d.u64()?,
                length: d.u64()?,
                data: d.blob()?,
            },
            2 => Event::AioFlush,
            3 => {
                let op_tid = d.u64()?;
                let again = d.u64()?;
                if again != op_tid {
                    return Err(DecodeError::BadValue {
                        what: "OpFinish second op_tid",
                        value: again,
                    });
                }
                Event::OpFinish {
                    op_tid,
                    r: d.i32()?,
                }
            }
            4 => {
                let (op_tid, snap_name, snap_namespace) = Self::decode_snap(v, 3, d)?;
                Event::SnapCreate {
                    op_tid,
                    snap_name,
                    snap_namespace,
                }
            }
            5 | 7 | 8 | 9 => {
                let (op_tid, snap_name, snap_namespace) = Self::decode_snap(v, 4, d)?;
                match event_type {
                    5 => Event::SnapRemove {
                        op_tid,
                        snap_name,
                        snap_namespace,
                    },
                    7 => Event::SnapProtect {
                        op_tid,
                        snap_name,
                        snap_namespace,
                    },
                    8 => Event::SnapUnprotect {
                        op_tid,
                        snap_name,
                        snap_namespace,
                    },
                    _ => Event::SnapRollback {
                        op_tid,
                        snap_name,
                        snap_namespace,
                    },
                }
            }
            6 => Event::SnapRename {
                op_tid: d.u64()?,
                dst_snap_name: d.string()?,
                snap_id: d.u64()?,
                src_snap_name: if v >= 2 { d.string()? } else { String::new() },
            },
            10 => Event::Rename {
                op_tid: d.u64()?,
                image_name: d.string()?,
            },
            11 => Event::Resize {
                op_tid: d.u64()?,
                size: d.u64()?,
            },
            12 => Event::Flatten { op_tid: d.u64()? },
            13 => Event::DemotePromote,
            14 => Event::SnapLimit {
                op_tid: d.u64()?,
                limit: d.u64()?,
            },
            15 => Event::UpdateFeatures {
                op_tid: d.u64()?,
                features: d.u64()?,
                enabled: d.bool()?,
            },
            16 => Event::MetadataSet {
                op_tid: d.u64()?,
                key: d.string()?,
                value: d.string()?,
            },
            17 => Event::MetadataRemove {
                op_tid: d.u64()?,
                key: d.string()?,
            },
            18 => Event::AioWriteSame {
                offset: d.u64()?,
                length: d.u64()?,
                data: d.blob()?,
            },
            19 => Event::AioCompareAndWrite {
                offset: d.u64()?,
                length: d.u64()?,
                cmp_data: d.blob()?,
                write_data: d.blob()?,
            },
            event_type => Event::Unknown {
                event_type,
                body: d.rest(),
            },
        })
    }
}

/// `librbd::journal::EventEntry`: an event plus when it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEntry {
    pub event: Event,
    /// Zero for DemotePromote and for encodings older than v4 (which lack it).
    pub timestamp: UTime,
}

impl Encode for EventEntry {
    fn encode(&self, e: &mut Encoder) {
        e.frame(EVENT_VERSION, 1, |e| {
            e.u32(self.event.event_type());
            self.event.encode_fields(e);
        });
        e.frame(1, 1, |e| e.put(&self.timestamp));
    }
}

impl Decode for EventEntry {
    const MIN_LEN: usize = 10;
    fn decode(d: &mut Decoder) -> Result<Self> {
        let mut f = d.frame("EventEntry", EVENT_VERSION)?;
        let event_type = f.body.u32()?;
        let event = Event::decode_fields(event_type, f.version, &mut f.body)?;
        let timestamp = if f.version >= 4 {
            let mut meta = d.frame("EventEntry metadata", 1)?;
            meta.body.get()?
        } else {
            UTime::ZERO
        };
        Ok(EventEntry { event, timestamp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::entry::{scan_entries, tests::GOLDEN};
    use crate::format::testutil::*;
    use proptest::prelude::*;

    fn ts(sec: u32, nsec: u32) -> UTime {
        UTime::new(sec, nsec)
    }

    /// The decoded values the spec lists for each Appendix A.1 record, in GOLDEN's order.
    fn expected() -> Vec<EventEntry> {
        let e = |event, t| EventEntry {
            event,
            timestamp: t,
        };
        vec![
            e(Event::AioFlush, ts(1795581883, 871781421)),
            e(
                Event::Resize {
                    op_tid: 2,
                    size: 83886080,
                },
                ts(1795581893, 935213702),
            ),
            e(
                Event::AioWrite {
                    offset: 12288,
                    length: 8,
                    data: Bytes::from_static(b"rbdmirr!"),
                },
                ts(1795582001, 311211051),
            ),
            e(
                Event::OpFinish { op_tid: 1, r: 0 },
                ts(1795581888, 930868668),
            ),
            e(
                Event::SnapCreate {
                    op_tid: 1,
                    snap_name: "s1".into(),
                    snap_namespace: SnapshotNamespace::User,
                },
                ts(1795581883, 873403292),
            ),
            e(
                Event::MetadataSet {
                    op_tid: 3,
                    key: "k1".into(),
                    value: "v1".into(),
                },
                ts(1795581898, 939662472),
            ),
            e(
                Event::SnapRename {
                    op_tid: 6,
                    dst_snap_name: "s1r".into(),
                    snap_id: 4,
                    src_snap_name: "s1".into(),
                },
                ts(1795581913, 953133081),
            ),
            e(
                Event::AioDiscard {
                    offset: 5242880,
                    length: 4096,
                    skip_partial_discard: false,
                    discard_granularity_bytes: 0,
                },
                ts(1795581924, 15854275),
            ),
            e(
                Event::UpdateFeatures {
                    op_tid: 3,
                    features: 24,
                    enabled: true,
                },
                ts(1795582016, 320164415),
            ),
            e(Event::DemotePromote, ts(0, 0)),
            e(
                Event::Rename {
                    op_tid: 1,
                    image_name: "mimg2".into(),
                },
                ts(1795581981, 287217443),
            ),
            e(
                Event::SnapLimit {
                    op_tid: 1,
                    limit: 10,
                },
                ts(1795582001, 312323152),
            ),
            e(
                Event::MetadataRemove {
                    op_tid: 8,
                    key: "k1".into(),
                },
                ts(1795581924, 16379900),
            ),
        ]
    }

    #[test]
    fn golden_events_decode_and_reencode() {
        for ((name, h, _, _), want) in GOLDEN.iter().zip(expected()) {
            let scan = scan_entries(hex(h)).unwrap();
            let data = scan.entries[0].entry.data.clone();
            let got =
                EventEntry::from_bytes(data.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.event.name(), *name);
            assert_eq!(got, want, "{name}");
            assert_eq!(got.to_bytes(), data, "{name}");
        }
    }

    #[test]
    fn aio_write_payload_is_not_copied() {
        let raw = hex(GOLDEN[2].1);
        let data = scan_entries(raw.clone())
            .unwrap()
            .entries
            .remove(0)
            .entry
            .data;
        let EventEntry {
            event: Event::AioWrite { data: payload, .. },
            ..
        } = EventEntry::from_bytes(data).unwrap()
        else {
            panic!("not an AioWrite")
        };
        let at = raw.windows(8).position(|w| w == b"rbdmirr!").unwrap();
        assert_eq!(payload.as_ptr(), raw[at..].as_ptr());
    }

    #[test]
    fn op_finish_with_mismatched_tids_is_refused() {
        let bad = hex(
            "050118000000 03000000 0100000000000000 0200000000000000 00000000 010108000000 0000000000000000",
        );
        assert!(matches!(
            EventEntry::from_bytes(bad),
            Err(DecodeError::BadValue { .. })
        ));
    }

    #[test]
    fn unknown_type_is_skipped_by_frame_length() {
        let raw = hex("050106000000 63000000 abcd 010108000000 0100000002000000");
        let e = EventEntry::from_bytes(raw.clone()).unwrap();
        assert_eq!(
            e.event,
            Event::Unknown {
                event_type: 99,
                body: hex("abcd")
            }
        );
        assert_eq!(e.timestamp, ts(1, 2));
        assert_eq!(e.to_bytes(), raw);
    }

    #[test]
    fn older_versions_fill_defaults() {
        // v3 AioDiscard: no skip_partial, no granularity, no metadata block.
        let raw = hex("030114000000 00000000 0100000000000000 0200000000000000");
        let e = EventEntry::from_bytes(raw).unwrap();
        assert_eq!(e.timestamp, UTime::ZERO);
        assert_eq!(
            e.event,
            Event::AioDiscard {
                offset: 1,
                length: 2,
                skip_partial_discard: false,
                discard_granularity_bytes: 0
            }
        );
        // v4 AioDiscard with skip_partial → granularity "any".
        let raw = hex(
            "040115000000 00000000 0100000000000000 0200000000000000 01 010108000000 0000000000000000",
        );
        let Event::AioDiscard {
            discard_granularity_bytes,
            ..
        } = EventEntry::from_bytes(raw).unwrap().event
        else {
            panic!()
        };
        assert_eq!(discard_granularity_bytes, u32::MAX);
        // v3 SnapCreate carries a namespace; v3 SnapRemove does not.
        let ns = "010104000000 00000000";
        let raw = hex(&format!(
            "03011c000000 04000000 0100000000000000 02000000\"s1\" {ns}"
        ));
        assert!(matches!(
            EventEntry::from_bytes(raw).unwrap().event,
            Event::SnapCreate { .. }
        ));
        let raw = hex("030112000000 05000000 0100000000000000 02000000\"s1\"");
        assert!(matches!(
            EventEntry::from_bytes(raw).unwrap().event,
            Event::SnapRemove { .. }
        ));
    }

    #[test]
    fn overhead_matches_spec() {
        let e = EventEntry {
            event: Event::AioFlush,
            timestamp: UTime::ZERO,
        };
        assert_eq!(e.to_bytes().len(), EVENT_OVERHEAD);
    }

    #[test]
    fn mutated_goldens_never_panic() {
        for (_, h, _, _) in GOLDEN {
            let data = scan_entries(hex(h)).unwrap().entries.remove(0).entry.data;
            mutate_all(&data, EventEntry::from_bytes);
        }
    }

    fn blob() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..32).prop_map(Bytes::from)
    }

    fn namespace() -> impl Strategy<Value = SnapshotNamespace> {
        prop_oneof![
            Just(SnapshotNamespace::User),
            (any::<i64>(), ".{0,8}", ".{0,8}").prop_map(|(p, g, s)| SnapshotNamespace::Group {
                group_pool: p,
                group_id: g,
                group_snapshot_id: s
            }),
        ]
    }

    fn event() -> impl Strategy<Value = Event> {
        let s = || ".{0,12}";
        prop_oneof![
            (any::<u64>(), any::<u64>(), any::<bool>(), any::<u32>()).prop_map(|(o, l, s, g)| {
                Event::AioDiscard {
                    offset: o,
                    length: l,
                    skip_partial_discard: s,
                    discard_granularity_bytes: g,
                }
            }),
            (any::<u64>(), blob()).prop_map(|(o, d)| Event::AioWrite {
                offset: o,
                length: d.len() as u64,
                data: d
            }),
            Just(Event::AioFlush),
            Just(Event::DemotePromote),
            (any::<u64>(), any::<i32>()).prop_map(|(t, r)| Event::OpFinish { op_tid: t, r }),
            (any::<u64>(), s(), namespace(), 0..5u8).prop_map(|(t, n, ns, k)| match k {
                0 => Event::SnapCreate {
                    op_tid: t,
                    snap_name: n,
                    snap_namespace: ns
                },
                1 => Event::SnapRemove {
                    op_tid: t,
                    snap_name: n,
                    snap_namespace: ns
                },
                2 => Event::SnapProtect {
                    op_tid: t,
                    snap_name: n,
                    snap_namespace: ns
                },
                3 => Event::SnapUnprotect {
                    op_tid: t,
                    snap_name: n,
                    snap_namespace: ns
                },
                _ => Event::SnapRollback {
                    op_tid: t,
                    snap_name: n,
                    snap_namespace: ns
                },
            }),
            (any::<u64>(), s(), any::<u64>(), s()).prop_map(|(t, d, i, src)| Event::SnapRename {
                op_tid: t,
                dst_snap_name: d,
                snap_id: i,
                src_snap_name: src
            }),
            (any::<u64>(), s()).prop_map(|(t, n)| Event::Rename {
                op_tid: t,
                image_name: n
            }),
            (any::<u64>(), any::<u64>()).prop_map(|(t, v)| Event::Resize { op_tid: t, size: v }),
            any::<u64>().prop_map(|t| Event::Flatten { op_tid: t }),
            (any::<u64>(), any::<u64>()).prop_map(|(t, v)| Event::SnapLimit {
                op_tid: t,
                limit: v
            }),
            (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(t, f, e)| {
                Event::UpdateFeatures {
                    op_tid: t,
                    features: f,
                    enabled: e,
                }
            }),
            (any::<u64>(), s(), s()).prop_map(|(t, k, v)| Event::MetadataSet {
                op_tid: t,
                key: k,
                value: v
            }),
            (any::<u64>(), s()).prop_map(|(t, k)| Event::MetadataRemove { op_tid: t, key: k }),
            (any::<u64>(), any::<u64>(), blob()).prop_map(|(o, l, d)| Event::AioWriteSame {
                offset: o,
                length: l,
                data: d
            }),
            (any::<u64>(), blob(), blob()).prop_map(|(o, c, w)| Event::AioCompareAndWrite {
                offset: o,
                length: w.len() as u64,
                cmp_data: c,
                write_data: w
            }),
            (20u32.., blob()).prop_map(|(t, b)| Event::Unknown {
                event_type: t,
                body: b
            }),
        ]
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = EventEntry::from_bytes(data);
        }

        #[test]
        fn round_trip(event in event(), sec in any::<u32>(), nsec in any::<u32>()) {
            let e = EventEntry { event, timestamp: UTime::new(sec, nsec) };
            prop_assert_eq!(EventEntry::from_bytes(e.to_bytes()).unwrap(), e);
        }
    }
}
