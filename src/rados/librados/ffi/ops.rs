//! Compound ops: each [`WriteStep`] / [`ReadStep`] becomes one librados op step, submitted
//! with `rados_aio_{write,read}_op_operate`; the outputs come back as [`ReadResult`]s.
//! (Part of `ffi`: it is all raw pointers.)
//!
//! librados' C API has no single-xattr read step, so `GetXattr` reads all xattrs and picks
//! one (`ENODATA` when absent, as `rados_getxattr` would say). Omap keys are passed with
//! explicit lengths (the `*2` calls), so no key is cut at a NUL.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int};
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ceph::rados::*;
use libc::{size_t, time_t};

use super::{Errno, RawIoCtx, cstr, land, launch, omap_entries, xattr_entries};
use super::{
    rados_read_op_omap_cmp2, rados_read_op_omap_get_keys2, rados_read_op_omap_get_vals_by_keys2,
    rados_read_op_omap_get_vals2, rados_write_op_omap_cmp2, rados_write_op_omap_rm_keys2,
    rados_write_op_omap_set2,
};
use crate::rados::{ObjectStat, ReadOp, ReadResult, ReadStep, WriteOp, WriteStep};

/// What a write op writes into: the `prval` of each step (only exec and omap_cmp have one).
struct WriteOut {
    op: rados_write_op_t,
    prvals: Vec<c_int>,
    _io: Arc<RawIoCtx>,
}

// SAFETY: the op handle is owned by this struct alone and used by one thread at a time.
unsafe impl Send for WriteOut {}

impl Drop for WriteOut {
    fn drop(&mut self) {
        // SAFETY: released once; the op has completed or was never submitted.
        unsafe { rados_release_write_op(self.op) };
    }
}

/// Runs an atomic write op; returns the object's new version.
pub(in crate::rados::librados) async fn write(
    io: &Arc<RawIoCtx>,
    oid: &str,
    op: &WriteOp,
) -> Result<u64, Errno> {
    let rx = {
        let o = cstr(oid)?;
        // SAFETY: creates an op owned by `WriteOut` (released in its Drop).
        let handle = unsafe { rados_create_write_op() };
        let out = WriteOut {
            op: handle,
            prvals: vec![0; op.steps.len()],
            _io: io.clone(),
        };
        launch(out, |out, c| {
            // SAFETY: `out` is the flight's live WriteOut; the prvals buffer never moves.
            let prvals = unsafe { (*out).prvals.as_mut_ptr() };
            for (i, step) in op.steps.iter().enumerate() {
                // SAFETY: `i` < steps.len() == prvals.len().
                let prval = unsafe { prvals.add(i) };
                // SAFETY: a live op; inputs are copied by librados during each call.
                if let Err(e) = unsafe { add_write_step(handle, step, prval) } {
                    return -e.0;
                }
            }
            // SAFETY: live op and ioctx; `c` handed over once; null mtime means "now".
            unsafe { rados_aio_write_op_operate(handle, io.io, c, o.as_ptr(), ptr::null_mut(), 0) }
        })?
    };
    let mut landed = land(rx).await?;
    if landed.ret < 0 {
        return Err(Errno::from_ret(landed.ret));
    }
    match landed.out().prvals.iter().find(|r| **r < 0) {
        Some(r) => Err(Errno::from_ret(*r)),
        None => Ok(landed.version),
    }
}

