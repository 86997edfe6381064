//! The data path: image extents become steps on data objects `rbd_data.<id>.<objno>`,
//! written with the image's snap context so earlier snapshots keep their contents (the OSD
//! clones an object on its first write after a snapshot). Replaces librbd's
//! `io::ImageRequest` → `io::ObjectRequest` for a replica.
//!
//! Batches ([`Image::apply`]) are what a journal replayer hands over between two barriers:
//! the steps of one object keep batch order and go out as one RADOS write op; different
//! objects run concurrently, at most `max_in_flight` at once.
//!
//! Per object, like librbd's object requests:
//! - write → WRITE; write-same → the pattern expanded into a WRITE;
//! - discard / write-zeroes of a whole object → REMOVE (its earlier steps in the batch are
//!   moot; a missing object is fine), or TRUNCATE 0 when later steps of the batch write it
//!   again; of part of an object → ZERO (which truncates at the end and creates nothing);
//! - compare-and-write → read, compare, then WRITE guarded by the object's version (or by
//!   an exclusive create when it did not exist), retried if someone got in between. A
//!   mismatch writes nothing; the rest of the batch still applies and `apply` reports
//!   `CompareMismatch` at the end, which a journal replayer ignores (the primary journaled
//!   the op before its own compare failed).

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream};

use super::layout::{ObjectExtent, object_extents};
use super::object_map::Effect;
use super::{Image, IoOp, RbdError};
use crate::rados::{Errno, IoCtx, NOSNAP, ReadOp, ReadResult, WriteOp};

/// One object's part of an image op.
#[derive(Clone, Debug)]
enum Step {
    Write {
        offset: u64,
        data: Bytes,
    },
    /// Zeroes `[offset, offset + length)`; `whole` when that is the entire object.
    Zero {
        offset: u64,
        length: u64,
        whole: bool,
    },
    Compare {
        offset: u64,
        cmp: Bytes,
        data: Bytes,
        image_offset: u64,
    },
}

/// The steps of one object, in batch order.
struct ObjectPlan {
    object_no: u64,
    steps: Vec<Step>,
}

impl<I: IoCtx> Image<I> {
    pub async fn write(&self, offset: u64, data: Bytes) -> Result<(), RbdError> {
        self.apply(&[IoOp::Write { offset, data }], usize::MAX)
            .await
    }

    pub async fn discard(&self, offset: u64, length: u64) -> Result<(), RbdError> {
        self.apply(&[IoOp::Discard { offset, length }], usize::MAX)
            .await
    }

    pub async fn write_zeroes(&self, offset: u64, length: u64) -> Result<(), RbdError> {
        self.apply(&[IoOp::WriteZeroes { offset, length }], usize::MAX)
            .await
    }

    pub async fn write_same(
        &self,
        offset: u64,
        length: u64,
        pattern: Bytes,
    ) -> Result<(), RbdError> {
        self.apply(
            &[IoOp::WriteSame {
                offset,
                length,
                pattern,
            }],
            usize::MAX,
        )
        .await
    }

    /// `CompareMismatch { offset }` (image offset of the first differing byte) when the
    /// image does not hold `cmp`; nothing is written then.
    pub async fn compare_and_write(
        &self,
        offset: u64,
        cmp: Bytes,
        data: Bytes,
    ) -> Result<(), RbdError> {
        self.apply(&[IoOp::CompareAndWrite { offset, cmp, data }], 1)
            .await
    }

    /// Applies a batch between two barriers; returns once all of it is durable. See the
    /// module doc for ordering and for how a compare mismatch is reported.
    pub async fn apply(&self, ops: &[IoOp], max_in_flight: usize) -> Result<(), RbdError> {
        self.shared.check_writable()?;
        let plans = self.plan(ops)?;
        if plans.is_empty() {
            return Ok(());
        }
        // A clone's object inside the overlap exists after any step (copied up first).
        let effects: Vec<(u64, Effect)> = plans
            .iter()
            .map(|p| match self.in_overlap(p.object_no) {
                true => (p.object_no, Effect::Writes),
                false => (p.object_no, effect(&p.steps)),
            })
            .collect();
        let copyups: Vec<Option<bool>> = plans
            .iter()
            .map(|p| self.copyup_needed(p.object_no))
            .collect();
        self.object_map_pre(&effects).await?;
        let results: Vec<Result<(), RbdError>> = stream::iter(plans.into_iter().zip(copyups))
            .map(|(plan, copyup)| async move {
                self.copyup(plan.object_no, copyup).await?;
                self.run_object(plan).await
            })
            .buffer_unordered(max_in_flight.max(1))
            .collect()
            .await;
        let mut mismatch = None;
        for r in results {
            match r {
                Ok(()) => {}
                Err(RbdError::CompareMismatch { offset }) => {
                    mismatch = Some(mismatch.map_or(offset, |m: u64| m.min(offset)));
                }
                Err(e) => return Err(e),
            }
        }
        self.object_map_post(&effects).await?;
        match mismatch {
            Some(offset) => Err(RbdError::CompareMismatch { offset }),
            None => Ok(()),
        }
    }

