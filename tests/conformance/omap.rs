//! Omap and xattrs: paging with a prefix and the `more` flag, by-key reads, compare-and-set
//! guards (a mismatch cancels the whole op with ECANCELED), xattr errors, and atomicity of
//! racing compound ops.

use std::collections::BTreeMap;

use bytes::Bytes;
use rbd_relay::rados::{CmpOp, Errno, IoCtx, Rados, ReadOp, ReadResult, WriteOp};

use crate::harness::{errno, name};

pub async fn omap_paging<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("omap");
    let kv: BTreeMap<String, Bytes> = (0..10)
        .map(|i| (format!("k{i}"), Bytes::from(format!("v{i}"))))
        .collect();
    io.omap_set(&oid, kv.clone()).await.unwrap();
    io.omap_set(&oid, BTreeMap::from([("other".to_string(), Bytes::new())]))
        .await
        .unwrap();
    let (page, more) = io.omap_get_vals(&oid, "", "k", 4).await.unwrap();
    assert_eq!((page.len(), more), (4, true));
    let (page, more) = io.omap_get_vals(&oid, "k5", "k", 100).await.unwrap();
    assert_eq!(
        (page.keys().next().map(String::as_str), page.len(), more),
        (Some("k6"), 4, false)
    );
    let (page, more) = io.omap_get_vals(&oid, "k7", "k", 2).await.unwrap();
    assert_eq!(
        (page.len(), more),
        (2, false),
        "exactly the last keys: nothing more"
    );
    assert_eq!(io.omap_get_all(&oid, "k").await.unwrap(), kv);
    assert_eq!(io.omap_get_all(&oid, "").await.unwrap().len(), 11);
    let by = io.omap_get_by_keys(&oid, &["k1", "nope"]).await.unwrap();
    assert_eq!(
        by,
        BTreeMap::from([("k1".to_string(), Bytes::from_static(b"v1"))])
    );
    let keys = io
        .operate_read(&oid, ReadOp::new().omap_get_keys("", 3))
        .await
        .unwrap();
    assert_eq!(
        keys.results[0],
        ReadResult::Keys {
            keys: vec!["k0".into(), "k1".into(), "k2".into()],
            more: true
        }
    );
    // A key equal to the prefix belongs to it (the OSD starts at the prefix, inclusive).
    io.omap_set(&oid, BTreeMap::from([("k".to_string(), Bytes::new())]))
        .await
        .unwrap();
    let (page, _) = io.omap_get_vals(&oid, "", "k", 2).await.unwrap();
    assert_eq!(page.keys().collect::<Vec<_>>(), ["k", "k0"]);
    let (page, _) = io.omap_get_vals(&oid, "k", "k", 1).await.unwrap();
    assert_eq!(page.keys().collect::<Vec<_>>(), ["k0"]);
    io.omap_rm_keys(&oid, &["k"]).await.unwrap();
    io.omap_rm_keys(&oid, &["k0", "absent"]).await.unwrap();
    assert_eq!(io.omap_get_all(&oid, "k").await.unwrap().len(), 9);
    // A key equal to the prefix is part of the listing (librbd's journal client is `client_`).
    io.omap_set(&oid, BTreeMap::from([("k".to_string(), Bytes::new())]))
        .await
        .unwrap();
    let (page, _) = io.omap_get_vals(&oid, "", "k", 1).await.unwrap();
    assert_eq!(page.keys().next().map(String::as_str), Some("k"));
    io.operate_write(&oid, WriteOp::new().omap_clear())
        .await
        .unwrap();
    assert!(io.omap_get_all(&oid, "").await.unwrap().is_empty());
    io.remove(&oid).await.unwrap();
}

