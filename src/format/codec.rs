//! Ceph's wire encoding: the primitives every other `format` module is built from.
//!
//! Owns the [`Decoder`] (a cursor over [`Bytes`]), the [`Encoder`] (a [`BytesMut`] writer), the
//! [`Encode`]/[`Decode`] traits with their impls for integers, strings, blobs and containers,
//! `utime_t` ([`UTime`]), the `ENCODE_START` frame, and the one error type of the layer,
//! [`DecodeError`]. Replaces `include/encoding.h` / `include/denc.h` (spec §1).
//!
//! Why it works this way:
//! - Decoding never panics and never trusts a length: every read checks what is left first,
//!   and element counts are checked against the bytes left (times the element's smallest
//!   encoding, [`Decode::MIN_LEN`]) before anything is reserved.
//! - Blobs are zero-copy: a `bufferlist` decodes to a [`Bytes`] slice sharing the input's
//!   allocation, so a 4 KiB journal write payload is never copied on the replay path.
//! - A frame's body is split off into its own `Decoder`, so a struct decoder physically cannot
//!   read past its frame, and unknown trailing fields from newer encoders are dropped for free.
//! - Strings are Ceph byte strings; we require UTF-8 (every string we meet is an id, uuid, name
//!   or JSON) and report anything else as [`DecodeError::InvalidUtf8`] rather than guessing.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a buffer could not be decoded. One enum for the whole `format` layer; variants name
/// the structure or field (`what`) and, for journal records, the byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated input: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("{what}: length {len} exceeds the {remaining} bytes left")]
    BadLength {
        what: &'static str,
        len: u64,
        remaining: usize,
    },
    #[error("{what}: encoding needs decoder version {compat}, we support up to {supported}")]
    IncompatibleVersion {
        what: &'static str,
        compat: u8,
        supported: u8,
    },
    #[error("{what}: encoding version {version} is older than the oldest we read ({min})")]
    UnsupportedVersion {
        what: &'static str,
        version: u8,
        min: u8,
    },
    #[error("{what}: invalid value {value}")]
    BadValue { what: &'static str, value: u64 },
    #[error("{what}: string is not UTF-8")]
    InvalidUtf8 { what: &'static str },
    #[error("{count} unexpected trailing bytes")]
    TrailingBytes { count: usize },
    #[error("journal entry at offset {offset}: bad preamble {found:#018x}")]
    BadPreamble { offset: usize, found: u64 },
    #[error("journal entry at offset {offset}: version {found}, not 1")]
    BadEntryVersion { offset: usize, found: u8 },
    #[error(
        "journal entry at offset {offset}: payload length {len} exceeds the {max} bytes an entry of this journal can hold"
    )]
    EntryTooLong { offset: usize, len: u32, max: u32 },
    #[error(
        "journal entry at offset {offset}: crc {computed:#010x} does not match stored {stored:#010x}"
    )]
    BadCrc {
        offset: usize,
        stored: u32,
        computed: u32,
    },
}

impl DecodeError {
    /// A bounded label for metrics (`errno`-style), the same for every variant's instances.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::BadLength { .. } | DecodeError::EntryTooLong { .. } => "bad_length",
            DecodeError::IncompatibleVersion { .. } | DecodeError::UnsupportedVersion { .. } => {
                "version"
            }
            DecodeError::BadValue { .. } | DecodeError::InvalidUtf8 { .. } => "bad_value",
            DecodeError::TrailingBytes { .. } => "trailing",
            DecodeError::BadPreamble { .. } | DecodeError::BadEntryVersion { .. } => "bad_preamble",
            DecodeError::BadCrc { .. } => "bad_crc",
        }
    }
}

pub type Result<T> = std::result::Result<T, DecodeError>;

/// A read cursor over a shared buffer. Cloning is cheap (a reference-count bump).
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    buf: Bytes,
}

/// A decoded `ENCODE_START` header plus its body, split off from the outer input.
#[derive(Debug)]
pub struct Frame {
    /// `struct_v`: which optional fields are present.
    pub version: u8,
    /// `struct_compat`: kept so re-encoders can tell what the writer claimed.
    pub compat: u8,
    /// Exactly `struct_len` bytes; whatever the caller leaves unread is skipped.
    pub body: Decoder,
}

macro_rules! read_le {
    ($($name:ident: $t:ty = $get:ident;)*) => {$(
        #[inline]
        pub fn $name(&mut self) -> Result<$t> {
            self.need(std::mem::size_of::<$t>())?;
            Ok(self.buf.$get())
        }
    )*};
}

