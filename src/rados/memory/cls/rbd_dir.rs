//! cls_rbd's `rbd_directory` methods (spec §5.1, §5.3) for the embedded backend: the pool's
//! image directory, `name_<name>` → id and `id_<id>` → name, both as Ceph strings. Errnos as
//! Ceph 16.2's: a taken name is `EEXIST`, a taken id `EBADF`, a pair that does not match
//! (a raced rename) `ESTALE`.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::rbd_image::{Result, get_key, input};
use super::{ClsContext, ClsFlags, ClsRegistry};
use crate::format::codec::ListInput;
use crate::format::image::{DirImageInput, DirRenameInput};
use crate::format::{Decode, Encode};
use crate::rados::Errno;

const NAME_PREFIX: &str = "name_";
const ID_PREFIX: &str = "id_";

pub(super) fn register(r: &mut ClsRegistry) {
    use ClsFlags::{Read, ReadWrite};
    let methods: [(&'static str, ClsFlags, super::ClsMethod); 6] = [
        ("dir_add_image", ReadWrite, add_image),
        ("dir_remove_image", ReadWrite, remove_image),
        ("dir_rename_image", ReadWrite, rename_image),
        ("dir_get_id", Read, get_id),
        ("dir_get_name", Read, get_name),
        ("dir_list", Read, list),
    ];
    for (name, flags, f) in methods {
        r.register("rbd", name, flags, f);
    }
}

fn name_key(name: &str) -> String {
    format!("{NAME_PREFIX}{name}")
}

fn id_key(id: &str) -> String {
    format!("{ID_PREFIX}{id}")
}

fn is_set(ctx: &ClsContext<'_>, key: &str) -> Result<bool> {
    Ok(ctx.exists() && ctx.omap_get(key)?.is_some())
}

/// The checks of adding `name → id` against the directory as it is now.
fn check_add(ctx: &ClsContext<'_>, name: &str, id: &str, unique_id: bool) -> Result<()> {
    if name.is_empty() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Errno::EINVAL);
    }
    if is_set(ctx, &name_key(name))? {
        return Err(Errno::EEXIST);
    }
    if unique_id && is_set(ctx, &id_key(id))? {
        return Err(Errno(libc::EBADF));
    }
    Ok(())
}

fn add(ctx: &mut ClsContext<'_>, name: &str, id: &str) {
    ctx.omap_set([
        (name_key(name), id.to_bytes()),
        (id_key(id), name.to_bytes()),
    ]);
}

fn add_image(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    ctx.create(false)?;
    let DirImageInput { name, id } = input(inp)?;
    check_add(ctx, &name, &id, true)?;
    add(ctx, &name, &id);
    Ok(Bytes::new())
}

/// The checks of removing the pair `name ↔ id`.
fn check_remove(ctx: &ClsContext<'_>, name: &str, id: &str) -> Result<()> {
    let stored_id: String = get_key(ctx, &name_key(name))?;
    let stored_name: String = get_key(ctx, &id_key(id))?;
    if stored_id != id || stored_name != name {
        return Err(Errno::ESTALE);
    }
    Ok(())
}

fn remove(ctx: &mut ClsContext<'_>, name: &str, id: &str) -> Result<()> {
    ctx.omap_remove(&name_key(name))?;
    ctx.omap_remove(&id_key(id))
}

fn remove_image(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let DirImageInput { name, id } = input(inp)?;
    check_remove(ctx, &name, &id)?;
    remove(ctx, &name, &id)?;
    Ok(Bytes::new())
}

/// Like Ceph, the new name is checked against the directory as it was before the removal of
/// the old one (the OSD does not show a method its own uncommitted omap writes).
fn rename_image(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let DirRenameInput { src, dst, id } = input(inp)?;
    check_remove(ctx, &src, &id)?;
    check_add(ctx, &dst, &id, false)?;
    remove(ctx, &src, &id)?;
    add(ctx, &dst, &id);
    Ok(Bytes::new())
}

fn get_id(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let name: String = input(inp)?;
    Ok(get_key::<String>(ctx, &name_key(&name))?.to_bytes())
}

fn get_name(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let id: String = input(inp)?;
    Ok(get_key::<String>(ctx, &id_key(&id))?.to_bytes())
}

fn list(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ListInput {
        start_after,
        max_return,
    } = input(inp)?;
    let max = usize::try_from(max_return).unwrap_or(usize::MAX);
    let images: Result<BTreeMap<String, String>> = ctx
        .omap_range(&name_key(&start_after), NAME_PREFIX, max)?
        .into_iter()
        .map(|(k, v)| {
            let id = String::from_bytes(v).map_err(|_| Errno::EIO)?;
            Ok((k[NAME_PREFIX.len()..].to_string(), id))
        })
        .collect();
    Ok(images?.to_bytes())
}