/// SAFETY (caller): `op` is a live write op; `prval` stays valid until it completes.
unsafe fn add_write_step(
    op: rados_write_op_t,
    step: &WriteStep,
    prval: *mut c_int,
) -> Result<(), Errno> {
    // SAFETY (all calls): per the caller contract; every input pointer is valid for the
    // call's duration and librados copies the data it points to.
    unsafe {
        match step {
            WriteStep::Create { exclusive } => {
                rados_write_op_create(op, *exclusive as c_int, ptr::null())
            }
            WriteStep::Write { offset, data } => {
                rados_write_op_write(op, data.as_ptr().cast(), data.len(), *offset)
            }
            WriteStep::WriteFull(data) => {
                rados_write_op_write_full(op, data.as_ptr().cast(), data.len())
            }
            WriteStep::Append(data) => rados_write_op_append(op, data.as_ptr().cast(), data.len()),
            WriteStep::Truncate(size) => rados_write_op_truncate(op, *size),
            // Ceph 16.2's OSD asserts on a zero-length ZERO and aborts (seen in the lab): never
            // send one; zeroing nothing is a no-op anyway.
            WriteStep::Zero { len: 0, .. } => {}
            WriteStep::Zero { offset, len } => rados_write_op_zero(op, *offset, *len),
            WriteStep::Remove => rados_write_op_remove(op),
            WriteStep::OmapSet(kv) => {
                let (keys, key_lens) = ptrs(kv.keys().map(|k| k.as_bytes()));
                let (vals, val_lens) = ptrs(kv.values().map(|v| &v[..]));
                rados_write_op_omap_set2(
                    op,
                    keys.as_ptr(),
                    vals.as_ptr(),
                    key_lens.as_ptr(),
                    val_lens.as_ptr(),
                    kv.len(),
                );
            }
            WriteStep::OmapRmKeys(keys) => {
                let (k, lens) = ptrs(keys.iter().map(|k| k.as_bytes()));
                rados_write_op_omap_rm_keys2(op, k.as_ptr(), lens.as_ptr(), keys.len());
            }
            WriteStep::OmapClear => rados_write_op_omap_clear(op),
            WriteStep::SetXattr { name, value } => {
                let n = cstr(name)?;
                rados_write_op_setxattr(op, n.as_ptr(), value.as_ptr().cast(), value.len());
            }
            WriteStep::RmXattr(name) => rados_write_op_rmxattr(op, cstr(name)?.as_ptr()),
            WriteStep::Exec {
                class,
                method,
                input,
            } => {
                let (c, m) = (cstr(class)?, cstr(method)?);
                rados_write_op_exec(
                    op,
                    c.as_ptr(),
                    m.as_ptr(),
                    input.as_ptr().cast(),
                    input.len(),
                    prval,
                );
            }
            WriteStep::AssertExists => rados_write_op_assert_exists(op),
            WriteStep::AssertVersion(v) => rados_write_op_assert_version(op, *v),
            WriteStep::OmapCmp {
                key,
                op: cmp,
                value,
            } => rados_write_op_omap_cmp2(
                op,
                key.as_ptr().cast(),
                *cmp as u8,
                value.as_ptr().cast(),
                key.len(),
                value.len(),
                prval,
            ),
            WriteStep::CmpXattr {
                name,
                op: cmp,
                value,
            } => {
                let n = cstr(name)?;
                rados_write_op_cmpxattr(
                    op,
                    n.as_ptr(),
                    *cmp as u8,
                    value.as_ptr().cast(),
                    value.len(),
                );
            }
        }
    }
    Ok(())
}

/// Pointer and length arrays for the `*2` omap calls (borrowing `items`).
fn ptrs<'a>(items: impl Iterator<Item = &'a [u8]>) -> (Vec<*const c_char>, Vec<size_t>) {
    items
        .map(|b| (b.as_ptr().cast::<c_char>(), b.len()))
        .unzip()
}