impl Decoder {
    pub fn new(buf: impl Into<Bytes>) -> Self {
        Decoder { buf: buf.into() }
    }

    /// Bytes not yet consumed.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The unread bytes, without consuming them.
    pub fn peek_rest(&self) -> &Bytes {
        &self.buf
    }

    #[inline]
    fn need(&self, n: usize) -> Result<()> {
        if self.buf.len() < n {
            Err(DecodeError::Truncated {
                need: n,
                have: self.buf.len(),
            })
        } else {
            Ok(())
        }
    }

    read_le! {
        u8: u8 = get_u8;
        u16: u16 = get_u16_le;
        u32: u32 = get_u32_le;
        u64: u64 = get_u64_le;
        i32: i32 = get_i32_le;
        i64: i64 = get_i64_le;
    }

    /// Ceph bools are a byte; like Ceph we read any non-zero value as true.
    #[inline]
    pub fn bool(&mut self) -> Result<bool> {
        Ok(self.u8()? != 0)
    }

    /// The next `n` raw bytes, zero-copy.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<Bytes> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.need(n)?;
        self.buf.advance(n);
        Ok(())
    }

    /// Everything left, zero-copy (for opaque tails such as unknown variants).
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// A length that must fit in what is left (a `u32` length prefix).
    #[inline]
    fn length(&mut self, what: &'static str) -> Result<usize> {
        let len = self.u32()?;
        let remaining = self.buf.len();
        if len as usize > remaining {
            return Err(DecodeError::BadLength {
                what,
                len: len.into(),
                remaining,
            });
        }
        Ok(len as usize)
    }

    /// A `bufferlist`: `u32` length + bytes, zero-copy.
    #[inline]
    pub fn blob(&mut self) -> Result<Bytes> {
        let len = self.length("bufferlist")?;
        Ok(self.buf.split_to(len))
    }

    /// A `std::string`, required to be UTF-8.
    pub fn string(&mut self) -> Result<String> {
        let len = self.length("string")?;
        let raw = self.buf.split_to(len);
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::InvalidUtf8 { what: "string" })
    }

    /// An element count (`u32`), refused when `count × min_len` cannot fit in what is left,
    /// so callers may reserve `count` elements without trusting the input.
    pub fn count(&mut self, what: &'static str, min_len: usize) -> Result<usize> {
        let n = self.u32()?;
        let remaining = self.buf.len();
        if (n as usize).saturating_mul(min_len.max(1)) > remaining {
            return Err(DecodeError::BadLength {
                what,
                len: n.into(),
                remaining,
            });
        }
        Ok(n as usize)
    }

    /// An `ENCODE_START(v, compat, len)` header; refuses `compat > supported` and a length
    /// beyond the input, and hands back the body as its own decoder.
    pub fn frame(&mut self, what: &'static str, supported: u8) -> Result<Frame> {
        self.need(6)?;
        let version = self.buf.get_u8();
        let compat = self.buf.get_u8();
        if compat > supported {
            return Err(DecodeError::IncompatibleVersion {
                what,
                compat,
                supported,
            });
        }
        let len = self.length(what)?;
        Ok(Frame {
            version,
            compat,
            body: Decoder {
                buf: self.buf.split_to(len),
            },
        })
    }

    /// Like [`Decoder::frame`] but also refuses encodings older than `min` (layouts we do not
    /// read, e.g. pre-Nautilus `cls_rbd_snap`).
    pub fn frame_at_least(&mut self, what: &'static str, min: u8, supported: u8) -> Result<Frame> {
        let frame = self.frame(what, supported)?;
        if frame.version < min {
            return Err(DecodeError::UnsupportedVersion {
                what,
                version: frame.version,
                min,
            });
        }
        Ok(frame)
    }

    /// Strict end of a top-level buffer: nothing may be left.
    pub fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.buf.len(),
            })
        }
    }

    /// Decodes one `T`.
    #[inline]
    pub fn get<T: Decode>(&mut self) -> Result<T> {
        T::decode(self)
    }
}

