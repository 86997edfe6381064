//! Record framing inside journal data objects (spec §3.5) and the scanner that splits an
//! object's bytes into records.
//!
//! A data object is a bare concatenation of records:
//! `preamble u64 | version u8 = 1 | entry_tid u64 | tag_tid u64 | len u32 | data | crc u32`,
//! the CRC being CRC-32C with seed 0 and no final inversion over everything before it.
//! Replaces `journal/Entry.{h,cc}` and the record loop of `journal/ObjectPlayer.cc`.
//!
//! Scanning rules (why): a record cut short at the end of the buffer is not an error, since
//! the read may have raced an append or been short, so the scanner stops and reports where
//! the tail starts for the caller to re-read later. A complete record with a wrong preamble,
//! version or CRC is corruption: a typed error naming its offset (invariant 4: the image
//! fails, the daemon carries on). So is a length no entry of the journal can have (librbd
//! never appends a payload above `2^order - OVERHEAD`): waiting for it to complete would
//! stall the image forever, and reading it in would allocate what the field claims.
//! Payloads are `Bytes` slices of the input, never copies.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{DecodeError, Result};

/// The record preamble constant (bytes `93 97 58 53 26 59 41 31` on disk).
pub const PREAMBLE: u64 = 0x3141_5926_5358_9793;
/// The only record version.
pub const VERSION: u8 = 1;
/// Bytes before the payload: preamble, version, entry_tid, tag_tid, length.
pub const HEADER_LEN: usize = 29;
/// Fixed bytes per record (header + CRC).
pub const OVERHEAD: usize = HEADER_LEN + 4;

/// Ceph's `ceph_crc32c(0, …)`: CRC-32C with initial register 0 and no final XOR.
pub fn ceph_crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c_append(0xFFFF_FFFF, data) ^ 0xFFFF_FFFF
}

/// One journal record (`journal::Entry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position within the tag (each tag numbers its entries from 0).
    pub entry_tid: u64,
    pub tag_tid: u64,
    /// For RBD an encoded `EventEntry`.
    pub data: Bytes,
}

impl Entry {
    /// Size of this record on disk.
    pub fn encoded_len(&self) -> usize {
        OVERHEAD + self.data.len()
    }

    /// Appends the framed record, CRC included.
    pub fn encode_to(&self, out: &mut BytesMut) {
        let len = u32::try_from(self.data.len()).expect("journal entry payload exceeds 4 GiB");
        let start = out.len();
        out.reserve(self.encoded_len());
        out.put_u64_le(PREAMBLE);
        out.put_u8(VERSION);
        out.put_u64_le(self.entry_tid);
        out.put_u64_le(self.tag_tid);
        out.put_u32_le(len);
        out.put_slice(&self.data);
        let crc = ceph_crc32c(&out[start..]);
        out.put_u32_le(crc);
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode_to(&mut out);
        out.freeze()
    }
}

/// The largest payload an entry of a journal with objects of `object_size` bytes carries:
/// librbd's journaler caps appends at the object size less the framing
/// (`Journaler::get_max_append_size`).
pub fn max_data_len(object_size: u64) -> u32 {
    let max = object_size.saturating_sub(OVERHEAD as u64);
    u32::try_from(max).unwrap_or(u32::MAX)
}

/// A record found by the scanner, with where it starts in the scanned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedEntry {
    pub offset: usize,
    pub entry: Entry,
}

