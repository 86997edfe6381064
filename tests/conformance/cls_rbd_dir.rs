//! cls_rbd's `rbd_directory` methods through the typed client (`rbd_relay::cls::dir`), on
//! both backends, in a fresh RADOS namespace (the directory is a per-pool singleton): add,
//! lookups both ways, paged listing, rename and remove with their errnos.

use std::collections::BTreeMap;

use rbd_relay::cls::dir;
use rbd_relay::format::codec::ListInput;
use rbd_relay::format::image::oids;
use rbd_relay::format::{Decode, Encode};
use rbd_relay::rados::{Errno, IoCtx, Rados};

use crate::cls_rbd_mirror::{Checks, r};
use crate::harness::name;

pub async fn directory<R: Rados>(_c: &R, io: &R::IoCtx) {
    let io = io.with_namespace(&name("dir"));
    let mut c = Checks::default();
    c.eq(
        "list of a missing directory",
        r(dir::list(&io).await).map(|l| l.len()),
        Err(Errno::ENOENT),
    );
    c.eq(
        "id in a missing directory",
        r(dir::get_id(&io, "a").await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "remove from a missing directory",
        r(dir::remove_image(&io, "a", "id1").await),
        Err(Errno::ENOENT),
    );
    c.eq("add", r(dir::add_image(&io, "a", "id1").await), Ok(()));
    c.eq(
        "taken name",
        r(dir::add_image(&io, "a", "id2").await),
        Err(Errno::EEXIST),
    );
    c.eq(
        "taken id",
        r(dir::add_image(&io, "b", "id1").await),
        Err(Errno(libc::EBADF)),
    );
    c.eq(
        "empty name",
        r(dir::add_image(&io, "", "id9").await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "bad id",
        r(dir::add_image(&io, "c", "bad-id").await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "empty id",
        r(dir::add_image(&io, "c", "").await),
        Err(Errno::EINVAL),
    );
    dir::add_image(&io, "b", "id2").await.unwrap();
    dir::add_image(&io, "c", "id3").await.unwrap();
    c.eq(
        "get id",
        r(dir::get_id(&io, "a").await),
        Ok("id1".to_string()),
    );
    c.eq(
        "get name",
        r(dir::get_name(&io, "id2").await),
        Ok("b".to_string()),
    );
    c.eq(
        "get name missing",
        r(dir::get_name(&io, "id9").await),
        Err(Errno::ENOENT),
    );
    let all: BTreeMap<String, String> = [("a", "id1"), ("b", "id2"), ("c", "id3")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    c.eq("list", r(dir::list(&io).await), Ok(all));
    let input = ListInput {
        start_after: "a".into(),
        max_return: 1,
    };
    let page = io
        .exec(oids::DIRECTORY, "rbd", "dir_list", input.to_bytes())
        .await;
    let page = page.map(|b| {
        BTreeMap::<String, String>::from_bytes(b)
            .unwrap()
            .into_keys()
            .collect::<Vec<_>>()
    });
    c.eq("page", page.map_err(|e| e.errno), Ok(vec!["b".to_string()]));
    c.eq(
        "rename onto a name",
        r(dir::rename_image(&io, "a", "b", "id1").await),
        Err(Errno::EEXIST),
    );
    c.eq(
        "rename to itself",
        r(dir::rename_image(&io, "a", "a", "id1").await),
        Err(Errno::EEXIST),
    );
    c.eq(
        "rename missing",
        r(dir::rename_image(&io, "x", "y", "id1").await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "rename wrong id",
        r(dir::rename_image(&io, "a", "z", "id2").await),
        Err(Errno::ESTALE),
    );
    c.eq(
        "rename to a bad name",
        r(dir::rename_image(&io, "a", "", "id1").await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "rename",
        r(dir::rename_image(&io, "a", "d", "id1").await),
        Ok(()),
    );
    c.eq(
        "new name",
        r(dir::get_id(&io, "d").await),
        Ok("id1".to_string()),
    );
    c.eq(
        "old name",
        r(dir::get_id(&io, "a").await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "name of id",
        r(dir::get_name(&io, "id1").await),
        Ok("d".to_string()),
    );
    c.eq(
        "remove wrong id",
        r(dir::remove_image(&io, "d", "id2").await),
        Err(Errno::ESTALE),
    );
    c.eq(
        "remove",
        r(dir::remove_image(&io, "d", "id1").await),
        Ok(()),
    );
    c.eq(
        "remove again",
        r(dir::remove_image(&io, "d", "id1").await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "left",
        r(dir::list(&io).await).map(|l| l.into_keys().collect::<Vec<_>>()),
        Ok(vec!["b".to_string(), "c".into()]),
    );
    c.done();
}
