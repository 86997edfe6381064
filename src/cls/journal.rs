//! cls_journal calls (class `"journal"`, spec §3.4): the journal header's geometry, object
//! sets, registered clients with their commit positions, and tags; plus the guarded
//! `append` on data objects. Replaces `cls/journal/cls_journal_client.cc`.
//!
//! Client and tag payloads stay opaque here ([`Bytes`]); what librbd puts in them is
//! `format::client_data`. Every call takes the header (or data) object name, so the same
//! functions serve the remote primary's journal and the local replica's.

use bytes::Bytes;

use super::{ClsResult, decode_as, enc, outputs, read, write};
use crate::format::codec::ListInput;
use crate::format::journal::{
    AppendInput, CLIENT_LIST_MAX_RETURN, Client, ClientCommitInput, ClientDataInput, ClientState,
    ClientUpdateStateInput, CreateInput, ObjectSetPosition, Tag, TagCreateInput, TagListInput,
};
use crate::rados::{IoCtx, ReadOp, WriteOp};

const CLASS: &str = "journal";

/// Page size for `tag_list` (Ceph's own client uses the same bound as for clients).
const TAG_LIST_MAX_RETURN: u64 = 256;

/// The immutable part of a journal header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub order: u8,
    pub splay_width: u8,
    /// -1: data objects live in the header's pool.
    pub pool_id: i64,
}

/// For tests: journal `oid` (order 24, splay width 4) in pool `rbd` of a new memory cluster.
#[cfg(test)]
pub async fn test_journal(oid: &str) -> crate::rados::memory::MemoryIoCtx {
    use crate::rados::Rados;
    let cluster = crate::rados::memory::MemoryCluster::default();
    cluster.create_pool("rbd").unwrap();
    let io = cluster.connect().ioctx("rbd").await.unwrap();
    let geometry = Geometry {
        order: 24,
        splay_width: 4,
        pool_id: -1,
    };
    create(&io, oid, geometry).await.unwrap();
    io
}

/// `create`: writes the header keys; `EEXIST` when the journal exists.
pub async fn create<I: IoCtx>(io: &I, oid: &str, g: Geometry) -> ClsResult<()> {
    let input = CreateInput {
        order: g.order,
        splay_width: g.splay_width,
        pool_id: g.pool_id,
    };
    write(io, oid, CLASS, "create", enc(&input)).await
}

/// Order, splay width and pool in one round trip (three method calls in one read op).
pub async fn geometry<I: IoCtx>(io: &I, oid: &str) -> ClsResult<Geometry> {
    let methods = ["get_order", "get_splay_width", "get_pool_id"];
    let op = methods
        .iter()
        .fold(ReadOp::new(), |op, m| op.exec(CLASS, m, Bytes::new()));
    let reply = io.operate_read(oid, op).await?;
    let [order, splay, pool] = outputs(oid, &methods, reply)?;
    Ok(Geometry {
        order: decode_as(oid, CLASS, "get_order", order)?,
        splay_width: decode_as(oid, CLASS, "get_splay_width", splay)?,
        pool_id: decode_as(oid, CLASS, "get_pool_id", pool)?,
    })
}

pub async fn get_minimum_set<I: IoCtx>(io: &I, oid: &str) -> ClsResult<u64> {
    read(io, oid, CLASS, "get_minimum_set", Bytes::new()).await
}

/// `EINVAL` past the active set, `ESTALE` below the current minimum.
pub async fn set_minimum_set<I: IoCtx>(io: &I, oid: &str, set: u64) -> ClsResult<()> {
    write(io, oid, CLASS, "set_minimum_set", enc(&set)).await
}

pub async fn get_active_set<I: IoCtx>(io: &I, oid: &str) -> ClsResult<u64> {
    read(io, oid, CLASS, "get_active_set", Bytes::new()).await
}

/// `EINVAL` below the minimum set, `ESTALE` below the current active set.
pub async fn set_active_set<I: IoCtx>(io: &I, oid: &str, set: u64) -> ClsResult<()> {
    write(io, oid, CLASS, "set_active_set", enc(&set)).await
}

/// `ENOENT` when no client has that id.
pub async fn get_client<I: IoCtx>(io: &I, oid: &str, id: &str) -> ClsResult<Client> {
    read(io, oid, CLASS, "get_client", enc(id)).await
}

/// `EEXIST` when registered; the new client starts at the minimum existing position.
pub async fn client_register<I: IoCtx>(io: &I, oid: &str, id: &str, data: Bytes) -> ClsResult<()> {
    write(
        io,
        oid,
        CLASS,
        "client_register",
        enc(&ClientDataInput {
            id: id.into(),
            data,
        }),
    )
    .await
}

pub async fn client_update_data<I: IoCtx>(
    io: &I,
    oid: &str,
    id: &str,
    data: Bytes,
) -> ClsResult<()> {
    write(
        io,
        oid,
        CLASS,
        "client_update_data",
        enc(&ClientDataInput {
            id: id.into(),
            data,
        }),
    )
    .await
}

