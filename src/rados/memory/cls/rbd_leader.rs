//! cls_rbd's daemon-instance registry on `rbd_mirror_leader` (spec §2.6, §2.8): omap keys
//! `instance_<id>` with empty values, one per running mirror daemon.

use bytes::Bytes;

use super::{ClsContext, ClsFlags, ClsRegistry};
use crate::format::{Decode, Encode};
use crate::rados::Errno;

const PREFIX: &str = "instance_";

pub(super) fn register(r: &mut ClsRegistry) {
    r.register("rbd", "mirror_instances_list", ClsFlags::Read, list);
    r.register("rbd", "mirror_instances_add", ClsFlags::ReadWrite, add);
    r.register(
        "rbd",
        "mirror_instances_remove",
        ClsFlags::ReadWrite,
        remove,
    );
}

fn id(input: Bytes) -> Result<String, Errno> {
    String::from_bytes(input).map_err(|_| Errno::EINVAL)
}

fn list(ctx: &mut ClsContext<'_>, _input: Bytes) -> Result<Bytes, Errno> {
    let keys = ctx.omap_range("", PREFIX, usize::MAX)?;
    let ids: Vec<String> = keys
        .into_keys()
        .filter_map(|k| k.strip_prefix(PREFIX).map(str::to_string))
        .collect();
    Ok(ids.to_bytes())
}

fn add(ctx: &mut ClsContext<'_>, input: Bytes) -> Result<Bytes, Errno> {
    ctx.omap_set([(format!("{PREFIX}{}", id(input)?), Bytes::new())]);
    Ok(Bytes::new())
}

fn remove(ctx: &mut ClsContext<'_>, input: Bytes) -> Result<Bytes, Errno> {
    let key = format!("{PREFIX}{}", id(input)?);
    ctx.omap_remove(&key)?;
    Ok(Bytes::new())
}
