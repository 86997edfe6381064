//! Creating the non-primary replica of a journal-mirrored image the way rbd-mirror's
//! bootstrap has librbd do it (`image::CreateRequest` with a non-primary global id and the
//! primary's mirror uuid; spec §5.7), at the RADOS level. Replaces
//! `rbd_mirror/image_replayer/journal/CreateLocalImageRequest` + librbd's create.
//!
//!  FIND_EXISTING (mirror entry of the global id, else rbd_id.<name>)
//!    |  --(name taken by an image that is not this replica)--> Err(Exists)
//!    v  (otherwise reuse its id, or make a new one)
//!  CREATE_ID_OBJECT (rbd_id.<name>, exclusive; EEXIST with our id = done)
//!    v
//!  ADD_TO_DIRECTORY (rbd_directory; EEXIST with our id = done)
//!    v
//!  CREATE_HEADER (rbd_header.<id>: size, order, features, rbd_data.<id>; with a data
//!    |            pool its id and rbd_data.<pool id>.<id>, as librbd) [+ striping]
//!    v
//!  ATTACH_PARENT (a clone: parent link + overlap, op feature clone-child, the child
//!    |            recorded on the local parent snapshot)
//!    v
//!  CREATE_OBJECT_MAP (object-map feature: all NONEXISTENT)
//!    v
//!  CREATE_JOURNAL (journal.<id> with local geometry; tag 0 in a new class owned by the
//!    |             primary's mirror uuid; image client "")
//!    v
//!  ENABLE_MIRRORING (mirror image entry: enabled, journal mode, same global id; notify
//!                    rbd_mirroring) --> Ok(id)
//!  every step tolerates its own earlier success, so rerunning after a crash at any point
//!  finishes the job with the same id.

use super::RbdError;
use crate::cls::{self, image as cls_image, journal as cls_journal};
use crate::format::Decode;
use crate::format::Encode;
use crate::format::client_data::{ClientData, IMAGE_CLIENT_ID, TagData, TagPredecessor};
use crate::format::image::{
    CreateInput, ParentImageSpec, StripeUnitCount, features, oids, op_features,
};
use crate::format::journal::{TAG_CLASS_NEW, header_oid as journal_oid};
use crate::format::mirror::{MIRRORING_OBJECT, MirrorImage, MirrorImageMode, MirrorImageState};
use crate::format::notify::MirroringNotify;
use crate::rados::{Errno, IoCtx, NOSNAP};

/// What the replica copies from the primary, plus its local journal geometry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonPrimarySpec {
    pub name: String,
    pub global_image_id: String,
    pub size: u64,
    pub order: u8,
    pub features: u64,
    pub stripe_unit: u64,
    pub stripe_count: u64,
    /// Local journal geometry (rbd-mirror uses the local defaults, 24 and 4).
    pub journal_order: u8,
    pub journal_splay_width: u8,
    /// Mirror uuid of the primary's pool: owner of the local journal's first tag.
    pub primary_mirror_uuid: String,
    /// The primary's data pool: the replica uses the local pool of that name if there is
    /// one (as rbd-mirror does), else keeps its data in the image's own pool.
    pub data_pool: Option<String>,
    /// For a clone: the local parent snapshot and the overlap to start with.
    pub parent: Option<CloneOf>,
}

/// The local parent snapshot of a replica that is a clone. Replicas are always clone v2
/// (the child recorded on the parent snapshot, no protection needed), whatever format
/// the primary's clone has: rbd-mirror too clones in the local default format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloneOf {
    pub parent: ParentImageSpec,
    pub overlap: u64,
}

/// Feature bits librbd never lets a create set (internal ones).
const INTERNAL: u64 = features::OPERATIONS
    | features::MIGRATING
    | features::NON_PRIMARY
    | features::DIRTY_CACHE
    | features::DATA_POOL;