/// Iterates over the complete records of a data object buffer, in order.
///
/// Yields `Err` once (and then stops) on a corrupt complete record. When it returns `None`,
/// [`EntryScanner::tail_offset`] says where unread bytes (a truncated record) begin; it equals
/// the buffer length when everything was consumed.
#[derive(Debug, Clone)]
pub struct EntryScanner {
    buf: Bytes,
    pos: usize,
    failed: bool,
    /// Where `buf` starts in its object: offsets in errors are object offsets.
    base: usize,
    /// The largest payload a record may announce.
    max_data_len: u32,
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl EntryScanner {
    /// A scanner that accepts any length (a longer one is a tail still being written).
    pub fn new(buf: Bytes) -> Self {
        Self::in_object(buf, 0, u32::MAX)
    }

    /// A scanner of bytes read from byte `base` of a journal object whose entries carry at
    /// most `max_data_len` payload bytes ([`max_data_len`]).
    pub fn in_object(buf: Bytes, base: usize, max_data_len: u32) -> Self {
        EntryScanner {
            buf,
            pos: 0,
            failed: false,
            base,
            max_data_len,
        }
    }

    /// Offset of the first byte not yet part of a yielded record.
    pub fn tail_offset(&self) -> usize {
        self.pos
    }

    /// Parses the record at `self.pos`: `Ok(None)` if it is incomplete.
    fn parse(&self) -> Result<Option<(Entry, usize)>> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let offset = self.base.saturating_add(self.pos);
        // A preamble that is present must be right, even if the record is incomplete.
        let Some(preamble) = le_u64(rest, 0) else {
            return Ok(None);
        };
        if preamble != PREAMBLE {
            return Err(DecodeError::BadPreamble {
                offset,
                found: preamble,
            });
        }
        let Some(&version) = rest.get(8) else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(DecodeError::BadEntryVersion {
                offset,
                found: version,
            });
        }
        let (Some(entry_tid), Some(tag_tid), Some(len)) =
            (le_u64(rest, 9), le_u64(rest, 17), le_u32(rest, 25))
        else {
            return Ok(None);
        };
        if len > self.max_data_len {
            return Err(DecodeError::EntryTooLong {
                offset,
                len,
                max: self.max_data_len,
            });
        }
        let data_end = HEADER_LEN.saturating_add(len as usize);
        let Some(stored) = le_u32(rest, data_end) else {
            return Ok(None);
        };
        let Some(covered) = rest.get(..data_end) else {
            return Ok(None);
        };
        let computed = ceph_crc32c(covered);
        if computed != stored {
            return Err(DecodeError::BadCrc {
                offset,
                stored,
                computed,
            });
        }
        let data = self.buf.slice(self.pos + HEADER_LEN..self.pos + data_end);
        Ok(Some((
            Entry {
                entry_tid,
                tag_tid,
                data,
            },
            data_end + 4,
        )))
    }
}

