//! Keeps the object maps of an image correct (spec §5.3–§5.5), the way librbd's
//! `ObjectMap` and `object_map/*Request` do for a lock owner: HEAD's map is loaded when
//! the lock is taken and cached; a data object is marked EXISTS before a write reaches it
//! and NONEXISTENT after its removal; the map follows resizes; a snapshot gets a copy of
//! HEAD's map and (fast-diff) HEAD's objects turn EXISTS_CLEAN; removing a snapshot folds
//! its dirty objects into the next newer map. Only states that change cost a cls call
//! (`object_map_update`, one per run of neighbouring objects).
//!
//! Why maintain rather than flag invalid: an invalid map makes every `rbd diff` / `rbd du`
//! / export of the replica walk all objects and shows a warning until someone runs
//! `rbd object-map rebuild`; the upkeep costs one extra round trip per first write to an
//! object after a snapshot, which the cache keeps off the steady-state path.

use std::sync::Mutex;

use futures::{StreamExt, TryStreamExt, stream};

use super::{Image, RbdError};
use crate::cls::image as cls_image;
use crate::format::Encode;
use crate::format::image::{ObjectMapUpdateInput, SnapshotInfo, features, flags, oids};
use crate::format::object_map::{ObjectMap, ObjectState};
use crate::rados::{IoCtx, RadosResult, WriteOp};

/// Object map updates in flight at once (ranges of one map object; the OSD orders them).
const UPDATES_IN_FLIGHT: usize = 16;

/// HEAD's object map while the lock is held (None: feature off or lock not held).
#[derive(Default)]
pub(super) struct HeadMap {
    map: Option<Mutex<ObjectMap>>,
}

impl HeadMap {
    pub(super) fn unload(&mut self) {
        self.map = None;
    }

    pub(super) fn state(&self, object_no: u64) -> Option<ObjectState> {
        let map = self.map.as_ref()?.lock().expect("object map lock");
        map.get(object_no)
    }

    fn set(&self, objects: &[u64], state: ObjectState) {
        if let Some(m) = &self.map {
            let mut map = m.lock().expect("object map lock");
            for &o in objects {
                map.set(o, state);
            }
        }
    }

    fn snapshot(&self) -> Option<ObjectMap> {
        Some(self.map.as_ref()?.lock().expect("object map lock").clone())
    }
}

/// What a batch does to one object, for its map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Effect {
    /// Writes data (the object exists afterwards).
    Writes,
    /// Only zeroes inside it (changes it only if it exists).
    Zeroes,
    /// Ends removed.
    Removes,
}

impl<I: IoCtx> Image<I> {
    pub(super) fn has_object_map(&self) -> bool {
        self.header.features & features::OBJECT_MAP != 0
    }

    pub(super) fn map_oid(&self, snap: Option<u64>) -> String {
        oids::object_map(&self.id, snap)
    }

    /// Loads HEAD's map (creating or resizing it to the image's object count if needed).
    pub(super) async fn load_object_map(&mut self) -> Result<(), RbdError> {
        self.object_map.unload();
        if !self.has_object_map() {
            return Ok(());
        }
        let oid = self.map_oid(None);
        let count = self.object_count();
        let map = match cls_image::object_map_load(&self.io, &oid).await {
            Ok(map) if map.len() == count => map,
            Ok(_) => {
                cls_image::object_map_resize(&self.io, &oid, count, 0).await?;
                cls_image::object_map_load(&self.io, &oid).await?
            }
            Err(e) if e.is_not_found() => {
                cls_image::object_map_resize(&self.io, &oid, count, 0).await?;
                cls_image::object_map_load(&self.io, &oid).await?
            }
            Err(e) => return Err(e.into()),
        };
        self.object_map.map = Some(Mutex::new(map));
        Ok(())
    }