/// Creates (or finishes creating) the non-primary image; returns its local image id.
pub async fn create_non_primary<I: IoCtx>(
    io: &I,
    spec: &NonPrimarySpec,
) -> Result<String, RbdError> {
    let features = validate(spec)?;
    let id = claim_name(io, spec).await?;
    match cls::dir::add_image(io, &spec.name, &id).await {
        Err(e) if e.is(Errno::EEXIST) => {
            expect_id(cls::dir::get_id(io, &spec.name).await?, &id, &spec.name)?
        }
        other => other?,
    }

    let header = oids::header(&id);
    let data_pool = local_data_pool(io, spec.data_pool.as_deref()).await?;
    let (features, object_prefix, data_pool_id) = match data_pool {
        Some(pool) => (
            features | features::DATA_POOL,
            format!("rbd_data.{}.{id}", io.pool_id()),
            pool,
        ),
        None => (features, format!("rbd_data.{id}"), -1),
    };
    let input = CreateInput {
        size: spec.size,
        order: spec.order,
        features,
        object_prefix,
        data_pool_id,
    };
    match cls_image::create(io, &header, &input).await {
        Err(e) if e.is(Errno::EEXIST) => {}
        other => other?,
    }
    if features & features::STRIPINGV2 != 0 {
        let s = StripeUnitCount {
            stripe_unit: 1u64 << spec.order,
            stripe_count: 1,
        };
        cls_image::set_stripe_unit_count(io, &header, &s).await?;
    }
    if let Some(clone) = &spec.parent {
        attach_parent(io, &id, &header, clone).await?;
    }
    if features & features::OBJECT_MAP != 0 {
        let count = super::layout::object_count(spec.order, spec.size);
        cls_image::object_map_resize(io, &oids::object_map(&id, None), count, 0).await?;
    }

    create_journal(io, &id, spec).await?;

    let image = MirrorImage {
        global_image_id: spec.global_image_id.clone(),
        state: MirrorImageState::Enabled,
        mode: MirrorImageMode::Journal,
    };
    cls::mirror::image_set(io, &id, &image).await?;
    let notify = MirroringNotify::ImageUpdated {
        state: MirrorImageState::Enabled,
        image_id: id.clone(),
        global_image_id: spec.global_image_id.clone(),
    };
    if let Err(e) = io
        .notify(
            MIRRORING_OBJECT,
            notify.to_bytes(),
            super::image::NOTIFY_TIMEOUT,
        )
        .await
    {
        tracing::warn!(image = %id, error = %e, "rbd_mirroring notify failed");
    }
    Ok(id)
}