/// Where librados writes one read step's output.
enum Slot {
    Read {
        /// Capacity for the whole read, length 0 until it lands: never zeroed, so only the
        /// pages librados fills become resident (a 1 MiB journal piece of a few entries
        /// costs a few pages, not a megabyte).
        buf: Vec<u8>,
        got: size_t,
        rval: c_int,
    },
    Stat {
        size: u64,
        mtime: time_t,
        rval: c_int,
    },
    /// `keys_only` for OmapGetKeys; `more` stays 0 for by-keys lookups.
    Omap {
        iter: rados_omap_iter_t,
        more: u8,
        rval: c_int,
        keys_only: bool,
    },
    /// `name`: return only this xattr's value (GetXattr).
    Xattrs {
        iter: rados_xattrs_iter_t,
        rval: c_int,
        name: Option<String>,
    },
    Exec {
        buf: *mut c_char,
        len: size_t,
        rval: c_int,
    },
    Done,
}

struct ReadOut {
    op: rados_read_op_t,
    slots: Vec<Slot>,
    _io: Arc<RawIoCtx>,
}

// SAFETY: the op, iterators and buffers are owned by this struct alone.
unsafe impl Send for ReadOut {}

impl Drop for ReadOut {
    fn drop(&mut self) {
        // SAFETY: each handle is released once; the op has completed or was never
        // submitted. Iterators are created when their step is added, so any may be set.
        unsafe {
            rados_release_read_op(self.op);
            for slot in &self.slots {
                match slot {
                    Slot::Omap { iter, .. } if !iter.is_null() => rados_omap_get_end(*iter),
                    Slot::Xattrs { iter, .. } if !iter.is_null() => rados_getxattrs_end(*iter),
                    Slot::Exec { buf, .. } if !buf.is_null() => rados_buffer_free(*buf),
                    _ => {}
                }
            }
        }
    }
}

fn slot_for(step: &ReadStep) -> Slot {
    match step {
        ReadStep::Read { len, .. } => Slot::Read {
            buf: Vec::with_capacity(*len as usize),
            got: 0,
            rval: 0,
        },
        ReadStep::Stat => Slot::Stat {
            size: 0,
            mtime: 0,
            rval: 0,
        },
        ReadStep::OmapGetVals { .. } | ReadStep::OmapGetValsByKeys(_) => Slot::Omap {
            iter: ptr::null_mut(),
            more: 0,
            rval: 0,
            keys_only: false,
        },
        ReadStep::OmapGetKeys { .. } => Slot::Omap {
            iter: ptr::null_mut(),
            more: 0,
            rval: 0,
            keys_only: true,
        },
        ReadStep::GetXattr(name) => Slot::Xattrs {
            iter: ptr::null_mut(),
            rval: 0,
            name: Some(name.clone()),
        },
        ReadStep::GetXattrs => Slot::Xattrs {
            iter: ptr::null_mut(),
            rval: 0,
            name: None,
        },
        ReadStep::Exec { .. } => Slot::Exec {
            buf: ptr::null_mut(),
            len: 0,
            rval: 0,
        },
        ReadStep::AssertExists
        | ReadStep::AssertVersion(_)
        | ReadStep::OmapCmp { .. }
        | ReadStep::CmpXattr { .. } => Slot::Done,
    }
}

/// Runs a read op on `io` (whose read snapshot is the op's); every `Read` step must have a
/// non-zero length. Returns the results and the object version.
pub(in crate::rados::librados) async fn read(
    io: &Arc<RawIoCtx>,
    oid: &str,
    op: &ReadOp,
) -> Result<(Vec<ReadResult>, u64), Errno> {
    let rx = {
        let o = cstr(oid)?;
        // SAFETY: creates an op owned by `ReadOut` (released in its Drop).
        let handle = unsafe { rados_create_read_op() };
        let out = ReadOut {
            op: handle,
            slots: op.steps.iter().map(slot_for).collect(),
            _io: io.clone(),
        };
        launch(out, |out, c| {
            // SAFETY: `out` is the flight's live ReadOut; the slots buffer never moves.
            let slots = unsafe { (*out).slots.as_mut_ptr() };
            for (i, step) in op.steps.iter().enumerate() {
                // SAFETY: `i` < steps.len() == slots.len(); the slot outlives the op.
                if let Err(e) = unsafe { add_read_step(handle, step, slots.add(i)) } {
                    return -e.0;
                }
            }
            // SAFETY: live op and ioctx; `c` handed over once.
            unsafe { rados_aio_read_op_operate(handle, io.io, c, o.as_ptr(), 0) }
        })?
    };
    let mut landed = land(rx).await?;
    if landed.ret < 0 {
        return Err(Errno::from_ret(landed.ret));
    }
    let version = landed.version;
    // SAFETY: the op has completed, so every slot is filled in.
    let results = landed
        .out()
        .slots
        .iter_mut()
        .map(|s| unsafe { take_result(s) })
        .collect::<Result<_, _>>()?;
    Ok((results, version))
}

