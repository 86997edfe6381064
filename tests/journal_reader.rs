//! The journal reader delivers exactly the entries of a journal, in order, nothing missing,
//! nothing twice: across object sets and tags, from any commit position (a restart, also
//! megabytes deep in an object), and live (caught up, then woken). On the embedded backend
//! against our writer; on real Ceph against real librbd (`rbd bench`, resize, snapshot,
//! discard on a journaled image with 4 KiB journal objects), compared with what
//! `rbd journal inspect --verbose` lists.

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

use bytes::Bytes;
use rbd_relay::cls::journal as cls;
use rbd_relay::format::entry::Entry;
use rbd_relay::format::event::{Event, EventEntry};
use rbd_relay::format::journal::{ObjectPosition, ObjectSetPosition, header_oid};
use rbd_relay::format::{Decode, UTime};
use rbd_relay::journal::position::CommitPosition;
use rbd_relay::journal::reader::JournalReader;
use rbd_relay::journal::writer::JournalWriter;
use rbd_relay::rados::IoCtx;

fn write(i: u64, len: usize) -> EventEntry {
    EventEntry {
        event: Event::AioWrite {
            offset: i * 4096,
            length: len as u64,
            data: Bytes::from(vec![i as u8; len]),
        },
        timestamp: UTime::new(1, 0),
    }
}

