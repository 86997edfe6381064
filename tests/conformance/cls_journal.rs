//! cls_journal through the typed client (`rbd_relay::cls::journal`), on both backends: the
//! header's geometry and object sets, client registration (a newcomer starts at the slowest
//! client's position), commits, tags (allocation, classes, `ESTALE` races, listing as a
//! client sees it, expiry) and the guarded append.

use bytes::Bytes;
use rbd_relay::cls::journal::{self as j, Geometry};
use rbd_relay::format::journal::{ClientState, ObjectPosition, ObjectSetPosition, TAG_CLASS_NEW};
use rbd_relay::rados::{Errno, Rados};

use crate::harness::name;

fn pos(entries: &[(u64, u64, u64)]) -> ObjectSetPosition {
    let object_positions = entries
        .iter()
        .map(|&(object_number, tag_tid, entry_tid)| ObjectPosition {
            object_number,
            tag_tid,
            entry_tid,
        })
        .collect();
    ObjectSetPosition { object_positions }
}

fn errno<T>(r: rbd_relay::cls::ClsResult<T>) -> Errno {
    match r {
        Ok(_) => panic!("expected an error, got success"),
        Err(e) => e.errno().expect("a RADOS error"),
    }
}

pub async fn journal_header<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("journal");
    assert_eq!(errno(j::geometry(io, &oid).await), Errno::ENOENT);
    let g = Geometry {
        order: 12,
        splay_width: 2,
        pool_id: -1,
    };
    j::create(io, &oid, g).await.unwrap();
    assert_eq!(errno(j::create(io, &oid, g).await), Errno::EEXIST);
    assert_eq!(j::geometry(io, &oid).await.unwrap(), g);
    assert_eq!(
        (
            j::get_minimum_set(io, &oid).await.unwrap(),
            j::get_active_set(io, &oid).await.unwrap()
        ),
        (0, 0)
    );
    assert_eq!(
        errno(j::set_minimum_set(io, &oid, 1).await),
        Errno::EINVAL,
        "past the active set"
    );
    j::set_active_set(io, &oid, 3).await.unwrap();
    j::set_active_set(io, &oid, 3).await.unwrap();
    assert_eq!(errno(j::set_active_set(io, &oid, 2).await), Errno::ESTALE);
    j::set_minimum_set(io, &oid, 2).await.unwrap();
    assert_eq!(errno(j::set_minimum_set(io, &oid, 1).await), Errno::ESTALE);
    assert_eq!(
        errno(j::set_active_set(io, &oid, 1).await),
        Errno::EINVAL,
        "below the minimum set"
    );
    assert_eq!(
        (
            j::get_minimum_set(io, &oid).await.unwrap(),
            j::get_active_set(io, &oid).await.unwrap()
        ),
        (2, 3)
    );
}

pub async fn journal_clients<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("journal");
    assert_eq!(
        errno(j::client_register(io, &oid, "x", Bytes::new()).await),
        Errno::ENOENT,
        "no journal"
    );
    j::create(
        io,
        &oid,
        Geometry {
            order: 12,
            splay_width: 2,
            pool_id: -1,
        },
    )
    .await
    .unwrap();
    j::client_register(io, &oid, "", Bytes::from_static(b"image"))
        .await
        .unwrap();
    assert_eq!(
        errno(j::client_register(io, &oid, "", Bytes::new()).await),
        Errno::EEXIST
    );
    // While a client with an empty position exists, a newcomer starts empty too.
    j::client_register(io, &oid, "early", Bytes::new())
        .await
        .unwrap();
    let p = pos(&[(1, 5, 3), (0, 5, 2)]);
    j::client_commit(io, &oid, "", p.clone()).await.unwrap();
    let too_many = pos(&[(2, 5, 4), (1, 5, 3), (0, 5, 2)]);
    assert_eq!(
        errno(j::client_commit(io, &oid, "", too_many).await),
        Errno::EINVAL
    );
    assert_eq!(
        errno(j::client_commit(io, &oid, "nobody", p.clone()).await),
        Errno::ENOENT
    );
    j::client_register(io, &oid, "peer", Bytes::new())
        .await
        .unwrap();
    assert_eq!(
        j::get_client(io, &oid, "peer")
            .await
            .unwrap()
            .commit_position,
        ObjectSetPosition::default()
    );
    j::client_unregister(io, &oid, "peer").await.unwrap();
    j::client_unregister(io, &oid, "early").await.unwrap();

    // Otherwise it starts at the slowest registered client's position.
    j::client_register(io, &oid, "peer", Bytes::from_static(b"meta"))
        .await
        .unwrap();
    let peer = j::get_client(io, &oid, "peer").await.unwrap();
    assert_eq!(
        (peer.commit_position, peer.state, peer.data),
        (
            p.clone(),
            ClientState::Connected,
            Bytes::from_static(b"meta")
        )
    );
    j::client_update_data(io, &oid, "peer", Bytes::from_static(b"meta2"))
        .await
        .unwrap();
    j::client_update_state(io, &oid, "peer", ClientState::Disconnected)
        .await
        .unwrap();
    let peer = j::get_client(io, &oid, "peer").await.unwrap();
    assert_eq!(
        (peer.data, peer.state),
        (Bytes::from_static(b"meta2"), ClientState::Disconnected)
    );
    assert_eq!(
        errno(j::get_client(io, &oid, "nobody").await),
        Errno::ENOENT
    );
    j::client_register(io, &oid, "late", Bytes::new())
        .await
        .unwrap();
    let ids: Vec<String> = j::client_list(io, &oid)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["", "late", "peer"]);
    j::client_unregister(io, &oid, "peer").await.unwrap();
    assert_eq!(
        errno(j::client_unregister(io, &oid, "peer").await),
        Errno::ENOENT
    );
}

