//! Messenger identities: `entity_name_t`, `entity_addr_t`, `entity_inst_t` (spec §1.5).
//!
//! We meet them in cls replies: the origin of a stored mirror image status, the answer of
//! `mirror_image_instance_get`, and the lockers of a cls_lock. Replaces the encoders of
//! `msg/msg_types.h`.
//!
//! The address keeps the sockaddr as raw bytes exactly as the msgr2 form carries them
//! (family little-endian, port and address in network order), so a decode/encode round trip
//! is byte-identical; [`EntityAddr::socket_addr`] interprets them. The pre-Nautilus legacy
//! form (marker 0, a 128-byte `sockaddr_storage` with a big-endian family) is decoded \[SRC\]
//! and converted to the msgr2 form; we only ever encode the msgr2 form.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::codec::{Decode, DecodeError, Decoder, Encode, Encoder, Result};

/// `entity_name_t`: who (client, osd, mon …) and its global id. Ordered like Ceph's
/// `operator<` (type, then number), which orders cls_lock's locker map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityName {
    /// `CEPH_ENTITY_TYPE_*`: 0x01 mon, 0x02 mds, 0x04 osd, 0x08 client, 0x20 mgr.
    pub kind: u8,
    /// The global id (a client's `rados_get_instance_id`).
    pub num: i64,
}

impl EntityName {
    pub const TYPE_MON: u8 = 0x01;
    pub const TYPE_OSD: u8 = 0x04;
    pub const TYPE_CLIENT: u8 = 0x08;

    pub fn client(num: i64) -> Self {
        EntityName {
            kind: Self::TYPE_CLIENT,
            num,
        }
    }
}

impl Encode for EntityName {
    fn encode(&self, e: &mut Encoder) {
        e.u8(self.kind);
        e.i64(self.num);
    }
}
impl Decode for EntityName {
    const MIN_LEN: usize = 9;
    fn decode(d: &mut Decoder) -> Result<Self> {
        Ok(EntityName {
            kind: d.u8()?,
            num: d.i64()?,
        })
    }
}

/// `entity_addr_t` in its msgr2-capable form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityAddr {
    /// 0 none, 1 legacy, 2 msgr2, 3 any (cls_rbd stores status origins as "any").
    pub addr_type: u32,
    /// Distinguishes connections from one host; part of a client's identity for watches.
    pub nonce: u32,
    /// Raw sockaddr bytes (16 for IPv4, 28 for IPv6, empty for a blank address).
    pub sockaddr: Bytes,
}

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// Ceph refuses sockaddrs larger than its `sockaddr_storage`.
const MAX_SOCKADDR: usize = 128;

impl EntityAddr {
    pub const TYPE_NONE: u32 = 0;
    pub const TYPE_LEGACY: u32 = 1;
    pub const TYPE_MSGR2: u32 = 2;
    pub const TYPE_ANY: u32 = 3;

    /// An address for `addr`, laid out like Linux's `sockaddr_in`/`sockaddr_in6`.
    pub fn new(addr_type: u32, nonce: u32, addr: SocketAddr) -> Self {
        let mut raw = Vec::with_capacity(28);
        match addr {
            SocketAddr::V4(a) => {
                raw.extend_from_slice(&AF_INET.to_le_bytes());
                raw.extend_from_slice(&a.port().to_be_bytes());
                raw.extend_from_slice(&a.ip().octets());
                raw.extend_from_slice(&[0; 8]);
            }
            SocketAddr::V6(a) => {
                raw.extend_from_slice(&AF_INET6.to_le_bytes());
                raw.extend_from_slice(&a.port().to_be_bytes());
                raw.extend_from_slice(&a.flowinfo().to_be_bytes());
                raw.extend_from_slice(&a.ip().octets());
                raw.extend_from_slice(&a.scope_id().to_le_bytes());
            }
        }
        EntityAddr {
            addr_type,
            nonce,
            sockaddr: Bytes::from(raw),
        }
    }

    /// The IP address and port, if the sockaddr is IPv4 or IPv6.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let s = &self.sockaddr[..];
        let family = u16::from_le_bytes([*s.first()?, *s.get(1)?]);
        let port = u16::from_be_bytes([*s.get(2)?, *s.get(3)?]);
        match family {
            AF_INET => {
                let ip: [u8; 4] = s.get(4..8)?.try_into().ok()?;
                Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
            }
            AF_INET6 => {
                let ip: [u8; 16] = s.get(8..24)?.try_into().ok()?;
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
            }
            _ => None,
        }
    }

    /// The legacy body after the marker byte: 3 bytes of the old `u32` type, `u32 nonce`,
    /// then a 128-byte `sockaddr_storage` whose family is big-endian.
    fn decode_legacy(d: &mut Decoder) -> Result<Self> {
        d.skip(3)?;
        let nonce = d.u32()?;
        let storage = d.bytes(MAX_SOCKADDR)?;
        let family = u16::from_be_bytes([storage[0], storage[1]]);
        let len = match family {
            0 => 0,
            AF_INET => 16,
            AF_INET6 => 28,
            other => {
                return Err(DecodeError::BadValue {
                    what: "legacy sockaddr family",
                    value: other.into(),
                });
            }
        };
        let mut raw = storage.slice(..len).to_vec();
        if len > 0 {
            raw[..2].copy_from_slice(&family.to_le_bytes());
        }
        Ok(EntityAddr {
            addr_type: Self::TYPE_LEGACY,
            nonce,
            sockaddr: Bytes::from(raw),
        })
    }
}

