//! cls_rbd's mirroring methods on `rbd_mirroring` (spec §2.1–§2.6) for the embedded backend:
//! the pool's mirror uuid and mode, peers (with the remote ping that creates TX-only peers),
//! mirrored images and their global-id index, and per-site image statuses whose `up` flag
//! is computed at read time from the live watchers of the object, as Ceph 16.2 does.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;

use super::rbd_image::{Result, get_key, input, put_key, remove_key, utime_now};
use super::{Caller, ClsContext, ClsFlags, ClsRegistry};
use crate::format::codec::ListInput;
use crate::format::entity::{EntityAddr, EntityInst, EntityName};
use crate::format::mirror::{
    MirrorImage, MirrorImageSetInput, MirrorImageSiteStatus, MirrorImageSiteStatusOnDisk,
    MirrorImageState, MirrorImageStatus, MirrorImageStatusListOutput, MirrorImageStatusSetInput,
    MirrorMode, MirrorPeer, MirrorPeerDirection, MirrorPeerPingInput, MirrorPeerSetDirectionInput,
    MirrorPeerSetInput, keys,
};
use crate::format::{Decode, Encode};
use crate::rados::Errno;

pub(super) fn register(r: &mut ClsRegistry) {
    use ClsFlags::{Read, ReadWrite};
    let methods: [(&'static str, ClsFlags, super::ClsMethod); 22] = [
        ("mirror_uuid_get", Read, uuid_get),
        ("mirror_uuid_set", ReadWrite, uuid_set),
        ("mirror_mode_get", Read, |c, _| {
            mode_get(c).map(|m| m.to_bytes())
        }),
        ("mirror_mode_set", ReadWrite, mode_set),
        ("mirror_peer_list", Read, peer_list),
        ("mirror_peer_add", ReadWrite, peer_add),
        ("mirror_peer_remove", ReadWrite, peer_remove),
        ("mirror_peer_set_client", ReadWrite, peer_set_client),
        ("mirror_peer_set_cluster", ReadWrite, peer_set_cluster),
        ("mirror_peer_set_direction", ReadWrite, peer_set_direction),
        ("mirror_peer_ping", ReadWrite, peer_ping),
        ("mirror_image_list", Read, image_list),
        ("mirror_image_get_image_id", Read, image_get_image_id),
        ("mirror_image_get", Read, image_get),
        ("mirror_image_set", ReadWrite, image_set),
        ("mirror_image_remove", ReadWrite, image_remove),
        ("mirror_image_status_set", ReadWrite, status_set),
        ("mirror_image_status_remove", ReadWrite, status_remove),
        ("mirror_image_status_get", Read, status_get),
        ("mirror_image_status_list", Read, status_list),
        (
            "mirror_image_status_remove_down",
            ReadWrite,
            status_remove_down,
        ),
        ("mirror_image_instance_get", Read, instance_get),
    ];
    for (name, flags, f) in methods {
        r.register("rbd", name, flags, f);
    }
}

fn uuid(ctx: &ClsContext<'_>) -> Result<String> {
    let raw = ctx.omap_get(keys::MIRROR_UUID)?.ok_or(Errno::ENOENT)?;
    String::from_utf8(raw.to_vec()).map_err(|_| Errno::EIO)
}

fn uuid_get(ctx: &mut ClsContext<'_>, _inp: Bytes) -> Result<Bytes> {
    Ok(uuid(ctx)?.to_bytes())
}

/// The stored mode; `ENOENT` when the key or the object is missing.
fn mode_get(ctx: &ClsContext<'_>) -> Result<MirrorMode> {
    get_key(ctx, keys::MIRROR_MODE)
}

/// The mode, a missing one being disabled.
fn mode_or_disabled(ctx: &ClsContext<'_>) -> Result<MirrorMode> {
    match mode_get(ctx) {
        Err(Errno::ENOENT) => Ok(MirrorMode::Disabled),
        other => other,
    }
}

fn require_enabled(ctx: &ClsContext<'_>) -> Result<()> {
    if mode_or_disabled(ctx)? == MirrorMode::Disabled {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

fn uuid_set(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let uuid: String = input(inp)?;
    if uuid.is_empty() || mode_or_disabled(ctx)? != MirrorMode::Disabled {
        return Err(Errno::EINVAL);
    }
    ctx.omap_set([(keys::MIRROR_UUID.to_string(), Bytes::from(uuid))]);
    Ok(Bytes::new())
}

fn mode_set(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let mode: MirrorMode = input(inp)?;
    match mode {
        MirrorMode::Image | MirrorMode::Pool => {
            match uuid(ctx) {
                Err(Errno::ENOENT) => return Err(Errno::EINVAL),
                other => other?,
            };
            put_key(ctx, keys::MIRROR_MODE, &mode);
        }
        MirrorMode::Disabled => {
            if !peers(ctx)?.is_empty() {
                return Err(Errno::EBUSY);
            }
            remove_key(ctx, keys::MIRROR_MODE)?;
            remove_key(ctx, keys::MIRROR_UUID)?;
        }
        MirrorMode::Other(_) => return Err(Errno::EINVAL),
    }
    Ok(Bytes::new())
}

/// Every value under `prefix`, decoded; a missing object has none.
fn all<T: Decode>(ctx: &ClsContext<'_>, prefix: &str) -> Result<BTreeMap<String, T>> {
    if !ctx.exists() {
        return Ok(BTreeMap::new());
    }
    ctx.omap_range("", prefix, usize::MAX)?
        .into_iter()
        .map(|(k, v)| Ok((k, T::from_bytes(v).map_err(|_| Errno::EIO)?)))
        .collect()
}

fn peers(ctx: &ClsContext<'_>) -> Result<Vec<MirrorPeer>> {
    Ok(all(ctx, keys::PEER_PREFIX)?.into_values().collect())
}

/// Unlike the internal reads, listing a missing object is `ENOENT` (as measured).
fn peer_list(ctx: &mut ClsContext<'_>, _inp: Bytes) -> Result<Bytes> {
    ctx.size()?;
    Ok(peers(ctx)?.to_bytes())
}

fn peer_valid(p: &MirrorPeer) -> bool {
    let client_ok = match p.direction {
        MirrorPeerDirection::Tx => true,
        MirrorPeerDirection::Rx | MirrorPeerDirection::RxTx => !p.client_name.is_empty(),
        MirrorPeerDirection::Other(_) => false,
    };
    client_ok && !p.uuid.is_empty() && !p.site_name.is_empty()
}

fn write_peer(ctx: &mut ClsContext<'_>, p: &MirrorPeer) {
    put_key(ctx, &keys::peer(&p.uuid), p);
}

fn peer_add(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let peer: MirrorPeer = input(inp)?;
    require_enabled(ctx)?;
    if !peer_valid(&peer) || peer.uuid == uuid(ctx)? || peer.direction == MirrorPeerDirection::Tx {
        return Err(Errno::EINVAL);
    }
    for p in peers(ctx)? {
        if p.uuid == peer.uuid {
            return Err(Errno::ESTALE);
        }
        if p.site_name == peer.site_name
            || (!peer.mirror_uuid.is_empty() && p.mirror_uuid == peer.mirror_uuid)
        {
            return Err(Errno::EEXIST);
        }
    }
    write_peer(ctx, &peer);
    Ok(Bytes::new())
}

fn peer_remove(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let uuid: String = input(inp)?;
    remove_key(ctx, &keys::peer(&uuid))?;
    Ok(Bytes::new())
}

fn peer_set_client(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let MirrorPeerSetInput { uuid, value } = input(inp)?;
    let mut p: MirrorPeer = get_key(ctx, &keys::peer(&uuid))?;
    p.client_name = value;
    write_peer(ctx, &p);
    Ok(Bytes::new())
}

fn peer_set_cluster(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let MirrorPeerSetInput { uuid, value } = input(inp)?;
    let mut found = None;
    for p in peers(ctx)? {
        if p.uuid == uuid {
            found = Some(p);
        } else if p.site_name == value {
            return Err(Errno::EEXIST);
        }
    }
    let mut p = found.ok_or(Errno::ENOENT)?;
    p.site_name = value;
    write_peer(ctx, &p);
    Ok(Bytes::new())
}

fn peer_set_direction(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let MirrorPeerSetDirectionInput { uuid, direction } = input(inp)?;
    let mut p: MirrorPeer = get_key(ctx, &keys::peer(&uuid))?;
    p.direction = direction;
    write_peer(ctx, &p);
    Ok(Bytes::new())
}

/// A remote site announces itself: the peer of that site (or of that mirror uuid) learns
/// the mirror uuid and last-seen time; an unknown site becomes a new TX-only peer.
fn peer_ping(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let MirrorPeerPingInput {
        site_name,
        mirror_uuid,
        direction,
    } = input(inp)?;
    if direction != MirrorPeerDirection::Tx {
        return Err(Errno::EINVAL);
    }
    require_enabled(ctx)?;
    if site_name.is_empty() || mirror_uuid.is_empty() {
        return Err(Errno::EINVAL);
    }
    let all = peers(ctx)?;
    let by_site = all.iter().find(|p| p.site_name == site_name);
    let by_uuid = match by_site {
        Some(p) if p.mirror_uuid.is_empty() || p.mirror_uuid == mirror_uuid => None,
        _ => all.iter().find(|p| p.mirror_uuid == mirror_uuid),
    };
    let mut peer = match (by_site, by_uuid) {
        // Two candidates: the peer with that mirror uuid wins and keeps its site name.
        (Some(_), Some(p)) => p.clone(),
        // The remote site was renamed.
        (None, Some(p)) => MirrorPeer {
            site_name,
            ..p.clone()
        },
        // The site's peer learns the mirror uuid.
        (Some(p), None) => MirrorPeer {
            mirror_uuid,
            ..p.clone()
        },
        // An unknown site: a new TX-only peer.
        (None, None) => MirrorPeer {
            uuid: uuid::Uuid::new_v4().to_string(),
            site_name,
            client_name: String::new(),
            pool_id: -1,
            direction: MirrorPeerDirection::Tx,
            mirror_uuid,
            last_seen: Default::default(),
        },
    };
    if peer.direction == MirrorPeerDirection::Rx {
        peer.direction = MirrorPeerDirection::RxTx;
    }
    peer.last_seen = utime_now(ctx);
    if !peer_valid(&peer) {
        return Err(Errno::EINVAL);
    }
    write_peer(ctx, &peer);
    Ok(Bytes::new())
}

/// Up to `max` mirrored images after `start_after`; `ENOENT` on a missing object.
fn images_page(
    ctx: &ClsContext<'_>,
    start_after: &str,
    max: u64,
) -> Result<BTreeMap<String, MirrorImage>> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    ctx.omap_range(&keys::image(start_after), keys::IMAGE_PREFIX, max)?
        .into_iter()
        .map(|(k, v)| {
            let image = MirrorImage::from_bytes(v).map_err(|_| Errno::EIO)?;
            Ok((k[keys::IMAGE_PREFIX.len()..].to_string(), image))
        })
        .collect()
}

fn image_list(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ListInput {
        start_after,
        max_return,
    } = input(inp)?;
    let page: BTreeMap<String, String> = images_page(ctx, &start_after, max_return)?
        .into_iter()
        .map(|(id, image)| (id, image.global_image_id))
        .collect();
    Ok(page.to_bytes())
}

fn image_get_image_id(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let gid: String = input(inp)?;
    Ok(get_key::<String>(ctx, &keys::global(&gid))?.to_bytes())
}

fn image_get(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let id: String = input(inp)?;
    Ok(get_key::<MirrorImage>(ctx, &keys::image(&id))?.to_bytes())
}

fn image_set(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let MirrorImageSetInput { image_id, image } = input(inp)?;
    match get_key::<MirrorImage>(ctx, &keys::image(&image_id)) {
        Err(Errno::ENOENT) => {
            if image.state == MirrorImageState::Disabling {
                return Err(Errno::ENOENT);
            }
            match get_key::<String>(ctx, &keys::global(&image.global_image_id)) {
                Ok(other) if other != image_id => return Err(Errno::EEXIST),
                Err(e) if e != Errno::ENOENT => return Err(e),
                _ => {}
            }
        }
        Err(e) => return Err(e),
        Ok(existing) if existing.global_image_id != image.global_image_id => {
            return Err(Errno::EINVAL);
        }
        Ok(_) => {}
    }
    put_key(ctx, &keys::image(&image_id), &image);
    put_key(ctx, &keys::global(&image.global_image_id), &image_id);
    Ok(Bytes::new())
}

fn image_remove(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let id: String = input(inp)?;
    let image: MirrorImage = get_key(ctx, &keys::image(&id))?;
    if image.state != MirrorImageState::Disabling {
        return Err(Errno::EBUSY);
    }
    remove_key(ctx, &keys::image(&id))?;
    remove_key(ctx, &keys::global(&image.global_image_id))?;
    remove_statuses(ctx, &image.global_image_id)
}

/// How a client is recorded as a status's origin (address type ANY, as cls_rbd sanitises).
fn entity(c: Caller) -> EntityInst {
    EntityInst {
        name: EntityName::client(c.gid as i64),
        addr: EntityAddr::new(
            EntityAddr::TYPE_ANY,
            c.nonce,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        ),
    }
}

fn watching(ctx: &ClsContext<'_>) -> Vec<EntityInst> {
    ctx.watchers().iter().map(|w| entity(*w)).collect()
}

fn status_set(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let MirrorImageStatusSetInput {
        global_image_id,
        status,
    } = input(inp)?;
    let enabled = get_key::<String>(ctx, &keys::global(&global_image_id))
        .and_then(|id| get_key::<MirrorImage>(ctx, &keys::image(&id)))
        .is_ok_and(|image| image.state == MirrorImageState::Enabled);
    if enabled {
        let on_disk = MirrorImageSiteStatusOnDisk {
            origin: entity(ctx.caller()),
            status: MirrorImageSiteStatus {
                mirror_uuid: String::new(),
                last_update: utime_now(ctx),
                up: false,
                ..status.clone()
            },
        };
        put_key(
            ctx,
            &keys::status(&global_image_id, &status.mirror_uuid),
            &on_disk,
        );
    }
    Ok(Bytes::new())
}

fn remote_prefix(gid: &str) -> String {
    format!("{}{gid}_", keys::REMOTE_STATUS_PREFIX)
}

/// Removes the local and every remote status of a global id.
fn remove_statuses(ctx: &mut ClsContext<'_>, gid: &str) -> Result<Bytes> {
    remove_key(ctx, &keys::status(gid, ""))?;
    let remote = match ctx.omap_range("", &remote_prefix(gid), usize::MAX) {
        Err(Errno::ENOENT) => BTreeMap::new(),
        other => other?,
    };
    for key in remote.into_keys() {
        remove_key(ctx, &key)?;
    }
    Ok(Bytes::new())
}

fn status_remove(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let gid: String = input(inp)?;
    remove_statuses(ctx, &gid)
}

/// The statuses of a global id as reported to readers (`up` while the writer watches);
/// `ENOENT` when there are none.
fn status_of(
    ctx: &ClsContext<'_>,
    gid: &str,
    watchers: &[EntityInst],
) -> Result<MirrorImageStatus> {
    let report = |s: MirrorImageSiteStatusOnDisk, mirror_uuid: &str| MirrorImageSiteStatus {
        mirror_uuid: mirror_uuid.to_string(),
        up: watchers.contains(&s.origin),
        ..s.status
    };
    let local = match get_key::<MirrorImageSiteStatusOnDisk>(ctx, &keys::status(gid, "")) {
        Ok(s) => Some(report(s, "")),
        Err(Errno::ENOENT) => None,
        Err(e) => return Err(e),
    };
    let prefix = remote_prefix(gid);
    let remote: Vec<MirrorImageSiteStatus> = all::<MirrorImageSiteStatusOnDisk>(ctx, &prefix)?
        .into_iter()
        .map(|(k, s)| report(s, &k[prefix.len()..]))
        .collect();
    if local.is_none() && remote.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok(MirrorImageStatus { local, remote })
}

fn status_get(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let gid: String = input(inp)?;
    Ok(status_of(ctx, &gid, &watching(ctx))?.to_bytes())
}

fn status_list(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let ListInput {
        start_after,
        max_return,
    } = input(inp)?;
    let watchers = watching(ctx);
    let images = images_page(ctx, &start_after, max_return)?;
    let mut statuses = BTreeMap::new();
    for (id, image) in &images {
        if let Ok(s) = status_of(ctx, &image.global_image_id, &watchers) {
            statuses.insert(id.clone(), s);
        }
    }
    Ok(MirrorImageStatusListOutput { images, statuses }.to_bytes())
}

fn status_remove_down(ctx: &mut ClsContext<'_>, _inp: Bytes) -> Result<Bytes> {
    let watchers = watching(ctx);
    for prefix in [keys::STATUS_PREFIX, keys::REMOTE_STATUS_PREFIX] {
        for (key, s) in all::<MirrorImageSiteStatusOnDisk>(ctx, prefix)? {
            if !watchers.contains(&s.origin) {
                remove_key(ctx, &key)?;
            }
        }
    }
    Ok(Bytes::new())
}

fn instance_get(ctx: &mut ClsContext<'_>, inp: Bytes) -> Result<Bytes> {
    let gid: String = input(inp)?;
    let s: MirrorImageSiteStatusOnDisk = get_key(ctx, &keys::status(&gid, ""))?;
    if !watching(ctx).contains(&s.origin) {
        return Err(Errno::ESTALE);
    }
    Ok(s.origin.to_bytes())
}