    /// Before a batch touches objects: mark those it writes (or zeroes while they exist
    /// but are clean) EXISTS.
    pub(super) async fn object_map_pre(&self, effects: &[(u64, Effect)]) -> Result<(), RbdError> {
        let dirty: Vec<u64> = effects
            .iter()
            .filter(|(o, e)| match (e, self.object_map.state(*o)) {
                (_, None) => false,
                (Effect::Writes, Some(s)) => s != ObjectState::Exists,
                (Effect::Zeroes, Some(s)) => s == ObjectState::ExistsClean,
                (Effect::Removes, Some(_)) => false,
            })
            .map(|(o, _)| *o)
            .collect();
        self.object_map_set(&dirty, ObjectState::Exists).await
    }

    /// After a batch: mark removed objects NONEXISTENT.
    pub(super) async fn object_map_post(&self, effects: &[(u64, Effect)]) -> Result<(), RbdError> {
        let gone: Vec<u64> = effects
            .iter()
            .filter(|(o, e)| {
                *e == Effect::Removes
                    && self
                        .object_map
                        .state(*o)
                        .is_some_and(|s| s != ObjectState::Nonexistent)
            })
            .map(|(o, _)| *o)
            .collect();
        self.object_map_set(&gone, ObjectState::Nonexistent).await
    }

    /// Sets objects to `state` on disk, then in the cache.
    async fn object_map_set(&self, objects: &[u64], state: ObjectState) -> Result<(), RbdError> {
        if objects.is_empty() {
            return Ok(());
        }
        let mut sorted = objects.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        update_runs(&self.io, &self.map_oid(None), &sorted, state)
            .await
            .map_err(|e| self.shared.write_error(e))?;
        self.object_map.set(&sorted, state);
        Ok(())
    }