/// An append-only writer producing Ceph's encoding.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: BytesMut,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder {
            buf: BytesMut::new(),
        }
    }

    pub fn with_capacity(cap: usize) -> Self {
        Encoder {
            buf: BytesMut::with_capacity(cap),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.put_u16_le(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.put_u32_le(v);
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.put_u64_le(v);
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32_le(v);
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.put_i64_le(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.put_u8(u8::from(v));
    }

    /// Raw bytes, no length prefix.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.put_slice(b);
    }

    /// A `u32` length or count. Ceph cannot express more than `u32::MAX`; a caller handing us
    /// a 4 GiB buffer is a programming error, not bad input.
    pub fn len_u32(&mut self, n: usize) {
        let n = u32::try_from(n).expect("Ceph lengths and counts are u32; value exceeds 4 GiB");
        self.u32(n);
    }

    /// A `bufferlist` / `std::string`: `u32` length + bytes.
    pub fn blob(&mut self, b: &[u8]) {
        self.len_u32(b.len());
        self.raw(b);
    }

    pub fn string(&mut self, s: &str) {
        self.blob(s.as_bytes());
    }

    /// Writes `ENCODE_START(version, compat)`, the body produced by `body`, and patches the
    /// length (`ENCODE_FINISH`).
    pub fn frame(&mut self, version: u8, compat: u8, body: impl FnOnce(&mut Encoder)) {
        self.u8(version);
        self.u8(compat);
        let len_at = self.buf.len();
        self.u32(0);
        body(self);
        let body_len = self.buf.len() - len_at - 4;
        let body_len =
            u32::try_from(body_len).expect("Ceph frames are u32-sized; body exceeds 4 GiB");
        self.buf[len_at..len_at + 4].copy_from_slice(&body_len.to_le_bytes());
    }

    /// Encodes one value.
    pub fn put<T: Encode + ?Sized>(&mut self, v: &T) {
        v.encode(self);
    }

    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

/// A type with a Ceph encoding.
pub trait Encode {
    fn encode(&self, e: &mut Encoder);

    /// The encoding as a fresh buffer.
    fn to_bytes(&self) -> Bytes {
        let mut e = Encoder::new();
        self.encode(&mut e);
        e.finish()
    }
}

/// A type decodable from Ceph's encoding.
pub trait Decode: Sized {
    /// The fewest bytes any encoding of `Self` takes; container decoders use it to refuse
    /// counts that cannot fit before reserving memory.
    const MIN_LEN: usize = 1;

    fn decode(d: &mut Decoder) -> Result<Self>;

    /// Decodes a whole buffer; trailing bytes are an error.
    fn from_bytes(b: impl Into<Bytes>) -> Result<Self> {
        let mut d = Decoder::new(b);
        let v = Self::decode(&mut d)?;
        d.finish()?;
        Ok(v)
    }
}

macro_rules! prim {
    ($($t:ty: $r:ident, $n:expr;)*) => {$(
        impl Encode for $t {
            #[inline]
            fn encode(&self, e: &mut Encoder) { e.$r(*self) }
        }
        impl Decode for $t {
            const MIN_LEN: usize = $n;
            #[inline]
            fn decode(d: &mut Decoder) -> Result<Self> { d.$r() }
        }
    )*};
}

prim! {
    u8: u8, 1;
    u16: u16, 2;
    u32: u32, 4;
    u64: u64, 8;
    i32: i32, 4;
    i64: i64, 8;
    bool: bool, 1;
}

impl Encode for String {
    fn encode(&self, e: &mut Encoder) {
        e.string(self)
    }
}
impl Encode for str {
    fn encode(&self, e: &mut Encoder) {
        e.string(self)
    }
}
impl Decode for String {
    const MIN_LEN: usize = 4;
    fn decode(d: &mut Decoder) -> Result<Self> {
        d.string()
    }
}

impl Encode for Bytes {
    fn encode(&self, e: &mut Encoder) {
        e.blob(self)
    }
}
impl Decode for Bytes {
    const MIN_LEN: usize = 4;
    fn decode(d: &mut Decoder) -> Result<Self> {
        d.blob()
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, e: &mut Encoder) {
        e.len_u32(self.len());
        self.iter().for_each(|v| v.encode(e));
    }
}
impl<T: Decode> Decode for Vec<T> {
    const MIN_LEN: usize = 4;
    fn decode(d: &mut Decoder) -> Result<Self> {
        let n = d.count("vector", T::MIN_LEN)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::decode(d)?);
        }
        Ok(out)
    }
}