pub async fn omap_cmp_cancels<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("cmp");
    io.omap_set(
        &oid,
        BTreeMap::from([("k1".to_string(), Bytes::from_static(b"v1"))]),
    )
    .await
    .unwrap();
    let guarded = WriteOp::new()
        .omap_cmp("k1", CmpOp::Eq, &b"v1"[..])
        .omap_set([("k1", "new")]);
    io.operate_write(&oid, guarded).await.unwrap();
    let bad = WriteOp::new()
        .omap_cmp("k1", CmpOp::Eq, &b"v1"[..])
        .omap_set([("k2", "new")]);
    assert_eq!(errno(io.operate_write(&oid, bad).await), Errno::ECANCELED);
    assert!(
        io.omap_get_by_keys(&oid, &["k2"]).await.unwrap().is_empty(),
        "cancelled op wrote"
    );
    let read_cmp = io
        .operate_read(&oid, ReadOp::new().omap_cmp("k1", CmpOp::Eq, &b"zzz"[..]))
        .await;
    assert_eq!(errno(read_cmp), Errno::ECANCELED);
    // A missing key compares as the empty value.
    let absent_empty = WriteOp::new()
        .omap_cmp("absent", CmpOp::Eq, &b""[..])
        .omap_set([("t", "1")]);
    io.operate_write(&oid, absent_empty).await.unwrap();
    let absent_x = WriteOp::new()
        .omap_cmp("absent", CmpOp::Eq, &b"x"[..])
        .omap_set([("t", "2")]);
    assert_eq!(
        errno(io.operate_write(&oid, absent_x).await),
        Errno::ECANCELED
    );
    let lt = WriteOp::new()
        .omap_cmp("k1", CmpOp::Lt, &b"zzz"[..])
        .omap_set([("t", "3")]);
    io.operate_write(&oid, lt).await.unwrap();
    assert_eq!(
        io.omap_get_by_keys(&oid, &["t"]).await.unwrap()["t"],
        Bytes::from_static(b"3")
    );
    let on_missing = WriteOp::new()
        .omap_cmp("k", CmpOp::Eq, &b""[..])
        .omap_set([("t", "1")]);
    assert_eq!(
        errno(io.operate_write(&name("nobody"), on_missing).await),
        Errno::ENOENT
    );
    io.remove(&oid).await.unwrap();
}

pub async fn xattrs<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("xattr");
    io.set_xattr(&oid, "a", Bytes::from_static(b"1"))
        .await
        .unwrap();
    io.set_xattr(&oid, "b", Bytes::from_static(b"2"))
        .await
        .unwrap();
    assert_eq!(
        io.get_xattr(&oid, "a").await.unwrap(),
        Bytes::from_static(b"1")
    );
    assert_eq!(errno(io.get_xattr(&oid, "zz").await), Errno::ENODATA);
    let all = io
        .operate_read(&oid, ReadOp::new().get_xattrs())
        .await
        .unwrap();
    assert_eq!(
        all.results[0],
        ReadResult::Xattrs(BTreeMap::from([
            ("a".into(), "1".into()),
            ("b".into(), "2".into())
        ]))
    );
    let cmp = io
        .operate_write(
            &oid,
            WriteOp::new()
                .cmp_xattr("a", CmpOp::Eq, &b"2"[..])
                .rm_xattr("a"),
        )
        .await;
    assert_eq!(errno(cmp), Errno::ECANCELED);
    // A missing xattr compares as the empty value.
    io.operate_write(&oid, WriteOp::new().cmp_xattr("zz", CmpOp::Eq, &b""[..]))
        .await
        .unwrap();
    let absent = WriteOp::new().cmp_xattr("zz", CmpOp::Gt, &b""[..]);
    assert_eq!(
        errno(io.operate_write(&oid, absent).await),
        Errno::ECANCELED
    );
    io.operate_write(
        &oid,
        WriteOp::new()
            .cmp_xattr("a", CmpOp::Eq, &b"1"[..])
            .rm_xattr("a"),
    )
    .await
    .unwrap();
    assert_eq!(errno(io.get_xattr(&oid, "a").await), Errno::ENODATA);
    assert_eq!(
        errno(io.get_xattr(&name("nobody"), "a").await),
        Errno::ENOENT
    );
    io.remove(&oid).await.unwrap();
}

/// Compound ops are atomic against each other: of racing compare-and-set ops exactly one
/// wins, and racing appends all land.
pub async fn racing_ops<R: Rados>(_c: &R, io: &R::IoCtx) {
    let oid = name("race");
    io.omap_set(
        &oid,
        BTreeMap::from([("k".to_string(), Bytes::from_static(b"0"))]),
    )
    .await
    .unwrap();
    let racers = (0..8).map(|i| {
        let (io, oid) = (io.clone(), oid.clone());
        tokio::spawn(async move {
            let op = WriteOp::new()
                .omap_cmp("k", CmpOp::Eq, &b"0"[..])
                .omap_set([("k", format!("{}", i + 1))])
                .append(format!("{i}"));
            io.operate_write(&oid, op).await
        })
    });
    let results = futures::future::join_all(racers).await;
    let won: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(won.iter().filter(|r| r.is_ok()).count(), 1, "{won:?}");
    assert!(
        won.iter()
            .all(|r| r.as_ref().is_ok() || errno(r.clone()) == Errno::ECANCELED)
    );
    assert_eq!(io.stat(&oid).await.unwrap().size, 1);

    let appends = (0..16).map(|_| {
        let (io, oid) = (io.clone(), oid.clone());
        tokio::spawn(async move {
            io.operate_write(&oid, WriteOp::new().append(&b"ab"[..]))
                .await
        })
    });
    let mut versions: Vec<u64> = futures::future::join_all(appends)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(io.stat(&oid).await.unwrap().size, 1 + 32);
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 16, "every write has its own version");
    io.remove(&oid).await.unwrap();
}