/// SAFETY (caller): `op` is a live read op; `slot` is the step's slot (made by `slot_for`)
/// and stays valid until the op completes.
unsafe fn add_read_step(
    op: rados_read_op_t,
    step: &ReadStep,
    slot: *mut Slot,
) -> Result<(), Errno> {
    // SAFETY (all calls): per the caller contract; inputs are copied by librados during the
    // call; out-pointers point into the slot, whose variant matches the step.
    unsafe {
        match (step, &mut *slot) {
            (ReadStep::Read { offset, .. }, Slot::Read { buf, got, rval }) => rados_read_op_read(
                op,
                *offset,
                buf.capacity(),
                buf.as_mut_ptr().cast(),
                got,
                rval,
            ),
            (ReadStep::Stat, Slot::Stat { size, mtime, rval }) => {
                rados_read_op_stat(op, size, mtime, rval)
            }
            (
                ReadStep::OmapGetVals {
                    start_after,
                    prefix,
                    max,
                },
                Slot::Omap {
                    iter, more, rval, ..
                },
            ) => {
                let (a, p) = (cstr(start_after)?, cstr(prefix)?);
                rados_read_op_omap_get_vals2(op, a.as_ptr(), p.as_ptr(), *max, iter, more, rval);
            }
            (
                ReadStep::OmapGetKeys { start_after, max },
                Slot::Omap {
                    iter, more, rval, ..
                },
            ) => {
                let a = cstr(start_after)?;
                rados_read_op_omap_get_keys2(op, a.as_ptr(), *max, iter, more, rval);
            }
            (ReadStep::OmapGetValsByKeys(keys), Slot::Omap { iter, rval, .. }) => {
                let (k, lens) = ptrs(keys.iter().map(|k| k.as_bytes()));
                rados_read_op_omap_get_vals_by_keys2(
                    op,
                    k.as_ptr(),
                    keys.len(),
                    lens.as_ptr(),
                    iter,
                    rval,
                );
            }
            (ReadStep::GetXattr(_) | ReadStep::GetXattrs, Slot::Xattrs { iter, rval, .. }) => {
                rados_read_op_getxattrs(op, iter, rval)
            }
            (
                ReadStep::Exec {
                    class,
                    method,
                    input,
                },
                Slot::Exec { buf, len, rval },
            ) => {
                let (c, m) = (cstr(class)?, cstr(method)?);
                rados_read_op_exec(
                    op,
                    c.as_ptr(),
                    m.as_ptr(),
                    input.as_ptr().cast(),
                    input.len(),
                    buf,
                    len,
                    rval,
                );
            }
            (ReadStep::AssertExists, Slot::Done) => rados_read_op_assert_exists(op),
            (ReadStep::AssertVersion(v), Slot::Done) => rados_read_op_assert_version(op, *v),
            (
                ReadStep::OmapCmp {
                    key,
                    op: cmp,
                    value,
                },
                Slot::Done,
            ) => {
                // No prval: a failed compare fails the whole op (ECANCELED).
                rados_read_op_omap_cmp2(
                    op,
                    key.as_ptr().cast(),
                    *cmp as u8,
                    value.as_ptr().cast(),
                    key.len(),
                    value.len(),
                    ptr::null_mut(),
                );
            }
            (
                ReadStep::CmpXattr {
                    name,
                    op: cmp,
                    value,
                },
                Slot::Done,
            ) => {
                let n = cstr(name)?;
                rados_read_op_cmpxattr(
                    op,
                    n.as_ptr(),
                    *cmp as u8,
                    value.as_ptr().cast(),
                    value.len(),
                );
            }
            _ => return Err(Errno::EINVAL), // unreachable: slot_for matches the step
        }
    }
    Ok(())
}