impl Encode for EntityAddr {
    fn encode(&self, e: &mut Encoder) {
        e.u8(1);
        e.frame(1, 1, |e| {
            e.u32(self.addr_type);
            e.u32(self.nonce);
            e.blob(&self.sockaddr);
        });
    }
}
impl Decode for EntityAddr {
    const MIN_LEN: usize = 7;
    fn decode(d: &mut Decoder) -> Result<Self> {
        match d.u8()? {
            0 => Self::decode_legacy(d),
            1 => {
                let mut f = d.frame("entity_addr_t", 1)?;
                let b = &mut f.body;
                let addr_type = b.u32()?;
                let nonce = b.u32()?;
                let sockaddr = b.blob()?;
                if sockaddr.len() > MAX_SOCKADDR {
                    return Err(DecodeError::BadLength {
                        what: "sockaddr",
                        len: sockaddr.len() as u64,
                        remaining: MAX_SOCKADDR,
                    });
                }
                Ok(EntityAddr {
                    addr_type,
                    nonce,
                    sockaddr,
                })
            }
            other => Err(DecodeError::BadValue {
                what: "entity_addr_t marker",
                value: other.into(),
            }),
        }
    }
}

/// `entity_inst_t`: a name plus the address it connected from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityInst {
    pub name: EntityName,
    pub addr: EntityAddr,
}

impl Encode for EntityInst {
    fn encode(&self, e: &mut Encoder) {
        self.name.encode(e);
        self.addr.encode(e);
    }
}
impl Decode for EntityInst {
    const MIN_LEN: usize = EntityName::MIN_LEN + EntityAddr::MIN_LEN;
    fn decode(d: &mut Decoder) -> Result<Self> {
        Ok(EntityInst {
            name: d.get()?,
            addr: d.get()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::testutil::*;
    use proptest::prelude::*;

    /// Spec §1.5: client.4134 at 127.0.0.1, nonce 0xac74b4fc, type ANY.
    const INST_4134: &str = "08 2610000000000000 | 01 | 01 01 1c000000 | 03000000 fcb474ac \
                             10000000 0200 0000 7f000001 0000000000000000";

    #[test]
    fn golden_entity_inst() {
        let raw = hex(INST_4134);
        let inst = EntityInst::from_bytes(raw.clone()).unwrap();
        assert_eq!(inst.name, EntityName::client(4134));
        assert_eq!(inst.addr.addr_type, EntityAddr::TYPE_ANY);
        assert_eq!(inst.addr.nonce, 0xac74b4fc);
        assert_eq!(
            inst.addr.socket_addr(),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(inst.to_bytes(), raw);
        let built = EntityAddr::new(
            EntityAddr::TYPE_ANY,
            0xac74b4fc,
            "127.0.0.1:0".parse().unwrap(),
        );
        assert_eq!(built, inst.addr);
    }

    #[test]
    fn legacy_addr_is_converted() {
        let mut raw = vec![0u8, 0, 0, 0];
        raw.extend_from_slice(&7u32.to_le_bytes());
        let mut storage = [0u8; 128];
        storage[..2].copy_from_slice(&AF_INET.to_be_bytes());
        storage[2..4].copy_from_slice(&6789u16.to_be_bytes());
        storage[4..8].copy_from_slice(&[10, 0, 0, 1]);
        raw.extend_from_slice(&storage);
        let a = EntityAddr::from_bytes(raw).unwrap();
        assert_eq!(a.nonce, 7);
        assert_eq!(a.addr_type, EntityAddr::TYPE_LEGACY);
        assert_eq!(a.socket_addr(), Some("10.0.0.1:6789".parse().unwrap()));
    }

    #[test]
    fn mutated_golden_never_panics() {
        mutate_all(&hex(INST_4134), EntityInst::from_bytes);
    }

    proptest! {
        #![proptest_config(cases())]
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = EntityInst::from_bytes(data);
        }

        #[test]
        fn round_trip(num in any::<i64>(), nonce in any::<u32>(), port in any::<u16>(),
                      ip in any::<[u8; 16]>(), v6 in any::<bool>()) {
            let sa = if v6 {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)
            } else {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])), port)
            };
            let inst = EntityInst { name: EntityName::client(num), addr: EntityAddr::new(2, nonce, sa) };
            let back = EntityInst::from_bytes(inst.to_bytes()).unwrap();
            prop_assert_eq!(back.addr.socket_addr(), Some(sa));
            prop_assert_eq!(back, inst);
        }
    }
}