impl<T: Encode> Encode for BTreeSet<T> {
    fn encode(&self, e: &mut Encoder) {
        e.len_u32(self.len());
        self.iter().for_each(|v| v.encode(e));
    }
}
impl<T: Decode + Ord> Decode for BTreeSet<T> {
    const MIN_LEN: usize = 4;
    fn decode(d: &mut Decoder) -> Result<Self> {
        let n = d.count("set", T::MIN_LEN)?;
        let mut out = BTreeSet::new();
        for _ in 0..n {
            out.insert(T::decode(d)?);
        }
        Ok(out)
    }
}

impl<K: Encode, V: Encode> Encode for BTreeMap<K, V> {
    fn encode(&self, e: &mut Encoder) {
        e.len_u32(self.len());
        for (k, v) in self {
            k.encode(e);
            v.encode(e);
        }
    }
}
impl<K: Decode + Ord, V: Decode> Decode for BTreeMap<K, V> {
    const MIN_LEN: usize = 4;
    fn decode(d: &mut Decoder) -> Result<Self> {
        let n = d.count("map", K::MIN_LEN.saturating_add(V::MIN_LEN))?;
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let k = K::decode(d)?;
            out.insert(k, V::decode(d)?);
        }
        Ok(out)
    }
}

/// `std::optional` / `boost::optional`: a presence byte, then the value if present.
impl<T: Encode> Encode for Option<T> {
    fn encode(&self, e: &mut Encoder) {
        match self {
            None => e.u8(0),
            Some(v) => {
                e.u8(1);
                v.encode(e);
            }
        }
    }
}
impl<T: Decode> Decode for Option<T> {
    fn decode(d: &mut Decoder) -> Result<Self> {
        if d.bool()? {
            Ok(Some(T::decode(d)?))
        } else {
            Ok(None)
        }
    }
}

/// `std::pair`: the two halves back to back.
impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode(&self, e: &mut Encoder) {
        self.0.encode(e);
        self.1.encode(e);
    }
}
impl<A: Decode, B: Decode> Decode for (A, B) {
    const MIN_LEN: usize = A::MIN_LEN + B::MIN_LEN;
    fn decode(d: &mut Decoder) -> Result<Self> {
        let a = A::decode(d)?;
        Ok((a, B::decode(d)?))
    }
}

/// Ceph's `utime_t`: seconds and nanoseconds since the epoch, both `u32`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UTime {
    pub sec: u32,
    pub nsec: u32,
}

impl UTime {
    pub const ZERO: UTime = UTime { sec: 0, nsec: 0 };

    pub fn new(sec: u32, nsec: u32) -> Self {
        UTime { sec, nsec }
    }

    pub fn is_zero(&self) -> bool {
        *self == UTime::ZERO
    }

    /// As a duration since the Unix epoch (`nsec` beyond a second is carried, not trusted).
    pub fn to_duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.sec.into())
            + std::time::Duration::from_nanos(self.nsec.into())
    }

    /// From a duration since the Unix epoch; seconds past 2106 saturate.
    pub fn from_duration(d: std::time::Duration) -> Self {
        UTime {
            sec: u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
            nsec: d.subsec_nanos(),
        }
    }
}

impl Encode for UTime {
    fn encode(&self, e: &mut Encoder) {
        e.u32(self.sec);
        e.u32(self.nsec);
    }
}
impl Decode for UTime {
    const MIN_LEN: usize = 8;
    fn decode(d: &mut Decoder) -> Result<Self> {
        Ok(UTime {
            sec: d.u32()?,
            nsec: d.u32()?,
        })
    }
}

pub(crate) use super::macros::{framed_struct, wire_enum, wire_struct};

