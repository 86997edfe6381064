//! cls_journal for the embedded backend (class `"journal"`, spec §3.4, §3.8): the journal
//! header's keys, client registration and commit positions, tag allocation with expiry,
//! and the guarded appends on data objects. Semantics and errnos as Ceph 16.2's, checked
//! by the conformance suite against a real OSD.

use bytes::Bytes;

use super::{ClsContext, ClsFlags, ClsRegistry};
use crate::format::codec::ListInput;
use crate::format::journal::{
    AppendInput, Client, ClientCommitInput, ClientDataInput, ClientState, ClientUpdateStateInput,
    CreateInput, ObjectSetPosition, TAG_CLASS_NEW, Tag, TagCreateInput, TagListInput, keys,
};
use crate::format::{Decode, Encode};
use crate::rados::Errno;

type Result<T> = std::result::Result<T, Errno>;

pub(super) fn register(r: &mut ClsRegistry) {
    use ClsFlags::{Read, ReadWrite};
    let methods: [(&'static str, ClsFlags, super::ClsMethod); 21] = [
        ("create", ReadWrite, create),
        ("get_order", Read, |c, _| raw(c, keys::ORDER)),
        ("get_splay_width", Read, |c, _| raw(c, keys::SPLAY_WIDTH)),
        ("get_pool_id", Read, |c, _| raw(c, keys::POOL_ID)),
        ("get_minimum_set", Read, |c, _| raw(c, keys::MINIMUM_SET)),
        ("set_minimum_set", ReadWrite, set_minimum_set),
        ("get_active_set", Read, |c, _| raw(c, keys::ACTIVE_SET)),
        ("set_active_set", ReadWrite, set_active_set),
        ("get_client", Read, get_client),
        ("client_register", ReadWrite, client_register),
        ("client_update_data", ReadWrite, client_update_data),
        ("client_update_state", ReadWrite, client_update_state),
        ("client_unregister", ReadWrite, client_unregister),
        ("client_commit", ReadWrite, client_commit),
        ("client_list", Read, client_list),
        ("get_next_tag_tid", Read, |c, _| raw(c, keys::NEXT_TAG_TID)),
        ("get_tag", Read, get_tag),
        ("tag_create", ReadWrite, tag_create),
        ("tag_list", Read, tag_list),
        ("guard_append", ReadWrite, guard_append),
        ("append", ReadWrite, append),
    ];
    for (name, flags, f) in methods {
        r.register("journal", name, flags, f);
    }
}

/// Decodes a method input; malformed input is `EINVAL`, as the OSD answers.
fn input<T: Decode>(b: Bytes) -> Result<T> {
    T::from_bytes(b).map_err(|_| Errno::EINVAL)
}

/// A header key's stored bytes; `ENOENT` when the key (or the object) is missing.
fn raw(ctx: &ClsContext<'_>, key: &str) -> Result<Bytes> {
    ctx.omap_get(key)?.ok_or(Errno::ENOENT)
}

fn get<T: Decode>(ctx: &ClsContext<'_>, key: &str) -> Result<T> {
    T::from_bytes(raw(ctx, key)?).map_err(|_| Errno::EIO)
}

fn set<T: Encode>(ctx: &mut ClsContext<'_>, key: &str, v: &T) {
    ctx.omap_set([(key.to_string(), v.to_bytes())]);
}

fn create(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let CreateInput {
        order,
        splay_width,
        pool_id,
    } = input(inp)?;
    if ctx.exists() && ctx.omap_get(keys::ORDER)?.is_some() {
        return Err(Errno::EEXIST);
    }
    set(ctx, keys::ORDER, &order);
    set(ctx, keys::SPLAY_WIDTH, &splay_width);
    set(ctx, keys::POOL_ID, &pool_id);
    for key in [
        keys::ACTIVE_SET,
        keys::MINIMUM_SET,
        keys::NEXT_TAG_TID,
        keys::NEXT_TAG_CLASS,
    ] {
        set(ctx, key, &0u64);
    }
    Ok(Bytes::new())
}

fn set_minimum_set(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let new: u64 = input(inp)?;
    if new > get::<u64>(ctx, keys::ACTIVE_SET)? {
        return Err(Errno::EINVAL);
    }
    let current: u64 = get(ctx, keys::MINIMUM_SET)?;
    if new < current {
        return Err(Errno::ESTALE);
    }
    if new > current {
        set(ctx, keys::MINIMUM_SET, &new);
    }
    Ok(Bytes::new())
}

fn set_active_set(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let new: u64 = input(inp)?;
    if new < get::<u64>(ctx, keys::MINIMUM_SET)? {
        return Err(Errno::EINVAL);
    }
    let current: u64 = get(ctx, keys::ACTIVE_SET)?;
    if new < current {
        return Err(Errno::ESTALE);
    }
    if new > current {
        set(ctx, keys::ACTIVE_SET, &new);
    }
    Ok(Bytes::new())
}

fn client(ctx: &ClsContext<'_>, id: &str) -> Result<Client> {
    get(ctx, &keys::client(id))
}

fn clients(ctx: &ClsContext<'_>) -> Result<Vec<Client>> {
    let map = ctx.omap_range("", keys::CLIENT_PREFIX, usize::MAX)?;
    map.into_values()
        .map(|v| Client::from_bytes(v).map_err(|_| Errno::EIO))
        .collect()
}

fn get_client(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let id: String = input(inp)?;
    raw(ctx, &keys::client(&id))
}

/// The newest-first ordering key of a position: its first (newest) entry.
fn newest(p: &ObjectSetPosition) -> Option<(u64, u64)> {
    p.object_positions.first().map(|o| (o.tag_tid, o.entry_tid))
}

fn client_register(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ClientDataInput { id, data } = input(inp)?;
    get::<u8>(ctx, keys::ORDER)?; // the journal must exist
    if ctx.omap_get(&keys::client(&id))?.is_some() {
        return Err(Errno::EEXIST);
    }
    // A new client starts where the slowest existing one is; an empty position is slowest.
    let existing = clients(ctx)?;
    let start = existing
        .iter()
        .map(|c| &c.commit_position)
        .min_by_key(|p| newest(p).map_or((0, 0, false), |(t, e)| (t, e, true)))
        .cloned()
        .unwrap_or_default();
    let c = Client {
        id: id.clone(),
        data,
        commit_position: start,
        state: ClientState::Connected,
    };
    set(ctx, &keys::client(&id), &c);
    Ok(Bytes::new())
}

fn client_update_data(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ClientDataInput { id, data } = input(inp)?;
    let c = Client {
        data,
        ..client(ctx, &id)?
    };
    set(ctx, &keys::client(&id), &c);
    Ok(Bytes::new())
}

fn client_update_state(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ClientUpdateStateInput { id, state } = input(inp)?;
    let c = Client {
        state,
        ..client(ctx, &id)?
    };
    set(ctx, &keys::client(&id), &c);
    Ok(Bytes::new())
}

fn client_unregister(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let id: String = input(inp)?;
    client(ctx, &id)?;
    ctx.omap_remove(&keys::client(&id))?;
    expire_tags(ctx)?;
    Ok(Bytes::new())
}

fn client_commit(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ClientCommitInput {
        id,
        commit_position,
    } = input(inp)?;
    let splay_width: u8 = get(ctx, keys::SPLAY_WIDTH)?;
    if commit_position.object_positions.len() > usize::from(splay_width) {
        return Err(Errno::EINVAL);
    }
    let c = client(ctx, &id)?;
    if c.commit_position != commit_position {
        set(
            ctx,
            &keys::client(&id),
            &Client {
                commit_position,
                ..c
            },
        );
    }
    Ok(Bytes::new())
}

fn client_list(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ListInput {
        start_after,
        max_return,
    } = input(inp)?;
    let after = if start_after.is_empty() {
        String::new()
    } else {
        keys::client(&start_after)
    };
    let max = usize::try_from(max_return).unwrap_or(usize::MAX);
    let page = ctx.omap_range(&after, keys::CLIENT_PREFIX, max)?;
    let list: Result<Vec<Client>> = page
        .into_values()
        .map(|v| Client::from_bytes(v).map_err(|_| Errno::EIO))
        .collect();
    Ok(list?.to_bytes())
}

fn tags(ctx: &ClsContext<'_>) -> Result<Vec<Tag>> {
    let map = ctx.omap_range("", keys::TAG_PREFIX, usize::MAX)?;
    map.into_values()
        .map(|v| Tag::from_bytes(v).map_err(|_| Errno::EIO))
        .collect()
}

fn get_tag(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let tid: u64 = input(inp)?;
    raw(ctx, &keys::tag(tid))
}

fn tag_create(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let TagCreateInput {
        tag_tid,
        tag_class,
        data,
    } = input(inp)?;
    if tag_tid != get::<u64>(ctx, keys::NEXT_TAG_TID)? {
        return Err(Errno::ESTALE);
    }
    if ctx.omap_get(&keys::tag(tag_tid))?.is_some() {
        return Err(Errno::EEXIST);
    }
    let next_class: u64 = get(ctx, keys::NEXT_TAG_CLASS)?;
    let class = if tag_class == TAG_CLASS_NEW {
        set(ctx, keys::NEXT_TAG_CLASS, &(next_class + 1));
        next_class
    } else if tag_class >= next_class {
        return Err(Errno::EINVAL);
    } else {
        tag_class
    };
    set(ctx, keys::NEXT_TAG_TID, &(tag_tid + 1));
    set(
        ctx,
        &keys::tag(tag_tid),
        &Tag {
            tid: tag_tid,
            tag_class: class,
            data,
        },
    );
    expire_tags(ctx)?;
    Ok(Bytes::new())
}

/// The oldest tag a commit position still references (`None`: the position is empty).
fn oldest_referenced(p: &ObjectSetPosition) -> Option<u64> {
    p.object_positions.iter().map(|o| o.tag_tid).min()
}

/// Is `tag` superseded below `minimum`: older than a newer tag of its class that is itself
/// at or below the minimum tag still referenced?
fn superseded(tag: &Tag, all: &[Tag], minimum: u64) -> bool {
    tag.tid < minimum
        && all
            .iter()
            .any(|t| t.tag_class == tag.tag_class && t.tid > tag.tid && t.tid <= minimum)
}

/// Deletes tags no connected client can need any more (spec §3.8). A connected client with
/// an empty commit position needs everything.
fn expire_tags(ctx: &mut ClsContext<'_>) -> Result<()> {
    let mut minimum = u64::MAX;
    for c in clients(ctx)?
        .iter()
        .filter(|c| c.state == ClientState::Connected)
    {
        match oldest_referenced(&c.commit_position) {
            Some(t) => minimum = minimum.min(t),
            None => return Ok(()),
        }
    }
    let all = tags(ctx)?;
    for t in all.iter().filter(|t| superseded(t, &all, minimum)) {
        ctx.omap_remove(&keys::tag(t.tid))?;
    }
    Ok(())
}

fn tag_list(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let TagListInput {
        start_after_tag_tid,
        max_return,
        client_id,
        tag_class,
    } = input(inp)?;
    let minimum = oldest_referenced(&client(ctx, &client_id)?.commit_position).unwrap_or(u64::MAX);
    let all = tags(ctx)?;
    let max = usize::try_from(max_return).unwrap_or(usize::MAX);
    let listed: Vec<Tag> = all
        .iter()
        .filter(|t| t.tid > start_after_tag_tid || start_after_tag_tid == 0)
        .filter(|t| tag_class.is_none_or(|c| t.tag_class == c))
        .filter(|t| minimum == u64::MAX || !superseded(t, &all, minimum))
        .take(max)
        .cloned()
        .collect();
    Ok(listed.to_bytes())
}

/// `EOVERFLOW` once an existing object holds `soft_max` bytes.
fn check_room(ctx: &ClsContext<'_>, soft_max: u64) -> Result<()> {
    if ctx.exists() && ctx.size()? >= soft_max {
        return Err(Errno::EOVERFLOW);
    }
    Ok(())
}

fn guard_append(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    check_room(ctx, input(inp)?)?;
    Ok(Bytes::new())
}

fn append(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let AppendInput {
        soft_max_size,
        data,
    } = input(inp)?;
    check_room(ctx, soft_max_size)?;
    ctx.append(&data);
    Ok(Bytes::new())
}
