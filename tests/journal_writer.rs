//! The journal writer appends as librbd does: on both backends, 20 writes of 1000 bytes into
//! a journal of order 12 and splay 2 land exactly where librbd put them in the lab (spec
//! §3.6: three 1077-byte records per 4 KiB object, sets closed when the next would not fit,
//! active set 3 at the end); and on real Ceph, `rbd journal inspect --verbose` reads our
//! journal without errors and lists exactly the entries we appended.

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

use bytes::Bytes;
use rbd_relay::cls::journal as cls;
use rbd_relay::format::UTime;
use rbd_relay::format::entry::scan_entries;
use rbd_relay::format::event::{Event, EventEntry};
use rbd_relay::format::journal::{ObjectPosition, ObjectSetPosition, data_oid, header_oid};
use rbd_relay::journal::writer::JournalWriter;
use rbd_relay::rados::{Errno, IoCtx};

fn write_event(i: u64) -> EventEntry {
    let event = Event::AioWrite {
        offset: i * 1000,
        length: 1000,
        data: Bytes::from(vec![i as u8; 1000]),
    };
    EventEntry {
        event,
        timestamp: UTime::new(1_795_581_924, i as u32),
    }
}

/// Writes the spec's experiment and checks the layout librbd produced in the lab.
async fn spec_layout<I: IoCtx>(io: I) -> String {
    let id = format!("relay{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut w = JournalWriter::create(io.clone(), &id, 12, 2, "")
        .await
        .unwrap();
    assert_eq!(
        w.tag_tid(),
        1,
        "tag 0 at creation, tag 1 for this writer's epoch"
    );
    for i in 0..20 {
        w.append(&write_event(i)).await.unwrap();
    }
    let header = header_oid(&id);
    assert_eq!(cls::get_active_set(&io, &header).await.unwrap(), 3);
    let expected: [&[u64]; 8] = [
        &[0, 2, 4],
        &[1, 3, 5],
        &[6, 8, 10],
        &[7, 9, 11],
        &[12, 14, 16],
        &[13, 15, 17],
        &[18],
        &[19],
    ];
    for (object, tids) in expected.iter().enumerate() {
        let raw = io
            .read(&data_oid(io.pool_id(), &id, object as u64), 0, 0)
            .await
            .unwrap();
        let scan = scan_entries(raw).unwrap();
        let got: Vec<u64> = scan.entries.iter().map(|e| e.entry.entry_tid).collect();
        assert_eq!(&got, tids, "object {object}");
        assert!(scan.entries.iter().all(|e| e.entry.tag_tid == 1));
    }
    // Nothing committed yet: the image client's position is empty.
    assert_eq!(
        cls::get_client(&io, &header, "")
            .await
            .unwrap()
            .commit_position,
        ObjectSetPosition::default()
    );
    // A second writer epoch: a new tag whose entries restart at 0.
    let mut w2 = JournalWriter::open(io.clone(), &id).await.unwrap();
    assert_eq!(w2.tag_tid(), 2);
    let p = w2
        .append(&EventEntry {
            event: Event::AioFlush,
            timestamp: UTime::new(1, 0),
        })
        .await
        .unwrap();
    assert_eq!((p.tag_tid, p.entry_tid, p.object_number), (2, 0, 6));
    id
}

/// librbd's commit position after entry 19 of tag 1: the newest entry per splay offset.
fn after_tag1() -> ObjectSetPosition {
    let pos = |object_number, entry_tid| ObjectPosition {
        object_number,
        tag_tid: 1,
        entry_tid,
    };
    ObjectSetPosition {
        object_positions: vec![pos(7, 19), pos(6, 18)],
    }
}

async fn commit_after_tag1<I: IoCtx>(io: &I, id: &str) {
    let w = JournalWriter::open(io.clone(), id).await.unwrap();
    w.commit(after_tag1()).await.unwrap();
    assert_eq!(
        cls::get_client(io, &header_oid(id), "")
            .await
            .unwrap()
            .commit_position,
        after_tag1()
    );
}

/// `rbd journal inspect --verbose` of a journal in the lab's pool `rbd`.
fn inspect(id: &str) -> String {
    support::cli(
        "rbd",
        &[
            "journal",
            "inspect",
            "-p",
            "rbd",
            "--journal",
            id,
            "--verbose",
        ],
    )
}

#[tokio::test]
async fn layout_on_memory() {
    let (_c, io) = support::memory().await;
    let id = spec_layout(io.clone()).await;
    commit_after_tag1(&io, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_and_rbd_journal_inspect_on_ceph() {
    let Some((_c, io)) = support::librados("layout_and_rbd_journal_inspect_on_ceph").await else {
        return;
    };
    let id = spec_layout(io.clone()).await;
    let text = inspect(&id);
    assert!(text.contains("21 entries inspected, 0 errors"), "{text}");
    // Ceph's own reading of every entry: tag and event type, in our order.
    let tags: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Entry: tag_id="))
        .collect();
    assert_eq!(tags.len(), 21);
    assert!(
        tags[..20].iter().all(|t| t.starts_with("1,")) && tags[20].starts_with("2,"),
        "{tags:?}"
    );
    assert_eq!(text.matches("\"event_type\": \"AioWrite\"").count(), 20);
    for i in 0..20u64 {
        assert!(
            text.contains(&format!("\"offset\": {},", i * 1000)),
            "write {i} missing"
        );
    }
    assert_eq!(text.matches("\"event_type\": \"AioFlush\"").count(), 1);
    // Past our commit position, Ceph's reader finds only the new epoch's entry.
    commit_after_tag1(&io, &id).await;
    let text = inspect(&id);
    assert!(text.contains("1 entries inspected, 0 errors"), "{text}");
    // Clean up: the journal objects are ours alone.
    for o in io
        .list_objects()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.contains(&id))
    {
        match io.remove(&o).await {
            Err(e) if e.errno == Errno::ENOENT => {}
            other => other.unwrap(),
        }
    }
}