impl Iterator for EntryScanner {
    type Item = Result<ScannedEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.parse() {
            Ok(Some((entry, len))) => {
                let offset = self.pos;
                self.pos += len;
                Some(Ok(ScannedEntry { offset, entry }))
            }
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The complete records of a buffer and where its truncated tail (if any) starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryScan {
    pub entries: Vec<ScannedEntry>,
    /// Offset of the first byte after the last complete record; equal to the buffer length
    /// when there is no partial record. A caller re-reads from here later.
    pub tail_offset: usize,
}

impl EntryScan {
    /// Whether bytes of an incomplete record follow the complete ones.
    pub fn has_tail(&self, buf_len: usize) -> bool {
        self.tail_offset < buf_len
    }
}

/// Splits `buf` (object bytes starting at a record boundary) into records. Offsets in the
/// result and in errors are relative to `buf`.
pub fn scan_entries(buf: Bytes) -> Result<EntryScan> {
    let mut scanner = EntryScanner::new(buf);
    // No up-front reservation: sized from the input it could be ~1.7× the buffer (one
    // ScannedEntry per 33 bytes); real objects hold a few thousand records.
    let mut entries = Vec::new();
    for item in scanner.by_ref() {
        entries.push(item?);
    }
    Ok(EntryScan {
        entries,
        tail_offset: scanner.tail_offset(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::testutil::*;
    use proptest::prelude::*;

    /// Appendix A.1 records: (name, full record hex, entry_tid, tag_tid).
    pub(crate) const GOLDEN: &[(&str, &str, u64, u64)] = &[
        (
            "AioFlush",
            "939758532659413101020000000000000001000000000000001800000005010400000002000000010108000000bb67066b2d54f6339c3c2c8c",
            2,
            1,
        ),
        (
            "Resize",
            "93975853265941310105000000000000000100000000000000280000000501140000000b00000002000000000000000000000500000000010108000000c567066b863abe37d141bdc3",
            5,
            1,
        ),
        (
            "AioWrite",
            "93975853265941310100000000000000000400000000000000340000000501200000000100000000300000000000000800000000000000080000007262646d697272210101080000003168066b2bb48c12de3175a5",
            0,
            4,
        ),
        (
            "OpFinish",
            "939758532659413101040000000000000001000000000000002c000000050118000000030000000100000000000000010000000000000000000000010108000000c067066bbced7b37ab5f96ef",
            4,
            1,
        ),
        (
            "SnapCreate",
            "939758532659413101030000000000000001000000000000003000000005011c00000004000000010000000000000002000000733101010400000000000000010108000000bb67066b9c130f348867f83e",
            3,
            1,
        ),
        (
            "MetadataSet",
            "939758532659413101070000000000000001000000000000002c000000050118000000100000000300000000000000020000006b31020000007631010108000000ca67066b881c0238a96f69e7",
            7,
            1,
        ),
        (
            "SnapRename",
            "9397585326594131010d00000000000000010000000000000035000000050121000000060000000600000000000000030000007331720400000000000000020000007331010108000000d967066b19a8cf3879bbb7cf",
            13,
            1,
        ),
        (
            "AioDiscard",
            "939758532659413101120000000000000001000000000000002d00000005011900000000000000000050000000000000100000000000000000000000010108000000e467066bc3eaf10050d8bb44",
            18,
            1,
        ),
        (
            "UpdateFeatures",
            "93975853265941310105000000000000000400000000000000290000000501150000000f00000003000000000000001800000000000000010101080000004068066b3f521513f1d36689",
            5,
            4,
        ),
        (
            "DemotePromote",
            "93975853265941310100000000000000000800000000000000180000000501040000000d00000001010800000000000000000000003cb5b0a5",
            0,
            8,
        ),
        (
            "Rename",
            "93975853265941310100000000000000000200000000000000290000000501150000000a0000000100000000000000050000006d696d67320101080000001d68066b23971e11b5981059",
            0,
            2,
        ),
        (
            "SnapLimit",
            "93975853265941310101000000000000000400000000000000280000000501140000000e00000001000000000000000a000000000000000101080000003168066b50ac9d12bc4d76e0",
            1,
            4,
        ),
        (
            "MetadataRemove",
            "9397585326594131011300000000000000010000000000000026000000050112000000110000000800000000000000020000006b31010108000000e467066bfceff90032b39bed",
            19,
            1,
        ),
    ];

    fn golden_object() -> Bytes {
        let mut all = Vec::new();
        for (_, h, _, _) in GOLDEN {
            all.extend_from_slice(&hex(h));
        }
        Bytes::from(all)
    }

    #[test]
    fn golden_records_decode_and_reencode() {
        for (name, h, entry_tid, tag_tid) in GOLDEN {
            let raw = hex(h);
            let scan = scan_entries(raw.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(scan.entries.len(), 1, "{name}");
            assert_eq!(scan.tail_offset, raw.len(), "{name}");
            let e = &scan.entries[0].entry;
            assert_eq!((e.entry_tid, e.tag_tid), (*entry_tid, *tag_tid), "{name}");
            assert_eq!(e.encoded_len(), raw.len(), "{name}");
            assert_eq!(e.to_bytes(), raw, "{name}");
        }
    }

    #[test]
    fn crc_convention_matches_spec() {
        // Standard CRC-32C of "123456789" is 0xE3069283; Ceph's seed-0 variant differs.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_ne!(ceph_crc32c(b"123456789"), 0xE306_9283);
        let flush = hex(GOLDEN[0].1);
        assert_eq!(ceph_crc32c(&flush[..flush.len() - 4]), 0x8c2c3c9c);
    }

    #[test]
    fn concatenated_records_scan_in_order_with_offsets() {
        let obj = golden_object();
        let scan = scan_entries(obj.clone()).unwrap();
        assert_eq!(scan.entries.len(), GOLDEN.len());
        assert_eq!(scan.tail_offset, obj.len());
        let mut off = 0;
        for s in &scan.entries {
            assert_eq!(s.offset, off);
            off += s.entry.encoded_len();
        }
        // Payloads are slices of the input, not copies.
        let first = &scan.entries[0];
        assert_eq!(first.entry.data.as_ptr(), obj[HEADER_LEN..].as_ptr());
    }

    #[test]
    fn truncated_tail_is_reported_not_an_error() {
        let obj = golden_object();
        let first_len = hex(GOLDEN[0].1).len();
        for cut in [
            first_len + 1,
            first_len + 8,
            first_len + 20,
            first_len + 30,
            first_len + 60,
        ] {
            let scan = scan_entries(obj.slice(..cut)).unwrap();
            assert_eq!(scan.entries.len(), 1, "cut {cut}");
            assert_eq!(scan.tail_offset, first_len);
            assert!(scan.has_tail(cut));
        }
        assert_eq!(scan_entries(Bytes::new()).unwrap().tail_offset, 0);
    }

    #[test]
    fn corruption_in_a_complete_record_names_its_offset() {
        let obj = golden_object();
        let second = hex(GOLDEN[0].1).len();
        let mut bad = obj.to_vec();
        bad[second + HEADER_LEN + 2] ^= 0x40; // payload bit flip in record 2
        assert!(
            matches!(scan_entries(Bytes::from(bad)), Err(DecodeError::BadCrc { offset, .. }) if offset == second)
        );
        let mut bad = obj.to_vec();
        bad[second] = 0; // preamble of record 2
        assert!(
            matches!(scan_entries(Bytes::from(bad)), Err(DecodeError::BadPreamble { offset, .. }) if offset == second)
        );
        let mut bad = obj.to_vec();
        bad[second + 8] = 2; // version
        assert!(matches!(
            scan_entries(Bytes::from(bad)),
            Err(DecodeError::BadEntryVersion { offset, found: 2 }) if offset == second
        ));
    }

    #[test]
    fn scanner_stops_after_an_error() {
        let mut bad = golden_object().to_vec();
        bad[0] = 0;
        let mut s = EntryScanner::new(Bytes::from(bad));
        assert!(matches!(s.next(), Some(Err(_))));
        assert!(s.next().is_none());
    }

    #[test]
    fn huge_length_in_last_record_is_a_tail() {
        let mut rec = hex(GOLDEN[0].1).to_vec();
        rec[25..29].copy_from_slice(&u32::MAX.to_le_bytes());
        let scan = scan_entries(Bytes::from(rec)).unwrap();
        assert!(scan.entries.is_empty());
        assert_eq!(scan.tail_offset, 0);
    }

    #[test]
    fn a_length_no_entry_can_have_is_corruption_not_a_tail() {
        let mut rec = hex(GOLDEN[0].1).to_vec();
        rec[25..29].copy_from_slice(&u32::MAX.to_le_bytes());
        let max = max_data_len(4096);
        assert_eq!(max, 4096 - 33);
        let mut s = EntryScanner::in_object(Bytes::from(rec), 8192, max);
        assert_eq!(
            s.next(),
            Some(Err(DecodeError::EntryTooLong {
                offset: 8192,
                len: u32::MAX,
                max
            }))
        );
        // The largest allowed length is still a tail to wait for.
        let mut rec = hex(GOLDEN[0].1).to_vec();
        rec[25..29].copy_from_slice(&max.to_le_bytes());
        let mut s = EntryScanner::in_object(Bytes::from(rec), 0, max);
        assert_eq!(s.next(), None);
        assert_eq!(s.tail_offset(), 0);
    }

    #[test]
    fn offsets_count_from_the_base() {
        let obj = golden_object();
        let second = hex(GOLDEN[0].1).len();
        let mut bad = obj.to_vec();
        bad[second + HEADER_LEN] ^= 1;
        let s = EntryScanner::in_object(Bytes::from(bad), 1000, u32::MAX);
        let errors: Vec<_> = s.filter_map(Result::err).collect();
        assert!(
            matches!(errors[..], [DecodeError::BadCrc { offset, .. }] if offset == 1000 + second),
            "{errors:?}"
        );
    }

    #[test]
    fn mutated_golden_never_panics() {
        mutate_all(&golden_object(), scan_entries);
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = scan_entries(Bytes::from(data));
        }

        #[test]
        fn round_trip(entries in proptest::collection::vec(
            (any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..6),
            cut in any::<proptest::sample::Index>()) {
            let mut obj = BytesMut::new();
            let entries: Vec<Entry> = entries.into_iter()
                .map(|(e, t, d)| Entry { entry_tid: e, tag_tid: t, data: Bytes::from(d) }).collect();
            entries.iter().for_each(|e| e.encode_to(&mut obj));
            let obj = obj.freeze();
            let scan = scan_entries(obj.clone()).unwrap();
            let got: Vec<Entry> = scan.entries.into_iter().map(|s| s.entry).collect();
            prop_assert_eq!(&got, &entries);
            // Any prefix scans to a prefix of the entries, without error.
            let cut = cut.index(obj.len() + 1);
            let part = scan_entries(obj.slice(..cut)).unwrap();
            prop_assert!(part.tail_offset <= cut);
            prop_assert_eq!(part.entries.iter().map(|s| s.entry.clone()).collect::<Vec<_>>(),
                            entries[..part.entries.len()].to_vec());
        }
    }
}