/// A read result that does not pin a much larger allocation for as long as it (or a slice
/// of it, such as a journal entry's payload) lives.
fn right_sized(buf: Vec<u8>) -> Bytes {
    if buf.capacity() > 64 << 10 && buf.len() < buf.capacity() / 2 {
        Bytes::copy_from_slice(&buf)
    } else {
        Bytes::from(buf)
    }
}

/// SAFETY (caller): the op owning `slot` has completed (iterators and buffers are filled).
unsafe fn take_result(slot: &mut Slot) -> Result<ReadResult, Errno> {
    let fail = |rval: c_int| {
        if rval < 0 {
            Err(Errno::from_ret(rval))
        } else {
            Ok(())
        }
    };
    Ok(match slot {
        Slot::Read { buf, got, rval } => {
            fail(*rval)?;
            // SAFETY: librados wrote `got` bytes (at most the capacity it was given).
            unsafe { buf.set_len((*got).min(buf.capacity())) };
            ReadResult::Data(right_sized(std::mem::take(buf)))
        }
        Slot::Stat { size, mtime, rval } => {
            fail(*rval)?;
            let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs((*mtime).max(0) as u64);
            ReadResult::Stat(ObjectStat { size: *size, mtime })
        }
        Slot::Omap {
            iter,
            more,
            rval,
            keys_only,
        } => {
            fail(*rval)?;
            // SAFETY: per the caller contract.
            let entries = unsafe { omap_entries(*iter) };
            let more = *more != 0;
            if *keys_only {
                let keys = entries
                    .into_iter()
                    .map(|(k, _)| utf8(k))
                    .collect::<Result<_, _>>()?;
                ReadResult::Keys { keys, more }
            } else {
                let entries = entries
                    .into_iter()
                    .map(|(k, v)| Ok((utf8(k)?, Bytes::from(v))))
                    .collect::<Result<_, Errno>>()?;
                ReadResult::Omap { entries, more }
            }
        }
        Slot::Xattrs { iter, rval, name } => {
            fail(*rval)?;
            // SAFETY: per the caller contract.
            let attrs = unsafe { xattr_entries(*iter) };
            match name {
                Some(name) => match attrs.into_iter().find(|(n, _)| n == name.as_bytes()) {
                    Some((_, v)) => ReadResult::Data(Bytes::from(v)),
                    None => return Err(Errno::ENODATA),
                },
                None => {
                    let map: Result<BTreeMap<_, _>, Errno> = attrs
                        .into_iter()
                        .map(|(n, v)| Ok((utf8(n)?, Bytes::from(v))))
                        .collect();
                    ReadResult::Xattrs(map?)
                }
            }
        }
        Slot::Exec { buf, len, rval } => {
            fail(*rval)?;
            let data = if buf.is_null() {
                Bytes::new()
            } else {
                // SAFETY: librados allocated `len` bytes at `buf`; Drop frees it.
                Bytes::copy_from_slice(unsafe {
                    std::slice::from_raw_parts(*buf as *const u8, *len)
                })
            };
            ReadResult::Data(data)
        }
        Slot::Done => ReadResult::Done,
    })
}

/// Omap keys and xattr names are strings in our model; anything else is a corrupt object.
fn utf8(b: Vec<u8>) -> Result<String, Errno> {
    String::from_utf8(b).map_err(|_| Errno::EBADMSG)
}
