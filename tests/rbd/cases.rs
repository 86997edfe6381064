//! Creating, opening, writing, snapshotting and removing a non-primary image, checked
//! against a byte model of the image and against the RADOS objects Ceph's tools read.

use bytes::Bytes;
use rbd_relay::cls::{self, image as cls_image, journal as cls_journal};
use rbd_relay::format::Decode;
use rbd_relay::format::client_data::TagData;
use rbd_relay::format::image::{SnapshotNamespace, features, flags, oids};
use rbd_relay::format::journal::header_oid as journal_oid;
use rbd_relay::format::mirror::{MirrorImageMode, MirrorImageState};
use rbd_relay::format::object_map::ObjectState;
use rbd_relay::rados::{IoCtx, Rados};
use rbd_relay::rbd::{Image, IoOp, NonPrimarySpec, RbdError, create_non_primary, remove_image};

pub const ORDER: u8 = 16;
pub const OBJ: u64 = 1 << ORDER;
pub const SIZE: u64 = 16 * OBJ;
/// layering, exclusive-lock, object-map, fast-diff, deep-flatten, journaling.
pub const FEATURES: u64 = 125;

pub fn spec(prefix: &str) -> NonPrimarySpec {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    NonPrimarySpec {
        name: format!("{prefix}-{}", &tag[..8]),
        global_image_id: uuid::Uuid::new_v4().to_string(),
        size: SIZE,
        order: ORDER,
        features: FEATURES,
        stripe_unit: 0,
        stripe_count: 0,
        journal_order: 24,
        journal_splay_width: 4,
        primary_mirror_uuid: uuid::Uuid::new_v4().to_string(),
        data_pool: None,
        parent: None,
    }
}

/// A fresh non-primary image, opened and locked.
pub async fn locked_image<I: IoCtx>(io: &I, prefix: &str) -> Image<I> {
    let id = create_non_primary(io, &spec(prefix)).await.unwrap();
    let mut image = Image::open(io.clone(), &id).await.unwrap();
    image.acquire_lock().await.unwrap();
    image
}

/// Bytes the test chooses: distinct per seed and position.
pub fn pattern(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect()
}

/// The image as a byte vector, the model every op is also applied to.
pub struct Model(pub Vec<u8>);

impl Model {
    pub fn apply(&mut self, op: &IoOp) {
        match op {
            IoOp::Write { offset, data } => self.put(*offset, data),
            IoOp::Discard { offset, length } | IoOp::WriteZeroes { offset, length } => {
                self.put(*offset, &vec![0; *length as usize])
            }
            IoOp::WriteSame {
                offset,
                length,
                pattern,
            } => {
                let data: Vec<u8> = pattern
                    .iter()
                    .copied()
                    .cycle()
                    .take(*length as usize)
                    .collect();
                self.put(*offset, &data)
            }
            IoOp::CompareAndWrite { offset, cmp, data } => {
                let at = *offset as usize;
                if self.0[at..at + cmp.len()] == cmp[..] {
                    self.put(*offset, data)
                }
            }
        }
    }
    fn put(&mut self, offset: u64, data: &[u8]) {
        let at = offset as usize;
        self.0[at..at + data.len()].copy_from_slice(data);
    }
}

/// Every object's map entry agrees with whether the object exists.
pub async fn assert_object_map<I: IoCtx>(image: &Image<I>) {
    let map = cls_image::object_map_load(image.io(), &oids::object_map(image.id(), None))
        .await
        .unwrap();
    assert_eq!(map.len(), image.object_count());
    for o in 0..image.object_count() {
        let exists = image.read_object(o, None).await.unwrap().is_some();
        let state = map.get(o).unwrap();
        assert_eq!(
            exists,
            state != ObjectState::Nonexistent,
            "object {o}: exists {exists}, map {state:?}"
        );
    }
}

