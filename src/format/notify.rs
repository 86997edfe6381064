//! Watch/notify payloads: on `rbd_mirroring` (librbd's `mirroring_watcher`, spec §2.9) and on
//! `rbd_header.<id>` (librbd's `watch_notify`, spec §2.10), plus the notify acknowledgement.
//!
//! Both are a frame holding a `u32` op and that op's body; fields added in later versions
//! are read only when the frame's version has them, unknown ops keep their body. Journal
//! header notifies carry an empty payload and need no type. Replaces
//! `librbd/mirroring_watcher/Types.{h,cc}` and `librbd/WatchNotifyTypes.{h,cc}`; the
//! header-op bodies beyond the captured ones are \[SRC\] (Pacific's v7 encoder).

use bytes::Bytes;

use super::codec::{Decode, Decoder, Encode, Encoder, Result, framed_struct};
use super::image::SnapshotNamespace;
use super::mirror::{MirrorImageState, MirrorMode};

/// `librbd::mirroring_watcher::NotifyMessage` (v1/compat 1) sent on `rbd_mirroring`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirroringNotify {
    ModeUpdated {
        mirror_mode: MirrorMode,
    },
    /// The image state is a `u32` here (a `u8` inside `MirrorImage`).
    ImageUpdated {
        state: MirrorImageState,
        image_id: String,
        global_image_id: String,
    },
    Unknown {
        notify_op: u32,
        body: Bytes,
    },
}

impl Encode for MirroringNotify {
    fn encode(&self, e: &mut Encoder) {
        e.frame(1, 1, |e| match self {
            MirroringNotify::ModeUpdated { mirror_mode } => {
                e.u32(0);
                e.put(mirror_mode);
            }
            MirroringNotify::ImageUpdated {
                state,
                image_id,
                global_image_id,
            } => {
                e.u32(1);
                e.u32(state.raw().into());
                e.string(image_id);
                e.string(global_image_id);
            }
            MirroringNotify::Unknown { notify_op, body } => {
                e.u32(*notify_op);
                e.raw(body);
            }
        });
    }
}

impl Decode for MirroringNotify {
    const MIN_LEN: usize = 10;
    fn decode(d: &mut Decoder) -> Result<Self> {
        let mut f = d.frame("mirroring_watcher::NotifyMessage", 1)?;
        let b = &mut f.body;
        Ok(match b.u32()? {
            0 => MirroringNotify::ModeUpdated {
                mirror_mode: b.get()?,
            },
            1 => {
                let raw = b.u32()?;
                // Values beyond a u8 cannot be a state; keep them as an unknown op instead of
                // silently truncating.
                let Ok(state) = u8::try_from(raw) else {
                    let mut e = Encoder::new();
                    e.u32(raw);
                    e.raw(&b.rest());
                    return Ok(MirroringNotify::Unknown {
                        notify_op: 1,
                        body: e.finish(),
                    });
                };
                MirroringNotify::ImageUpdated {
                    state: MirrorImageState::from_raw(state),
                    image_id: b.get()?,
                    global_image_id: b.get()?,
                }
            }
            notify_op => MirroringNotify::Unknown {
                notify_op,
                body: b.rest(),
            },
        })
    }
}

/// `ClientId`: a librados client (global id) and its watch handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ClientId {
    pub gid: u64,
    pub handle: u64,
}

/// `AsyncRequestId`: a client plus its request counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AsyncRequestId {
    pub client_id: ClientId,
    pub request_id: u64,
}

impl Encode for ClientId {
    fn encode(&self, e: &mut Encoder) {
        e.u64(self.gid);
        e.u64(self.handle);
    }
}
impl Decode for ClientId {
    const MIN_LEN: usize = 16;
    fn decode(d: &mut Decoder) -> Result<Self> {
        Ok(ClientId {
            gid: d.u64()?,
            handle: d.u64()?,
        })
    }
}
impl Encode for AsyncRequestId {
    fn encode(&self, e: &mut Encoder) {
        self.client_id.encode(e);
        e.u64(self.request_id);
    }
}
impl Decode for AsyncRequestId {
    const MIN_LEN: usize = 24;
    fn decode(d: &mut Decoder) -> Result<Self> {
        Ok(AsyncRequestId {
            client_id: d.get()?,
            request_id: d.u64()?,
        })
    }
}