async fn read_all<I: IoCtx>(r: &mut JournalReader<I>) -> Vec<(Entry, ObjectPosition)> {
    let mut all = Vec::new();
    loop {
        let batch = r.read(7, usize::MAX).await.unwrap(); // small batches: exercises resumption
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

fn ids(entries: &[(Entry, ObjectPosition)]) -> Vec<(u64, u64)> {
    entries
        .iter()
        .map(|(e, _)| (e.tag_tid, e.entry_tid))
        .collect()
}

/// The position a consumer commits after applying `entries[..n]`.
fn committed_after(splay: u8, entries: &[(Entry, ObjectPosition)], n: usize) -> ObjectSetPosition {
    let mut c = CommitPosition::new(splay, &ObjectSetPosition::default());
    for (_, p) in &entries[..n] {
        c.advance(p.clone());
    }
    c.position()
}

/// A byte cap ends a batch after the entry that reaches it (one entry however large), and
/// what the consumer gives back comes first in the next read, in order.
#[tokio::test]
async fn a_byte_cap_ends_batches_and_unread_entries_come_back_first() {
    let (_c, io) = support::memory().await;
    let mut w = JournalWriter::create(io.clone(), "cap", 16, 2, "")
        .await
        .unwrap();
    for i in 0..10 {
        w.append(&write(i, 1000)).await.unwrap();
    }
    let mut r = JournalReader::open(io.clone(), "cap", &ObjectSetPosition::default())
        .await
        .unwrap();
    let one = r.read(100, 1).await.unwrap();
    assert_eq!(ids(&one), [(1, 0)], "at least one entry");
    let mut batch = r.read(100, 2500).await.unwrap();
    assert_eq!(
        ids(&batch),
        [(1, 1), (1, 2), (1, 3)],
        "stops once 2,500 bytes are reached"
    );
    r.unread(batch.split_off(1));
    let rest = read_all(&mut r).await;
    assert_eq!(ids(&rest), (2..10).map(|e| (1, e)).collect::<Vec<_>>());
}

/// A restart deep inside large objects (a replayer taking an image over) passes megabytes
/// of committed entries in growing pieces and resumes exactly after its position.
#[tokio::test]
async fn a_restart_deep_inside_large_objects_resumes_right_after_it() {
    let (_c, io) = support::memory().await;
    let id = "deep";
    let mut w = JournalWriter::create(io.clone(), id, 24, 2, "")
        .await
        .unwrap();
    // ~3.3 MiB per object: past the largest piece a few times over.
    let n = 800;
    for i in 0..n {
        w.append(&write(i, 8192 + (i as usize * 131) % 700))
            .await
            .unwrap();
    }
    let mut r = JournalReader::open(io.clone(), id, &ObjectSetPosition::default())
        .await
        .unwrap();
    let all = read_all(&mut r).await;
    assert_eq!(all.len(), n as usize);
    for k in [1, 31, 400, 641, 798, 799, 800] {
        let mut r = JournalReader::open(io.clone(), id, &committed_after(2, &all, k))
            .await
            .unwrap();
        assert_eq!(
            ids(&read_all(&mut r).await),
            ids(&all[k..]),
            "restart after {k}"
        );
    }
}

#[tokio::test]
async fn our_writer_across_sets_tags_and_restarts() {
    let (_c, io) = support::memory().await;
    let id = "readertest";
    let mut w = JournalWriter::create(io.clone(), id, 12, 3, "")
        .await
        .unwrap();
    for i in 0..30 {
        w.append(&write(i, 1000 + (i as usize * 37) % 900))
            .await
            .unwrap();
    }
    let mut w = JournalWriter::open(io.clone(), id).await.unwrap(); // tag 2
    for i in 30..40 {
        w.append(&write(i, 500)).await.unwrap();
    }
    let mut r = JournalReader::open(io.clone(), id, &ObjectSetPosition::default())
        .await
        .unwrap();
    let all = read_all(&mut r).await;
    let want: Vec<(u64, u64)> = (0..30)
        .map(|e| (1, e))
        .chain((0..10).map(|e| (2, e)))
        .collect();
    assert_eq!(ids(&all), want);
    assert!(
        cls::get_active_set(&io, &header_oid(id)).await.unwrap() >= 3,
        "crossed object sets"
    );

    // A restart from any commit position resumes right after it.
    for n in [1, 5, 29, 30, 31, 39, 40] {
        let committed = committed_after(3, &all, n);
        let mut r = JournalReader::open(io.clone(), id, &committed)
            .await
            .unwrap();
        assert_eq!(ids(&read_all(&mut r).await), want[n..], "restart after {n}");
    }

    // Live: caught up, new entries appear only after a wake-up.
    for i in 40..45 {
        w.append(&write(i, 3000)).await.unwrap();
    }
    assert!(
        r.read(100, usize::MAX).await.unwrap().is_empty(),
        "no wake-up yet"
    );
    r.wake().await.unwrap();
    assert_eq!(
        ids(&read_all(&mut r).await),
        (10..15).map(|e| (2, e)).collect::<Vec<_>>()
    );
    // A third epoch after a caught-up reader.
    let mut w = JournalWriter::open(io.clone(), id).await.unwrap();
    w.append(&write(50, 10)).await.unwrap();
    r.wake().await.unwrap();
    assert_eq!(ids(&read_all(&mut r).await), [(3, 0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_librbd_journal() {
    let Some((_c, io)) = support::librados("real_librbd_journal").await else {
        return;
    };
    let (image, spec, id) = support::journaled_image(
        "reader",
        &["--journal-object-size", "4K", "--journal-splay-width", "4"],
    );
    // Our client first: an empty position keeps librbd from trimming what we have not read.
    cls::client_register(&io, &header_oid(&id), "rbd-relay-test", Bytes::new())
        .await
        .unwrap();

    support::cli(
        "rbd",
        &[
            "bench",
            "--io-type",
            "write",
            "--io-size",
            "4K",
            "--io-total",
            "160K",
            "--io-pattern",
            "rand",
            &spec,
        ],
    );
    support::cli("rbd", &["resize", "--size", "32M", &spec]);
    support::cli("rbd", &["snap", "create", &format!("{spec}@s1")]);
    support::cli(
        "rbd",
        &[
            "bench",
            "--io-type",
            "write",
            "--io-size",
            "16K",
            "--io-total",
            "64K",
            "--io-pattern",
            "seq",
            &spec,
        ],
    );
    support::cli("rbd", &["image-meta", "set", &spec, "k", "v"]);

    let mut r = JournalReader::open(io.clone(), &id, &ObjectSetPosition::default())
        .await
        .unwrap();
    let all = read_all(&mut r).await;
    let active = cls::get_active_set(&io, &header_oid(&id)).await.unwrap();
    assert!(
        active >= 2,
        "the workload crossed at least two object sets (active set {active})"
    );

    // Ceph's own reader lists the same entries: tag and event type, one for one, in order.
    let text = support::cli(
        "rbd",
        &[
            "journal",
            "inspect",
            "-p",
            "rbd",
            "--image",
            &image,
            "--verbose",
        ],
    );
    assert!(
        text.contains(&format!("{} entries inspected, 0 errors", all.len())),
        "we read {}: {text}",
        all.len()
    );
    let theirs: Vec<(u64, String)> = text
        .split("Entry: tag_id=")
        .skip(1)
        .map(|chunk| {
            let tag = chunk.split(',').next().unwrap().parse().unwrap();
            let ty = chunk
                .split("\"event_type\": \"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string();
            (tag, ty)
        })
        .collect();
    let ours: Vec<(u64, String)> = all
        .iter()
        .map(|(e, _)| {
            (
                e.tag_tid,
                format!(
                    "{:?}",
                    EventEntry::from_bytes(e.data.clone()).unwrap().event
                )
                .split([' ', '{', '('])
                .next()
                .unwrap()
                .to_string(),
            )
        })
        .collect();
    assert_eq!(ours, theirs);

    // A restart from the middle delivers exactly the rest.
    let n = all.len() / 2;
    let mut r = JournalReader::open(io.clone(), &id, &committed_after(4, &all, n))
        .await
        .unwrap();
    assert_eq!(ids(&read_all(&mut r).await), ids(&all[n..]));

    cls::client_unregister(&io, &header_oid(&id), "rbd-relay-test")
        .await
        .unwrap();
    support::cli("rbd", &["snap", "purge", &spec]);
    support::cli("rbd", &["rm", &spec]);
}