pub async fn create_and_open<R: Rados>(_c: &R, io: &R::IoCtx, _c2: &R, _io2: &R::IoCtx) {
    let spec = spec("create");
    let id = create_non_primary(io, &spec).await.unwrap();
    assert_eq!(
        create_non_primary(io, &spec).await.unwrap(),
        id,
        "a rerun finds it"
    );

    let image = Image::open_by_name(io.clone(), &spec.name).await.unwrap();
    assert_eq!(
        (image.id(), image.name()),
        (id.as_str(), spec.name.as_str())
    );
    assert_eq!(
        (image.size(), image.order(), image.features()),
        (SIZE, ORDER, FEATURES)
    );
    assert_eq!(image.object_prefix(), format!("rbd_data.{id}"));
    assert_eq!((image.flags(), image.object_count()), (0, 16));
    assert!(image.snapshots().is_empty() && image.metadata().is_empty());
    assert_eq!(image.snap_context().seq, 0);

    let mirror = cls::mirror::image_get(io, &id).await.unwrap();
    assert_eq!(mirror.global_image_id, spec.global_image_id);
    assert_eq!(
        (mirror.state, mirror.mode),
        (MirrorImageState::Enabled, MirrorImageMode::Journal)
    );
    assert_eq!(cls::dir::get_id(io, &spec.name).await.unwrap(), id);
    let journal = journal_oid(&id);
    let g = cls_journal::geometry(io, &journal).await.unwrap();
    assert_eq!((g.order, g.splay_width, g.pool_id), (24, 4, -1));
    let tag = cls_journal::get_tag(io, &journal, 0).await.unwrap();
    let owner = TagData::from_bytes(tag.data).unwrap().mirror_uuid;
    assert_eq!(
        owner, spec.primary_mirror_uuid,
        "owned by the primary: non-primary here"
    );
    assert_eq!(
        cls_journal::get_next_tag_tid(io, &journal).await.unwrap(),
        1
    );
    cls_journal::get_client(io, &journal, "").await.unwrap();
    let map = cls_image::object_map_load(io, &oids::object_map(&id, None))
        .await
        .unwrap();
    assert_eq!(map.len(), 16);

    // A crash after the header: the rest is finished by a rerun, with the same id.
    let partial = spec_like(&spec, "partial");
    let pid = create_non_primary(io, &partial).await.unwrap();
    cls_journal::client_unregister(io, &journal_oid(&pid), "")
        .await
        .unwrap();
    let mut entry = cls::mirror::image_get(io, &pid).await.unwrap();
    entry.state = MirrorImageState::Disabling;
    cls::mirror::image_set(io, &pid, &entry).await.unwrap();
    cls::mirror::image_remove(io, &pid).await.unwrap();
    assert_eq!(create_non_primary(io, &partial).await.unwrap(), pid);
    cls_journal::get_client(io, &journal_oid(&pid), "")
        .await
        .unwrap();
    assert_eq!(
        cls::mirror::image_get_image_id(io, &partial.global_image_id)
            .await
            .unwrap(),
        pid
    );

    // The name belongs to another mirrored image.
    let mut other = spec.clone();
    other.global_image_id = uuid::Uuid::new_v4().to_string();
    assert!(matches!(
        create_non_primary(io, &other).await,
        Err(RbdError::Exists(_))
    ));
    let mut bad = spec_like(&spec, "bad");
    bad.features &= !features::JOURNALING;
    assert!(matches!(
        create_non_primary(io, &bad).await,
        Err(RbdError::Invalid(_))
    ));
    bad = spec_like(&spec, "striped");
    (bad.stripe_unit, bad.stripe_count) = (4096, 4);
    assert!(matches!(
        create_non_primary(io, &bad).await,
        Err(RbdError::Unsupported(_))
    ));

    let missing = Image::open(io.clone(), "feedbeef0000").await;
    assert!(matches!(missing, Err(RbdError::NotFound(_))));
    let missing = Image::open_by_name(io.clone(), "no-such-image").await;
    assert!(matches!(missing, Err(RbdError::NotFound(_))));
    remove_image(io, &id).await.unwrap();
    remove_image(io, &pid).await.unwrap();
}

