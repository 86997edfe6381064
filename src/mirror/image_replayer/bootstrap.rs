//! Bootstrap: make the local non-primary image ready to replay, or say why not. Replaces
//! upstream's BootstrapRequest (+ PrepareLocalImage / PrepareRemoteImage / CreateImage /
//! PrepareReplay).
//!
//! ```text
//!  FIND_LOCAL_IMAGE (by global id) + READ_REMOTE (header, newest tag)
//!    |--(local is primary)--> Skip(stopped, "local image is primary")
//!    |--(remote not primary, local not linked to it)--> Skip(unknown)
//!    |   (linked: the remote's demotion is still to be replayed, so go on)
//!    |--(resync requested on the local image)--> REMOVE_LOCAL --\
//!    |--(absent)--------------------------------------------------+--> CREATE_LOCAL_IMAGE
//!    v                                                             (tag owned by the remote)
//!  REGISTER_JOURNAL_CLIENT (client id = our mirror uuid)
//!    |   disconnected --> Err(Disconnected), or with resync_after_disconnect (or no
//!    |                    local copy left): REMOVE_LOCAL, reconnect, CREATE (full sync)
//!    |   meta names another local image, or the image was just created --> SYNCING
//!    v
//!  LINK_TAGS (local image not linked to the remote's epoch: failover / failback)
//!    |   our demotion, the remote's matching tag, then its promotion chained to it
//!    |     --> replay from there (from the journal's start for a new client)
//!    |   anything else --> Err(SplitBrain)
//!    v
//!  Ok(Ready { local image, client meta })   steps are idempotent: a rerun finishes the job
//! ```

use crate::cls::journal as cls_journal;
use crate::cls::{self, ClsError};
use crate::format::Decode;
use crate::format::Encode;
use crate::format::client_data::{
    ClientData, IMAGE_CLIENT_ID, LOCAL_MIRROR_UUID, MirrorPeerClientMeta, MirrorPeerState,
    ORPHAN_MIRROR_UUID, TagData,
};
use crate::format::journal::{ClientState, header_oid};
use crate::rados::{Errno, IoCtx};
use crate::rbd::{self, Image, NonPrimarySpec};

use super::{PoolCtx, ReplayError};
use crate::mirror::registry::ReplayState;

/// Why a bootstrap stops when the local image is primary.
pub const LOCAL_PRIMARY: &str = "local image is primary";

/// Image-meta key that overrides `resync_after_disconnect` for one image, as librbd's
/// `conf_<option>` keys do.
const RESYNC_AFTER_DISCONNECT_KEY: &str = "conf_rbd_mirroring_resync_after_disconnect";

/// librbd's "fancy striping" feature bit.
const FEATURE_STRIPINGV2: u64 = 1 << 1;

pub struct Ready<I: IoCtx> {
    pub local: Image<I>,
    pub meta: MirrorPeerClientMeta,
    /// Tag class of the local journal.
    pub local_tag_class: u64,
}

pub enum Boot<I: IoCtx> {
    Ready(Box<Ready<I>>),
    /// Nothing to replay now; a change of either image's owner restarts the bootstrap.
    Skip {
        state: ReplayState,
        description: String,
        /// Both sides primary: writes on both that cannot be reconciled.
        both_primary: bool,
    },
}

/// The local image as found, before anything is changed.
struct Local<I: IoCtx> {
    image: Image<I>,
    tag: TagData,
    tag_class: u64,
    resync_requested: bool,
}

