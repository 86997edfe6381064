//! An open image: its identity and a cached copy of its header (size, order, features,
//! flags, snapshots, snap context, metadata), the state the data path and the metadata
//! operations work from. Replaces what librbd's `ImageCtx` holds and `image::RefreshRequest`
//! reads, for a replica that only rbd-relay writes.
//!
//!  OPEN (by id, or by name through `rbd_id.<name>`)
//!    |  read header: size/order, features, flags, object prefix, data pool, striping,
//!    |  snap context, snapshots, metadata; refuse fancy striping and clones
//!    v
//!  READY --acquire_lock--> LOCKED (writes allowed) --release_lock--> READY
//!    ^  \--refresh (after our own metadata op, or when told the header moved)--/
//!
//! `&self` methods may run concurrently (the data path); `&mut self` ones (refresh, lock,
//! metadata ops) are exclusive, so the cached header never changes under an I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OnceCell, watch};

use super::RbdError;
use super::layout;
use super::lock::{ExclusiveLock, LockState, Shared};
use super::object_map::HeadMap;
use crate::cls::{self, image as cls_image};
use crate::format::image::{ParentInfo, SnapshotInfo, features, oids};
use crate::format::notify::HeaderNotify;
use crate::format::{Decode, Encode};
use crate::rados::{IoCtx, RadosResult, SnapContext};

/// librbd notifies image headers with this timeout.
pub(super) const NOTIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The pool an image's data lives in, given its header's `data_pool_id` (-1: none).
pub(super) async fn data_ioctx<I: IoCtx>(io: &I, data_pool_id: i64) -> RadosResult<I> {
    if data_pool_id < 0 || data_pool_id == io.pool_id() {
        return Ok(io.clone());
    }
    io.pool_by_id(data_pool_id).await
}

/// The header as last read.
#[derive(Clone, Debug, Default)]
pub(super) struct Header {
    pub size: u64,
    pub order: u8,
    pub features: u64,
    pub flags: u64,
    pub object_prefix: String,
    pub snapc: SnapContext,
    pub snapshots: Vec<SnapshotInfo>,
    pub metadata: BTreeMap<String, Bytes>,
    /// A clone's link to its parent snapshot.
    pub parent: Option<ParentInfo>,
}

pub struct Image<I: IoCtx> {
    pub(super) io: I,
    /// Where the data objects live, and the pool that allocates snapshot ids: the image's
    /// data pool (`--data-pool`, feature `data-pool`) or else `io`.
    pub(super) data_io: I,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) header_oid: String,
    pub(super) header: Header,
    pub(super) lock: ExclusiveLock,
    /// State shared with the header watch (lock state, stale-header flag).
    pub(super) shared: Arc<Shared>,
    /// HEAD's object map, loaded while the lock is held and the feature is on.
    pub(super) object_map: HeadMap,
    /// A clone's parent, opened on first use (copy-up, reads through it).
    pub(super) parent_image: OnceCell<Box<Image<I>>>,
}

impl<I: IoCtx> Image<I> {
    /// Opens an image by id; `NotFound` when it has no header.
    pub async fn open(io: I, image_id: &str) -> Result<Self, RbdError> {
        let name = match cls::dir::get_name(&io, image_id).await {
            Ok(name) => name,
            Err(e) if e.is_not_found() => String::new(),
            Err(e) => return Err(e.into()),
        };
        let mut image = Image {
            header_oid: oids::header(image_id),
            id: image_id.into(),
            name,
            header: Header::default(),
            lock: ExclusiveLock::default(),
            shared: Arc::new(Shared::default()),
            object_map: HeadMap::default(),
            parent_image: OnceCell::new(),
            data_io: io.clone(),
            io,
        };
        image.refresh().await?;
        Ok(image)
    }

    /// Opens an image by name through `rbd_id.<name>`.
    pub async fn open_by_name(io: I, name: &str) -> Result<Self, RbdError> {
        let id = match cls::dir::id_of(&io, name).await {
            Ok(id) => id,
            Err(e) if e.is_not_found() => return Err(RbdError::NotFound(name.into())),
            Err(e) => return Err(e.into()),
        };
        Image::open(io, &id).await
    }

