//! Bootstrap: make the local non-primary image ready to replay. Replaces upstream's
//! BootstrapRequest (+ PrepareLocalImage / PrepareRemoteImage / CreateImage).
//!
//! ```text
//!  READ_REMOTE (header, journal, newest tag) --(remote not primary)--> Skip(unknown)
//!    |
//!  FIND_LOCAL_IMAGE (by global id) --(local is primary)--> Skip(stopped, "local image is primary")
//!    |  \--(absent)--> CREATE_LOCAL_IMAGE (same name, size, order, features, journal
//!    |                 geometry; tag owned by the remote's mirror uuid) --\
//!    v                                                                    |
//!  REGISTER_JOURNAL_CLIENT (client id = our mirror uuid) <----------------/
//!    |   (already registered: read its meta; disconnected --> Err(Disconnected);
//!    |    meta names another local image, or the image was just created --> SYNCING)
//!    v
//!  Ok(Ready { local image, client meta })   steps are idempotent: a rerun finishes the job
//! ```

use crate::cls::journal as cls_journal;
use crate::cls::{self, ClsError};
use crate::format::Decode;
use crate::format::Encode;
use crate::format::client_data::{
    ClientData, IMAGE_CLIENT_ID, MirrorPeerClientMeta, MirrorPeerState, TagData,
};
use crate::format::journal::{ClientState, header_oid};
use crate::rados::IoCtx;
use crate::rbd::{self, Image, NonPrimarySpec};

use super::{PoolCtx, ReplayError};
use crate::mirror::registry::ReplayState;

/// Why a bootstrap stops when both sides are primary (split-brain).
pub const LOCAL_PRIMARY: &str = "local image is primary";

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
    /// Nothing to replay now; a notification (image update) restarts the bootstrap.
    Skip {
        state: ReplayState,
        description: String,
    },
}

pub async fn bootstrap<I: IoCtx>(
    ctx: &PoolCtx<I>,
    global_id: &str,
    remote_image_id: &str,
) -> Result<Boot<I>, ReplayError> {
    // READ_REMOTE
    let remote = Image::open(ctx.remote_io.clone(), remote_image_id).await?;
    let remote_header = header_oid(remote_image_id);
    let remote_tag = newest_tag(&ctx.remote_io, &remote_header).await?;
    if !remote_tag.is_local() {
        let description = if remote_tag.is_orphan() {
            "remote image demoted"
        } else {
            "remote image is not primary"
        };
        return Ok(Boot::Skip {
            state: ReplayState::Unknown,
            description: description.into(),
        });
    }
    // FIND_LOCAL_IMAGE
    let (local, created) = match cls::mirror::image_get_image_id(&ctx.local_io, global_id).await {
        Ok(id) => {
            let local = Image::open(ctx.local_io.clone(), &id).await?;
            if newest_tag(&ctx.local_io, &header_oid(&id))
                .await?
                .is_local()
            {
                return Ok(Boot::Skip {
                    state: ReplayState::Stopped,
                    description: LOCAL_PRIMARY.into(),
                });
            }
            (local, false)
        }
        Err(e) if e.is_not_found() => {
            // CREATE_LOCAL_IMAGE
            let g = cls_journal::geometry(&ctx.remote_io, &remote_header).await?;
            let (stripe_unit, stripe_count) = if remote.features() & FEATURE_STRIPINGV2 != 0 {
                let h = crate::format::image::oids::header(remote_image_id);
                match cls::image::get_stripe_unit_count(&ctx.remote_io, &h).await? {
                    Some(s) => (s.stripe_unit, s.stripe_count),
                    None => (remote.object_size(), 1),
                }
            } else {
                (remote.object_size(), 1)
            };
            let spec = NonPrimarySpec {
                name: remote.name().to_string(),
                global_image_id: global_id.to_string(),
                size: remote.size(),
                order: remote.order(),
                features: remote.features(),
                stripe_unit,
                stripe_count,
                journal_order: g.order,
                journal_splay_width: g.splay_width,
                primary_mirror_uuid: ctx.remote_uuid.clone(),
                data_pool: None,
            };
            let id = rbd::create_non_primary(&ctx.local_io, &spec).await?;
            tracing::info!(image = %spec.name, local_id = %id, "created local non-primary image");
            (Image::open(ctx.local_io.clone(), &id).await?, true)
        }
        Err(e) => return Err(e.into()),
    };
    let local_tag_class = tag_class(&ctx.local_io, local.id()).await?;
    // REGISTER_JOURNAL_CLIENT
    let fresh = MirrorPeerClientMeta {
        image_id: local.id().to_string(),
        state: MirrorPeerState::Syncing,
        sync_object_count: 0,
        sync_points: Vec::new(),
        snap_seqs: Default::default(),
    };
    let meta = match cls_journal::get_client(&ctx.remote_io, &remote_header, &ctx.local_uuid).await
    {
        Err(e) if e.is_not_found() => {
            let data = ClientData::MirrorPeer(fresh.clone()).to_bytes();
            cls_journal::client_register(&ctx.remote_io, &remote_header, &ctx.local_uuid, data)
                .await?;
            fresh
        }
        Err(e) => return Err(e.into()),
        Ok(client) => {
            if client.state == ClientState::Disconnected {
                return Err(ReplayError::Disconnected);
            }
            match ClientData::from_bytes(client.data) {
                Ok(ClientData::MirrorPeer(meta)) if meta.image_id == local.id() && !created => meta,
                // Registered for another (older) local image, or by another tool: start over.
                _ => {
                    let data = ClientData::MirrorPeer(fresh.clone()).to_bytes();
                    cls_journal::client_update_data(
                        &ctx.remote_io,
                        &remote_header,
                        &ctx.local_uuid,
                        data,
                    )
                    .await?;
                    fresh
                }
            }
        }
    };
    Ok(Boot::Ready(Box::new(Ready {
        local,
        meta,
        local_tag_class,
    })))
}

/// The data of a journal's newest tag: who owns the image now.
pub async fn newest_tag<I: IoCtx>(io: &I, header: &str) -> Result<TagData, ReplayError> {
    let next = cls_journal::get_next_tag_tid(io, header).await?;
    let Some(tid) = next.checked_sub(1) else {
        return Ok(TagData::default());
    };
    let tag = cls_journal::get_tag(io, header, tid).await?;
    TagData::from_bytes(tag.data).map_err(|e| ReplayError::Corrupt {
        position: format!("{header} tag {tid}"),
        reason: e.to_string(),
    })
}

/// The tag class librbd's own client of a journal records.
async fn tag_class<I: IoCtx>(io: &I, image_id: &str) -> Result<u64, ClsError> {
    let client = cls_journal::get_client(io, &header_oid(image_id), IMAGE_CLIENT_ID).await?;
    Ok(match ClientData::from_bytes(client.data) {
        Ok(ClientData::Image { tag_class, .. }) => tag_class,
        _ => 0,
    })
}
