//! Objects of the embedded backend and how compound operations apply to them, with the
//! semantics measured on Ceph 16.2.15 (see the conformance suite): atomic write ops, reads
//! past the end return nothing, a missing omap key compares as an empty value, and
//! self-managed snapshots keep copy-on-write clones of each object.
//!
//! Snapshots as RADOS keeps them: a write carrying a snap context newer than the object's
//! last one first preserves the current head as a clone covering the snapshots taken in
//! between; a read at a snapshot finds the clone covering it, or the head if the object has
//! not been written since.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use bytes::Bytes;

use super::cls::{ClsContext, ClsRegistry};
use crate::rados::{
    CmpOp, Errno, NOSNAP, ObjectStat, ReadResult, ReadStep, SnapContext, SnapId, WriteStep,
};

/// The content of one object version.
#[derive(Clone, Debug)]
pub struct ObjData {
    pub(super) data: Vec<u8>,
    pub(super) omap: BTreeMap<String, Bytes>,
    pub(super) xattrs: BTreeMap<String, Bytes>,
    pub(super) mtime: SystemTime,
}

impl ObjData {
    pub(super) fn new() -> Self {
        ObjData {
            data: Vec::new(),
            omap: BTreeMap::new(),
            xattrs: BTreeMap::new(),
            mtime: SystemTime::now(),
        }
    }

    pub(super) fn set_data(&mut self, data: Vec<u8>) {
        self.data = data;
    }

    pub(super) fn append(&mut self, data: &[u8]) {
        self.data.extend_from_slice(data);
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        let start = usize::try_from(offset).map_err(|_| Errno(libc::EFBIG))?;
        let end = start.checked_add(bytes.len()).ok_or(Errno(libc::EFBIG))?;
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(bytes);
        Ok(())
    }

    fn zero(&mut self, offset: u64, len: u64) {
        let len_now = self.data.len() as u64;
        let start = offset.min(len_now) as usize;
        let end = offset.saturating_add(len).min(len_now) as usize;
        self.data[start..end].fill(0);
    }

    fn read(&self, offset: u64, len: u64) -> Bytes {
        let size = self.data.len() as u64;
        let start = offset.min(size);
        let end = if len == 0 {
            size
        } else {
            offset.saturating_add(len).min(size)
        };
        Bytes::copy_from_slice(&self.data[start as usize..end as usize])
    }

