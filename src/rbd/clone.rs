//! Clones: an image whose header links a parent snapshot (`parent`: pool, namespace, image
//! id, snap id, overlap) reads the parent's data wherever it has no object of its own
//! within the overlap. Replaces, for a replica, librbd's `io::CopyupRequest`,
//! `operation/FlattenRequest` and the parent half of `image::RefreshRequest`.
//!
//! - Reads fall through to the parent (at its snapshot, up to the overlap) for objects the
//!   clone lacks, through any depth of parents.
//! - COPY-UP: before the first write to an object inside the overlap, the parent's bytes
//!   for it become the object (cls `copyup`, which writes only if the object is still
//!   absent, so repeats and races are harmless). The copy-up goes out with an empty snap
//!   context, as librbd's deep copy-up: the object then reads the same at the clone's
//!   snapshots (which would have read the same bytes through the parent), and the write
//!   that follows, under the real snap context, preserves it for them.
//! - A discard inside the overlap zeroes instead of removing: removing would expose the
//!   parent's data again.
//! - FLATTEN: every object of the overlap copied up, then `parent_detach`; once no snapshot
//!   reads through the parent either, the parent snapshot forgets this child.
//! - A parent snapshot removed while clones read it sits in the trash namespace; the last
//!   clone to leave it (flatten, removal) purges it.
//!
//! The parent is opened on first use and kept until a refresh finds another link.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use super::layout::ObjectExtent;
use super::object_map::Effect;
use super::{Image, RbdError};
use crate::cls::image as cls_image;
use crate::format::image::{
    ChildImageSpec, ObjectMapUpdateInput, ParentInfo, SnapshotNamespace, features, oids,
};
use crate::format::object_map::ObjectState;
use crate::rados::{Errno, IoCtx, NOSNAP, RadosResult, ReadOp, SnapContext, WriteOp};

/// How many objects a flatten copies up at once.
const FLATTEN_IN_FLIGHT: usize = 16;

impl<I: IoCtx> Image<I> {
    /// The parent link, if this image is a clone (also after a flatten while snapshots
    /// still read through the parent: then without a head overlap).
    pub fn parent(&self) -> Option<&ParentInfo> {
        self.header.parent.as_ref()
    }

    /// How far HEAD reads through its parent (0: not at all).
    pub fn head_overlap(&self) -> u64 {
        self.parent()
            .and_then(|p| p.head_overlap)
            .unwrap_or(0)
            .min(self.header.size)
    }

    /// Whether HEAD's object `object_no` starts inside the overlap.
    pub(super) fn in_overlap(&self, object_no: u64) -> bool {
        (object_no << self.header.order) < self.head_overlap()
    }

    /// The parent image, opened on first use.
    async fn parent_image(&self) -> Result<&Image<I>, RbdError> {
        let link = self
            .parent()
            .ok_or_else(|| RbdError::Invalid(format!("image {} has no parent", self.id)))?;
        self.parent_image
            .get_or_try_init(|| async {
                let io = pool_in(&self.io, link.pool_id, &link.pool_namespace).await?;
                let parent = Box::pin(Image::open(io, &link.image_id)).await?;
                Ok::<_, RbdError>(Box::new(parent))
            })
            .await
            .map(|b| &**b)
    }

    /// The parent's bytes for image extent `[offset, offset + length)` as seen at `snap`
    /// (HEAD or one of this image's snapshots), cut at the overlap (empty when all of it
    /// lies past it): what follows reads as zeros, to a read and to a copy-up alike.
    pub(super) async fn read_parent(
        &self,
        offset: u64,
        length: u64,
        snap: u64,
    ) -> Result<Bytes, RbdError> {
        let overlap = match (self.parent(), snap) {
            (None, _) => return Ok(Bytes::new()),
            (Some(_), NOSNAP) => self.head_overlap(),
            (Some(_), s) => cls_image::parent_overlap_get(&self.io, &self.header_oid, s)
                .await?
                .unwrap_or(0),
        };
        if offset >= overlap {
            return Ok(Bytes::new());
        }
        let parent = self.parent_image().await?;
        let snap_id = self.parent().map_or(NOSNAP, |p| p.snap_id);
        let inside = length.min(overlap - offset);
        Box::pin(parent.read(offset, inside, Some(snap_id))).await
    }