pub async fn bootstrap<I: IoCtx>(
    ctx: &PoolCtx<I>,
    global_id: &str,
    remote_image_id: &str,
    resync_after_disconnect: bool,
) -> Result<Boot<I>, ReplayError> {
    let remote_header = header_oid(remote_image_id);
    let mut local = find_local(ctx, global_id).await?;
    if let Some(l) = local.as_ref().filter(|l| l.tag.is_local()) {
        // Primary here: say so even while the remote cluster is unreachable.
        let remote = async {
            register_early(ctx, &remote_header, l).await?;
            newest_tag(&ctx.remote_io, &remote_header).await
        };
        let both_primary = matches!(
            tokio::time::timeout(super::REMOTE_GRACE, remote).await,
            Ok(Ok(t)) if t.is_local()
        );
        return Ok(Boot::Skip {
            state: ReplayState::Stopped,
            description: LOCAL_PRIMARY.into(),
            both_primary,
        });
    }
    let remote_tag = newest_tag(&ctx.remote_io, &remote_header).await?;
    let (client, fresh) = match &local {
        Some(l) => register_early(ctx, &remote_header, l).await?,
        None => (get_client(ctx, &remote_header).await?, false),
    };
    if let Some(l) = &local {
        // Linked to the remote's epoch: replay on, even past a demotion there.
        if !remote_tag.is_local() && l.tag.mirror_uuid != ctx.remote_uuid {
            return Ok(not_primary(&remote_tag));
        }
        if l.resync_requested {
            tracing::info!(pool = %ctx.pool, %global_id, "resync requested: removing the local copy");
            rbd::remove_for_resync(&ctx.local_io, l.image.id()).await?;
            local = None;
        }
    }
    if let Some(c) = &client
        && c.state == ClientState::Disconnected
    {
        // With no local copy (a resync removed it, maybe before a crash) nothing is at
        // stake: reconnect and copy.
        let wanted = local.as_ref().is_none_or(|l| {
            meta_flag(&l.image, RESYNC_AFTER_DISCONNECT_KEY).unwrap_or(resync_after_disconnect)
        });
        if !wanted {
            return Err(ReplayError::Disconnected);
        }
        tracing::info!(pool = %ctx.pool, %global_id, "disconnected: resyncing the local copy");
        if let Some(l) = local.take() {
            rbd::remove_for_resync(&ctx.local_io, l.image.id()).await?;
        }
        cls_journal::client_update_state(
            &ctx.remote_io,
            &remote_header,
            &ctx.local_uuid,
            ClientState::Connected,
        )
        .await?;
    }
    let exists = client.is_some();
    let local = match local {
        Some(l) => l,
        None if !remote_tag.is_local() => return Ok(not_primary(&remote_tag)),
        None => {
            let image = create_local(ctx, global_id, remote_image_id).await?;
            let tag_class = image_client(&ctx.local_io, image.id()).await?.0;
            let meta = syncing(image.id());
            register(ctx, &remote_header, exists, &meta).await?;
            return Ok(ready(image, meta, tag_class));
        }
    };
    let linked = local.tag.mirror_uuid == ctx.remote_uuid;
    // Where our client starts, if it was registered just now: empty is the journal's
    // beginning (nothing was ever committed, so nothing was trimmed).
    let from_start = client
        .as_ref()
        .is_some_and(|c| c.commit_position.object_positions.is_empty());
    let registered = match client.map(|c| ClientData::from_bytes(c.data)) {
        Some(Ok(ClientData::MirrorPeer(meta))) if meta.image_id == local.image.id() => Some(meta),
        _ => None,
    };
    let mut meta = match registered {
        Some(meta) => meta,
        // A linked copy with no record of how far it got: copy it again.
        None => {
            let meta = syncing(local.image.id());
            register(ctx, &remote_header, exists, &meta).await?;
            meta
        }
    };
    if !linked && (meta.state == MirrorPeerState::Replaying || fresh) {
        // LINK_TAGS
        let remote_class = image_client(&ctx.remote_io, remote_image_id).await?.0;
        let tags = cls_journal::tag_list(
            &ctx.remote_io,
            &remote_header,
            0,
            &ctx.local_uuid,
            Some(remote_class),
        )
        .await?;
        let mut decoded = Vec::with_capacity(tags.len());
        for t in tags {
            let data = decode_tag(t.data, format!("{remote_header} tag {}", t.tid))?;
            decoded.push((t.tid, data));
        }
        if !chained_promotion(&local.tag, &decoded, &ctx.local_uuid, &ctx.remote_uuid) {
            tracing::warn!(pool = %ctx.pool, %global_id, local_tag = ?local.tag,
                remote_tags = ?decoded, "split-brain: the remote's epochs do not continue ours");
            return Err(ReplayError::SplitBrain);
        }
        // Registered only now (the daemon was down during the failover): the new epoch
        // replays only if the journal still holds it from its beginning; else the copy is
        // synced, as registered.
        if fresh
            && from_start
            && cls_journal::get_minimum_set(&ctx.remote_io, &remote_header).await? == 0
        {
            meta.state = MirrorPeerState::Replaying;
            register(ctx, &remote_header, true, &meta).await?;
        }
        tracing::info!(pool = %ctx.pool, %global_id, state = ?meta.state,
            "remote promotion follows our demotion");
    }
    Ok(ready(local.image, meta, local.tag_class))
}