    /// The object map of snapshot `snap_id` if it can be trusted (feature on, not flagged
    /// invalid, sized for the snapshot): a copy skips the objects it says never existed,
    /// as librbd's deep copy does.
    pub async fn snapshot_object_map(
        &self,
        snap: &SnapshotInfo,
    ) -> Result<Option<ObjectMap>, RbdError> {
        if !self.has_object_map() {
            return Ok(None);
        }
        let header = oids::header(&self.id);
        if cls_image::get_flags(&self.io, &header, snap.id).await? & flags::OBJECT_MAP_INVALID != 0
        {
            return Ok(None);
        }
        let count = super::layout::object_count(self.header.order, snap.image_size);
        match cls_image::object_map_load(&self.io, &self.map_oid(Some(snap.id))).await {
            Ok(map) if map.len() == count => Ok(Some(map)),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Marks `objects` EXISTS ahead of writes to them (one update per run), so an image
    /// sync's writes find them marked instead of each updating the map on its own.
    pub async fn mark_exists(&self, objects: &[u64]) -> Result<(), RbdError> {
        self.shared.check_writable()?;
        let effects: Vec<(u64, Effect)> = objects.iter().map(|&o| (o, Effect::Writes)).collect();
        self.object_map_pre(&effects).await
    }

    /// True if HEAD's map (held under the lock) says the object does not exist.
    pub(super) fn known_absent(&self, object_no: u64) -> bool {
        self.object_map.state(object_no) == Some(ObjectState::Nonexistent)
    }

    /// Resizes HEAD's map to `object_count` (after the objects past it are gone).
    pub(super) async fn object_map_resize(&mut self, object_count: u64) -> Result<(), RbdError> {
        if !self.has_object_map() {
            return Ok(());
        }
        cls_image::object_map_resize(&self.io, &self.map_oid(None), object_count, 0).await?;
        if let Some(m) = &self.object_map.map {
            m.lock()
                .expect("object map lock")
                .resize(object_count, ObjectState::Nonexistent);
        }
        Ok(())
    }

    /// A new snapshot's map is HEAD's map as it is now; with fast-diff HEAD's objects then
    /// count as unchanged since that snapshot (EXISTS_CLEAN).
    pub(super) async fn object_map_snap_create(&self, snap_id: u64) -> Result<(), RbdError> {
        let Some(head) = self.object_map.snapshot() else {
            return Ok(());
        };
        // A byte copy of HEAD's stored map keeps its CRC footer, which Ceph's
        // `object_map_load` insists on (a map re-encoded without one fails with EINVAL).
        let stored = self.io.read(&self.map_oid(None), 0, 0).await?;
        self.io
            .write_full(&self.map_oid(Some(snap_id)), stored)
            .await?;
        if self.header.features & features::FAST_DIFF != 0 && !head.is_empty() {
            let input = ObjectMapUpdateInput {
                start_object: 0,
                end_object: head.len(),
                new_state: ObjectState::ExistsClean.raw(),
                expected_current_state: Some(ObjectState::Exists.raw()),
            };
            cls_image::object_map_update(&self.io, &self.map_oid(None), &input).await?;
            let exists: Vec<u64> = (0..head.len())
                .filter(|&i| head.get(i) == Some(ObjectState::Exists))
                .collect();
            self.object_map.set(&exists, ObjectState::ExistsClean);
        }
        Ok(())
    }

    /// Before a snapshot goes: with fast-diff, objects it saw changed (EXISTS) must stay
    /// changed in the next newer map (a snapshot's or HEAD's); then its map is removed.
    pub(super) async fn object_map_snap_remove(
        &self,
        snap_id: u64,
        next_newer: Option<u64>,
    ) -> Result<(), RbdError> {
        if !self.has_object_map() {
            return Ok(());
        }
        let oid = self.map_oid(Some(snap_id));
        if self.header.features & features::FAST_DIFF != 0 {
            let removed = match cls_image::object_map_load(&self.io, &oid).await {
                Ok(m) => Some(m),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
            if let Some(removed) = removed {
                let next_oid = self.map_oid(next_newer);
                let next = cls_image::object_map_load(&self.io, &next_oid).await?;
                let dirty: Vec<u64> = (0..removed.len().min(next.len()))
                    .filter(|&i| {
                        removed.get(i) == Some(ObjectState::Exists)
                            && next.get(i) == Some(ObjectState::ExistsClean)
                    })
                    .collect();
                if !dirty.is_empty() {
                    update_runs(&self.io, &next_oid, &dirty, ObjectState::Exists).await?;
                    if next_newer.is_none() {
                        self.object_map.set(&dirty, ObjectState::Exists);
                    }
                }
            }
        }
        match self.io.remove(&oid).await {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Sets the (sorted, deduplicated) objects of a map to `state`: one `object_map_update`
/// per contiguous run, each its own op. Several cls writes in one op would not do: on
/// Ceph each method reads the object as it was before the op, so only the last one's
/// change would survive.
async fn update_runs<I: IoCtx>(
    io: &I,
    map_oid: &str,
    sorted: &[u64],
    state: ObjectState,
) -> RadosResult<()> {
    stream::iter(runs(sorted))
        .map(|(start, end)| {
            let input = ObjectMapUpdateInput {
                start_object: start,
                end_object: end,
                new_state: state.raw(),
                expected_current_state: None,
            };
            let op = WriteOp::new().exec("rbd", "object_map_update", input.to_bytes());
            io.operate_write(map_oid, op)
        })
        .buffer_unordered(UPDATES_IN_FLIGHT)
        .try_collect::<Vec<u64>>()
        .await
        .map(drop)
}

/// Sorted, deduplicated object numbers as `[start, end)` runs.
fn runs(sorted: &[u64]) -> impl Iterator<Item = (u64, u64)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let start = *sorted.get(i)?;
        let mut end = start + 1;
        i += 1;
        while sorted.get(i) == Some(&end) {
            end += 1;
            i += 1;
        }
        Some((start, end))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_group_contiguous_objects() {
        let v: Vec<_> = super::runs(&[1, 2, 3, 7, 9, 10]).collect();
        assert_eq!(v, vec![(1, 4), (7, 8), (9, 11)]);
        assert_eq!(super::runs(&[]).count(), 0);
    }
}
