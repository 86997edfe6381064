//! cls_rbd's image header and object map methods through the typed client
//! (`rbd_relay::cls::image`), on both backends: exclusive creation, size, features, flags,
//! data pool, striping (`ENOEXEC` without STRIPINGV2), metadata, and the object map's
//! resize, update and load. Snapshots are in `cls_rbd_snaps`.

use std::collections::BTreeMap;

use bytes::Bytes;
use rbd_relay::cls::image as img;
use rbd_relay::format::image::{
    CEPH_NOSNAP, CreateInput, GetFeaturesOutput, GetSizeOutput, ObjectMapUpdateInput,
    StripeUnitCount, features as f,
};
use rbd_relay::format::object_map::{ObjectMap, ObjectState};
use rbd_relay::rados::{Errno, IoCtx, Rados};

use crate::cls_rbd_mirror::list_page;
use crate::cls_rbd_mirror::{Checks, r};
use crate::harness::name;

pub const MIB: u64 = 1 << 20;

fn create_input(features: u64, prefix: &str, data_pool_id: i64) -> CreateInput {
    CreateInput {
        size: 16 * MIB,
        order: 22,
        features,
        object_prefix: prefix.into(),
        data_pool_id,
    }
}

pub async fn header<I: IoCtx>(io: &I, features: u64) -> String {
    let oid = name("rbd_header");
    img::create(io, &oid, &create_input(features, "rbd_data.abc", -1))
        .await
        .unwrap();
    oid
}