/// REGISTER early, whoever is primary, as upstream does: from then on the remote keeps
/// its journal for us, so after a failover its new epoch replays from its first entry.
/// (Ceph registers a client at the oldest position of the others: registering only at the
/// failover could start us after entries the new primary already wrote.) Returns our
/// client and whether it was registered just now.
async fn register_early<I: IoCtx>(
    ctx: &PoolCtx<I>,
    header: &str,
    local: &Local<I>,
) -> Result<(Option<crate::format::journal::Client>, bool), ReplayError> {
    if let Some(c) = get_client(ctx, header).await? {
        return Ok((Some(c), false));
    }
    let mut meta = syncing(local.image.id());
    // Recorded as syncing until bootstrap has seen that the journal holds everything to
    // replay: recorded as replaying, a crash (or a hand-over) before bootstrap could correct
    // it would have the next start replay from wherever Ceph placed the client, skipping
    // what the journal no longer holds. Only a primary here registers as replaying: the
    // remote's next epoch, if it is promoted, starts after this.
    if local.tag.is_local() {
        meta.state = MirrorPeerState::Replaying;
    }
    register(ctx, header, false, &meta).await?;
    Ok((get_client(ctx, header).await?, true))
}

async fn get_client<I: IoCtx>(
    ctx: &PoolCtx<I>,
    header: &str,
) -> Result<Option<crate::format::journal::Client>, ClsError> {
    match cls_journal::get_client(&ctx.remote_io, header, &ctx.local_uuid).await {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn ready<I: IoCtx>(local: Image<I>, meta: MirrorPeerClientMeta, local_tag_class: u64) -> Boot<I> {
    Boot::Ready(Box::new(Ready {
        local,
        meta,
        local_tag_class,
    }))
}

fn not_primary<I: IoCtx>(remote_tag: &TagData) -> Boot<I> {
    let description = if remote_tag.is_orphan() {
        "remote image demoted"
    } else {
        "remote image is not primary"
    };
    Boot::Skip {
        state: ReplayState::Unknown,
        description: description.into(),
        both_primary: false,
    }
}

fn syncing(local_image_id: &str) -> MirrorPeerClientMeta {
    MirrorPeerClientMeta {
        image_id: local_image_id.to_string(),
        state: MirrorPeerState::Syncing,
        sync_object_count: 0,
        sync_points: Vec::new(),
        snap_seqs: Default::default(),
    }
}

/// Registers our client on the remote journal with `meta`, or replaces its data if it is
/// registered. A registration that finds the client there already leaves it be: another
/// instance bootstrapping the image at the same moment (daemons started together, before
/// they see each other) registered the same record, and may be syncing under it.
async fn register<I: IoCtx>(
    ctx: &PoolCtx<I>,
    header: &str,
    exists: bool,
    meta: &MirrorPeerClientMeta,
) -> Result<(), ClsError> {
    let data = ClientData::MirrorPeer(meta.clone()).to_bytes();
    if exists {
        cls_journal::client_update_data(&ctx.remote_io, header, &ctx.local_uuid, data).await
    } else {
        match cls_journal::client_register(&ctx.remote_io, header, &ctx.local_uuid, data).await {
            Err(e) if e.is(Errno::EEXIST) => Ok(()),
            other => other,
        }
    }
}

async fn find_local<I: IoCtx>(
    ctx: &PoolCtx<I>,
    global_id: &str,
) -> Result<Option<Local<I>>, ReplayError> {
    let id = match cls::mirror::image_get_image_id(&ctx.local_io, global_id).await {
        Ok(id) => id,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let image = Image::open(ctx.local_io.clone(), &id).await?;
    let tag = newest_tag(&ctx.local_io, &header_oid(&id)).await?;
    let (tag_class, resync_requested) = image_client(&ctx.local_io, &id).await?;
    Ok(Some(Local {
        image,
        tag,
        tag_class,
        resync_requested,
    }))
}

/// CREATE_LOCAL_IMAGE: same name, size, order, features, striping and journal geometry as
/// the primary; its first tag names the remote as owner.
async fn create_local<I: IoCtx>(
    ctx: &PoolCtx<I>,
    global_id: &str,
    remote_image_id: &str,
) -> Result<Image<I>, ReplayError> {
    let mut spec =
        replica_spec(&ctx.remote_io, remote_image_id, global_id, &ctx.remote_uuid).await?;
    spec.parent = super::parent::local_parent(ctx, remote_image_id).await?;
    let id = rbd::create_non_primary(&ctx.local_io, &spec).await?;
    tracing::info!(image = %spec.name, local_id = %id, "created local non-primary image");
    Ok(Image::open(ctx.local_io.clone(), &id).await?)
}

/// The replica of the primary `remote_image_id` as it is now: its name, size, order,
/// features, striping and journal geometry; its first tag names `remote_uuid` as owner.
/// A clone's parent is left to the caller (it needs the local cluster).
pub async fn replica_spec<R: IoCtx>(
    remote_io: &R,
    remote_image_id: &str,
    global_id: &str,
    remote_uuid: &str,
) -> Result<NonPrimarySpec, ReplayError> {
    let remote = Image::open(remote_io.clone(), remote_image_id).await?;
    let g = cls_journal::geometry(remote_io, &header_oid(remote_image_id)).await?;
    let (stripe_unit, stripe_count) = if remote.features() & FEATURE_STRIPINGV2 != 0 {
        let h = crate::format::image::oids::header(remote_image_id);
        match cls::image::get_stripe_unit_count(remote_io, &h).await? {
            Some(s) => (s.stripe_unit, s.stripe_count),
            None => (remote.object_size(), 1),
        }
    } else {
        (remote.object_size(), 1)
    };
    Ok(NonPrimarySpec {
        name: remote.name().to_string(),
        global_image_id: global_id.to_string(),
        size: remote.size(),
        order: remote.order(),
        features: remote.features(),
        stripe_unit,
        stripe_count,
        journal_order: g.order,
        journal_splay_width: g.splay_width,
        primary_mirror_uuid: remote_uuid.to_string(),
        data_pool: remote.data_pool().map(str::to_string),
        parent: None,
    })
}

/// Whether the remote's tags continue the local image's history: the local image was
/// demoted (its newest tag is an orphan), the remote holds the matching demotion (ours,
/// mirrored there, or its own that we replayed) and then a promotion chained to it. A
/// forced promotion links to nothing, so it (or anything else) is a split brain.
pub fn chained_promotion(
    local: &TagData,
    remote_tags: &[(u64, TagData)],
    local_uuid: &str,
    remote_uuid: &str,
) -> bool {
    if !local.is_orphan() || !local.predecessor.commit_valid {
        return false;
    }
    let ours = &local.predecessor;
    let mut demotion = None;
    for (tid, tag) in remote_tags {
        // Epochs we replayed before our demotion cannot hold the match.
        if ours.mirror_uuid == remote_uuid && ours.tag_tid > *tid {
            continue;
        }
        let pred = &tag.predecessor;
        if tag.is_orphan() && pred.commit_valid && pred.tag_tid == ours.tag_tid {
            let our_demotion =
                pred.mirror_uuid == local_uuid && ours.mirror_uuid == LOCAL_MIRROR_UUID;
            let their_demotion =
                pred.mirror_uuid == LOCAL_MIRROR_UUID && ours.mirror_uuid == remote_uuid;
            if our_demotion || their_demotion {
                demotion = Some(*tid);
                continue;
            }
        }
        if tag.is_local()
            && pred.commit_valid
            && pred.mirror_uuid == ORPHAN_MIRROR_UUID
            && Some(pred.tag_tid) == demotion
        {
            return true;
        }
        // A promotion must directly follow the demotion.
        demotion = None;
    }
    false
}

/// Reads an image-meta boolean the way Ceph parses config booleans.
fn meta_flag<I: IoCtx>(image: &Image<I>, key: &str) -> Option<bool> {
    crate::config::parse_flag(std::str::from_utf8(image.metadata().get(key)?).ok()?)
}

/// The data of a journal's newest tag: who owns the image now.
pub async fn newest_tag<I: IoCtx>(io: &I, header: &str) -> Result<TagData, ReplayError> {
    let next = cls_journal::get_next_tag_tid(io, header).await?;
    let Some(tid) = next.checked_sub(1) else {
        return Ok(TagData::default());
    };
    let tag = cls_journal::get_tag(io, header, tid).await?;
    decode_tag(tag.data, format!("{header} tag {tid}"))
}

/// A tag's data; undecodable bytes fail the image, naming where they are.
pub(super) fn decode_tag(data: bytes::Bytes, position: String) -> Result<TagData, ReplayError> {
    TagData::from_bytes(data).map_err(|e| ReplayError::Corrupt {
        position,
        reason: e.to_string(),
    })
}

/// The tag class librbd's own client of a journal records, and whether a resync was
/// requested on it (`rbd mirror image resync`).
pub async fn image_client<I: IoCtx>(io: &I, image_id: &str) -> Result<(u64, bool), ClsError> {
    let client = cls_journal::get_client(io, &header_oid(image_id), IMAGE_CLIENT_ID).await?;
    Ok(match ClientData::from_bytes(client.data) {
        Ok(ClientData::Image {
            tag_class,
            resync_requested,
        }) => (tag_class, resync_requested),
        _ => (0, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::client_data::test_tag as tag;

    const US: &str = "uuid-a";
    const THEM: &str = "uuid-b";

    /// We (site-a) were primary in our tag 3 and demoted: our newest tag is an orphan
    /// whose predecessor is our own epoch 3.
    fn our_demotion() -> TagData {
        tag(ORPHAN_MIRROR_UUID, LOCAL_MIRROR_UUID, 3)
    }

    #[test]
    fn planned_failover_links() {
        // Site-b mirrored our epochs (owner: us), then our demotion (translated), then
        // promoted itself in order: its promotion names the orphan tag.
        let remote = [
            (0, tag(US, "", 0)),
            (1, tag(ORPHAN_MIRROR_UUID, US, 3)),
            (2, tag(LOCAL_MIRROR_UUID, ORPHAN_MIRROR_UUID, 1)),
        ];
        assert!(chained_promotion(&our_demotion(), &remote, US, THEM));
    }

    #[test]
    fn forced_promotion_is_split_brain() {
        // Forced: the promotion's predecessor is its own last epoch, not an orphan.
        let remote = [
            (0, tag(US, "", 0)),
            (1, tag(LOCAL_MIRROR_UUID, LOCAL_MIRROR_UUID, 0)),
        ];
        assert!(!chained_promotion(&our_demotion(), &remote, US, THEM));
        // A demotion of another epoch of ours does not match either.
        let remote = [
            (1, tag(ORPHAN_MIRROR_UUID, US, 2)),
            (2, tag(LOCAL_MIRROR_UUID, ORPHAN_MIRROR_UUID, 1)),
        ];
        assert!(!chained_promotion(&our_demotion(), &remote, US, THEM));
    }

    #[test]
    fn promotion_must_follow_the_demotion_directly() {
        let remote = [
            (1, tag(ORPHAN_MIRROR_UUID, US, 3)),
            (2, tag(US, "", 0)),
            (3, tag(LOCAL_MIRROR_UUID, ORPHAN_MIRROR_UUID, 1)),
        ];
        assert!(!chained_promotion(&our_demotion(), &remote, US, THEM));
    }

    #[test]
    fn remote_demoted_then_promoted_itself_links() {
        // We replayed their demotion of their epoch 5 (translated to their uuid); they
        // promoted again in order.
        let ours = tag(ORPHAN_MIRROR_UUID, THEM, 5);
        let remote = [
            (5, tag(LOCAL_MIRROR_UUID, "", 0)),
            (6, tag(ORPHAN_MIRROR_UUID, LOCAL_MIRROR_UUID, 5)),
            (7, tag(LOCAL_MIRROR_UUID, ORPHAN_MIRROR_UUID, 6)),
        ];
        assert!(chained_promotion(&ours, &remote, US, THEM));
    }

    #[test]
    fn a_never_demoted_copy_does_not_link() {
        let remote = [(0, tag(LOCAL_MIRROR_UUID, ORPHAN_MIRROR_UUID, 0))];
        assert!(!chained_promotion(&tag(US, "", 0), &remote, US, THEM));
        assert!(!chained_promotion(&TagData::default(), &remote, US, THEM));
    }
}