    /// A piece of an object this image lacks, as the parent supplies it (maybe short).
    pub(super) async fn read_absent(&self, p: &ObjectExtent, snap: u64) -> Result<Bytes, RbdError> {
        let offset = (p.object_no << self.header.order) + p.offset;
        self.read_parent(offset, p.length, snap).await
    }

    /// Whether object `object_no` of HEAD needs a copy-up before a write: `Some` when the
    /// object map knows, `None` when only the OSD does.
    pub(super) fn copyup_needed(&self, object_no: u64) -> Option<bool> {
        if !self.in_overlap(object_no) {
            return Some(false);
        }
        self.object_map
            .state(object_no)
            .map(|s| s == ObjectState::Nonexistent)
    }

    /// COPY-UP of one object (see the module doc); `known`: [`Self::copyup_needed`]'s answer.
    /// Outside the overlap there is nothing to copy.
    pub async fn copyup(&self, object_no: u64, known: Option<bool>) -> Result<(), RbdError> {
        if !self.in_overlap(object_no) {
            return Ok(());
        }
        let needed = match known {
            Some(n) => n,
            None => {
                let stat = ReadOp::new().stat();
                match self
                    .data_io
                    .operate_read(&self.data_oid(object_no), stat)
                    .await
                {
                    Ok(_) => false,
                    Err(e) if e.is_not_found() => true,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if !needed {
            return Ok(());
        }
        let offset = object_no << self.header.order;
        let length = self.object_size().min(self.header.size - offset);
        let data = self.read_parent(offset, length, NOSNAP).await?;
        self.shared.check_writable()?;
        let op = cls_image::copyup(WriteOp::new(), data).snap_context(SnapContext::default());
        self.data_io
            .operate_write(&self.data_oid(object_no), op)
            .await
            .map_err(|e| self.shared.write_error(e))?;
        self.mark_in_snapshots(object_no).await
    }

    /// The copied-up object serves the clone's snapshots too (see the module doc): their
    /// maps say so, or librbd would skip it there and, once a deep flatten has cut the
    /// snapshots from the parent, read zeros.
    async fn mark_in_snapshots(&self, object_no: u64) -> Result<(), RbdError> {
        if !self.has_object_map() {
            return Ok(());
        }
        let order = self.header.order;
        for s in &self.header.snapshots {
            if object_no >= super::layout::object_count(order, s.image_size) {
                continue;
            }
            let update = ObjectMapUpdateInput {
                start_object: object_no,
                end_object: object_no + 1,
                new_state: ObjectState::Exists.raw(),
                expected_current_state: Some(ObjectState::Nonexistent.raw()),
            };
            match cls_image::object_map_update(&self.io, &self.map_oid(Some(s.id)), &update).await {
                Err(e) if e.is_not_found() => {} // a snapshot without a map
                other => other?,
            }
        }
        Ok(())
    }

    /// FLATTEN (see the module doc). Repeating it after a crash finishes the job.
    pub async fn flatten(&mut self) -> Result<(), RbdError> {
        self.assert_locked().await?;
        if self.head_overlap() > 0 {
            let objects: Vec<u64> = (0..self.object_count())
                .filter(|&o| self.in_overlap(o))
                .collect();
            let effects: Vec<(u64, Effect)> =
                objects.iter().map(|&o| (o, Effect::Writes)).collect();
            let known: Vec<Option<bool>> = objects.iter().map(|&o| self.copyup_needed(o)).collect();
            self.object_map_pre(&effects).await?;
            let this = &*self;
            stream::iter(objects.into_iter().zip(known))
                .map(|(o, k)| this.copyup(o, k))
                .buffer_unordered(FLATTEN_IN_FLIGHT)
                .try_collect::<()>()
                .await?;
        }
        self.unlink_parent().await
    }

    /// Stops HEAD reading through the parent (`parent_detach`; snapshots follow with
    /// deep-flatten) without copying anything up: the end of a flatten, or a copy whose
    /// every object comes from elsewhere (an image sync of a flattened primary).
    ///
    /// The child record goes first when nothing will read through the parent any more: a
    /// crash after it leaves a link the next run detaches, where the other order would
    /// leave the parent snapshot listing a child that no longer reads it.
    pub async fn unlink_parent(&mut self) -> Result<(), RbdError> {
        self.assert_locked().await?;
        let Some(link) = self.parent().cloned() else {
            return Ok(());
        };
        if self.reads_parent_only_at_head().await? {
            self.detach_from_parent(&link).await?;
        }
        if link.head_overlap.is_some() {
            match cls_image::parent_detach(&self.io, &self.header_oid).await {
                Err(e) if e.is_not_found() => {}
                other => other?,
            }
        }
        self.changed().await
    }

    /// Whether a flatten leaves no snapshot reading through the parent: deep-flatten
    /// detaches them too, and otherwise only snapshots without an overlap are free of it.
    async fn reads_parent_only_at_head(&self) -> Result<bool, RbdError> {
        if self.header.features & features::DEEP_FLATTEN != 0 {
            return Ok(true);
        }
        for s in &self.header.snapshots {
            if cls_image::parent_overlap_get(&self.io, &self.header_oid, s.id)
                .await?
                .is_some()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The parent snapshot forgets this clone.
    pub(super) async fn detach_from_parent(&self, link: &ParentInfo) -> Result<(), RbdError> {
        detach_child(&self.io, &self.id, link, true).await
    }
}

/// Pool `pool_id` of `io`'s cluster, in RBD namespace `namespace`: where a parent (or a
/// child) named by a link lives.
pub(crate) async fn pool_in<I: IoCtx>(io: &I, pool_id: i64, namespace: &str) -> RadosResult<I> {
    Ok(io.pool_by_id(pool_id).await?.with_namespace(namespace))
}

/// Image `image_id` of `io`'s pool and namespace as its parent snapshot lists it.
pub(super) fn child_spec<I: IoCtx>(io: &I, image_id: &str) -> ChildImageSpec {
    ChildImageSpec {
        pool_id: io.pool_id(),
        pool_namespace: io.namespace().to_string(),
        image_id: image_id.to_string(),
    }
}

/// Image `child_id` in `io`'s pool and namespace leaves the children of its parent
/// snapshot (clone v2; absent there is fine, so a rerun after a crash finishes the job);
/// with `purge`, a trashed snapshot it was the last to read goes too.
pub(super) async fn detach_child<I: IoCtx>(
    io: &I,
    child_id: &str,
    link: &ParentInfo,
    purge: bool,
) -> Result<(), RbdError> {
    let child = child_spec(io, child_id);
    let parent_io = pool_in(io, link.pool_id, &link.pool_namespace).await?;
    let header = oids::header(&link.image_id);
    match cls_image::child_detach(&parent_io, &header, link.snap_id, &child).await {
        Err(e) if e.is_not_found() => {}
        other => other?,
    }
    if !purge {
        return Ok(());
    }
    match Image::open(parent_io, &link.image_id).await {
        Ok(parent) => parent.purge_trashed(link.snap_id).await,
        Err(RbdError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

impl<I: IoCtx> Image<I> {
    /// Removes snapshot `snap_id` if it is in the trash with no clone left, as librbd's
    /// child detach does, and without the image's lock as librbd's does (the primary does
    /// not journal it: the replica's last clone leaving is what tells us). The holder of
    /// the lock is told to refresh.
    async fn purge_trashed(&self, snap_id: u64) -> Result<(), RbdError> {
        let Some(snap) = self.header.snapshots.iter().find(|s| s.id == snap_id) else {
            return Ok(());
        };
        if !matches!(snap.snapshot_namespace, SnapshotNamespace::Trash { .. })
            || self.child_count(snap_id).await? > 0
        {
            return Ok(());
        }
        tracing::info!(image = %self.id, snapshot = %snap.name, "purging a trashed snapshot its last clone left");
        let next_newer = (self.header.snapshots.iter())
            .map(|s| s.id)
            .filter(|&id| id > snap_id)
            .min();
        self.object_map_snap_remove(snap_id, next_newer).await?;
        match cls_image::snapshot_remove(&self.io, &self.header_oid, snap_id).await {
            Err(e) if e.is_not_found() => {}
            Err(e) if e.is(Errno::EBUSY) => return Ok(()), // a clone attached meanwhile
            other => other?,
        }
        self.data_io.selfmanaged_snap_remove(snap_id).await?;
        self.notify_header_update().await;
        Ok(())
    }
}