/// Daemons started together may bootstrap one image at the same moment: every creation
/// ends with the same replica. An unmirrored user image of the name is never taken over.
pub async fn concurrent_creates<R: Rados>(_c: &R, io: &R::IoCtx, _c2: &R, _io2: &R::IoCtx) {
    let spec = spec("race");
    let ids = futures::future::join_all((0..6).map(|_| create_non_primary(io, &spec))).await;
    let ids: Vec<String> = ids.into_iter().map(Result::unwrap).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let id = &ids[0];
    assert_eq!(cls::dir::get_id(io, &spec.name).await.unwrap(), *id);
    assert_eq!(
        cls::mirror::image_get_image_id(io, &spec.global_image_id)
            .await
            .unwrap(),
        *id
    );
    Image::open(io.clone(), id).await.unwrap();

    // What `rbd create --image-feature layering` leaves: no journal, no mirror entry.
    let user = spec_like(&spec, "user");
    let user_id = "feed0000user";
    cls::dir::create_id_object(io, &user.name, user_id)
        .await
        .unwrap();
    cls::dir::add_image(io, &user.name, user_id).await.unwrap();
    let input = rbd_relay::format::image::CreateInput {
        size: SIZE,
        order: ORDER,
        features: features::LAYERING,
        object_prefix: format!("rbd_data.{user_id}"),
        data_pool_id: -1,
    };
    cls_image::create(io, &oids::header(user_id), &input)
        .await
        .unwrap();
    let taken = create_non_primary(io, &user).await;
    assert!(matches!(taken, Err(RbdError::Exists(_))), "{taken:?}");
    remove_image(io, user_id).await.unwrap();
    remove_image(io, id).await.unwrap();
}

fn spec_like(spec: &NonPrimarySpec, name: &str) -> NonPrimarySpec {
    let mut s = spec.clone();
    s.name = format!("{}-{name}", spec.name);
    s.global_image_id = uuid::Uuid::new_v4().to_string();
    s
}

pub async fn data_path<R: Rados>(_c: &R, io: &R::IoCtx, _c2: &R, _io2: &R::IoCtx) {
    let id = create_non_primary(io, &spec("data")).await.unwrap();
    let mut image = Image::open(io.clone(), &id).await.unwrap();
    let err = image.write(0, pattern(1, 10)).await.unwrap_err();
    assert!(matches!(err, RbdError::LockNotHeld), "{err}");
    image.acquire_lock().await.unwrap();
    let info = cls::lock::get_info(io, &oids::header(&id), "rbd_lock")
        .await
        .unwrap();
    let (locker, _) = info.lockers.iter().next().unwrap();
    assert!(locker.cookie.starts_with("auto "), "{}", locker.cookie);
    assert_eq!(info.tag, "internal");

    let mut model = Model(vec![0; SIZE as usize]);
    let ops = [
        IoOp::Write {
            offset: OBJ - 100,
            data: pattern(1, 300),
        },
        IoOp::Write {
            offset: 3 * OBJ,
            data: pattern(2, 3 * OBJ as usize),
        },
        IoOp::WriteSame {
            offset: 7 * OBJ + 10,
            length: 30,
            pattern: Bytes::from_static(b"xyz"),
        },
        IoOp::Discard {
            offset: 3 * OBJ + 5,
            length: 10,
        },
        IoOp::Discard {
            offset: 4 * OBJ,
            length: OBJ,
        },
        IoOp::WriteZeroes {
            offset: 5 * OBJ + OBJ / 2,
            length: OBJ / 2,
        },
        IoOp::Write {
            offset: SIZE - 4,
            data: pattern(3, 4),
        },
    ];
    for op in &ops {
        match op {
            IoOp::Write { offset, data } => image.write(*offset, data.clone()).await.unwrap(),
            IoOp::Discard { offset, length } => image.discard(*offset, *length).await.unwrap(),
            IoOp::WriteZeroes { offset, length } => {
                image.write_zeroes(*offset, *length).await.unwrap()
            }
            IoOp::WriteSame {
                offset,
                length,
                pattern,
            } => image
                .write_same(*offset, *length, pattern.clone())
                .await
                .unwrap(),
            IoOp::CompareAndWrite { .. } => unreachable!(),
        }
        model.apply(op);
    }
    assert_eq!(image.read(0, SIZE, None).await.unwrap(), model.0);
    assert!(
        image.read_object(4, None).await.unwrap().is_none(),
        "whole discard removes"
    );
    assert_eq!(
        image.read_object(5, None).await.unwrap().unwrap().len() as u64,
        OBJ / 2,
        "a discard to the end truncates"
    );

    // Compare-and-write: a match writes, a mismatch reports the first differing byte.
    let at = 3 * OBJ + 1000;
    let cmp = Bytes::copy_from_slice(&model.0[at as usize..at as usize + 16]);
    image
        .compare_and_write(at, cmp.clone(), pattern(9, 16))
        .await
        .unwrap();
    model.apply(&IoOp::CompareAndWrite {
        offset: at,
        cmp,
        data: pattern(9, 16),
    });
    let mut wrong = model.0[at as usize..at as usize + 16].to_vec();
    wrong[5] ^= 0xff;
    let err = image
        .compare_and_write(at, wrong.into(), pattern(7, 16))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RbdError::CompareMismatch { offset } if offset == at + 5),
        "{err}"
    );
    // On a missing object the image holds zeros.
    let hole = 9 * OBJ + 7;
    image
        .compare_and_write(hole, Bytes::from(vec![0; 8]), pattern(4, 8))
        .await
        .unwrap();
    model.apply(&IoOp::Write {
        offset: hole,
        data: pattern(4, 8),
    });
    assert_eq!(image.read(0, SIZE, None).await.unwrap(), model.0);

    // Bad input.
    let err = image.write(SIZE - 1, pattern(1, 2)).await.unwrap_err();
    assert!(
        matches!(err, RbdError::OutOfBounds { offset, length: 2, size: SIZE } if offset == SIZE - 1)
    );
    assert!(matches!(
        image.read(SIZE, 1, None).await,
        Err(RbdError::OutOfBounds { .. })
    ));
    let bad = image.write_same(0, 10, Bytes::from_static(b"abc")).await;
    assert!(matches!(bad, Err(RbdError::Invalid(_))));
    let bad = image
        .compare_and_write(OBJ - 1, pattern(0, 2), pattern(0, 2))
        .await;
    assert!(matches!(bad, Err(RbdError::Invalid(_))));

    // Whole objects for image sync.
    image.write_object(10, Some(pattern(5, 100))).await.unwrap();
    model.put(10 * OBJ, &pattern(5, 100));
    assert_eq!(
        image.read_object(10, None).await.unwrap().unwrap(),
        pattern(5, 100)
    );
    image.write_object(3, None).await.unwrap();
    model.put(3 * OBJ, &vec![0; OBJ as usize]);
    assert_eq!(image.read(0, SIZE, None).await.unwrap(), model.0);
    assert_object_map(&image).await;

    image.release_lock().await.unwrap();
    assert_eq!(
        *image.lock_state().borrow(),
        rbd_relay::rbd::LockState::Unlocked
    );
    assert!(
        cls::lock::get_info(io, &oids::header(&id), "rbd_lock")
            .await
            .unwrap()
            .lockers
            .is_empty()
    );
    assert!(matches!(
        image.discard(0, 1).await,
        Err(RbdError::LockNotHeld)
    ));
    remove_image(io, &id).await.unwrap();
}