    /// Re-reads the header. Clears the stale flag the header watch raises.
    pub async fn refresh(&mut self) -> Result<(), RbdError> {
        let (io, oid) = (&self.io, self.header_oid.as_str());
        let not_found = |e: cls::ClsError| match e.is_not_found() {
            true => RbdError::NotFound(self.id.clone()),
            false => e.into(),
        };
        // One round trip for the head, one for the snapshots, more only for the features
        // that need them.
        let head = cls_image::head_state(io, oid).await.map_err(not_found)?;
        let feats = head.features;
        let data_pool = match feats & features::DATA_POOL {
            0 => io.pool_id(),
            _ => cls_image::get_data_pool(io, oid).await?,
        };
        if data_pool != self.data_io.pool_id() {
            self.data_io = data_ioctx(io, data_pool).await?;
        }
        if feats & features::STRIPINGV2 != 0
            && let Some(s) = cls_image::get_stripe_unit_count(io, oid).await?
            && (s.stripe_count > 1 || s.stripe_unit != 1u64 << head.size.order)
        {
            return Err(RbdError::Unsupported(format!(
                "striping (unit {}, count {})",
                s.stripe_unit, s.stripe_count
            )));
        }
        let parent = match head.parent {
            Some(raw) => Some(
                ParentInfo::from_bytes(raw).map_err(|source| RbdError::Decode {
                    what: format!("{oid} parent"),
                    source,
                })?,
            ),
            None => None,
        };
        let keep = match (&parent, &self.header.parent) {
            (Some(a), Some(b)) => a.spec() == b.spec(),
            _ => false,
        };
        if !keep {
            self.parent_image = OnceCell::new();
        }
        let mut snapshots = cls_image::snapshots(io, oid, &head.snapc).await?;
        snapshots.sort_by_key(|s| s.id);
        self.header = Header {
            size: head.size.size,
            order: head.size.order,
            features: feats,
            flags: head.flags,
            object_prefix: head.object_prefix,
            snapc: SnapContext {
                seq: head.snapc.seq,
                snaps: head.snapc.snaps,
            },
            snapshots,
            metadata: head.metadata,
            parent,
        };
        self.shared.refreshed(self.header.snapc.seq);
        Ok(())
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn size(&self) -> u64 {
        self.header.size
    }
    pub fn order(&self) -> u8 {
        self.header.order
    }
    pub fn object_size(&self) -> u64 {
        1u64 << self.header.order
    }
    pub fn features(&self) -> u64 {
        self.header.features
    }
    pub fn flags(&self) -> u64 {
        self.header.flags
    }
    pub fn object_prefix(&self) -> &str {
        &self.header.object_prefix
    }
    pub fn snap_context(&self) -> &SnapContext {
        &self.header.snapc
    }
    /// Snapshots, oldest first.
    pub fn snapshots(&self) -> &[SnapshotInfo] {
        &self.header.snapshots
    }
    pub fn metadata(&self) -> &BTreeMap<String, Bytes> {
        &self.header.metadata
    }
    /// Objects covering the image's size.
    pub fn object_count(&self) -> u64 {
        layout::object_count(self.header.order, self.header.size)
    }
    pub fn lock_state(&self) -> watch::Receiver<LockState> {
        self.shared.subscribe()
    }
    /// Changes on each notification of the local journal's header while the lock is held
    /// (a resync request, a promotion); never without a journal.
    pub fn journal_notifications(&self) -> watch::Receiver<u64> {
        self.shared.journal_notifications()
    }
    pub fn io(&self) -> &I {
        &self.io
    }
    /// The separate data pool's name, if the image has one.
    pub fn data_pool(&self) -> Option<&str> {
        (self.data_io.pool_id() != self.io.pool_id()).then(|| self.data_io.pool_name())
    }

    /// The data object holding `object_no`.
    pub fn data_oid(&self, object_no: u64) -> String {
        oids::data(&self.header.object_prefix, object_no)
    }

    /// The snapshot with this name and namespace.
    pub fn snapshot_by_name(
        &self,
        name: &str,
        ns: &crate::format::image::SnapshotNamespace,
    ) -> Option<&SnapshotInfo> {
        self.header
            .snapshots
            .iter()
            .find(|s| s.name == name && &s.snapshot_namespace == ns)
    }

    /// Tells open clients that the header changed (librbd's HeaderUpdate), so they refresh.
    /// A watcher that does not answer delays us by the timeout but loses nothing.
    pub(super) async fn notify_header_update(&self) {
        let payload = HeaderNotify::HeaderUpdate.to_bytes();
        if let Err(e) = self
            .io
            .notify(&self.header_oid, payload, NOTIFY_TIMEOUT)
            .await
        {
            tracing::warn!(image = %self.id, error = %e, "header update notify failed");
        }
    }
}
