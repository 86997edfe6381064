//! The pool's image directory: `rbd_directory` (name ↔ id, both ways) and the per-name
//! `rbd_id.<name>` objects that `rbd` opens images by (spec §5.1, §5.3). Replaces the `dir_*`
//! and `set_id`/`get_id` calls of `cls/rbd/cls_rbd_client.cc`.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{ClsResult, enc, list_map, read, write};
use crate::format::image::{DirImageInput, DirRenameInput, oids};
use crate::rados::{IoCtx, WriteOp};

const CLASS: &str = "rbd";
const DIR: &str = oids::DIRECTORY;

/// Adds `name → id` (creates the directory if needed); `EEXIST` on a duplicate name or id.
pub async fn add_image<I: IoCtx>(io: &I, name: &str, id: &str) -> ClsResult<()> {
    write(
        io,
        DIR,
        CLASS,
        "dir_add_image",
        enc(&DirImageInput {
            name: name.into(),
            id: id.into(),
        }),
    )
    .await
}

/// `ENOENT` when the pair is not there.
pub async fn remove_image<I: IoCtx>(io: &I, name: &str, id: &str) -> ClsResult<()> {
    write(
        io,
        DIR,
        CLASS,
        "dir_remove_image",
        enc(&DirImageInput {
            name: name.into(),
            id: id.into(),
        }),
    )
    .await
}

pub async fn rename_image<I: IoCtx>(io: &I, src: &str, dst: &str, id: &str) -> ClsResult<()> {
    let input = DirRenameInput {
        src: src.into(),
        dst: dst.into(),
        id: id.into(),
    };
    write(io, DIR, CLASS, "dir_rename_image", enc(&input)).await
}

pub async fn get_id<I: IoCtx>(io: &I, name: &str) -> ClsResult<String> {
    read(io, DIR, CLASS, "dir_get_id", enc(name)).await
}

pub async fn get_name<I: IoCtx>(io: &I, id: &str) -> ClsResult<String> {
    read(io, DIR, CLASS, "dir_get_name", enc(id)).await
}

/// Every image of the pool: name → id.
pub async fn list<I: IoCtx>(io: &I) -> ClsResult<BTreeMap<String, String>> {
    list_map(io, DIR, CLASS, "dir_list").await
}

/// Creates `rbd_id.<name>` holding `id`, exclusively (`EEXIST` if the name is taken).
pub async fn create_id_object<I: IoCtx>(io: &I, name: &str, id: &str) -> ClsResult<()> {
    let op = WriteOp::new().create(true).exec(CLASS, "set_id", enc(id));
    io.operate_write(&oids::id(name), op).await?;
    Ok(())
}

/// The image id stored in `rbd_id.<name>`; `ENOENT` if there is no such image.
pub async fn id_of<I: IoCtx>(io: &I, name: &str) -> ClsResult<String> {
    read(io, &oids::id(name), CLASS, "get_id", Bytes::new()).await
}