wire_struct! {
    /// The paged-listing input shared by cls methods (`mirror_image_list`,
    /// `mirror_image_status_list`, `mirror_image_instance_list`, `mirror_image_map_list`,
    /// `client_list`, `dir_list`, `metadata_list`): continue after `start_after` (empty =
    /// from the start), at most `max_return` entries.
    pub struct ListInput {
        pub start_after: String,
        pub max_return: u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::testutil::*;
    use proptest::prelude::*;

    #[test]
    fn primitives_are_little_endian() {
        let mut e = Encoder::new();
        e.u16(0x0102);
        e.u32(0x0304_0506);
        e.u64(0x0708_090a_0b0c_0d0e);
        e.i32(-2);
        e.bool(true);
        e.string("ab");
        assert_eq!(
            e.finish(),
            hex("0201 06050403 0e0d0c0b0a090807 feffffff 01 02000000\"ab\"")
        );
    }

    #[test]
    fn utime_matches_spec_example() {
        let t = UTime::from_bytes(hex("9a67066b 42c9e617")).unwrap();
        assert_eq!(t.sec, 0x6b06679a);
        assert_eq!(t.nsec, 0x17e6c942);
    }

    #[test]
    fn bool_reads_any_nonzero_as_true() {
        assert!(bool::from_bytes(hex("02")).unwrap());
        assert!(!bool::from_bytes(hex("00")).unwrap());
    }

    #[test]
    fn blob_is_zero_copy() {
        let input = hex("03000000 616263 ff");
        let mut d = Decoder::new(input.clone());
        let b = d.blob().unwrap();
        assert_eq!(&b[..], b"abc");
        assert_eq!(b.as_ptr(), input[4..].as_ptr());
    }

    #[test]
    fn oversized_length_is_an_error_not_an_allocation() {
        let err = Bytes::from_bytes(hex("ffffffff 00")).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::BadLength {
                len: 0xffff_ffff,
                ..
            }
        ));
        let err = Vec::<u64>::from_bytes(hex("02000000 0100000000000000")).unwrap_err();
        assert!(matches!(err, DecodeError::BadLength { len: 2, .. }));
        let err = BTreeMap::<String, String>::from_bytes(hex("ffffff7f")).unwrap_err();
        assert!(matches!(err, DecodeError::BadLength { .. }));
    }

    #[test]
    fn frame_skips_unknown_trailing_fields_and_stays_inside() {
        // v3 encoder wrote a u32 we know plus two bytes we do not.
        let mut d = Decoder::new(hex("03 01 06000000 2a000000 eeee 07"));
        let mut f = d.frame("t", 1).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.body.u32().unwrap(), 42);
        assert_eq!(d.u8().unwrap(), 7);
        // Reading past the frame body fails even though the outer buffer has bytes.
        let mut d = Decoder::new(hex("01 01 02000000 aaaa bbbbbbbb"));
        let mut f = d.frame("t", 1).unwrap();
        assert!(matches!(
            f.body.u32(),
            Err(DecodeError::Truncated { need: 4, have: 2 })
        ));
    }

    #[test]
    fn frame_rejects_newer_compat() {
        let err = Decoder::new(hex("05 03 00000000"))
            .frame("thing", 2)
            .unwrap_err();
        assert_eq!(
            err,
            DecodeError::IncompatibleVersion {
                what: "thing",
                compat: 3,
                supported: 2
            }
        );
    }

    #[test]
    fn frame_length_beyond_input_is_an_error() {
        let err = Decoder::new(hex("01 01 10000000 00"))
            .frame("t", 1)
            .unwrap_err();
        assert!(matches!(
            err,
            DecodeError::BadLength {
                len: 16,
                remaining: 1,
                ..
            }
        ));
    }

    #[test]
    fn optional_and_pair() {
        let v: Option<u64> = Some(7);
        assert_eq!(v.to_bytes(), hex("01 0700000000000000"));
        assert_eq!(Option::<u64>::from_bytes(hex("00")).unwrap(), None);
        let p = (String::from("k"), 9u32);
        assert_eq!(<(String, u32)>::from_bytes(p.to_bytes()).unwrap(), p);
    }

    #[test]
    fn trailing_bytes_are_refused_at_top_level() {
        assert_eq!(
            u8::from_bytes(hex("01 02")),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn invalid_utf8_is_typed() {
        assert_eq!(
            String::from_bytes(hex("01000000 ff")),
            Err(DecodeError::InvalidUtf8 { what: "string" })
        );
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn containers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let b = Bytes::from(data);
            let _ = Vec::<String>::from_bytes(b.clone());
            let _ = BTreeMap::<u64, u64>::from_bytes(b.clone());
            let _ = BTreeSet::<String>::from_bytes(b.clone());
            let _ = Option::<(u32, Bytes)>::from_bytes(b.clone());
            let _ = Decoder::new(b).frame("t", 1);
        }

        #[test]
        fn containers_round_trip(
            m in proptest::collection::btree_map(any::<u64>(), ".{0,8}", 0..8),
            v in proptest::collection::vec(any::<i64>(), 0..8),
            o in any::<Option<u32>>(),
        ) {
            prop_assert_eq!(BTreeMap::<u64, String>::from_bytes(m.to_bytes()).unwrap(), m);
            prop_assert_eq!(Vec::<i64>::from_bytes(v.to_bytes()).unwrap(), v);
            prop_assert_eq!(Option::<u32>::from_bytes(o.to_bytes()).unwrap(), o);
        }
    }
}