/// The version of `watch_notify::NotifyMessage` we write and the newest we read.
pub const HEADER_NOTIFY_VERSION: u8 = 7;

/// `librbd::watch_notify::NotifyMessage` (v7/compat 1) sent on `rbd_header.<id>`.
/// An empty payload is the legacy form of [`HeaderNotify::HeaderUpdate`]; see
/// [`HeaderNotify::from_payload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderNotify {
    AcquiredLock {
        client_id: ClientId,
    },
    ReleasedLock {
        client_id: ClientId,
    },
    RequestLock {
        client_id: ClientId,
        force: bool,
    },
    HeaderUpdate,
    AsyncProgress {
        request: AsyncRequestId,
        offset: u64,
        total: u64,
    },
    AsyncComplete {
        request: AsyncRequestId,
        result: i32,
    },
    Flatten {
        request: AsyncRequestId,
    },
    Resize {
        size: u64,
        request: AsyncRequestId,
        allow_shrink: bool,
    },
    SnapCreate {
        snap_name: String,
        snap_namespace: SnapshotNamespace,
        request: AsyncRequestId,
        flags: u64,
    },
    SnapRemove {
        snap_name: String,
        snap_namespace: SnapshotNamespace,
    },
    RebuildObjectMap {
        request: AsyncRequestId,
    },
    SnapRename {
        snap_id: u64,
        snap_name: String,
        snap_namespace: SnapshotNamespace,
    },
    SnapProtect {
        snap_name: String,
        snap_namespace: SnapshotNamespace,
    },
    SnapUnprotect {
        snap_name: String,
        snap_namespace: SnapshotNamespace,
    },
    Rename {
        image_name: String,
    },
    UpdateFeatures {
        features: u64,
        enabled: bool,
    },
    Migrate {
        request: AsyncRequestId,
    },
    Sparsify {
        request: AsyncRequestId,
        sparse_size: u64,
    },
    Quiesce {
        request: AsyncRequestId,
    },
    Unquiesce {
        request: AsyncRequestId,
    },
    Unknown {
        notify_op: u32,
        body: Bytes,
    },
}

impl HeaderNotify {
    /// Decodes a notify payload as received, treating an empty one as HeaderUpdate.
    pub fn from_payload(payload: Bytes) -> Result<Self> {
        if payload.is_empty() {
            Ok(HeaderNotify::HeaderUpdate)
        } else {
            Self::from_bytes(payload)
        }
    }

    pub fn notify_op(&self) -> u32 {
        use HeaderNotify::*;
        match self {
            AcquiredLock { .. } => 0,
            ReleasedLock { .. } => 1,
            RequestLock { .. } => 2,
            HeaderUpdate => 3,
            AsyncProgress { .. } => 4,
            AsyncComplete { .. } => 5,
            Flatten { .. } => 6,
            Resize { .. } => 7,
            SnapCreate { .. } => 8,
            SnapRemove { .. } => 9,
            RebuildObjectMap { .. } => 10,
            SnapRename { .. } => 11,
            SnapProtect { .. } => 12,
            SnapUnprotect { .. } => 13,
            Rename { .. } => 14,
            UpdateFeatures { .. } => 15,
            Migrate { .. } => 16,
            Sparsify { .. } => 17,
            Quiesce { .. } => 18,
            Unquiesce { .. } => 19,
            Unknown { notify_op, .. } => *notify_op,
        }
    }

