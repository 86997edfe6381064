//! cls_rbd's `rbd_id.<name>` methods: the object's data is the image id as a Ceph string.

use bytes::Bytes;

use super::{ClsContext, ClsFlags, ClsRegistry};
use crate::format::{Decode, Encode};
use crate::rados::Errno;

pub(super) fn register(r: &mut ClsRegistry) {
    r.register("rbd", "set_id", ClsFlags::ReadWrite, set_id);
    r.register("rbd", "get_id", ClsFlags::Read, get_id);
}

/// Stores the id in an existing, empty object (`ENOENT` / `EEXIST` otherwise).
fn set_id(ctx: &mut ClsContext<'_>, input: Bytes) -> Result<Bytes, Errno> {
    let id = String::from_bytes(input).map_err(|_| Errno::EINVAL)?;
    if ctx.size()? != 0 {
        return Err(Errno::EEXIST);
    }
    ctx.write_full(&id.to_bytes());
    Ok(Bytes::new())
}

fn get_id(ctx: &mut ClsContext<'_>, _input: Bytes) -> Result<Bytes, Errno> {
    let id = String::from_bytes(ctx.read()?).map_err(|_| Errno::EIO)?;
    Ok(id.to_bytes())
}