    /// Reads `[offset, offset + length)` of HEAD or of a snapshot (by its id here);
    /// holes read as zeros.
    pub async fn read(
        &self,
        offset: u64,
        length: u64,
        snap: Option<u64>,
    ) -> Result<Bytes, RbdError> {
        let size = match snap {
            None => self.header.size,
            Some(id) => {
                self.header
                    .snapshots
                    .iter()
                    .find(|s| s.id == id)
                    .ok_or_else(|| RbdError::SnapshotNotFound(id.to_string()))?
                    .image_size
            }
        };
        check_bounds(offset, length, size)?;
        let pieces: Vec<ObjectExtent> = object_extents(self.header.order, offset, length).collect();
        let parts: Vec<Bytes> = stream::iter(pieces)
            .map(|p| self.read_piece(p, snap.unwrap_or(NOSNAP)))
            .buffered(32)
            .try_collect()
            .await?;
        let mut out = BytesMut::with_capacity(length as usize);
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out.freeze())
    }

    /// A whole data object of HEAD or a snapshot; `None` when it does not exist.
    /// No object outgrows the object size, so one read of that length gets it all: a
    /// read "to the end" costs librados a size probe first (a second round trip per object
    /// of an image sync).
    pub async fn read_object(
        &self,
        object_no: u64,
        snap: Option<u64>,
    ) -> Result<Option<Bytes>, RbdError> {
        let op = ReadOp::new()
            .read(0, self.object_size())
            .at_snap(snap.unwrap_or(NOSNAP));
        match self
            .data_io
            .operate_read(&self.data_oid(object_no), op)
            .await
        {
            Ok(reply) => Ok(Some(first_data(reply.results))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a data object whole (`None` removes it), for image sync.
    pub async fn write_object(&self, object_no: u64, data: Option<Bytes>) -> Result<(), RbdError> {
        self.shared.check_writable()?;
        if object_no >= self.object_count() {
            let size = self.header.size;
            return Err(RbdError::OutOfBounds {
                offset: object_no << self.header.order,
                length: self.object_size(),
                size,
            });
        }
        if data
            .as_ref()
            .is_some_and(|d| d.len() as u64 > self.object_size())
        {
            return Err(RbdError::Invalid(format!(
                "object {object_no} data larger than the object size"
            )));
        }
        let (effect, op) = match data {
            Some(d) => (Effect::Writes, WriteOp::new().write_full(d)),
            // The map is exact for a lock holder: nothing there to remove.
            None if self.known_absent(object_no) => return Ok(()),
            None => (Effect::Removes, WriteOp::new().remove()),
        };
        let effects = [(object_no, effect)];
        self.object_map_pre(&effects).await?;
        self.send(object_no, op).await?;
        self.object_map_post(&effects).await
    }

    /// Removes whole data objects (a shrink's trim), `in_flight` at a time, then marks
    /// them NONEXISTENT in one object map update.
    pub(super) async fn remove_objects(
        &self,
        objects: std::ops::Range<u64>,
        in_flight: usize,
    ) -> Result<(), RbdError> {
        self.shared.check_writable()?;
        let effects: Vec<(u64, Effect)> = objects.clone().map(|o| (o, Effect::Removes)).collect();
        stream::iter(objects)
            .map(|o| async move {
                match self.send(o, WriteOp::new().remove()).await {
                    Err(RbdError::Rados(e)) if e.is_not_found() => Ok(()),
                    other => other,
                }
            })
            .buffer_unordered(in_flight.max(1))
            .try_collect::<()>()
            .await?;
        self.object_map_post(&effects).await
    }

    /// Bounds and argument checks, then the steps of each object in batch order.
    fn plan(&self, ops: &[IoOp]) -> Result<Vec<ObjectPlan>, RbdError> {
        let order = self.header.order;
        let object_size = self.object_size();
        let mut plans: Vec<ObjectPlan> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for op in ops {
            let (offset, length) = op.extent();
            check_bounds(offset, length, self.header.size)?;
            validate(op, order)?;
            for p in object_extents(order, offset, length) {
                let (start, end) = (
                    p.buffer_offset as usize,
                    (p.buffer_offset + p.length) as usize,
                );
                let step = match op {
                    IoOp::Write { data, .. } => Step::Write {
                        offset: p.offset,
                        data: data.slice(start..end),
                    },
                    IoOp::Discard { .. } | IoOp::WriteZeroes { .. } => Step::Zero {
                        offset: p.offset,
                        length: p.length,
                        // Inside a clone's overlap a removal would expose the parent.
                        whole: p.is_whole(object_size) && !self.in_overlap(p.object_no),
                    },
                    IoOp::WriteSame { pattern, .. } => Step::Write {
                        offset: p.offset,
                        data: expand(pattern, p.buffer_offset, p.length),
                    },
                    IoOp::CompareAndWrite { cmp, data, .. } => Step::Compare {
                        offset: p.offset,
                        cmp: cmp.clone(),
                        data: data.clone(),
                        image_offset: offset,
                    },
                };
                let at = *index.entry(p.object_no).or_insert_with(|| {
                    plans.push(ObjectPlan {
                        object_no: p.object_no,
                        steps: Vec::new(),
                    });
                    plans.len() - 1
                });
                plans[at].steps.push(step);
            }
        }
        Ok(plans)
    }

    /// Runs one object's steps: runs of plain steps as one write op each, compares alone.
    async fn run_object(&self, plan: ObjectPlan) -> Result<(), RbdError> {
        let mut plain: Vec<Step> = Vec::new();
        let mut mismatch = None;
        for step in plan.steps {
            if let Step::Compare {
                offset,
                cmp,
                data,
                image_offset,
            } = step
            {
                self.send_plain(plan.object_no, std::mem::take(&mut plain))
                    .await?;
                if let Err(e) = self
                    .compare_and_write_object(plan.object_no, offset, &cmp, data, image_offset)
                    .await
                {
                    match e {
                        RbdError::CompareMismatch { .. } => mismatch = mismatch.or(Some(e)),
                        e => return Err(e),
                    }
                }
            } else {
                plain.push(step);
            }
        }
        self.send_plain(plan.object_no, plain).await?;
        mismatch.map_or(Ok(()), Err)
    }

    /// Plain steps as one write op; a lone whole-object removal of a missing object is fine.
    async fn send_plain(&self, object_no: u64, steps: Vec<Step>) -> Result<(), RbdError> {
        // Steps before the last whole-object zero are overwritten by it, and zeroes right
        // after it change nothing (the object is empty or gone by then).
        let last_removal = steps
            .iter()
            .rposition(|s| matches!(s, Step::Zero { whole: true, .. }));
        let (removal, rest) = match last_removal {
            Some(r) => (Some(&steps[r]), &steps[r + 1..]),
            None => (None, &steps[..]),
        };
        let rest: Vec<&Step> = match removal {
            Some(_) => rest
                .iter()
                .skip_while(|s| matches!(s, Step::Zero { .. }))
                .collect(),
            None => rest.iter().collect(),
        };
        let removal_only = removal.is_some() && rest.is_empty();
        let steps: Vec<&Step> = removal.into_iter().chain(rest).collect();
        if steps.is_empty() {
            return Ok(());
        }
        let op = steps.iter().fold(WriteOp::new(), |op, s| match *s {
            Step::Zero { whole: true, .. } if removal_only => op.remove(),
            Step::Zero { whole: true, .. } => op.truncate(0),
            Step::Zero { offset, length, .. } => op.zero(*offset, *length),
            Step::Write { offset, data } => op.write(*offset, data.clone()),
            Step::Compare { .. } => op, // never here: split off by run_object
        });
        match self.send(object_no, op).await {
            Err(RbdError::Rados(e)) if removal_only && e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Sends a write op to a data object under the image's snap context.
    async fn send(&self, object_no: u64, op: WriteOp) -> Result<(), RbdError> {
        self.shared.check_writable()?;
        let op = op.snap_context(self.header.snapc.clone());
        self.data_io
            .operate_write(&self.data_oid(object_no), op)
            .await
            .map(drop)
            .map_err(|e| self.shared.write_error(e))
    }

    async fn compare_and_write_object(
        &self,
        object_no: u64,
        offset: u64,
        cmp: &Bytes,
        data: Bytes,
        image_offset: u64,
    ) -> Result<(), RbdError> {
        let oid = self.data_oid(object_no);
        loop {
            let read = self
                .data_io
                .operate_read(&oid, ReadOp::new().read(offset, cmp.len() as u64))
                .await;
            let (current, guard) = match read {
                Ok(reply) => (
                    first_data(reply.results),
                    WriteOp::new().assert_version(reply.version),
                ),
                Err(e) if e.is_not_found() => (Bytes::new(), WriteOp::new().create(true)),
                Err(e) => return Err(self.shared.write_error(e)),
            };
            let differs = (0..cmp.len()).find(|&i| current.get(i).copied().unwrap_or(0) != cmp[i]);
            if let Some(i) = differs {
                return Err(RbdError::CompareMismatch {
                    offset: image_offset + i as u64,
                });
            }
            match self
                .send(object_no, guard.write(offset, data.clone()))
                .await
            {
                // Someone changed the object between our read and write: compare again.
                Err(RbdError::Rados(e))
                    if [Errno::ERANGE, Errno::EOVERFLOW, Errno::EEXIST].contains(&e.errno) =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    async fn read_piece(&self, p: ObjectExtent, snap: u64) -> Result<Bytes, RbdError> {
        let op = ReadOp::new().read(p.offset, p.length).at_snap(snap);
        let data = match self
            .data_io
            .operate_read(&self.data_oid(p.object_no), op)
            .await
        {
            Ok(reply) => first_data(reply.results),
            Err(e) if e.is_not_found() => self.read_absent(&p, snap).await?,
            Err(e) => return Err(e.into()),
        };
        if data.len() as u64 == p.length {
            return Ok(data);
        }
        let mut padded = BytesMut::zeroed(p.length as usize);
        let n = data.len().min(padded.len());
        padded[..n].copy_from_slice(&data[..n]);
        Ok(padded.freeze())
    }
}

fn check_bounds(offset: u64, length: u64, size: u64) -> Result<(), RbdError> {
    match offset.checked_add(length) {
        Some(end) if end <= size => Ok(()),
        _ => Err(RbdError::OutOfBounds {
            offset,
            length,
            size,
        }),
    }
}

/// librbd's argument checks for the ops that have some.
fn validate(op: &IoOp, order: u8) -> Result<(), RbdError> {
    match op {
        IoOp::WriteSame {
            length, pattern, ..
        } if pattern.is_empty() || length % pattern.len() as u64 != 0 => {
            return Err(RbdError::Invalid(format!(
                "write-same length {length} is not a multiple of its {}-byte pattern",
                pattern.len()
            )));
        }
        IoOp::CompareAndWrite { offset, cmp, data } => {
            if cmp.len() != data.len() {
                return Err(RbdError::Invalid(
                    "compare-and-write buffers differ in length".into(),
                ));
            }
            let last = offset + (data.len() as u64).max(1) - 1;
            if offset >> order != last >> order {
                return Err(RbdError::Invalid(
                    "compare-and-write crosses an object boundary".into(),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// `pattern` repeated over `length` bytes that start `phase` bytes into the repetition.
fn expand(pattern: &Bytes, phase: u64, length: u64) -> Bytes {
    let plen = pattern.len();
    let mut out = BytesMut::with_capacity(length as usize);
    let mut at = (phase % plen as u64) as usize;
    while out.len() < length as usize {
        let take = (plen - at).min(length as usize - out.len());
        out.extend_from_slice(&pattern[at..at + take]);
        at = 0;
    }
    out.freeze()
}

/// What a batch does to one object, for the object map.
fn effect(steps: &[Step]) -> Effect {
    let last_removal = steps
        .iter()
        .rposition(|s| matches!(s, Step::Zero { whole: true, .. }));
    let writes_after = |from: usize| {
        steps[from..]
            .iter()
            .any(|s| matches!(s, Step::Write { .. } | Step::Compare { .. }))
    };
    match last_removal {
        Some(r) if !writes_after(r) => Effect::Removes,
        _ if writes_after(0) => Effect::Writes,
        _ => Effect::Zeroes,
    }
}

fn first_data(results: Vec<ReadResult>) -> Bytes {
    results
        .into_iter()
        .find_map(|r| match r {
            ReadResult::Data(b) => Some(b),
            _ => None,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_same_expands_with_phase() {
        let p = Bytes::from_static(b"abc");
        assert_eq!(&expand(&p, 0, 7)[..], b"abcabca");
        assert_eq!(&expand(&p, 4, 5)[..], b"bcabc");
    }

    #[test]
    fn effects_follow_the_last_removal() {
        let w = Step::Write {
            offset: 0,
            data: Bytes::from_static(b"x"),
        };
        let rm = Step::Zero {
            offset: 0,
            length: 4096,
            whole: true,
        };
        let z = Step::Zero {
            offset: 1,
            length: 2,
            whole: false,
        };
        assert_eq!(effect(&[w.clone(), rm.clone()]), Effect::Removes);
        assert_eq!(effect(&[rm.clone(), w.clone()]), Effect::Writes);
        assert_eq!(effect(std::slice::from_ref(&z)), Effect::Zeroes);
        assert_eq!(effect(&[rm, z]), Effect::Removes);
    }

    #[test]
    fn compare_and_write_stays_in_one_object() {
        let b = Bytes::from_static(b"ab");
        let op = |offset| IoOp::CompareAndWrite {
            offset,
            cmp: b.clone(),
            data: b.clone(),
        };
        assert!(validate(&op(4094), 12).is_ok());
        assert!(matches!(validate(&op(4095), 12), Err(RbdError::Invalid(_))));
    }
}