    fn encode_body(&self, e: &mut Encoder) {
        use HeaderNotify::*;
        match self {
            AcquiredLock { client_id } | ReleasedLock { client_id } => e.put(client_id),
            RequestLock { client_id, force } => {
                e.put(client_id);
                e.bool(*force);
            }
            HeaderUpdate => {}
            AsyncProgress {
                request,
                offset,
                total,
            } => {
                e.put(request);
                e.u64(*offset);
                e.u64(*total);
            }
            AsyncComplete { request, result } => {
                e.put(request);
                e.i32(*result);
            }
            Flatten { request }
            | RebuildObjectMap { request }
            | Migrate { request }
            | Quiesce { request }
            | Unquiesce { request } => e.put(request),
            Resize {
                size,
                request,
                allow_shrink,
            } => {
                e.u64(*size);
                e.put(request);
                e.bool(*allow_shrink);
            }
            SnapCreate {
                snap_name,
                snap_namespace,
                request,
                flags,
            } => {
                e.string(snap_name);
                e.put(snap_namespace);
                e.put(request);
                e.u64(*flags);
            }
            SnapRemove {
                snap_name,
                snap_namespace,
            }
            | SnapProtect {
                snap_name,
                snap_namespace,
            }
            | SnapUnprotect {
                snap_name,
                snap_namespace,
            } => {
                e.string(snap_name);
                e.put(snap_namespace);
            }
            SnapRename {
                snap_id,
                snap_name,
                snap_namespace,
            } => {
                e.u64(*snap_id);
                e.string(snap_name);
                e.put(snap_namespace);
            }
            Rename { image_name } => e.string(image_name),
            UpdateFeatures { features, enabled } => {
                e.u64(*features);
                e.bool(*enabled);
            }
            Sparsify {
                request,
                sparse_size,
            } => {
                e.put(request);
                e.u64(*sparse_size);
            }
            Unknown { body, .. } => e.raw(body),
        }
    }

    /// Snapshot name plus the namespace that v6 added.
    fn decode_snap(v: u8, b: &mut Decoder) -> Result<(String, SnapshotNamespace)> {
        let name = b.string()?;
        let ns = if v >= 6 {
            b.get()?
        } else {
            SnapshotNamespace::User
        };
        Ok((name, ns))
    }

    fn decode_body(op: u32, v: u8, b: &mut Decoder) -> Result<Self> {
        use HeaderNotify::*;
        let client = |b: &mut Decoder| {
            if v >= 2 {
                b.get()
            } else {
                Ok(ClientId::default())
            }
        };
        Ok(match op {
            0 => AcquiredLock {
                client_id: client(b)?,
            },
            1 => ReleasedLock {
                client_id: client(b)?,
            },
            2 => RequestLock {
                client_id: client(b)?,
                force: if v >= 3 { b.bool()? } else { false },
            },
            3 => HeaderUpdate,
            4 => AsyncProgress {
                request: b.get()?,
                offset: b.u64()?,
                total: b.u64()?,
            },
            5 => AsyncComplete {
                request: b.get()?,
                result: b.i32()?,
            },
            6 => Flatten { request: b.get()? },
            7 => Resize {
                size: b.u64()?,
                request: b.get()?,
                allow_shrink: if v >= 4 { b.bool()? } else { true },
            },
            8 => {
                let (snap_name, mut snap_namespace) = Self::decode_snap(v, b)?;
                if v == 5 {
                    snap_namespace = b.get()?;
                }
                let (request, flags) = if v >= 7 {
                    (b.get()?, b.u64()?)
                } else {
                    Default::default()
                };
                SnapCreate {
                    snap_name,
                    snap_namespace,
                    request,
                    flags,
                }
            }
            9 | 12 | 13 => {
                let (snap_name, snap_namespace) = Self::decode_snap(v, b)?;
                match op {
                    9 => SnapRemove {
                        snap_name,
                        snap_namespace,
                    },
                    12 => SnapProtect {
                        snap_name,
                        snap_namespace,
                    },
                    _ => SnapUnprotect {
                        snap_name,
                        snap_namespace,
                    },
                }
            }
            10 => RebuildObjectMap { request: b.get()? },
            11 => {
                let snap_id = b.u64()?;
                let (snap_name, snap_namespace) = Self::decode_snap(v, b)?;
                SnapRename {
                    snap_id,
                    snap_name,
                    snap_namespace,
                }
            }
            14 => Rename {
                image_name: b.get()?,
            },
            15 => UpdateFeatures {
                features: b.u64()?,
                enabled: b.bool()?,
            },
            16 => Migrate { request: b.get()? },
            17 => Sparsify {
                request: b.get()?,
                sparse_size: b.u64()?,
            },
            18 => Quiesce { request: b.get()? },
            19 => Unquiesce { request: b.get()? },
            notify_op => Unknown {
                notify_op,
                body: b.rest(),
            },
        })
    }
}

impl Encode for HeaderNotify {
    fn encode(&self, e: &mut Encoder) {
        e.frame(HEADER_NOTIFY_VERSION, 1, |e| {
            e.u32(self.notify_op());
            self.encode_body(e);
        });
    }
}

