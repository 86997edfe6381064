//! Objects of the embedded backend and how compound operations apply to them, with the
//! semantics measured on Ceph 16.2.15 (see the conformance suite): atomic write ops, reads
//! past the end return nothing, a zero that reaches the end truncates, a missing omap key
//! compares as an empty value, only modifying steps move the version and mtime (an op of
//! asserts and compares does not), and self-managed snapshots keep copy-on-write clones.
//!
//! Snapshots as RADOS keeps them (its `SnapSet`): a write carrying a snap context newer
//! than the object's last one first preserves the current head as a clone holding the
//! snapshots taken in between; a read at a snapshot newer than the object's last snap
//! context sees the head, an older one the clone holding it, else the object did not exist
//! then (ENOENT). Removing a snapshot drops it from its clone, and an empty clone goes.

use std::collections::BTreeMap;
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

    /// Sizes were checked against [`MAX_OBJECT_SIZE`] before the op ran.
    fn write(&mut self, offset: u64, bytes: &[u8]) {
        let start = offset as usize;
        let end = start + bytes.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(bytes);
    }

    /// The OSD's ZERO: nothing past the end, a truncate when the range reaches the end.
    fn zero(&mut self, offset: u64, len: u64) {
        let size = self.data.len() as u64;
        if offset >= size {
            return;
        }
        let end = offset.saturating_add(len);
        if end >= size {
            self.data.truncate(offset as usize);
        } else {
            self.data[offset as usize..end as usize].fill(0);
        }
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
        // As the OSD: past `start_after`, or from the prefix itself (inclusive) if later.
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

/// A preserved head version (a clone), readable at the snapshots it holds.
#[derive(Clone, Debug)]
struct Snapped {
    /// The live snapshots this clone serves, newest first.
    snaps: Vec<SnapId>,
    data: ObjData,
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
            .find(|c| c.snaps.contains(&snap))
            .map(|c| &c.data)
    }

    /// Copy-on-write before a write under `snapc`.
    pub(super) fn preserve(&mut self, snapc: Option<&SnapContext>) {
        let Some(snapc) = snapc else { return };
        if snapc.seq <= self.seq {
            return;
        }
        let newer: Vec<SnapId> = snapc
            .snaps
            .iter()
            .copied()
            .filter(|s| *s > self.seq)
            .collect();
        if let Some(head) = &self.head
            && !newer.is_empty()
        {
            self.clones.push(Snapped {
                snaps: newer,
                data: head.clone(),
            });
        }
        self.seq = snapc.seq;
    }

    /// Forgets a removed snapshot (the OSD's snap trimmer); clones left without one go.
    pub(super) fn trim(&mut self, removed: SnapId) {
        for c in &mut self.clones {
            c.snaps.retain(|s| *s != removed);
        }
        self.clones.retain(|c| !c.snaps.is_empty());
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

/// The OSD's `osd_max_object_size` (default 128 MiB): writes beyond it fail with `EFBIG`.
pub const MAX_OBJECT_SIZE: u64 = 128 << 20;

fn check_size(end: u64) -> Result<(), Errno> {
    if end > MAX_OBJECT_SIZE {
        return Err(Errno::EFBIG);
    }
    Ok(())
}

fn run_cls(
    env: &OpEnv<'_>,
    obj: &mut Option<ObjData>,
    call: (&str, &str, &Bytes),
    modified: &mut bool,
) -> Result<Bytes, Errno> {
    let (class, method, input) = call;
    let (_, f) = env.cls.lookup(class, method)?;
    let mut ctx = ClsContext {
        obj,
        caller: env.caller,
        watchers: env.watchers.clone(),
        modified: false,
    };
    let out = f(&mut ctx, input.clone());
    *modified |= ctx.modified;
    out
}

/// Whether a step is a modification in the OSD's sense (it moves the object's version and
/// mtime even when it changes nothing, like removing an absent key). Exec steps modify
/// when their method writes.
fn modifies(step: &WriteStep) -> bool {
    !matches!(
        step,
        WriteStep::Exec { .. }
            | WriteStep::AssertExists
            | WriteStep::AssertVersion(_)
            | WriteStep::OmapCmp { .. }
            | WriteStep::CmpXattr { .. }
    )
}

/// Whether the op may change the object at all (so a snapshot clone must be taken first).
pub(super) fn may_modify(steps: &[WriteStep]) -> bool {
    steps
        .iter()
        .any(|s| modifies(s) || matches!(s, WriteStep::Exec { .. }))
}

/// Stateless checks the OSD makes before running anything.
pub(super) fn validate_write(steps: &[WriteStep]) -> Result<(), Errno> {
    // An op without steps is refused; a zero-length zero is no step (never sent: it
    // aborts a 16.2 OSD).
    if steps
        .iter()
        .all(|s| matches!(s, WriteStep::Zero { len: 0, .. }))
    {
        return Err(Errno::EINVAL);
    }
    for step in steps {
        match step {
            WriteStep::Write { offset, data } => {
                check_size(offset.saturating_add(data.len() as u64))?
            }
            WriteStep::WriteFull(data) => check_size(data.len() as u64)?,
            WriteStep::Truncate(size) => check_size(*size)?,
            _ => {}
        }
    }
    Ok(())
}

/// Applies the steps of a write op to `head` (the object's current head); `Ok(true)` when
/// it modified the object. The caller keeps a backup when a step may fail after another
/// changed something (see [`needs_backup`]), so failure is all-or-nothing.
pub(super) fn apply_write(
    env: &OpEnv<'_>,
    head: &mut Option<ObjData>,
    version: u64,
    steps: &[WriteStep],
) -> Result<bool, Errno> {
    let mut modified = false;
    for step in steps {
        modified |= modifies(step);
        match step {
            WriteStep::Create { exclusive } => match head {
                Some(_) if *exclusive => return Err(Errno::EEXIST),
                Some(_) => {}
                None => *head = Some(ObjData::new()),
            },
            WriteStep::Write { offset, data } => {
                head.get_or_insert_with(ObjData::new).write(*offset, data)
            }
            WriteStep::WriteFull(data) => head
                .get_or_insert_with(ObjData::new)
                .set_data(data.to_vec()),
            WriteStep::Append(data) => {
                let size = head.as_ref().map_or(0, |o| o.data.len());
                check_size((size + data.len()) as u64)?;
                head.get_or_insert_with(ObjData::new).append(data)
            }
            WriteStep::Truncate(size) => {
                if let Some(o) = head {
                    o.data.resize(*size as usize, 0);
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
                run_cls(env, head, (class, method, input), &mut modified)?;
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
    }
    if let (true, Some(o)) = (modified, head.as_mut()) {
        o.mtime = SystemTime::now();
    }
    Ok(modified)
}

/// Whether a failure could come after a change, so the caller must keep a backup: a
/// fallible step after the first, or a cls method (which may write, then fail).
pub(super) fn needs_backup(steps: &[WriteStep]) -> bool {
    let fallible = |s: &WriteStep| {
        !matches!(
            s,
            WriteStep::Write { .. }
                | WriteStep::WriteFull(_)
                | WriteStep::Truncate(_)
                | WriteStep::Zero { .. }
                | WriteStep::OmapSet(_)
                | WriteStep::SetXattr { .. }
        )
    };
    let exec = |s: &WriteStep| matches!(s, WriteStep::Exec { .. });
    steps.iter().any(exec) || steps.iter().skip(1).any(fallible)
}

/// Runs the steps of a read op on the object at `snap`; the results and whether a cls
/// method wrote. A missing object fails the op with `ENOENT` before any step runs unless
/// the op `may_write` (it calls a write method: such a read op still writes, as on Ceph).
pub(super) fn apply_read(
    env: &OpEnv<'_>,
    obj: &mut Object,
    snap: SnapId,
    steps: &[ReadStep],
    may_write: bool,
) -> Result<(Vec<ReadResult>, bool), Errno> {
    if obj.at(snap).is_none() && !may_write {
        return Err(Errno::ENOENT);
    }
    let mut modified = false;
    let mut results = Vec::with_capacity(steps.len());
    for step in steps {
        let r = match step {
            ReadStep::Exec {
                class,
                method,
                input,
            } => {
                let call = (class.as_str(), method.as_str(), input);
                let out = if snap == NOSNAP {
                    run_cls(env, &mut obj.head, call, &mut modified)?
                } else {
                    // A snapshot is immutable: the method sees a copy.
                    let mut copy = obj.at(snap).cloned();
                    run_cls(env, &mut copy, call, &mut false)?
                };
                ReadResult::Data(out)
            }
            _ => read_step(obj.at(snap).ok_or(Errno::ENOENT)?, obj.version, step)?,
        };
        results.push(r);
    }
    if let (true, Some(o)) = (modified, obj.head.as_mut()) {
        o.mtime = SystemTime::now();
    }
    Ok((results, modified))
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