/// The id of the local pool named like the primary's data pool; `None` when there is no
/// such pool (or it is the image's own).
async fn local_data_pool<I: IoCtx>(io: &I, name: Option<&str>) -> Result<Option<i64>, RbdError> {
    let Some(name) = name else {
        return Ok(None);
    };
    match io.pool_by_name(name).await {
        Ok(pool) if pool.pool_id() != io.pool_id() => Ok(Some(pool.pool_id())),
        Ok(_) => Ok(None),
        Err(e) if e.is_not_found() => {
            tracing::info!(
                pool = name,
                "no local pool like the primary's data pool: data stays in the image's pool"
            );
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The replica's id, with its name taken in `rbd_id.<name>`. Instances bootstrapping the
/// same image at once (daemons started together, before they see each other) race here:
/// the loser adopts the winner's id, and both steps after this tolerate each other.
async fn claim_name<I: IoCtx>(io: &I, spec: &NonPrimarySpec) -> Result<String, RbdError> {
    let id = find_existing(io, spec).await?.unwrap_or_else(new_image_id);
    match cls::dir::create_id_object(io, &spec.name, &id).await {
        Err(e) if e.is(Errno::EEXIST) => {
            let found = cls::dir::id_of(io, &spec.name).await?;
            // Taken meanwhile: fine only by another creation of this replica.
            if found != id && find_existing(io, spec).await?.as_ref() != Some(&found) {
                return Err(name_taken(&spec.name, &found));
            }
            Ok(found)
        }
        other => other.map(|()| id).map_err(RbdError::from),
    }
}

/// Links the new header to its parent snapshot and records the child there (librbd's
/// AttachParent + AttachChild for clone v2); each step accepts its own earlier success.
async fn attach_parent<I: IoCtx>(
    io: &I,
    id: &str,
    header: &str,
    clone: &CloneOf,
) -> Result<(), RbdError> {
    let p = &clone.parent;
    match cls_image::parent_attach(io, header, p, clone.overlap).await {
        Err(e) if e.is(Errno::EEXIST) => {
            let linked = cls_image::parent_get(io, header).await?;
            if linked.as_ref().is_none_or(|l| l.spec() != *p) {
                return Err(RbdError::Exists(format!(
                    "image {id} with another parent ({linked:?})"
                )));
            }
        }
        other => other?,
    }
    cls_image::op_features_set(
        io,
        header,
        op_features::CLONE_CHILD,
        op_features::CLONE_CHILD,
    )
    .await?;
    let child = super::clone::child_spec(io, id);
    let parent_io = super::clone::pool_in(io, p.pool_id, &p.pool_namespace).await?;
    match cls_image::child_attach(&parent_io, &oids::header(&p.image_id), p.snap_id, &child).await {
        Err(e) if e.is(Errno::EEXIST) => Ok(()),
        other => other.map_err(RbdError::from),
    }
}

/// The features the replica gets, after refusing what this module cannot maintain.
fn validate(spec: &NonPrimarySpec) -> Result<u64, RbdError> {
    if !(12..=25).contains(&spec.order) {
        return Err(RbdError::Invalid(format!("object order {}", spec.order)));
    }
    let features = spec.features & !INTERNAL;
    if features & features::JOURNALING == 0 || features & features::EXCLUSIVE_LOCK == 0 {
        return Err(RbdError::Invalid(
            "a journal-mirrored image needs exclusive-lock and journaling".into(),
        ));
    }
    let default_striping =
        (spec.stripe_unit == 0 || spec.stripe_unit == 1u64 << spec.order) && spec.stripe_count <= 1;
    if !default_striping {
        return Err(RbdError::Unsupported(format!(
            "striping (unit {}, count {})",
            spec.stripe_unit, spec.stripe_count
        )));
    }
    Ok(features)
}

/// The id of an earlier (maybe unfinished) creation of this replica, if any.
async fn find_existing<I: IoCtx>(
    io: &I,
    spec: &NonPrimarySpec,
) -> Result<Option<String>, RbdError> {
    match cls::mirror::image_get_image_id(io, &spec.global_image_id).await {
        Ok(id) => return Ok(Some(id)),
        Err(e) if !e.is_not_found() => return Err(e.into()),
        Err(_) => {}
    }
    let id = match cls::dir::id_of(io, &spec.name).await {
        Ok(id) => id,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let taken = || {
        RbdError::Exists(format!(
            "image {} (id {id}) is not a replica of {}",
            spec.name, spec.global_image_id
        ))
    };
    match cls::mirror::image_get(io, &id).await {
        // Entered meanwhile by a concurrent creation of this replica.
        Ok(m) if m.global_image_id == spec.global_image_id => return Ok(Some(id)),
        Ok(_) => return Err(taken()), // mirrored under another global id
        Err(e) if !e.is_not_found() => return Err(e.into()),
        Err(_) => {}
    }
    // No mirror entry yet: ours only if its journal was made for this primary. Without a
    // journal, a creation that stopped in between (ours always journal), or an unmirrored
    // user image of the same name, which must never be taken over.
    match cls_journal::get_tag(io, &journal_oid(&id), 0).await {
        Ok(tag) => match TagData::from_bytes(tag.data) {
            Ok(t) if t.mirror_uuid == spec.primary_mirror_uuid => Ok(Some(id)),
            _ => Err(taken()),
        },
        Err(e) if e.is_not_found() => {
            match cls_image::get_features(io, &oids::header(&id), NOSNAP).await {
                Ok(f) if f.features & features::JOURNALING == 0 => Err(taken()),
                Err(e) if !e.is_not_found() => Err(e.into()),
                _ => Ok(Some(id)),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Journal header, tag 0 owned by the primary's mirror uuid, and the image client.
async fn create_journal<I: IoCtx>(io: &I, id: &str, spec: &NonPrimarySpec) -> Result<(), RbdError> {
    let oid = journal_oid(id);
    let geometry = cls_journal::Geometry {
        order: spec.journal_order,
        splay_width: spec.journal_splay_width,
        pool_id: -1,
    };
    match cls_journal::create(io, &oid, geometry).await {
        Err(e) if e.is(Errno::EEXIST) => {}
        other => other?,
    }
    if cls_journal::get_next_tag_tid(io, &oid).await? == 0 {
        let tag = TagData {
            mirror_uuid: spec.primary_mirror_uuid.clone(),
            predecessor: TagPredecessor::default(),
        };
        match cls_journal::tag_create(io, &oid, 0, TAG_CLASS_NEW, tag.to_bytes()).await {
            Err(e) if e.is(Errno::ESTALE) => {} // created meanwhile
            other => other?,
        }
    }
    let client = ClientData::Image {
        tag_class: 0,
        resync_requested: false,
    };
    match cls_journal::client_register(io, &oid, IMAGE_CLIENT_ID, client.to_bytes()).await {
        Err(e) if e.is(Errno::EEXIST) => Ok(()),
        other => other.map_err(RbdError::from),
    }
}

fn expect_id(found: String, id: &str, name: &str) -> Result<(), RbdError> {
    if found == id {
        Ok(())
    } else {
        Err(name_taken(name, &found))
    }
}

fn name_taken(name: &str, found: &str) -> RbdError {
    RbdError::Exists(format!("image {name} (id {found})"))
}

/// A fresh image id: 12 lowercase hex digits, like librbd's (short, so data object
/// names stay within Ceph's prefix limits).
fn new_image_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
