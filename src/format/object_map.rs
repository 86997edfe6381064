//! The RBD object map: Ceph's `BitVector<2>` (spec §5.3), two bits of state per data object.
//!
//! Layout: a `bufferlist` header holding a v1 frame with the `u64` element count, then
//! `ceil(count / 4)` raw bytes, most-significant bit pair first (object 0 is bits 7..6 of
//! byte 0), then a `bufferlist` footer that is either empty (as `object_map_load` returns it)
//! or carries CRCs: `u32 header_crc, u32 n, n × u32` (one per 4 KiB data block, all
//! `ceph_crc32c`). Replaces `common/bit_vector.hpp`.
//!
//! We keep the footer as opaque bytes: readers here only need states, a memory backend that
//! stores maps re-encodes without CRCs (as `object_map_load` does), and any mutation drops
//! the stale footer. CRC layout and verification are \[SRC\].

use bytes::Bytes;

use super::codec::{Decode, DecodeError, Decoder, Encode, Encoder, Result, wire_enum};

wire_enum! {
    /// The state of one data object. Only values 0..=3 fit in two bits, so `Other` never
    /// appears in a decoded map; it exists for the `u8` method arguments.
    pub enum ObjectState: u8 { Nonexistent = 0, Exists = 1, Pending = 2, ExistsClean = 3 }
}

/// Objects per data byte.
const PER_BYTE: u64 = 4;

/// `BitVector<2>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMap {
    len: u64,
    data: Vec<u8>,
    /// As read; cleared by any change (its CRCs would be stale).
    footer: Bytes,
}

impl ObjectMap {
    /// A map of `len` objects, all in `state`.
    pub fn new(len: u64, state: ObjectState) -> Self {
        let mut m = ObjectMap::default();
        m.resize(len, state);
        m
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The stored footer (empty when CRCs were not included).
    pub fn footer(&self) -> &Bytes {
        &self.footer
    }

    fn byte_len(len: u64) -> u64 {
        len.div_ceil(PER_BYTE)
    }

    /// Bit position of object `i` within its byte.
    fn shift(i: u64) -> u32 {
        6 - 2 * (i % PER_BYTE) as u32
    }

    /// The state of object `i`, `None` past the end.
    pub fn get(&self, i: u64) -> Option<ObjectState> {
        if i >= self.len {
            return None;
        }
        let byte = *self.data.get(usize::try_from(i / PER_BYTE).ok()?)?;
        Some(ObjectState::from_raw((byte >> Self::shift(i)) & 3))
    }

    /// Sets object `i` (only the low two bits of the state are stored); `false` past the end.
    pub fn set(&mut self, i: u64, state: ObjectState) -> bool {
        if i >= self.len {
            return false;
        }
        let Some(byte) = usize::try_from(i / PER_BYTE)
            .ok()
            .and_then(|b| self.data.get_mut(b))
        else {
            return false;
        };
        let shift = Self::shift(i);
        *byte = (*byte & !(3 << shift)) | ((state.raw() & 3) << shift);
        self.footer = Bytes::new();
        true
    }

    /// Grows (new objects in `state`) or shrinks the map.
    pub fn resize(&mut self, len: u64, state: ObjectState) {
        let old = self.len;
        let bytes = usize::try_from(Self::byte_len(len)).expect("object map larger than memory");
        self.data.resize(bytes, 0);
        self.len = len;
        // Clear bits beyond the end so equal maps encode equally.
        if let (false, Some(last)) = (len.is_multiple_of(PER_BYTE), self.data.last_mut()) {
            *last &= !(0xffu8 >> (2 * (len % PER_BYTE)));
        }
        for i in old..len {
            self.set(i, state);
        }
        self.footer = Bytes::new();
    }

    /// All states in object order.
    pub fn iter(&self) -> impl Iterator<Item = ObjectState> + '_ {
        (0..self.len).filter_map(|i| self.get(i))
    }
}

impl Encode for ObjectMap {
    fn encode(&self, e: &mut Encoder) {
        let mut header = Encoder::with_capacity(14);
        header.frame(1, 1, |h| h.u64(self.len));
        e.blob(&header.finish());
        e.raw(&self.data);
        e.blob(&self.footer);
    }
}

impl Decode for ObjectMap {
    const MIN_LEN: usize = 22;
    fn decode(d: &mut Decoder) -> Result<Self> {
        let mut header = Decoder::new(d.blob()?);
        let mut f = header.frame("BitVector header", 1)?;
        let len = f.body.u64()?;
        let byte_len = Self::byte_len(len);
        if byte_len > d.remaining() as u64 {
            return Err(DecodeError::BadLength {
                what: "object map data",
                len: byte_len,
                remaining: d.remaining(),
            });
        }
        // Fits: bounded by the input length just checked.
        let data = d.bytes(byte_len as usize)?.to_vec();
        let footer = d.blob()?;
        Ok(ObjectMap { len, data, footer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::testutil::*;
    use proptest::prelude::*;

    /// Spec §5.3: 10 objects, objects 0, 1, 5 written → data bytes `50 10 00`.
    const TEN: &str = "0e000000 01 01 08000000 0a00000000000000 50 10 00 00000000";

    #[test]
    fn golden_example() {
        let raw = hex(TEN);
        let m = ObjectMap::from_bytes(raw.clone()).unwrap();
        assert_eq!(m.len(), 10);
        let exists: Vec<u64> = (0..10)
            .filter(|&i| m.get(i) == Some(ObjectState::Exists))
            .collect();
        assert_eq!(exists, vec![0, 1, 5]);
        assert_eq!(m.get(10), None);
        assert_eq!(m.to_bytes(), raw);

        let mut built = ObjectMap::new(10, ObjectState::Nonexistent);
        for i in [0, 1, 5] {
            assert!(built.set(i, ObjectState::Exists));
        }
        assert_eq!(built, m);
    }

    #[test]
    fn resize_keeps_and_fills() {
        let mut m = ObjectMap::new(3, ObjectState::Exists);
        m.resize(6, ObjectState::ExistsClean);
        let got: Vec<u8> = m.iter().map(ObjectState::raw).collect();
        assert_eq!(got, vec![1, 1, 1, 3, 3, 3]);
        m.resize(1, ObjectState::Nonexistent);
        m.resize(2, ObjectState::Nonexistent);
        assert_eq!(m.get(1), Some(ObjectState::Nonexistent));
        assert!(!m.set(2, ObjectState::Exists));
    }

    #[test]
    fn huge_count_is_refused() {
        let raw = hex("0e000000 01 01 08000000 ffffffffffffffff 00000000");
        assert!(matches!(
            ObjectMap::from_bytes(raw),
            Err(DecodeError::BadLength { .. })
        ));
    }

    #[test]
    fn mutated_golden_never_panics() {
        mutate_all(&hex(TEN), ObjectMap::from_bytes);
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ObjectMap::from_bytes(data);
        }

        #[test]
        fn round_trip(states in proptest::collection::vec(0u8..4, 0..40)) {
            let mut m = ObjectMap::new(states.len() as u64, ObjectState::Nonexistent);
            for (i, s) in states.iter().enumerate() {
                m.set(i as u64, ObjectState::from_raw(*s));
            }
            let back = ObjectMap::from_bytes(m.to_bytes()).unwrap();
            prop_assert_eq!(back.iter().map(ObjectState::raw).collect::<Vec<_>>(), states);
            prop_assert_eq!(back, m);
        }
    }
}
