//! cls_rbd's clone methods for the embedded backend: a child header's `parent` link
//! (`parent_attach`, `parent_detach`, `parent_overlap_get`), a parent snapshot's clone-v2
//! children (`child_attach`, `child_detach`, `children_list`), `op_features_set`, and the
//! data objects' `copyup`. Semantics and errnos are Ceph 16.2's (`cls_rbd.cc`), checked by
//! the conformance suite against a real OSD.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::rbd_image::{
    Result, get_key, get_or, input, put_key, put_snap, require_feature, set_op_features, snap,
    snaps,
};
use super::{ClsContext, ClsFlags, ClsRegistry};
use crate::format::Encode;
use crate::format::image::{
    CEPH_NOSNAP, ChildAttachInput, ChildImageSpec, OpFeaturesSetInput, ParentAttachInput,
    ParentInfo, SnapshotNamespace, features, keys, op_features,
};
use crate::rados::Errno;

/// Every operation feature bit this cls_rbd knows.
const OP_FEATURES_ALL: u64 = 0xf;

pub(super) fn register(r: &mut ClsRegistry) {
    use ClsFlags::{Read, ReadWrite};
    let methods: [(&'static str, ClsFlags, super::ClsMethod); 8] = [
        ("parent_attach", ReadWrite, parent_attach),
        ("parent_detach", ReadWrite, parent_detach),
        ("parent_overlap_get", Read, parent_overlap_get),
        ("child_attach", ReadWrite, child_attach),
        ("child_detach", ReadWrite, child_detach),
        ("children_list", Read, children_list),
        ("op_features_set", ReadWrite, op_features_set),
        ("copyup", ReadWrite, copyup),
    ];
    for (name, flags, f) in methods {
        r.register("rbd", name, flags, f);
    }
}

/// The header's parent link, if any.
pub(super) fn parent(ctx: &ClsContext<'_>) -> Result<Option<ParentInfo>> {
    match get_key(ctx, keys::PARENT) {
        Ok(p) => Ok(Some(p)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn parent_attach(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ParentAttachInput {
        parent: spec,
        overlap,
        reattach,
    } = input(inp)?;
    if !ctx.exists() {
        return Err(Errno::ENOENT);
    }
    require_feature(ctx, features::LAYERING)?;
    if spec.pool_id < 0 || spec.image_id.is_empty() || spec.snap_id == CEPH_NOSNAP || overlap == 0 {
        return Err(Errno::EINVAL);
    }
    let wanted = ParentInfo {
        pool_id: spec.pool_id,
        pool_namespace: spec.pool_namespace,
        image_id: spec.image_id,
        snap_id: spec.snap_id,
        head_overlap: Some(overlap),
    };
    if let Some(on_disk) = parent(ctx)?
        && !reattach
        && (on_disk.head_overlap.is_some()
            || ParentInfo {
                head_overlap: wanted.head_overlap,
                ..on_disk
            } != wanted)
    {
        return Err(Errno::EEXIST);
    }
    let size: u64 = get_key(ctx, keys::SIZE)?;
    let linked = ParentInfo {
        head_overlap: Some(overlap.min(size)),
        ..wanted
    };
    put_key(ctx, keys::PARENT, &linked);
    Ok(Bytes::new())
}

fn parent_detach(ctx: &mut ClsContext<'_>, _inp: Bytes) -> Result<Bytes> {
    if !ctx.exists() {
        return Err(Errno::ENOENT);
    }
    let feats: u64 = get_key(ctx, keys::FEATURES).map_err(|_| Errno::ENOEXEC)?;
    if feats & features::LAYERING == 0 {
        return Err(Errno::ENOEXEC);
    }
    let mut on_disk: ParentInfo = get_key(ctx, keys::PARENT)?;
    if on_disk.head_overlap.is_none() {
        return Err(Errno::ENOENT);
    }
    let mut child_snaps = false;
    for mut s in snaps(ctx)? {
        if s.parent_overlap.is_some() {
            if feats & features::DEEP_FLATTEN != 0 {
                s.parent_overlap = None;
                put_snap(ctx, &s);
            } else {
                child_snaps = true;
            }
        }
    }
    if child_snaps {
        on_disk.head_overlap = None;
        put_key(ctx, keys::PARENT, &on_disk);
    } else {
        ctx.omap_remove(keys::PARENT)?;
        set_op_features(ctx, 0, op_features::CLONE_CHILD)?;
    }
    Ok(Bytes::new())
}

fn parent_overlap_get(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let snap_id: u64 = input(inp)?;
    if !ctx.exists() {
        return Err(Errno::ENOENT);
    }
    let overlap = if snap_id == CEPH_NOSNAP {
        parent(ctx)?.and_then(|p| p.head_overlap)
    } else {
        snap(ctx, snap_id)?.parent_overlap
    };
    // Only images that can be clones answer with an overlap at all (as Ceph's).
    let feats = get_or(ctx, keys::FEATURES, 0u64)?;
    let overlap = overlap.filter(|_| feats & features::LAYERING != 0);
    Ok(overlap.to_bytes())
}

fn children(ctx: &ClsContext<'_>, snap_id: u64) -> Result<BTreeSet<ChildImageSpec>> {
    match get_key(ctx, &keys::snap_children(snap_id)) {
        Err(Errno::ENOENT) => Ok(BTreeSet::new()),
        other => other,
    }
}

fn child_attach(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ChildAttachInput { snap_id, child } = input(inp)?;
    let mut s = snap(ctx, snap_id)?;
    if matches!(s.snapshot_namespace, SnapshotNamespace::Trash { .. }) {
        return Err(Errno::ENOENT);
    }
    let mut set = children(ctx, snap_id)?;
    if !set.insert(child) {
        return Err(Errno::EEXIST);
    }
    put_key(ctx, &keys::snap_children(snap_id), &set);
    s.child_count += 1;
    put_snap(ctx, &s);
    set_op_features(ctx, op_features::CLONE_PARENT, op_features::CLONE_PARENT)?;
    Ok(Bytes::new())
}

fn child_detach(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ChildAttachInput { snap_id, child } = input(inp)?;
    let mut s = snap(ctx, snap_id)?;
    let mut set = children(ctx, snap_id)?;
    if s.child_count as usize != set.len() {
        return Err(Errno::EINVAL);
    }
    if !set.remove(&child) {
        return Err(Errno::ENOENT);
    }
    let key = keys::snap_children(snap_id);
    if set.is_empty() {
        ctx.omap_remove(&key)?;
    } else {
        put_key(ctx, &key, &set);
    }
    s.child_count -= 1;
    put_snap(ctx, &s);
    let in_use = snaps(ctx)?.iter().any(|o| o.child_count > 0);
    if !in_use {
        set_op_features(ctx, 0, op_features::CLONE_PARENT)?;
    }
    Ok(Bytes::new())
}

fn children_list(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let snap_id: u64 = input(inp)?;
    snap(ctx, snap_id)?;
    let set: BTreeSet<ChildImageSpec> = get_key(ctx, &keys::snap_children(snap_id))?;
    Ok(set.to_bytes())
}

fn op_features_set(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let OpFeaturesSetInput {
        op_features: op,
        mask,
    } = input(inp)?;
    if mask & !OP_FEATURES_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    set_op_features(ctx, op, mask)?;
    Ok(Bytes::new())
}

fn copyup(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    if !ctx.exists() {
        ctx.write_full(&inp);
    }
    Ok(Bytes::new())
}