pub async fn batches<R: Rados>(_c: &R, io: &R::IoCtx, _c2: &R, _io2: &R::IoCtx) {
    let image = locked_image(io, "batch").await;
    let mut model = Model(vec![0; SIZE as usize]);
    // Same-object ops keep batch order: a write, a removal of the whole object, a write.
    let batch = vec![
        IoOp::Write {
            offset: 0,
            data: pattern(1, OBJ as usize),
        },
        IoOp::Write {
            offset: 2 * OBJ,
            data: pattern(2, 100),
        },
        IoOp::Discard {
            offset: 0,
            length: OBJ,
        },
        IoOp::Write {
            offset: 10,
            data: pattern(3, 10),
        },
        IoOp::Write {
            offset: 2 * OBJ + 50,
            data: pattern(4, 100),
        },
        IoOp::Write {
            offset: OBJ,
            data: pattern(5, 10),
        },
        IoOp::Discard {
            offset: OBJ,
            length: OBJ,
        },
        IoOp::Discard {
            offset: OBJ + 5,
            length: 5,
        },
        IoOp::CompareAndWrite {
            offset: 2 * OBJ,
            cmp: pattern(2, 50),
            data: pattern(6, 50),
        },
        IoOp::CompareAndWrite {
            offset: 2 * OBJ + 50,
            cmp: pattern(1, 4),
            data: pattern(6, 4),
        },
        IoOp::Write {
            offset: 2 * OBJ + 200,
            data: pattern(7, 10),
        },
    ];
    let err = image.apply(&batch, 4).await.unwrap_err();
    assert!(
        matches!(err, RbdError::CompareMismatch { offset } if offset == 2 * OBJ + 50),
        "the mismatch is reported after the rest applied: {err}"
    );
    for op in &batch {
        model.apply(op);
    }
    assert_eq!(
        image.read(0, 3 * OBJ, None).await.unwrap(),
        model.0[..3 * OBJ as usize]
    );
    assert!(image.read_object(1, None).await.unwrap().is_none());
    assert_object_map(&image).await;

    // Many small writes across all objects, concurrently.
    let ops: Vec<IoOp> = (0..64u64)
        .map(|i| IoOp::Write {
            offset: (i * 7919 * 4096) % (SIZE - 4096),
            data: pattern(i as u8, 4096),
        })
        .collect();
    image.apply(&ops, 32).await.unwrap();
    for op in &ops {
        model.apply(op);
    }
    assert_eq!(image.read(0, SIZE, None).await.unwrap(), model.0);
    assert_object_map(&image).await;
}