pub async fn image_header<R: Rados>(_c: &R, io: &R::IoCtx) {
    let mut c = Checks::default();
    let missing = name("rbd_header");
    c.eq(
        "size of a missing header",
        r(img::get_size(io, &missing, CEPH_NOSNAP).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "set_size of a missing header",
        r(img::set_size(io, &missing, 1).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "flags of a missing header",
        r(img::get_flags(io, &missing, CEPH_NOSNAP).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "data pool of a missing header",
        r(img::get_data_pool(io, &missing).await),
        Err(Errno::ENOENT),
    );
    for (what, input) in [
        ("internal feature", create_input(f::OPERATIONS, "p", -1)),
        (
            "data pool feature without pool",
            create_input(f::DATA_POOL, "p", -1),
        ),
        ("empty prefix", create_input(0, "", -1)),
    ] {
        c.eq(
            what,
            r(img::create(io, &name("rbd_header"), &input).await),
            Err(Errno::EINVAL),
        );
    }
    let feats = f::LAYERING | f::EXCLUSIVE_LOCK | f::JOURNALING;
    let oid = header(io, feats).await;
    c.eq(
        "create twice",
        r(img::create(io, &oid, &create_input(feats, "p", -1)).await),
        Err(Errno::EEXIST),
    );
    let keys: Vec<String> = io
        .omap_get_all(&oid, "")
        .await
        .unwrap()
        .into_keys()
        .collect();
    c.eq(
        "keys",
        keys,
        [
            "access_timestamp",
            "create_timestamp",
            "features",
            "modify_timestamp",
            "object_prefix",
            "order",
            "size",
            "snap_seq",
        ]
        .map(String::from)
        .to_vec(),
    );
    c.eq(
        "size",
        r(img::get_size(io, &oid, CEPH_NOSNAP).await),
        Ok(GetSizeOutput {
            order: 22,
            size: 16 * MIB,
        }),
    );
    c.eq(
        "set size",
        r(img::set_size(io, &oid, 32 * MIB).await),
        Ok(()),
    );
    c.eq(
        "new size",
        r(img::get_size(io, &oid, CEPH_NOSNAP).await).map(|s| s.size),
        Ok(32 * MIB),
    );
    c.eq(
        "size of a missing snap",
        r(img::get_size(io, &oid, 4).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "features",
        r(img::get_features(io, &oid, CEPH_NOSNAP).await),
        Ok(GetFeaturesOutput {
            features: feats,
            incompatible_features: feats,
        }),
    );
    let head = GetFeaturesOutput {
        features: feats,
        incompatible_features: feats,
    };
    c.eq(
        "features of a missing snap",
        r(img::get_features(io, &oid, 4).await),
        Ok(head),
    );
    c.eq(
        "enable object map",
        r(img::set_features(io, &oid, f::OBJECT_MAP, f::OBJECT_MAP).await),
        Ok(()),
    );
    c.eq(
        "enable layering",
        r(img::set_features(io, &oid, f::LAYERING, f::LAYERING).await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "disable layering",
        r(img::set_features(io, &oid, 0, f::LAYERING).await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "disable deep-flatten",
        r(img::set_features(io, &oid, 0, f::DEEP_FLATTEN).await),
        Ok(()),
    );
    c.eq(
        "disable journaling",
        r(img::set_features(io, &oid, 0, f::JOURNALING).await),
        Ok(()),
    );
    let now = f::LAYERING | f::EXCLUSIVE_LOCK | f::OBJECT_MAP;
    c.eq(
        "features now",
        r(img::get_features(io, &oid, CEPH_NOSNAP).await).map(|o| o.features),
        Ok(now),
    );
    let bare = name("rbd_header");
    c.eq(
        "set features of a missing header",
        r(img::set_features(io, &bare, f::JOURNALING, f::JOURNALING).await),
        Ok(()),
    );
    c.eq(
        "features of a bare object",
        r(img::get_features(io, &bare, CEPH_NOSNAP).await).map(|o| o.features),
        Ok(f::JOURNALING),
    );
    c.eq(
        "prefix",
        r(img::get_object_prefix(io, &oid).await),
        Ok("rbd_data.abc".to_string()),
    );
    c.eq(
        "no data pool",
        r(img::get_data_pool(io, &oid).await),
        Ok(-1),
    );
    let pooled = name("rbd_header");
    img::create(
        io,
        &pooled,
        &create_input(f::DATA_POOL, "rbd_data.1.abc", 7),
    )
    .await
    .unwrap();
    c.eq("data pool", r(img::get_data_pool(io, &pooled).await), Ok(7));
    c.eq(
        "flags",
        r(img::get_flags(io, &oid, CEPH_NOSNAP).await),
        Ok(0),
    );
    c.eq(
        "set flags",
        r(img::set_flags(io, &oid, 3, 3, CEPH_NOSNAP).await),
        Ok(()),
    );
    c.eq(
        "clear one flag",
        r(img::set_flags(io, &oid, 0, 1, CEPH_NOSNAP).await),
        Ok(()),
    );
    c.eq(
        "flags now",
        r(img::get_flags(io, &oid, CEPH_NOSNAP).await),
        Ok(2),
    );
    c.eq(
        "flags of a missing snap",
        r(img::set_flags(io, &oid, 1, 1, 4).await),
        Err(Errno::ENOENT),
    );
    let flagged = name("rbd_header");
    c.eq(
        "set flags creates",
        r(img::set_flags(io, &flagged, 1, 1, CEPH_NOSNAP).await),
        Ok(()),
    );
    c.eq(
        "flags of a bare object",
        r(img::get_flags(io, &flagged, CEPH_NOSNAP).await),
        Ok(1),
    );
    c.eq(
        "all features",
        r(img::get_all_features(io, &oid).await),
        Ok(0xfff),
    );
    c.eq(
        "no striping",
        r(img::get_stripe_unit_count(io, &oid).await),
        Ok(None),
    );
    let s = |stripe_unit, stripe_count| StripeUnitCount {
        stripe_unit,
        stripe_count,
    };
    c.eq(
        "set striping without the feature",
        r(img::set_stripe_unit_count(io, &oid, &s(MIB, 2)).await),
        Err(Errno::ENOEXEC),
    );
    c.eq(
        "striping of a missing header",
        r(img::get_stripe_unit_count(io, &missing).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "striping of a featureless object",
        r(img::get_stripe_unit_count(io, &flagged).await),
        Ok(None),
    );
    let striped = header(io, f::LAYERING | f::STRIPINGV2).await;
    c.eq(
        "default striping",
        r(img::get_stripe_unit_count(io, &striped).await),
        Ok(Some(s(4 * MIB, 1))),
    );
    c.eq(
        "set striping",
        r(img::set_stripe_unit_count(io, &striped, &s(MIB, 4)).await),
        Ok(()),
    );
    c.eq(
        "striping",
        r(img::get_stripe_unit_count(io, &striped).await),
        Ok(Some(s(MIB, 4))),
    );
    for (what, bad) in [
        ("not a factor", s(3 * MIB, 1)),
        ("above object size", s(8 * MIB, 1)),
        ("zero count", s(MIB, 0)),
    ] {
        c.eq(
            what,
            r(img::set_stripe_unit_count(io, &striped, &bad).await),
            Err(Errno::EINVAL),
        );
    }
    c.done();
}

pub async fn image_metadata<R: Rados>(_c: &R, io: &R::IoCtx) {
    let mut c = Checks::default();
    let oid = name("rbd_header");
    c.eq(
        "list of a missing object",
        r(img::metadata_list(io, &oid).await).map(|m| m.len()),
        Err(Errno::ENOENT),
    );
    let kv: BTreeMap<String, Bytes> = [("a", "1"), ("b", "2"), ("c", "")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Bytes::from(v)))
        .collect();
    c.eq(
        "set creates",
        r(img::metadata_set(io, &oid, &kv).await),
        Ok(()),
    );
    c.eq(
        "list",
        r(img::metadata_list(io, &oid).await),
        Ok(kv.clone()),
    );
    let raw = io.omap_get_all(&oid, "metadata_").await.unwrap();
    c.eq(
        "stored raw",
        raw.get("metadata_b").cloned(),
        Some(Bytes::from("2")),
    );
    let page: Result<BTreeMap<String, Bytes>, _> =
        list_page(io, &oid, "metadata_list", "a", 1).await;
    c.eq(
        "page",
        page.map(|p| p.into_keys().collect::<Vec<_>>()),
        Ok(vec!["b".to_string()]),
    );
    let page: Result<BTreeMap<String, Bytes>, _> =
        list_page(io, &oid, "metadata_list", "", 0).await;
    c.eq("max 0 lists all", page.map(|p| p.len()), Ok(3));
    c.eq(
        "remove",
        r(img::metadata_remove(io, &oid, "a").await),
        Ok(()),
    );
    c.eq(
        "remove missing",
        r(img::metadata_remove(io, &oid, "a").await),
        Ok(()),
    );
    c.eq(
        "after remove",
        r(img::metadata_list(io, &oid).await).map(|m| m.into_keys().collect::<Vec<_>>()),
        Ok(vec!["b".to_string(), "c".into()]),
    );
    c.done();
}

fn map_of(states: &[u8]) -> ObjectMap {
    let mut m = ObjectMap::new(states.len() as u64, ObjectState::Nonexistent);
    for (i, s) in states.iter().enumerate() {
        m.set(i as u64, ObjectState::from_raw(*s));
    }
    m
}

fn update(
    start_object: u64,
    end_object: u64,
    new_state: u8,
    expected: Option<u8>,
) -> ObjectMapUpdateInput {
    ObjectMapUpdateInput {
        start_object,
        end_object,
        new_state,
        expected_current_state: expected,
    }
}

pub async fn object_map<R: Rados>(_c: &R, io: &R::IoCtx) {
    let mut c = Checks::default();
    let oid = name("rbd_object_map");
    c.eq(
        "load missing",
        r(img::object_map_load(io, &oid).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "update missing",
        r(img::object_map_update(io, &oid, &update(0, 1, 1, None)).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "resize creates",
        r(img::object_map_resize(io, &oid, 10, 0).await),
        Ok(()),
    );
    c.eq(
        "load",
        r(img::object_map_load(io, &oid).await),
        Ok(map_of(&[0; 10])),
    );
    img::object_map_update(io, &oid, &update(0, 2, 1, None))
        .await
        .unwrap();
    img::object_map_update(io, &oid, &update(5, 6, 3, None))
        .await
        .unwrap();
    c.eq(
        "updated",
        r(img::object_map_load(io, &oid).await),
        Ok(map_of(&[1, 1, 0, 0, 0, 3, 0, 0, 0, 0])),
    );
    img::object_map_update(io, &oid, &update(0, 10, 2, Some(0)))
        .await
        .unwrap();
    c.eq(
        "guarded",
        r(img::object_map_load(io, &oid).await),
        Ok(map_of(&[1, 1, 2, 2, 2, 3, 2, 2, 2, 2])),
    );
    img::object_map_update(io, &oid, &update(1, 6, 0, Some(1)))
        .await
        .unwrap();
    c.eq(
        "exists matches clean",
        r(img::object_map_load(io, &oid).await),
        Ok(map_of(&[1, 0, 2, 2, 2, 0, 2, 2, 2, 2])),
    );
    c.eq(
        "past the end",
        r(img::object_map_update(io, &oid, &update(8, 12, 1, None)).await),
        Err(Errno::ERANGE),
    );
    c.eq(
        "empty range",
        r(img::object_map_update(io, &oid, &update(3, 3, 1, None)).await),
        Err(Errno::ERANGE),
    );
    c.eq(
        "shrink over objects",
        r(img::object_map_resize(io, &oid, 4, 0).await),
        Err(Errno::ESTALE),
    );
    img::object_map_update(io, &oid, &update(5, 6, 2, None))
        .await
        .unwrap();
    c.eq(
        "shrink over default",
        r(img::object_map_resize(io, &oid, 4, 2).await),
        Ok(()),
    );
    c.eq(
        "grow",
        r(img::object_map_resize(io, &oid, 6, 1).await),
        Ok(()),
    );
    c.eq(
        "resized",
        r(img::object_map_load(io, &oid).await),
        Ok(map_of(&[1, 0, 2, 2, 1, 1])),
    );
    c.eq(
        "too large",
        r(img::object_map_resize(io, &oid, 256_000_001, 0).await),
        Err(Errno::EINVAL),
    );
    c.done();
}