impl Decode for HeaderNotify {
    const MIN_LEN: usize = 10;
    fn decode(d: &mut Decoder) -> Result<Self> {
        let mut f = d.frame("watch_notify::NotifyMessage", HEADER_NOTIFY_VERSION)?;
        let op = f.body.u32()?;
        Self::decode_body(op, f.version, &mut f.body)
    }
}

framed_struct! {
    /// `watch_notify::ResponseMessage`: the lock owner's answer to a request (an empty ack
    /// means "no opinion").
    pub struct ResponseMessage(1, 1) {
        pub result: i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::testutil::*;
    use proptest::prelude::*;

    const GID: &str = "c83deb29-613a-4050-b67d-81ecd750299b";
    const CLIENT: ClientId = ClientId {
        gid: 0x104f,
        handle: 0x7f44c4004b70,
    };

    #[test]
    fn golden_mirroring_notifies() {
        let raw = hex(&format!(
            r#"010140000000 01000000 01000000 0c000000 313032393434633936323363 24000000 "{GID}""#
        ));
        let n = MirroringNotify::from_bytes(raw.clone()).unwrap();
        assert_eq!(
            n,
            MirroringNotify::ImageUpdated {
                state: MirrorImageState::Enabled,
                image_id: "102944c9623c".into(),
                global_image_id: GID.into(),
            }
        );
        assert_eq!(n.to_bytes(), raw);

        let raw = hex("010108000000 00000000 02000000");
        let n = MirroringNotify::from_bytes(raw.clone()).unwrap();
        assert_eq!(
            n,
            MirroringNotify::ModeUpdated {
                mirror_mode: MirrorMode::Pool
            }
        );
        assert_eq!(n.to_bytes(), raw);
    }

    #[test]
    fn golden_header_notifies() {
        let req = AsyncRequestId {
            client_id: CLIENT,
            request_id: 2,
        };
        let cases = [
            (
                "07 01 14000000 00000000 4f10000000000000 704b00c4447f0000",
                HeaderNotify::AcquiredLock { client_id: CLIENT },
            ),
            (
                "07 01 1c000000 12000000 4f10000000000000 704b00c4447f0000 0200000000000000",
                HeaderNotify::Quiesce { request: req },
            ),
            (
                "07 01 1c000000 13000000 4f10000000000000 704b00c4447f0000 0200000000000000",
                HeaderNotify::Unquiesce { request: req },
            ),
            ("07 01 04000000 03000000", HeaderNotify::HeaderUpdate),
            (
                "07 01 14000000 01000000 4f10000000000000 704b00c4447f0000",
                HeaderNotify::ReleasedLock { client_id: CLIENT },
            ),
        ];
        for (h, want) in cases {
            let raw = hex(h);
            let got = HeaderNotify::from_bytes(raw.clone()).unwrap();
            assert_eq!(got, want);
            assert_eq!(got.to_bytes(), raw);
        }
        assert_eq!(
            HeaderNotify::from_payload(Bytes::new()).unwrap(),
            HeaderNotify::HeaderUpdate
        );
    }

    #[test]
    fn response_message() {
        let r = ResponseMessage { result: -16 };
        assert_eq!(r.to_bytes(), hex("01 01 04000000 f0ffffff"));
        assert_eq!(ResponseMessage::from_bytes(r.to_bytes()).unwrap(), r);
    }

    #[test]
    fn older_versions_fill_defaults() {
        // v1 AcquiredLock had no client id.
        let n = HeaderNotify::from_bytes(hex("01 01 04000000 00000000")).unwrap();
        assert_eq!(
            n,
            HeaderNotify::AcquiredLock {
                client_id: ClientId::default()
            }
        );
        // v5 SnapCreate carried its namespace after the name.
        let n = HeaderNotify::from_bytes(hex(
            r#"05 01 13000000 08000000 01000000"s" 010104000000 00000000"#,
        ))
        .unwrap();
        assert!(matches!(n, HeaderNotify::SnapCreate { flags: 0, .. }));
    }

    #[test]
    fn mutated_goldens_never_panic() {
        mutate_all(
            &hex(&format!(
                r#"010140000000 01000000 01000000 0c000000 313032393434633936323363 24000000 "{GID}""#
            )),
            MirroringNotify::from_bytes,
        );
        mutate_all(
            &hex("07 01 1c000000 12000000 4f10000000000000 704b00c4447f0000 0200000000000000"),
            HeaderNotify::from_bytes,
        );
    }

    fn request() -> impl Strategy<Value = AsyncRequestId> {
        any::<(u64, u64, u64)>().prop_map(|(g, h, r)| AsyncRequestId {
            client_id: ClientId { gid: g, handle: h },
            request_id: r,
        })
    }

    fn header_notify() -> impl Strategy<Value = HeaderNotify> {
        use HeaderNotify::*;
        let cid = || any::<(u64, u64)>().prop_map(|(gid, handle)| ClientId { gid, handle });
        prop_oneof![
            cid().prop_map(|c| AcquiredLock { client_id: c }),
            cid().prop_map(|c| ReleasedLock { client_id: c }),
            (cid(), any::<bool>()).prop_map(|(c, f)| RequestLock {
                client_id: c,
                force: f
            }),
            Just(HeaderUpdate),
            (request(), any::<u64>(), any::<u64>()).prop_map(|(r, o, t)| AsyncProgress {
                request: r,
                offset: o,
                total: t
            }),
            (request(), any::<i32>()).prop_map(|(r, x)| AsyncComplete {
                request: r,
                result: x
            }),
            request().prop_map(|r| Flatten { request: r }),
            (any::<u64>(), request(), any::<bool>()).prop_map(|(s, r, a)| Resize {
                size: s,
                request: r,
                allow_shrink: a
            }),
            (".{0,8}", request(), any::<u64>()).prop_map(|(n, r, f)| SnapCreate {
                snap_name: n,
                snap_namespace: SnapshotNamespace::User,
                request: r,
                flags: f
            }),
            ".{0,8}".prop_map(|n| SnapRemove {
                snap_name: n,
                snap_namespace: SnapshotNamespace::User
            }),
            request().prop_map(|r| RebuildObjectMap { request: r }),
            (any::<u64>(), ".{0,8}").prop_map(|(i, n)| SnapRename {
                snap_id: i,
                snap_name: n,
                snap_namespace: SnapshotNamespace::User
            }),
            ".{0,8}".prop_map(|n| SnapProtect {
                snap_name: n,
                snap_namespace: SnapshotNamespace::User
            }),
            ".{0,8}".prop_map(|n| SnapUnprotect {
                snap_name: n,
                snap_namespace: SnapshotNamespace::User
            }),
            ".{0,8}".prop_map(|n| Rename { image_name: n }),
            (any::<u64>(), any::<bool>()).prop_map(|(f, e)| UpdateFeatures {
                features: f,
                enabled: e
            }),
            request().prop_map(|r| Migrate { request: r }),
            (request(), any::<u64>()).prop_map(|(r, s)| Sparsify {
                request: r,
                sparse_size: s
            }),
            request().prop_map(|r| Quiesce { request: r }),
            request().prop_map(|r| Unquiesce { request: r }),
            (20u32.., proptest::collection::vec(any::<u8>(), 0..8)).prop_map(|(o, b)| Unknown {
                notify_op: o,
                body: Bytes::from(b)
            }),
        ]
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = MirroringNotify::from_bytes(data.clone());
            let _ = HeaderNotify::from_bytes(data.clone());
            let _ = ResponseMessage::from_bytes(data);
        }

        #[test]
        fn header_round_trip(n in header_notify()) {
            prop_assert_eq!(HeaderNotify::from_bytes(n.to_bytes()).unwrap(), n);
        }

        #[test]
        fn mirroring_round_trip(mode in any::<u32>(), st in any::<u8>(), id in ".{0,12}", gid in ".{0,36}") {
            let a = MirroringNotify::ModeUpdated { mirror_mode: MirrorMode::from_raw(mode) };
            prop_assert_eq!(MirroringNotify::from_bytes(a.to_bytes()).unwrap(), a);
            let b = MirroringNotify::ImageUpdated { state: MirrorImageState::from_raw(st), image_id: id, global_image_id: gid };
            prop_assert_eq!(MirroringNotify::from_bytes(b.to_bytes()).unwrap(), b);
        }
    }
}