pub async fn snapshots_and_resize<R: Rados>(_c: &R, io: &R::IoCtx, _c2: &R, _io2: &R::IoCtx) {
    let mut image = locked_image(io, "snaps").await;
    image.write(0, pattern(1, SIZE as usize)).await.unwrap();
    let s1 = image
        .snap_create("s1", SnapshotNamespace::User)
        .await
        .unwrap();
    assert_eq!(
        image
            .snap_create("s1", SnapshotNamespace::User)
            .await
            .unwrap(),
        s1,
        "idempotent"
    );
    assert_eq!(image.snap_context().snaps, vec![s1]);
    assert_eq!(image.snapshots().len(), 1);
    let head_map = cls_image::object_map_load(io, &oids::object_map(image.id(), None))
        .await
        .unwrap();
    assert!(
        head_map.iter().all(|s| s == ObjectState::ExistsClean),
        "fast-diff: clean after a snapshot"
    );
    let snap_map = cls_image::object_map_load(io, &oids::object_map(image.id(), Some(s1)))
        .await
        .unwrap();
    assert!(snap_map.iter().all(|s| s == ObjectState::Exists));

    image.write(OBJ, pattern(2, OBJ as usize)).await.unwrap();
    image.discard(2 * OBJ, OBJ).await.unwrap();
    let head_map = cls_image::object_map_load(io, &oids::object_map(image.id(), None))
        .await
        .unwrap();
    assert_eq!(head_map.get(1), Some(ObjectState::Exists));
    assert_eq!(head_map.get(2), Some(ObjectState::Nonexistent));
    assert_eq!(head_map.get(3), Some(ObjectState::ExistsClean));
    assert_eq!(
        image.read(0, SIZE, Some(s1)).await.unwrap(),
        pattern(1, SIZE as usize),
        "the snapshot keeps its data"
    );
    let head = image.read(0, 3 * OBJ, None).await.unwrap();
    assert_eq!(
        head[OBJ as usize..2 * OBJ as usize],
        pattern(2, OBJ as usize)[..]
    );
    assert!(head[2 * OBJ as usize..].iter().all(|&b| b == 0));

    // Shrink trims objects (the snapshot keeps them), growing reads zeros.
    image.resize(5 * OBJ + 123).await.unwrap();
    assert_eq!((image.size(), image.object_count()), (5 * OBJ + 123, 6));
    assert!(image.read_object(6, None).await.unwrap().is_none());
    assert_eq!(
        image.read_object(5, None).await.unwrap().unwrap().len(),
        123
    );
    assert!(matches!(
        image.write(5 * OBJ + 123, pattern(0, 1)).await,
        Err(RbdError::OutOfBounds { .. })
    ));
    image.resize(SIZE).await.unwrap();
    let grown = image.read(5 * OBJ, SIZE - 5 * OBJ, None).await.unwrap();
    assert_eq!(
        grown[..123],
        pattern(1, SIZE as usize)[5 * OBJ as usize..5 * OBJ as usize + 123]
    );
    assert!(grown[123..].iter().all(|&b| b == 0));
    assert_eq!(
        image.read(0, SIZE, Some(s1)).await.unwrap(),
        pattern(1, SIZE as usize)
    );
    assert_object_map(&image).await;

    // A second snapshot; removing the first folds its dirty objects into the second's map.
    let s2 = image
        .snap_create("s2", SnapshotNamespace::User)
        .await
        .unwrap();
    assert!(s2 > s1);
    image.snap_rename("s2", "renamed").await.unwrap();
    assert_eq!(image.snapshots()[1].name, "renamed");
    image.snap_protect("renamed").await.unwrap();
    let err = image
        .snap_remove("renamed", &SnapshotNamespace::User)
        .await
        .unwrap_err();
    assert!(matches!(err, RbdError::Invalid(_)), "{err}");
    image.snap_unprotect("renamed").await.unwrap();
    image
        .snap_remove("s1", &SnapshotNamespace::User)
        .await
        .unwrap();
    image
        .snap_remove("s1", &SnapshotNamespace::User)
        .await
        .unwrap(); // already gone: done
    assert_eq!(image.snap_context().snaps, vec![s2]);
    assert!(
        io.stat(&oids::object_map(image.id(), Some(s1)))
            .await
            .is_err()
    );
    let m2 = cls_image::object_map_load(io, &oids::object_map(image.id(), Some(s2)))
        .await
        .unwrap();
    assert_eq!(
        m2.get(1),
        Some(ObjectState::Exists),
        "written after s1: still dirty for s2"
    );
    assert!(matches!(
        image.snap_rename("s1", "x").await,
        Err(RbdError::SnapshotNotFound(_))
    ));

    image.snap_set_limit(Some(1)).await.unwrap();
    assert_eq!(image.snap_limit().await.unwrap(), Some(1));
    assert!(
        image
            .snap_create("over", SnapshotNamespace::User)
            .await
            .is_err()
    );
    image.snap_set_limit(None).await.unwrap();
    assert_eq!(image.snap_limit().await.unwrap(), None);
    image
        .snap_remove("renamed", &SnapshotNamespace::User)
        .await
        .unwrap();
    assert!(image.snapshots().is_empty());
    let id = image.id().to_string();
    image.release_lock().await.unwrap();
    remove_image(io, &id).await.unwrap();
}

