//! cls_rbd's image header methods on `rbd_header.<id>` (spec §5.2–§5.3) for the embedded
//! backend: creation, size, features, flags, snapshots (add/get/rename/remove, protection,
//! limit, trash), metadata, striping, and the object map methods on `rbd_object_map.*`.
//! Also the small key helpers the other cls_rbd files share. Semantics and errnos are
//! Ceph 16.2's, checked by the conformance suite against a real OSD.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use bytes::Bytes;

use super::{ClsContext, ClsFlags, ClsRegistry};
use crate::format::codec::{ListInput, UTime};
use crate::format::image::{
    CEPH_NOSNAP, CreateInput, GetFeaturesInput, GetFeaturesOutput, GetSizeOutput,
    ObjectMapResizeInput, ObjectMapUpdateInput, ProtectionStatus, SetFeaturesInput, SetFlagsInput,
    SetProtectionStatusInput, SnapContext, SnapshotAddInput, SnapshotInfo, SnapshotNamespace,
    SnapshotRecord, SnapshotRenameInput, StripeUnitCount, features, keys, op_features,
};
use crate::format::object_map::{ObjectMap, ObjectState};
use crate::format::{Decode, Encode};
use crate::rados::Errno;

pub(super) type Result<T> = std::result::Result<T, Errno>;

/// Every feature bit this cls_rbd knows (`get_all_features`).
const FEATURES_ALL: u64 = 0xfff;
const FEATURES_INTERNAL: u64 = features::OPERATIONS | features::MIGRATING;
const FEATURES_MUTABLE: u64 = features::EXCLUSIVE_LOCK
    | features::OBJECT_MAP
    | features::FAST_DIFF
    | features::JOURNALING
    | features::NON_PRIMARY
    | features::DIRTY_CACHE;
const FEATURES_DISABLE_ONLY: u64 = features::DEEP_FLATTEN;
const FEATURES_INCOMPATIBLE: u64 =
    features::LAYERING | features::STRIPINGV2 | features::DATA_POOL | features::DIRTY_CACHE;
const OP_FEATURES: &str = "op_features";
const STRIPE_UNIT: &str = "stripe_unit";
const STRIPE_COUNT: &str = "stripe_count";
const CEPH_MAXSNAP: u64 = 0xffff_ffff_ffff_fff0;
const MAX_OBJECT_MAP_OBJECT_COUNT: u64 = 256_000_000;
/// `metadata_list` with `max_return` 0 reads this many keys (Ceph's `RBD_MAX_KEYS_READ`).
const MAX_KEYS_READ: u64 = 64;