pub async fn client_update_state<I: IoCtx>(
    io: &I,
    oid: &str,
    id: &str,
    state: ClientState,
) -> ClsResult<()> {
    let input = ClientUpdateStateInput {
        id: id.into(),
        state,
    };
    write(io, oid, CLASS, "client_update_state", enc(&input)).await
}

pub async fn client_unregister<I: IoCtx>(io: &I, oid: &str, id: &str) -> ClsResult<()> {
    write(io, oid, CLASS, "client_unregister", enc(id)).await
}

/// Records a client's commit position (newest first, at most one per splay offset;
/// `EINVAL` for more positions than the splay width).
pub async fn client_commit<I: IoCtx>(
    io: &I,
    oid: &str,
    id: &str,
    position: ObjectSetPosition,
) -> ClsResult<()> {
    let input = ClientCommitInput {
        id: id.into(),
        commit_position: position,
    };
    write(io, oid, CLASS, "client_commit", enc(&input)).await
}

/// Every registered client, ordered by id (pages of 256 as Ceph's own client does).
pub async fn client_list<I: IoCtx>(io: &I, oid: &str) -> ClsResult<Vec<Client>> {
    let mut all: Vec<Client> = Vec::new();
    loop {
        let start_after = all.last().map(|c| c.id.clone()).unwrap_or_default();
        let input = ListInput {
            start_after,
            max_return: CLIENT_LIST_MAX_RETURN,
        };
        let page: Vec<Client> = read(io, oid, CLASS, "client_list", enc(&input)).await?;
        let full = page.len() as u64 >= CLIENT_LIST_MAX_RETURN;
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

pub async fn get_next_tag_tid<I: IoCtx>(io: &I, oid: &str) -> ClsResult<u64> {
    read(io, oid, CLASS, "get_next_tag_tid", Bytes::new()).await
}

/// `ENOENT` for unknown or expired tags.
pub async fn get_tag<I: IoCtx>(io: &I, oid: &str, tid: u64) -> ClsResult<Tag> {
    read(io, oid, CLASS, "get_tag", enc(&tid)).await
}

/// `tag_create` with an explicit tid, which must equal `next_tag_tid` (`ESTALE` otherwise).
pub async fn tag_create<I: IoCtx>(
    io: &I,
    oid: &str,
    tid: u64,
    tag_class: u64,
    data: Bytes,
) -> ClsResult<()> {
    let input = TagCreateInput {
        tag_tid: tid,
        tag_class,
        data,
    };
    write(io, oid, CLASS, "tag_create", enc(&input)).await
}

/// Allocates the next tag: reads `next_tag_tid` and creates it, retrying when another
/// writer took that tid first. Returns the new tag's tid.
pub async fn allocate_tag<I: IoCtx>(
    io: &I,
    oid: &str,
    tag_class: u64,
    data: Bytes,
) -> ClsResult<u64> {
    loop {
        let tid = get_next_tag_tid(io, oid).await?;
        match tag_create(io, oid, tid, tag_class, data.clone()).await {
            Err(e) if e.is(crate::rados::Errno::ESTALE) => continue,
            other => return other.map(|()| tid),
        }
    }
}

/// Tags with tid > `start_after` (0 = from the start), optionally of one class, as seen by
/// `client_id` (tags its commit position no longer needs are hidden; `ENOENT` for an
/// unregistered client). Pages through long lists.
pub async fn tag_list<I: IoCtx>(
    io: &I,
    oid: &str,
    start_after: u64,
    client_id: &str,
    tag_class: Option<u64>,
) -> ClsResult<Vec<Tag>> {
    let mut all: Vec<Tag> = Vec::new();
    let mut after = start_after;
    loop {
        let input = TagListInput {
            start_after_tag_tid: after,
            max_return: TAG_LIST_MAX_RETURN,
            client_id: client_id.into(),
            tag_class,
        };
        let page: Vec<Tag> = read(io, oid, CLASS, "tag_list", enc(&input)).await?;
        let full = page.len() as u64 >= TAG_LIST_MAX_RETURN;
        if let Some(last) = page.last() {
            after = last.tid;
        }
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// The guarded append of a data object as one write step: fails with `EOVERFLOW` once the
/// object already holds `soft_max_size` bytes (an append may end beyond it).
pub fn append_op(op: WriteOp, soft_max_size: u64, data: Bytes) -> WriteOp {
    op.exec(
        CLASS,
        "append",
        enc(&AppendInput {
            soft_max_size,
            data,
        }),
    )
}

/// Appends to a data object with the overflow guard.
pub async fn append<I: IoCtx>(io: &I, oid: &str, soft_max_size: u64, data: Bytes) -> ClsResult<()> {
    io.operate_write(oid, append_op(WriteOp::new(), soft_max_size, data))
        .await?;
    Ok(())
}