pub async fn header_ops_and_remove<R: Rados>(_c: &R, io: &R::IoCtx, _c2: &R, _io2: &R::IoCtx) {
    let mut image = locked_image(io, "ops").await;
    let id = image.id().to_string();
    image.metadata_set("conf_rbd_cache", "false").await.unwrap();
    image.metadata_set("k", "v").await.unwrap();
    assert_eq!(image.metadata()["k"], Bytes::from_static(b"v"));
    image.metadata_remove("k").await.unwrap();
    image.metadata_remove("k").await.unwrap();
    assert_eq!(
        image.metadata().keys().collect::<Vec<_>>(),
        ["conf_rbd_cache"]
    );

    let old = image.name().to_string();
    let new = format!("{old}-renamed");
    image.rename(&new).await.unwrap();
    assert_eq!(image.name(), new);
    assert_eq!(cls::dir::id_of(io, &new).await.unwrap(), id);
    assert!(cls::dir::id_of(io, &old).await.is_err());
    assert_eq!(cls::dir::get_name(io, &id).await.unwrap(), new);

    image.write(0, pattern(1, 100)).await.unwrap();
    image
        .update_features(features::OBJECT_MAP | features::FAST_DIFF, false)
        .await
        .unwrap();
    assert_eq!(
        image.features(),
        FEATURES & !(features::OBJECT_MAP | features::FAST_DIFF)
    );
    assert!(
        io.stat(&oids::object_map(&id, None)).await.is_err(),
        "map removed"
    );
    image.write(OBJ, pattern(2, 100)).await.unwrap();
    image
        .update_features(features::OBJECT_MAP | features::FAST_DIFF, true)
        .await
        .unwrap();
    assert_eq!(image.features(), FEATURES);
    let invalid = flags::OBJECT_MAP_INVALID | flags::FAST_DIFF_INVALID;
    assert_eq!(
        image.flags(),
        invalid,
        "a new map is invalid until rebuilt, as librbd does"
    );
    let err = image
        .update_features(features::JOURNALING, false)
        .await
        .unwrap_err();
    assert!(matches!(err, RbdError::Unsupported(_)));
    image.set_flags(0, invalid).await.unwrap();
    assert_eq!(image.flags(), 0);
    image
        .snap_create("before-remove", SnapshotNamespace::User)
        .await
        .unwrap();
    // A protected snapshot (the sync copies protection): cls_rbd refuses to remove it as is.
    image.snap_protect("before-remove").await.unwrap();
    image.write(0, pattern(3, 100)).await.unwrap();
    image.release_lock().await.unwrap();

    let global = cls::mirror::image_get(io, &id)
        .await
        .unwrap()
        .global_image_id;
    remove_image(io, &id).await.unwrap();
    remove_image(io, &id).await.unwrap(); // a rerun finds nothing left to do
    // Listing also shows a removed object whose clones the OSD has not trimmed yet (snap
    // trimming is asynchronous and can queue for minutes): only a head counts as left.
    let mut left = Vec::new();
    for o in io.list_objects().await.unwrap() {
        if (o.contains(&id) || o.contains(&new)) && io.stat(&o).await.is_ok() {
            left.push(o);
        }
    }
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(cls::dir::get_id(io, &new).await.is_err());
    assert!(cls::mirror::image_get(io, &id).await.is_err());
    assert!(cls::mirror::image_get_image_id(io, &global).await.is_err());
    assert!(matches!(
        Image::open(io.clone(), &id).await,
        Err(RbdError::NotFound(_))
    ));
}