pub(super) fn register(r: &mut ClsRegistry) {
    use ClsFlags::{Read, ReadWrite};
    let methods: [(&'static str, ClsFlags, super::ClsMethod); 28] = [
        ("create", ReadWrite, create),
        ("get_size", Read, get_size),
        ("set_size", ReadWrite, set_size),
        ("get_features", Read, get_features),
        ("set_features", ReadWrite, set_features),
        ("get_object_prefix", Read, |c, _| {
            raw(c, keys::OBJECT_PREFIX)
        }),
        ("get_data_pool", Read, get_data_pool),
        ("get_flags", Read, get_flags),
        ("set_flags", ReadWrite, set_flags),
        ("get_snapcontext", Read, get_snapcontext),
        ("snapshot_get", Read, snapshot_get),
        ("snapshot_add", ReadWrite, snapshot_add),
        ("snapshot_remove", ReadWrite, snapshot_remove),
        ("snapshot_rename", ReadWrite, snapshot_rename),
        ("snapshot_trash_add", ReadWrite, snapshot_trash_add),
        ("get_protection_status", Read, get_protection_status),
        ("set_protection_status", ReadWrite, set_protection_status),
        ("snapshot_get_limit", Read, snapshot_get_limit),
        ("snapshot_set_limit", ReadWrite, snapshot_set_limit),
        ("metadata_set", ReadWrite, metadata_set),
        ("metadata_remove", ReadWrite, metadata_remove),
        ("metadata_list", Read, metadata_list),
        ("get_stripe_unit_count", Read, get_stripe_unit_count),
        ("set_stripe_unit_count", ReadWrite, set_stripe_unit_count),
        ("get_all_features", Read, |_, _| Ok(FEATURES_ALL.to_bytes())),
        ("object_map_load", Read, |c, _| {
            Ok(object_map_read(c)?.to_bytes())
        }),
        ("object_map_resize", ReadWrite, object_map_resize),
        ("object_map_update", ReadWrite, object_map_update),
    ];
    for (name, flags, f) in methods {
        r.register("rbd", name, flags, f);
    }
}

/// Decodes a method input; malformed input is `EINVAL`, as the OSD answers.
pub(super) fn input<T: Decode>(b: Bytes) -> Result<T> {
    T::from_bytes(b).map_err(|_| Errno::EINVAL)
}

/// A key's stored bytes; `ENOENT` when the key (or the object) is missing.
fn raw(ctx: &ClsContext<'_>, key: &str) -> Result<Bytes> {
    ctx.omap_get(key)?.ok_or(Errno::ENOENT)
}

/// A key's decoded value (`ENOENT` if missing, `EIO` if undecodable), as cls_rbd's `read_key`.
pub(super) fn get_key<T: Decode>(ctx: &ClsContext<'_>, key: &str) -> Result<T> {
    T::from_bytes(raw(ctx, key)?).map_err(|_| Errno::EIO)
}

/// A key's value, or `default` when the key or the object is missing.
pub(super) fn get_or<T: Decode>(ctx: &ClsContext<'_>, key: &str, default: T) -> Result<T> {
    match get_key(ctx, key) {
        Err(Errno::ENOENT) => Ok(default),
        other => other,
    }
}

pub(super) fn put_key<T: Encode + ?Sized>(ctx: &mut ClsContext<'_>, key: &str, v: &T) {
    ctx.omap_set([(key.to_string(), v.to_bytes())]);
}

/// Removes a key; a missing key or object is not an error.
pub(super) fn remove_key(ctx: &mut ClsContext<'_>, key: &str) -> Result<()> {
    if ctx.exists() {
        ctx.omap_remove(key)?;
    }
    Ok(())
}

pub(super) fn utime_now(ctx: &ClsContext<'_>) -> UTime {
    UTime::from_duration(ctx.now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn create(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let CreateInput {
        size,
        order,
        features: feats,
        object_prefix,
        data_pool_id,
    } = input(inp)?;
    if feats & FEATURES_INTERNAL != 0 || object_prefix.is_empty() {
        return Err(Errno::EINVAL);
    }
    if data_pool_id == -1 && feats & features::DATA_POOL != 0 {
        return Err(Errno::EINVAL);
    }
    if ctx.exists() && ctx.omap_get(keys::OBJECT_PREFIX)?.is_some() {
        return Err(Errno::EEXIST);
    }
    let now = utime_now(ctx);
    put_key(ctx, keys::SIZE, &size);
    put_key(ctx, keys::ORDER, &order);
    put_key(ctx, keys::FEATURES, &feats);
    put_key(ctx, keys::OBJECT_PREFIX, &object_prefix);
    put_key(ctx, keys::SNAP_SEQ, &0u64);
    for key in [
        keys::CREATE_TIMESTAMP,
        keys::ACCESS_TIMESTAMP,
        keys::MODIFY_TIMESTAMP,
    ] {
        put_key(ctx, key, &now);
    }
    if data_pool_id != -1 {
        put_key(ctx, keys::DATA_POOL_ID, &data_pool_id);
    }
    Ok(Bytes::new())
}

pub(super) fn snap(ctx: &ClsContext<'_>, id: u64) -> Result<SnapshotRecord> {
    get_key(ctx, &keys::snapshot(id))
}

pub(super) fn put_snap(ctx: &mut ClsContext<'_>, s: &SnapshotRecord) {
    put_key(ctx, &keys::snapshot(s.id), s);
}

/// Every snapshot, oldest id first.
pub(super) fn snaps(ctx: &ClsContext<'_>) -> Result<Vec<SnapshotRecord>> {
    ctx.omap_range("", keys::SNAPSHOT_PREFIX, usize::MAX)?
        .into_values()
        .map(|v| SnapshotRecord::from_bytes(v).map_err(|_| Errno::EIO))
        .collect()
}

fn get_size(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let snap_id: u64 = input(inp)?;
    let order: u8 = get_key(ctx, keys::ORDER)?;
    let size = if snap_id == CEPH_NOSNAP {
        get_key(ctx, keys::SIZE)?
    } else {
        snap(ctx, snap_id)?.image_size
    };
    Ok(GetSizeOutput { order, size }.to_bytes())
}

fn set_size(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let size: u64 = input(inp)?;
    let orig: u64 = get_key(ctx, keys::SIZE)?;
    put_key(ctx, keys::SIZE, &size);
    // A shrink shrinks the clone's overlap with it.
    if size < orig
        && let Some(mut parent) = super::rbd_clone::parent(ctx)?
        && parent.head_overlap.is_some_and(|o| o > size)
    {
        parent.head_overlap = Some(size);
        put_key(ctx, keys::PARENT, &parent);
    }
    Ok(Bytes::new())
}

fn get_features(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    // The snapshot id is not checked (as measured): any id reads the head's features.
    let GetFeaturesInput { read_only, .. } = input(inp)?;
    let feats: u64 = get_key(ctx, keys::FEATURES)?;
    let incompatible = if read_only {
        feats & FEATURES_INCOMPATIBLE
    } else {
        feats & FEATURES_ALL
    };
    Ok(GetFeaturesOutput {
        features: feats,
        incompatible_features: incompatible,
    }
    .to_bytes())
}

fn set_features(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let SetFeaturesInput { features: f, mask } = input(inp)?;
    // A missing header (or key) counts as no features, and is created (as measured).
    let orig = get_or(ctx, keys::FEATURES, 0u64)?;
    let mask = mask & FEATURES_ALL;
    let enabled = f & mask;
    let disabled = !f & mask;
    if enabled & !FEATURES_MUTABLE != 0
        || disabled & !(FEATURES_MUTABLE | FEATURES_DISABLE_ONLY) != 0
    {
        return Err(Errno::EINVAL);
    }
    put_key(ctx, keys::FEATURES, &((orig & !mask) | enabled));
    Ok(Bytes::new())
}

fn get_data_pool(ctx: &mut ClsContext<'_>, _inp: Bytes) -> Result<Bytes> {
    ctx.size()?;
    Ok(get_or(ctx, keys::DATA_POOL_ID, -1i64)?.to_bytes())
}

fn get_flags(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let snap_id: u64 = input(inp)?;
    ctx.size()?;
    let flags = if snap_id == CEPH_NOSNAP {
        get_or(ctx, keys::FLAGS, 0u64)?
    } else {
        snap(ctx, snap_id)?.flags
    };
    Ok(flags.to_bytes())
}

fn set_flags(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let SetFlagsInput {
        flags,
        mask,
        snap_id,
    } = input(inp)?;
    let merge = |orig: u64| (orig & !mask) | (flags & mask);
    if snap_id == CEPH_NOSNAP {
        let orig = get_or(ctx, keys::FLAGS, 0u64)?;
        put_key(ctx, keys::FLAGS, &merge(orig));
    } else {
        let mut s = snap(ctx, snap_id)?;
        s.flags = merge(s.flags);
        put_snap(ctx, &s);
    }
    Ok(Bytes::new())
}

fn get_snapcontext(ctx: &mut ClsContext<'_>, _inp: Bytes) -> Result<Bytes> {
    let mut snaps: Vec<u64> = ctx
        .omap_range("", keys::SNAPSHOT_PREFIX, usize::MAX)?
        .keys()
        .filter_map(|k| u64::from_str_radix(&k[keys::SNAPSHOT_PREFIX.len()..], 16).ok())
        .collect();
    snaps.reverse();
    let seq = get_key(ctx, keys::SNAP_SEQ)?;
    Ok(SnapContext { seq, snaps }.to_bytes())
}

fn snapshot_get(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let s = snap(ctx, input(inp)?)?;
    Ok(SnapshotInfo {
        id: s.id,
        snapshot_namespace: s.snapshot_namespace,
        name: s.name,
        image_size: s.image_size,
        timestamp: s.timestamp,
        child_count: s.child_count,
    }
    .to_bytes())
}

fn snapshot_add(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let SnapshotAddInput {
        name,
        snap_id,
        snapshot_namespace,
    } = input(inp)?;
    if matches!(snapshot_namespace, SnapshotNamespace::Unknown { .. }) || snap_id > CEPH_MAXSNAP {
        return Err(Errno::EINVAL);
    }
    if snap_id < get_key::<u64>(ctx, keys::SNAP_SEQ)? {
        return Err(Errno::ESTALE);
    }
    let image_size = get_key(ctx, keys::SIZE)?;
    let flags = get_or(ctx, keys::FLAGS, 0u64)?;
    let limit = get_or(ctx, keys::SNAP_LIMIT, u64::MAX)?;
    for (n, old) in snaps(ctx)?.iter().enumerate() {
        if n as u64 + 1 >= limit {
            return Err(Errno(libc::EDQUOT));
        }
        if (old.name == name && old.snapshot_namespace == snapshot_namespace) || old.id == snap_id {
            return Err(Errno::EEXIST);
        }
    }
    let record = SnapshotRecord {
        id: snap_id,
        name,
        image_size,
        protection_status: ProtectionStatus::Unprotected,
        flags,
        snapshot_namespace,
        timestamp: utime_now(ctx),
        child_count: 0,
        // The snapshot keeps reading through the parent as far as the head does now.
        parent_overlap: super::rbd_clone::parent(ctx)?.and_then(|p| p.head_overlap),
    };
    put_key(ctx, keys::SNAP_SEQ, &snap_id);
    put_snap(ctx, &record);
    Ok(Bytes::new())
}

fn op_features(ctx: &ClsContext<'_>) -> Result<u64> {
    get_or(ctx, OP_FEATURES, 0u64)
}

/// Sets the op feature bits of `mask` to their value in `op`, keeping the OPERATIONS
/// feature bit set exactly while some op feature is.
pub(super) fn set_op_features(ctx: &mut ClsContext<'_>, op: u64, mask: u64) -> Result<()> {
    let feats: u64 = get_key(ctx, keys::FEATURES)?;
    let orig = op_features(ctx)?;
    let new = (orig & !mask) | (op & mask);
    if new == orig {
        return Ok(());
    }
    if new != 0 {
        put_key(ctx, OP_FEATURES, &new);
        put_key(ctx, keys::FEATURES, &(feats | features::OPERATIONS));
    } else {
        remove_key(ctx, OP_FEATURES)?;
        put_key(ctx, keys::FEATURES, &(feats & !features::OPERATIONS));
    }
    Ok(())
}

fn snapshot_remove(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let snap_id: u64 = input(inp)?;
    let s = snap(ctx, snap_id)?;
    if s.protection_status != ProtectionStatus::Unprotected || s.child_count > 0 {
        return Err(Errno::EBUSY);
    }
    let others: Vec<SnapshotRecord> = snaps(ctx)?
        .into_iter()
        .filter(|o| o.id != snap_id)
        .collect();
    let trash_left =
        (others.iter()).any(|o| matches!(o.snapshot_namespace, SnapshotNamespace::Trash { .. }));
    let child_snaps = others.iter().any(|o| o.parent_overlap.is_some());
    ctx.omap_remove(&keys::snapshot(snap_id))?;
    let head_child = match super::rbd_clone::parent(ctx)? {
        Some(p) if p.head_overlap.is_none() && !child_snaps => {
            // Only this snapshot still read through the parent.
            ctx.omap_remove(keys::PARENT)?;
            false
        }
        Some(p) => p.head_overlap.is_some(),
        None => false,
    };
    let mut mask = 0;
    if !child_snaps && !head_child {
        mask |= op_features::CLONE_CHILD;
    }
    if !trash_left {
        mask |= op_features::SNAP_TRASH;
    }
    set_op_features(ctx, 0, mask)?;
    Ok(Bytes::new())
}

fn snapshot_rename(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let SnapshotRenameInput {
        src_snap_id,
        dst_name,
    } = input(inp)?;
    let taken = snaps(ctx)?
        .iter()
        .any(|s| s.snapshot_namespace == SnapshotNamespace::User && s.name == dst_name);
    if taken {
        return Err(Errno::EEXIST);
    }
    let mut s = snap(ctx, src_snap_id)?;
    if s.snapshot_namespace != SnapshotNamespace::User {
        return Err(Errno::EINVAL);
    }
    s.name = dst_name;
    put_snap(ctx, &s);
    Ok(Bytes::new())
}

fn snapshot_trash_add(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let mut s = snap(ctx, input(inp)?)?;
    set_op_features(ctx, op_features::SNAP_TRASH, op_features::SNAP_TRASH)?;
    if matches!(s.snapshot_namespace, SnapshotNamespace::Trash { .. }) {
        return Err(Errno::EEXIST);
    }
    s.snapshot_namespace = SnapshotNamespace::Trash {
        original_name: std::mem::replace(&mut s.name, uuid::Uuid::new_v4().to_string()),
        original_snapshot_namespace_type: s.snapshot_namespace.namespace_type(),
    };
    put_snap(ctx, &s);
    Ok(Bytes::new())
}

fn get_protection_status(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let s = snap(ctx, input(inp)?)?;
    if matches!(s.protection_status, ProtectionStatus::Other(_)) {
        return Err(Errno::EIO);
    }
    Ok(s.protection_status.to_bytes())
}

fn set_protection_status(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let SetProtectionStatusInput { snap_id, status } = input(inp)?;
    require_feature(ctx, features::LAYERING)?;
    if matches!(status, ProtectionStatus::Other(_)) {
        return Err(Errno::EINVAL);
    }
    let mut s = snap(ctx, snap_id)?;
    s.protection_status = status;
    put_snap(ctx, &s);
    Ok(Bytes::new())
}

/// `ENOEXEC` unless the header has `feature` (a header without features has none);
/// `ENOENT` when there is no header at all.
pub(super) fn require_feature(ctx: &ClsContext<'_>, feature: u64) -> Result<()> {
    ctx.size()?;
    if get_or(ctx, keys::FEATURES, 0u64)? & feature != feature {
        return Err(Errno::ENOEXEC);
    }
    Ok(())
}

fn snapshot_get_limit(ctx: &mut ClsContext<'_>, _inp: Bytes) -> Result<Bytes> {
    Ok(get_or(ctx, keys::SNAP_LIMIT, u64::MAX)?.to_bytes())
}

fn snapshot_set_limit(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let limit: u64 = input(inp)?;
    if limit == u64::MAX {
        ctx.omap_remove(keys::SNAP_LIMIT)?;
        return Ok(Bytes::new());
    }
    if limit < snaps(ctx)?.len() as u64 {
        return Err(Errno::ERANGE);
    }
    put_key(ctx, keys::SNAP_LIMIT, &limit);
    Ok(Bytes::new())
}

fn metadata_set(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let kv: BTreeMap<String, Bytes> = input(inp)?;
    ctx.omap_set(kv.into_iter().map(|(k, v)| (keys::metadata(&k), v)));
    Ok(Bytes::new())
}

fn metadata_remove(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let key: String = input(inp)?;
    // A missing key is not an error (as measured, unlike the spec's reading of the source).
    remove_key(ctx, &keys::metadata(&key))?;
    Ok(Bytes::new())
}

fn metadata_list(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ListInput {
        start_after,
        max_return,
    } = input(inp)?;
    let max = if max_return == 0 {
        MAX_KEYS_READ
    } else {
        max_return
    };
    let page = ctx.omap_range(
        &keys::metadata(&start_after),
        keys::METADATA_PREFIX,
        usize::try_from(max).unwrap_or(usize::MAX),
    )?;
    let out: BTreeMap<String, Bytes> = page
        .into_iter()
        .map(|(k, v)| (k[keys::METADATA_PREFIX.len()..].to_string(), v))
        .collect();
    Ok(out.to_bytes())
}

fn get_stripe_unit_count(ctx: &mut ClsContext<'_>, _inp: Bytes) -> Result<Bytes> {
    require_feature(ctx, features::STRIPINGV2)?;
    let stripe_unit = match get_key(ctx, STRIPE_UNIT) {
        Err(Errno::ENOENT) => 1u64 << get_key::<u8>(ctx, keys::ORDER).map_err(|_| Errno::EIO)?,
        other => other?,
    };
    let stripe_count = get_or(ctx, STRIPE_COUNT, 1u64)?;
    Ok(StripeUnitCount {
        stripe_unit,
        stripe_count,
    }
    .to_bytes())
}

fn set_stripe_unit_count(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let StripeUnitCount {
        stripe_unit,
        stripe_count,
    } = input(inp)?;
    require_feature(ctx, features::STRIPINGV2)?;
    let object_size = 1u64 << get_key::<u8>(ctx, keys::ORDER)?;
    if stripe_unit == 0 || stripe_count == 0 || !object_size.is_multiple_of(stripe_unit) {
        return Err(Errno::EINVAL);
    }
    put_key(ctx, STRIPE_UNIT, &stripe_unit);
    put_key(ctx, STRIPE_COUNT, &stripe_count);
    Ok(Bytes::new())
}

/// The object map stored as the object's data; `ENOENT` when missing or empty.
fn object_map_read(ctx: &ClsContext<'_>) -> Result<ObjectMap> {
    if ctx.size()? == 0 {
        return Err(Errno::ENOENT);
    }
    let mut map = ObjectMap::from_bytes(ctx.read()?).map_err(|_| Errno::EINVAL)?;
    // Loads carry no CRC footer, as the OSD encodes them with CRCs disabled; resizing to the
    // same length drops it.
    map.resize(map.len(), ObjectState::Nonexistent);
    Ok(map)
}

fn object_map_resize(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ObjectMapResizeInput {
        object_count,
        default_state,
    } = input(inp)?;
    if object_count > MAX_OBJECT_MAP_OBJECT_COUNT {
        return Err(Errno::EINVAL);
    }
    let mut map = match object_map_read(ctx) {
        Err(Errno::ENOENT) => ObjectMap::default(),
        other => other?,
    };
    let default = ObjectState::from_raw(default_state);
    if (object_count..map.len()).any(|i| map.get(i) != Some(default)) {
        return Err(Errno::ESTALE);
    }
    map.resize(object_count, default);
    ctx.write_full(&map.to_bytes());
    Ok(Bytes::new())
}

fn object_map_update(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ObjectMapUpdateInput {
        start_object,
        end_object,
        new_state,
        expected_current_state,
    } = input(inp)?;
    ctx.size()?;
    let mut map = object_map_read(ctx).map_err(|e| match e {
        Errno::ENOENT => Errno::EINVAL,
        e => e,
    })?;
    if start_object >= end_object || end_object > map.len() {
        return Err(Errno::ERANGE);
    }
    let new = ObjectState::from_raw(new_state);
    let matches = |s: ObjectState| match expected_current_state.map(ObjectState::from_raw) {
        None => true,
        Some(ObjectState::Exists) => matches!(s, ObjectState::Exists | ObjectState::ExistsClean),
        Some(e) => s == e,
    };
    let mut updated = false;
    for i in start_object..end_object {
        let s = map.get(i).ok_or(Errno::ERANGE)?;
        if matches(s) && s != new {
            map.set(i, new);
            updated = true;
        }
    }
    if updated {
        ctx.write_full(&map.to_bytes());
    }
    Ok(Bytes::new())
}
