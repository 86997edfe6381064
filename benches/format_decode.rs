//! Decode throughput of a full journal data object on one core.
//!
//! Builds a 16 MiB object (the default `rbd_journal_order` 24) of AioWrite records with
//! 4 KiB payloads, as librbd writes them, then times (a) the record scan alone (preamble,
//! framing, CRC-32C) and (b) scan + `EventEntry` decode of every record. Payloads are `Bytes`
//! slices of the object, never copied. Run: `cargo bench --bench format_decode`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rbd_relay::format::codec::{Decode, Encode, UTime};
use rbd_relay::format::entry::{Entry, scan_entries};
use rbd_relay::format::event::{Event, EventEntry};

const OBJECT_SIZE: usize = 16 << 20;
const WRITE_SIZE: usize = 4096;

fn build_object() -> Bytes {
    let payload: Vec<u8> = (0..WRITE_SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let payload = Bytes::from(payload);
    let mut obj = BytesMut::with_capacity(OBJECT_SIZE);
    let mut entry_tid = 0u64;
    loop {
        let event = EventEntry {
            event: Event::AioWrite {
                offset: entry_tid * WRITE_SIZE as u64,
                length: WRITE_SIZE as u64,
                data: payload.clone(),
            },
            timestamp: UTime::new(1_795_582_001, 311_211_051),
        };
        let entry = Entry {
            entry_tid,
            tag_tid: 1,
            data: event.to_bytes(),
        };
        if obj.len() + entry.encoded_len() > OBJECT_SIZE {
            break;
        }
        entry.encode_to(&mut obj);
        entry_tid += 1;
    }
    obj.freeze()
}

/// Runs `f` until at least `min` has passed; returns bytes/second over `bytes` per run.
fn measure(name: &str, bytes: usize, min: Duration, mut f: impl FnMut() -> usize) {
    black_box(f()); // warm-up
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < min {
        black_box(f());
        runs += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let gbps = (bytes as f64 * f64::from(runs)) / secs / 1e9;
    println!(
        "{name:<28} {runs:>5} runs  {:>8.3} ms/object  {gbps:>7.2} GB/s",
        secs * 1e3 / f64::from(runs)
    );
}

fn main() {
    let obj = build_object();
    let records = scan_entries(obj.clone()).expect("scan").entries.len();
    println!(
        "object: {} bytes, {records} AioWrite records of {WRITE_SIZE} B",
        obj.len()
    );
    let min = Duration::from_secs(2);

    measure("scan (framing + crc32c)", obj.len(), min, || {
        scan_entries(obj.clone()).expect("scan").entries.len()
    });

    measure("scan + EventEntry decode", obj.len(), min, || {
        let scan = scan_entries(obj.clone()).expect("scan");
        let mut payload_bytes = 0usize;
        for s in scan.entries {
            match EventEntry::from_bytes(s.entry.data).expect("event").event {
                Event::AioWrite { data, .. } => payload_bytes += data.len(),
                other => panic!("unexpected {}", other.name()),
            }
        }
        payload_bytes
    });
}