    /// Up to `max` pairs after `start_after` with keys starting with `prefix`, and whether more
    /// matching keys follow.
    pub(super) fn omap_page(
        &self,
        start_after: &str,
        prefix: &str,
        max: usize,
    ) -> (BTreeMap<String, Bytes>, bool) {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        // A key equal to the prefix is listed unless it is `start_after` itself.
        let from = if start_after < prefix {
            Included(prefix)
        } else {
            Excluded(start_after)
        };
        let mut it = self
            .omap
            .range::<str, _>((from, Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        let page: BTreeMap<String, Bytes> = it
            .by_ref()
            .take(max)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (page, it.next().is_some())
    }
}

/// A preserved head version, readable at the snapshots in `(after, upto]`.
#[derive(Clone, Debug)]
struct Snapped {
    after: SnapId,
    upto: SnapId,
    data: Option<ObjData>,
}

/// One object: its head, its snapshot clones and its version.
#[derive(Clone, Debug, Default)]
pub struct Object {
    pub(super) head: Option<ObjData>,
    clones: Vec<Snapped>,
    /// The newest snap context seq this object was written under.
    seq: SnapId,
    pub(super) version: u64,
}

impl Object {
    pub(super) fn is_empty(&self) -> bool {
        self.head.is_none() && self.clones.is_empty()
    }

    /// The object as seen at `snap` (`NOSNAP`: the head).
    fn at(&self, snap: SnapId) -> Option<&ObjData> {
        if snap == NOSNAP || snap > self.seq {
            return self.head.as_ref();
        }
        self.clones
            .iter()
            .find(|c| c.after < snap && snap <= c.upto)
            .and_then(|c| c.data.as_ref())
    }

    /// Copy-on-write before a write under `snapc`.
    pub(super) fn preserve(&mut self, snapc: Option<&SnapContext>) {
        let Some(snapc) = snapc else { return };
        if snapc.seq <= self.seq {
            return;
        }
        let newer_snaps = snapc.snaps.iter().any(|s| *s > self.seq);
        if self.head.is_some() && newer_snaps {
            self.clones.push(Snapped {
                after: self.seq,
                upto: snapc.seq,
                data: self.head.clone(),
            });
        }
        self.seq = snapc.seq;
    }

    /// Drops clones that no longer cover any live snapshot.
    pub(super) fn trim(&mut self, live: &BTreeSet<SnapId>) {
        self.clones
            .retain(|c| live.range(c.after + 1..=c.upto).next().is_some());
    }

    /// Sets the head back to its state at `snap`.
    pub(super) fn rollback(&mut self, snap: SnapId) {
        self.head = self.at(snap).cloned();
    }
}

/// Everything one operation needs besides the object.
pub(super) struct OpEnv<'a> {
    pub cls: &'a ClsRegistry,
    pub caller: super::cls::Caller,
    pub watchers: Vec<super::cls::Caller>,
}

fn compare(stored: &[u8], op: CmpOp, given: &[u8]) -> bool {
    match op {
        CmpOp::Eq => stored == given,
        CmpOp::Ne => stored != given,
        CmpOp::Gt => stored > given,
        CmpOp::Gte => stored >= given,
        CmpOp::Lt => stored < given,
        CmpOp::Lte => stored <= given,
    }
}

fn check_version(current: u64, asserted: u64) -> Result<(), Errno> {
    match asserted.cmp(&current) {
        std::cmp::Ordering::Less => Err(Errno::ERANGE),
        std::cmp::Ordering::Greater => Err(Errno::EOVERFLOW),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

fn run_cls(
    env: &OpEnv<'_>,
    obj: &mut Option<ObjData>,
    class: &str,
    method: &str,
    input: &Bytes,
) -> Result<Bytes, Errno> {
    let (_, f) = env.cls.lookup(class, method)?;
    let mut ctx = ClsContext {
        obj,
        caller: env.caller,
        watchers: env.watchers.clone(),
    };
    f(&mut ctx, input.clone())
}

/// Applies the steps of a write op to `head` (the object's current head). The caller keeps a
/// backup when a step may fail after another changed something, so failure is all-or-nothing.
pub(super) fn apply_write(
    env: &OpEnv<'_>,
    head: &mut Option<ObjData>,
    version: u64,
    steps: &[WriteStep],
) -> Result<(), Errno> {
    for step in steps {
        match step {
            WriteStep::Create { exclusive } => match head {
                Some(_) if *exclusive => return Err(Errno::EEXIST),
                Some(_) => {}
                None => *head = Some(ObjData::new()),
            },
            WriteStep::Write { offset, data } => {
                head.get_or_insert_with(ObjData::new).write(*offset, data)?
            }
            WriteStep::WriteFull(data) => head
                .get_or_insert_with(ObjData::new)
                .set_data(data.to_vec()),
            WriteStep::Append(data) => head.get_or_insert_with(ObjData::new).append(data),
            WriteStep::Truncate(size) => {
                if let Some(o) = head {
                    let size = usize::try_from(*size).map_err(|_| Errno(libc::EFBIG))?;
                    o.data.resize(size, 0);
                }
            }
            WriteStep::Zero { offset, len } => {
                if let Some(o) = head {
                    o.zero(*offset, *len);
                }
            }
            WriteStep::Remove => {
                if head.take().is_none() {
                    return Err(Errno::ENOENT);
                }
            }
            WriteStep::OmapSet(kv) => head
                .get_or_insert_with(ObjData::new)
                .omap
                .extend(kv.clone()),
            WriteStep::OmapRmKeys(keys) => {
                let o = head.as_mut().ok_or(Errno::ENOENT)?;
                for k in keys {
                    o.omap.remove(k);
                }
            }
            WriteStep::OmapClear => head.as_mut().ok_or(Errno::ENOENT)?.omap.clear(),
            WriteStep::SetXattr { name, value } => {
                head.get_or_insert_with(ObjData::new)
                    .xattrs
                    .insert(name.clone(), value.clone());
            }
            WriteStep::RmXattr(name) => {
                head.as_mut().ok_or(Errno::ENOENT)?.xattrs.remove(name);
            }
            WriteStep::Exec {
                class,
                method,
                input,
            } => {
                run_cls(env, head, class, method, input)?;
            }
            WriteStep::AssertExists => {
                head.as_ref().ok_or(Errno::ENOENT)?;
            }
            WriteStep::AssertVersion(v) => {
                head.as_ref().ok_or(Errno::ENOENT)?;
                check_version(version, *v)?;
            }
            WriteStep::OmapCmp { key, op, value } => {
                let o = head.as_ref().ok_or(Errno::ENOENT)?;
                let stored = o.omap.get(key).map(|b| &b[..]).unwrap_or(&[]);
                if !compare(stored, *op, value) {
                    return Err(Errno::ECANCELED);
                }
            }
            WriteStep::CmpXattr { name, op, value } => {
                let o = head.as_ref().ok_or(Errno::ENOENT)?;
                let stored = o.xattrs.get(name).map(|b| &b[..]).unwrap_or(&[]);
                if !compare(stored, *op, value) {
                    return Err(Errno::ECANCELED);
                }
            }
        }
        if let Some(o) = head {
            o.mtime = SystemTime::now();
        }
    }
    Ok(())
}

/// Whether a failure could come after a change, so the caller must keep a backup.
pub(super) fn needs_backup(steps: &[WriteStep]) -> bool {
    let fallible = |s: &WriteStep| {
        !matches!(
            s,
            WriteStep::Write { .. }
                | WriteStep::WriteFull(_)
                | WriteStep::Append(_)
                | WriteStep::Truncate(_)
                | WriteStep::Zero { .. }
                | WriteStep::OmapSet(_)
                | WriteStep::SetXattr { .. }
        )
    };
    steps.iter().skip(1).any(fallible)
}

/// Runs the steps of a read op on the object at `snap`. Exec steps may change the head (a
/// write method called through a read op still writes, as on Ceph): `head` is that head.
pub(super) fn apply_read(
    env: &OpEnv<'_>,
    obj: &mut Object,
    snap: SnapId,
    steps: &[ReadStep],
) -> Result<Vec<ReadResult>, Errno> {
    let only_exec = steps.iter().all(|s| matches!(s, ReadStep::Exec { .. }));
    if obj.at(snap).is_none() && !only_exec {
        return Err(Errno::ENOENT);
    }
    let mut results = Vec::with_capacity(steps.len());
    for step in steps {
        let view = obj.at(snap);
        let r = match step {
            ReadStep::Exec {
                class,
                method,
                input,
            } => {
                let out = if snap == NOSNAP {
                    run_cls(env, &mut obj.head, class, method, input)?
                } else {
                    let mut copy = view.cloned();
                    run_cls(env, &mut copy, class, method, input)?
                };
                ReadResult::Data(out)
            }
            _ => read_step(view.ok_or(Errno::ENOENT)?, obj.version, step)?,
        };
        results.push(r);
    }
    Ok(results)
}

fn read_step(o: &ObjData, version: u64, step: &ReadStep) -> Result<ReadResult, Errno> {
    Ok(match step {
        ReadStep::Read { offset, len } => ReadResult::Data(o.read(*offset, *len)),
        ReadStep::Stat => ReadResult::Stat(ObjectStat {
            size: o.data.len() as u64,
            mtime: o.mtime,
        }),
        ReadStep::OmapGetVals {
            start_after,
            prefix,
            max,
        } => {
            let (entries, more) = o.omap_page(
                start_after,
                prefix,
                usize::try_from(*max).unwrap_or(usize::MAX),
            );
            ReadResult::Omap { entries, more }
        }
        ReadStep::OmapGetKeys { start_after, max } => {
            let (page, more) =
                o.omap_page(start_after, "", usize::try_from(*max).unwrap_or(usize::MAX));
            ReadResult::Keys {
                keys: page.into_keys().collect(),
                more,
            }
        }
        ReadStep::OmapGetValsByKeys(keys) => {
            let entries = keys
                .iter()
                .filter_map(|k| o.omap.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            ReadResult::Omap {
                entries,
                more: false,
            }
        }
        ReadStep::GetXattr(name) => {
            ReadResult::Data(o.xattrs.get(name).cloned().ok_or(Errno::ENODATA)?)
        }
        ReadStep::GetXattrs => ReadResult::Xattrs(o.xattrs.clone()),
        ReadStep::AssertExists => ReadResult::Done,
        ReadStep::AssertVersion(v) => {
            check_version(version, *v)?;
            ReadResult::Done
        }
        ReadStep::OmapCmp { key, op, value } => {
            let stored = o.omap.get(key).map(|b| &b[..]).unwrap_or(&[]);
            if !compare(stored, *op, value) {
                return Err(Errno::ECANCELED);
            }
            ReadResult::Done
        }
        ReadStep::CmpXattr { name, op, value } => {
            let stored = o.xattrs.get(name).map(|b| &b[..]).unwrap_or(&[]);
            if !compare(stored, *op, value) {
                return Err(Errno::ECANCELED);
            }
            ReadResult::Done
        }
        // Exec steps are run by `apply_read`, which has the object itself.
        ReadStep::Exec { .. } => return Err(Errno::EINVAL),
    })
}