/// A replica of a primary with a separate data pool keeps its data in the local pool of
/// that name, with the header librbd writes for `--data-pool` (feature, `data_pool_id`,
/// object prefix `rbd_data.<pool id>.<image id>`); snapshot ids come from the data pool,
/// and removal cleans both pools. Without such a local pool the data stays in the image's.
pub async fn data_pool<R: Rados>(_c: &R, io: &R::IoCtx, _c2: &R, _io2: &R::IoCtx) {
    let data = io.pool_by_name(crate::harness::DATA_POOL).await.unwrap();
    let with_pool = NonPrimarySpec {
        data_pool: Some(crate::harness::DATA_POOL.into()),
        ..spec("datapool")
    };
    let id = create_non_primary(io, &with_pool).await.unwrap();
    let mut image = Image::open(io.clone(), &id).await.unwrap();
    let header = oids::header(&id);
    assert_eq!(image.data_pool(), Some(crate::harness::DATA_POOL));
    assert_eq!(image.features(), FEATURES | features::DATA_POOL);
    assert_eq!(
        cls_image::get_data_pool(io, &header).await.unwrap(),
        data.pool_id()
    );
    assert_eq!(
        image.object_prefix(),
        format!("rbd_data.{}.{id}", io.pool_id())
    );
    image.acquire_lock().await.unwrap();
    image.write(OBJ + 10, pattern(1, 1000)).await.unwrap();
    let seq_before = image.snap_context().seq;
    let snap = image
        .snap_create("s1", SnapshotNamespace::User)
        .await
        .unwrap();
    assert!(snap > seq_before);
    image.write(OBJ + 10, pattern(2, 1000)).await.unwrap();
    assert!(
        data.stat(&image.data_oid(1)).await.is_ok(),
        "data in the data pool"
    );
    assert!(
        io.stat(&image.data_oid(1)).await.is_err(),
        "no data in the image's pool"
    );
    assert_eq!(
        image.read(OBJ + 10, 1000, None).await.unwrap(),
        pattern(2, 1000)
    );
    assert_eq!(
        image.read(OBJ + 10, 1000, Some(snap)).await.unwrap(),
        pattern(1, 1000)
    );
    image.release_lock().await.unwrap();
    remove_image(io, &id).await.unwrap();
    for pool in [io, &data] {
        for o in pool.list_objects().await.unwrap() {
            assert!(
                !o.contains(&id) || pool.stat(&o).await.is_err(),
                "left behind in {}: {o}",
                pool.pool_name()
            );
        }
    }

    let elsewhere = NonPrimarySpec {
        data_pool: Some("no-such-pool".into()),
        ..spec("datapool")
    };
    let id = create_non_primary(io, &elsewhere).await.unwrap();
    let image = Image::open(io.clone(), &id).await.unwrap();
    assert_eq!(image.data_pool(), None);
    assert_eq!(image.features(), FEATURES);
    remove_image(io, &id).await.unwrap();
}