pub async fn journal_tags<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("journal");
    j::create(
        io,
        &oid,
        Geometry {
            order: 12,
            splay_width: 2,
            pool_id: -1,
        },
    )
    .await
    .unwrap();
    j::client_register(io, &oid, "", Bytes::new())
        .await
        .unwrap();
    assert_eq!(
        j::allocate_tag(io, &oid, TAG_CLASS_NEW, Bytes::from_static(b"t0"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        errno(j::tag_create(io, &oid, 5, 0, Bytes::new()).await),
        Errno::ESTALE,
        "tid must be next"
    );
    assert_eq!(
        errno(j::tag_create(io, &oid, 1, 7, Bytes::new()).await),
        Errno::EINVAL,
        "unknown class"
    );
    assert_eq!(
        j::allocate_tag(io, &oid, 0, Bytes::from_static(b"t1"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        j::allocate_tag(io, &oid, TAG_CLASS_NEW, Bytes::new())
            .await
            .unwrap(),
        2
    );
    assert_eq!(j::get_next_tag_tid(io, &oid).await.unwrap(), 3);
    let t1 = j::get_tag(io, &oid, 1).await.unwrap();
    assert_eq!(
        (t1.tid, t1.tag_class, t1.data),
        (1, 0, Bytes::from_static(b"t1"))
    );
    let t2 = j::get_tag(io, &oid, 2).await.unwrap();
    assert_eq!(t2.tag_class, 1, "a new class");
    assert_eq!(errno(j::get_tag(io, &oid, 9).await), Errno::ENOENT);

    // Listing: everything (0 lists from the start, tag 0 included), after a tid, by class.
    let tids = |tags: Vec<rbd_relay::format::journal::Tag>| {
        tags.into_iter().map(|t| t.tid).collect::<Vec<_>>()
    };
    assert_eq!(
        tids(j::tag_list(io, &oid, 0, "", None).await.unwrap()),
        [0, 1, 2]
    );
    assert_eq!(tids(j::tag_list(io, &oid, 1, "", None).await.unwrap()), [2]);
    assert_eq!(
        tids(j::tag_list(io, &oid, 0, "", Some(0)).await.unwrap()),
        [0, 1]
    );
    assert_eq!(
        errno(j::tag_list(io, &oid, 0, "nobody", None).await),
        Errno::ENOENT
    );

    // Once every client's position is past tag 0, a new tag expires it (tag 1 stays: it is
    // the newest of its class at or below what the positions reference).
    j::client_commit(io, &oid, "", pos(&[(0, 1, 0)]))
        .await
        .unwrap();
    assert_eq!(j::allocate_tag(io, &oid, 0, Bytes::new()).await.unwrap(), 3);
    assert_eq!(
        errno(j::get_tag(io, &oid, 0).await),
        Errno::ENOENT,
        "expired"
    );
    assert_eq!(
        tids(j::tag_list(io, &oid, 0, "", None).await.unwrap()),
        [1, 2, 3]
    );
}

pub async fn journal_append<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("journal_data");
    j::append(io, &oid, 16, Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    j::append(io, &oid, 16, Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    assert_eq!(
        errno(j::append(io, &oid, 16, Bytes::from_static(b"x")).await),
        Errno::EOVERFLOW
    );
    use rbd_relay::rados::IoCtx;
    assert_eq!(
        io.stat(&oid).await.unwrap().size,
        20,
        "an append may end past the soft limit"
    );
    let guard = |max: u64| {
        rbd_relay::rados::WriteOp::new().exec("journal", "guard_append", max.to_le_bytes().to_vec())
    };
    assert_eq!(
        io.operate_write(&oid, guard(20)).await.unwrap_err().errno,
        Errno::EOVERFLOW
    );
    io.operate_write(&oid, guard(21).append(&b"y"[..]))
        .await
        .unwrap();
    io.remove(&oid).await.unwrap();
}
