//! Every `unsafe` line of the librados backend: handles, compound ops over librados' aio
//! API, the completion → `oneshot` bridge, the watch callbacks, and the few librbd calls
//! that must go through librbd itself (mirror demote / promote).
//!
//! Memory rules, from librados' C API (Pacific):
//! - op *inputs* (data, omap maps, cls input) are copied into bufferlists when a step is
//!   added, so they only live for the call that adds them;
//! - op *outputs* (read buffers, `prval`s, omap/xattr iterators, exec buffers, pointers
//!   such as `pmore`) are written when the op completes, so they live in a heap [`Flight`]
//!   owned by the completion callback, not by the awaiting future: a dropped future leaves
//!   the op valid and the callback frees everything once (by dropping what it failed to
//!   send);
//! - an ioctx must outlive its aio ops (reads do not take a reference on it), so every
//!   flight holds an `Arc<RawIoCtx>`.
//!
//! The `ceph` crate provides most declarations; the few it lacks (or declares wrongly, like
//! `rados_nobjects_list_next`) are declared below from `/usr/include/rados/librados.h`.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;
use std::sync::{Arc, Mutex};

use ceph::rados::*;
use libc::size_t;
use tokio::sync::oneshot;

use super::super::{Errno, Notification, WatchSender};
use bytes::Bytes;

unsafe extern "C" {
    fn rados_aio_get_version(c: rados_completion_t) -> u64;
    fn rados_aio_notify(
        io: rados_ioctx_t,
        o: *const c_char,
        completion: rados_completion_t,
        buf: *const c_char,
        buf_len: c_int,
        timeout_ms: u64,
        reply_buffer: *mut *mut c_char,
        reply_buffer_len: *mut size_t,
    ) -> c_int;
    fn rados_read_op_omap_get_vals2(
        op: rados_read_op_t,
        start_after: *const c_char,
        filter_prefix: *const c_char,
        max_return: u64,
        iter: *mut rados_omap_iter_t,
        pmore: *mut u8,
        prval: *mut c_int,
    );
    fn rados_read_op_omap_get_keys2(
        op: rados_read_op_t,
        start_after: *const c_char,
        max_return: u64,
        iter: *mut rados_omap_iter_t,
        pmore: *mut u8,
        prval: *mut c_int,
    );
    fn rados_read_op_omap_get_vals_by_keys2(
        op: rados_read_op_t,
        keys: *const *const c_char,
        num_keys: size_t,
        key_lens: *const size_t,
        iter: *mut rados_omap_iter_t,
        prval: *mut c_int,
    );
    fn rados_read_op_omap_cmp2(
        op: rados_read_op_t,
        key: *const c_char,
        comparison_operator: u8,
        val: *const c_char,
        key_len: size_t,
        val_len: size_t,
        prval: *mut c_int,
    );
    fn rados_write_op_omap_cmp2(
        op: rados_write_op_t,
        key: *const c_char,
        comparison_operator: u8,
        val: *const c_char,
        key_len: size_t,
        val_len: size_t,
        prval: *mut c_int,
    );
    fn rados_write_op_omap_set2(
        op: rados_write_op_t,
        keys: *const *const c_char,
        vals: *const *const c_char,
        key_lens: *const size_t,
        val_lens: *const size_t,
        num: size_t,
    );
    fn rados_write_op_omap_rm_keys2(
        op: rados_write_op_t,
        keys: *const *const c_char,
        key_lens: *const size_t,
        keys_len: size_t,
    );
    fn rados_omap_get_next2(
        iter: rados_omap_iter_t,
        key: *mut *mut c_char,
        val: *mut *mut c_char,
        key_len: *mut size_t,
        val_len: *mut size_t,
    ) -> c_int;
    /// The `ceph` crate declares this one with an extra level of indirection.
    #[link_name = "rados_nobjects_list_next"]
    fn nobjects_list_next(
        ctx: rados_list_ctx_t,
        entry: *mut *const c_char,
        key: *mut *const c_char,
        nspace: *mut *const c_char,
    ) -> c_int;
    fn rados_service_register(
        cluster: rados_t,
        service: *const c_char,
        daemon: *const c_char,
        metadata_dict: *const c_char,
    ) -> c_int;
    fn rados_service_update_status(cluster: rados_t, status_dict: *const c_char) -> c_int;
    fn rados_getaddrs(cluster: rados_t, addrs: *mut *mut c_char) -> c_int;
}

// librbd, for what only librbd can do cooperatively: demoting or promoting an image while
// another librbd client holds its exclusive lock (it asks the holder to hand the lock over).
// Loaded on first use, not linked: the daemon never needs it, and a linked librbd costs
// every process ~4 MiB of resident relocated pages.
type RbdOpenById =
    unsafe extern "C" fn(rados_ioctx_t, *const c_char, *mut *mut c_void, *const c_char) -> c_int;
type RbdImageFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type RbdPromote = unsafe extern "C" fn(*mut c_void, bool) -> c_int;

struct Librbd {
    open_by_id: RbdOpenById,
    close: RbdImageFn,
    demote: RbdImageFn,
    promote: RbdPromote,
}

/// librbd's entry points, loaded once; `Err` names why it could not be.
fn librbd() -> Result<&'static Librbd, &'static str> {
    static LIB: std::sync::OnceLock<Result<Librbd, String>> = std::sync::OnceLock::new();
    let loaded = LIB.get_or_init(|| {
        // SAFETY: dlopen/dlsym/dlerror with NUL-terminated names; the handle is never
        // closed, so the symbols stay valid for the life of the process.
        unsafe {
            let handle = libc::dlopen(c"librbd.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            let why = || {
                let e = libc::dlerror();
                match e.is_null() {
                    true => "librbd.so.1: not loadable".to_string(),
                    false => CStr::from_ptr(e).to_string_lossy().into_owned(),
                }
            };
            if handle.is_null() {
                return Err(why());
            }
            let sym = |name: &CStr| {
                let f = libc::dlsym(handle, name.as_ptr());
                if f.is_null() { Err(why()) } else { Ok(f) }
            };
            Ok(Librbd {
                open_by_id: std::mem::transmute::<*mut c_void, RbdOpenById>(sym(
                    c"rbd_open_by_id",
                )?),
                close: std::mem::transmute::<*mut c_void, RbdImageFn>(sym(c"rbd_close")?),
                demote: std::mem::transmute::<*mut c_void, RbdImageFn>(sym(
                    c"rbd_mirror_image_demote",
                )?),
                promote: std::mem::transmute::<*mut c_void, RbdPromote>(sym(
                    c"rbd_mirror_image_promote",
                )?),
            })
        }
    });
    loaded.as_ref().map_err(String::as_str)
}

mod ops;
pub(super) use ops::{read, write};

/// A C string for librados; interior NULs are `EINVAL` (RADOS names never contain them).
pub(super) fn cstr(s: &str) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

fn check(ret: c_int) -> Result<c_int, Errno> {
    if ret < 0 {
        Err(Errno::from_ret(ret))
    } else {
        Ok(ret)
    }
}

/// One librados client instance (`rados_t`), connected.
pub(super) struct Cluster {
    handle: rados_t,
    /// librados crashes on some calls (e.g. `rados_watch_flush`) before a connect.
    connected: bool,
    /// Registered watches by cookie: librados dereferences a cookie as a pointer, so only
    /// cookies found here are ever passed back to it.
    watches: Mutex<HashMap<u64, WatchReg>>,
}

// SAFETY: a connected `rados_t` is thread-safe (librados serialises internally); the watch
// table is behind a mutex.
unsafe impl Send for Cluster {}
// SAFETY: as above.
unsafe impl Sync for Cluster {}

impl Cluster {
    /// Creates an unconnected client (`rados_create2`) for `name` (e.g. "client.admin").
    pub(super) fn create(cluster_name: &str, name: &str) -> Result<Cluster, Errno> {
        let (cn, n) = (cstr(cluster_name)?, cstr(name)?);
        let mut handle: rados_t = ptr::null_mut();
        // SAFETY: valid out-pointer and NUL-terminated strings that outlive the call.
        check(unsafe { rados_create2(&mut handle, cn.as_ptr(), n.as_ptr(), 0) })?;
        Ok(Cluster {
            handle,
            connected: false,
            watches: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn conf_read_file(&self, path: &str) -> Result<(), Errno> {
        let p = cstr(path)?;
        // SAFETY: handle is live; `p` outlives the call.
        check(unsafe { rados_conf_read_file(self.handle, p.as_ptr()) }).map(drop)
    }

    pub(super) fn conf_set(&self, option: &str, value: &str) -> Result<(), Errno> {
        let (o, v) = (cstr(option)?, cstr(value)?);
        // SAFETY: handle is live; both strings outlive the call (librados copies them).
        check(unsafe { rados_conf_set(self.handle, o.as_ptr(), v.as_ptr()) }).map(drop)
    }

    /// Blocking: authenticates and fetches maps, bounded by `client_mount_timeout`.
    pub(super) fn connect(&mut self) -> Result<(), Errno> {
        // SAFETY: handle is live and not yet connected.
        check(unsafe { rados_connect(self.handle) })?;
        self.connected = true;
        Ok(())
    }

    pub(super) fn fsid(&self) -> Result<String, Errno> {
        let mut buf = [0u8; 64];
        // SAFETY: the buffer and its length match; librados NUL-terminates within it.
        check(unsafe { rados_cluster_fsid(self.handle, buf.as_mut_ptr().cast(), buf.len()) })?;
        Ok(CStr::from_bytes_until_nul(&buf)
            .map_err(|_| Errno::EIO)?
            .to_string_lossy()
            .into_owned())
    }

    /// This client's messenger address(es), as librados prints them.
    pub(super) fn addrs(&self) -> Result<String, Errno> {
        let mut out: *mut c_char = ptr::null_mut();
        // SAFETY: handle is live and connected; librados allocates the NUL-terminated string.
        check(unsafe { rados_getaddrs(self.handle, &mut out) })?;
        if out.is_null() {
            return Err(Errno::EIO);
        }
        // SAFETY: `out` is a NUL-terminated string from librados, freed exactly once here.
        let addrs = unsafe { CStr::from_ptr(out) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: as above.
        unsafe { rados_buffer_free(out) };
        Ok(addrs)
    }

    pub(super) fn instance_id(&self) -> u64 {
        // SAFETY: handle is live and connected.
        unsafe { rados_get_instance_id(self.handle) }
    }

    /// Blocking: waits until this client has the cluster's newest osdmap. After a blocklist
    /// entry is added, the ops we send next carry that epoch, so an OSD applies the
    /// blocklist before it serves them.
    pub(super) fn wait_for_latest_osdmap(&self) -> Result<(), Errno> {
        // SAFETY: handle is live.
        let r = unsafe { rados_wait_for_latest_osdmap(self.handle) };
        if r < 0 {
            Err(Errno::from_ret(r))
        } else {
            Ok(())
        }
    }

    /// Blocking (waits for an osdmap).
    pub(super) fn pool_lookup(&self, name: &str) -> Result<i64, Errno> {
        let n = cstr(name)?;
        // SAFETY: handle is live; `n` outlives the call.
        let id = unsafe { rados_pool_lookup(self.handle, n.as_ptr()) };
        if id < 0 {
            Err(Errno::from_ret(id as c_int))
        } else {
            Ok(id)
        }
    }

    /// Blocking. Pool names, in the osdmap's order.
    pub(super) fn pool_names(&self) -> Result<Vec<String>, Errno> {
        let mut buf = vec![0u8; 4096];
        loop {
            // SAFETY: buffer and length match; librados writes at most `len` bytes.
            let need =
                check(unsafe { rados_pool_list(self.handle, buf.as_mut_ptr().cast(), buf.len()) })?;
            if need as usize <= buf.len() {
                buf.truncate(need as usize);
                break;
            }
            buf.resize(need as usize, 0);
        }
        Ok(buf
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }

    /// Blocking. Runs a monitor command; returns its output buffer, or the errno and the
    /// monitor's status text.
    pub(super) fn mon_command(&self, cmd: &str, input: &[u8]) -> Result<Vec<u8>, (Errno, String)> {
        let c = cstr(cmd).map_err(|e| (e, String::new()))?;
        let mut cmds = [c.as_ptr()];
        let (mut out, mut out_len, mut outs, mut outs_len) =
            (ptr::null_mut(), 0, ptr::null_mut(), 0);
        // SAFETY: one valid command pointer; input slice valid for the call; the out-pointers
        // receive librados-allocated buffers that are freed below with rados_buffer_free.
        let ret = unsafe {
            rados_mon_command(
                self.handle,
                cmds.as_mut_ptr(),
                1,
                input.as_ptr().cast(),
                input.len(),
                &mut out,
                &mut out_len,
                &mut outs,
                &mut outs_len,
            )
        };
        // SAFETY: librados set each pointer to a buffer of the given length, or left it null.
        let (data, status) = unsafe { (take_buffer(out, out_len), take_buffer(outs, outs_len)) };
        if ret < 0 {
            Err((
                Errno::from_ret(ret),
                String::from_utf8_lossy(&status).into_owned(),
            ))
        } else {
            Ok(data)
        }
    }

    /// Registers this client in the manager's service map (`service`/`daemon`), with static
    /// metadata; beacons then keep it there for the life of the connection.
    pub(super) fn service_register(
        &self,
        service: &str,
        daemon: &str,
        meta: &[(String, String)],
    ) -> Result<(), Errno> {
        let (s, d, m) = (cstr(service)?, cstr(daemon)?, dict(meta)?);
        // SAFETY: handle is live; all strings outlive the call; `m` is a NUL-separated,
        // double-NUL-terminated dictionary as the API requires.
        check(unsafe {
            rados_service_register(self.handle, s.as_ptr(), d.as_ptr(), m.as_ptr().cast())
        })
        .map(drop)
    }

    pub(super) fn service_update_status(&self, status: &[(String, String)]) -> Result<(), Errno> {
        let m = dict(status)?;
        // SAFETY: handle is live; `m` is a valid dictionary encoding that outlives the call.
        check(unsafe { rados_service_update_status(self.handle, m.as_ptr().cast()) }).map(drop)
    }

    /// Blocking. Registers a watch on `oid`; notifications go to `sender`. The watch gets
    /// its own ioctx so that its callback context never depends on another handle's life.
    pub(super) fn watch(
        &self,
        pool_id: i64,
        ns: &str,
        oid: &str,
        sender: WatchSender,
    ) -> Result<u64, Errno> {
        let o = cstr(oid)?;
        let io = create_ioctx(self.handle, pool_id, ns)?;
        let ctx = Box::into_raw(Box::new(WatchCtx { sender, io, oid: o }));
        let mut cookie = 0u64;
        // SAFETY: `io` is a live ioctx; `ctx` stays allocated until unwatch2 + watch_flush
        // (in `unwatch` or Drop) guarantee no callback is running or will run.
        let ret = unsafe {
            rados_watch2(
                io,
                (*ctx).oid.as_ptr(),
                &mut cookie,
                Some(on_notify),
                Some(on_watch_error),
                ctx.cast(),
            )
        };
        if ret < 0 {
            // SAFETY: registration failed, so librados holds neither pointer.
            unsafe {
                drop(Box::from_raw(ctx));
                rados_ioctx_destroy(io);
            }
            return Err(Errno::from_ret(ret));
        }
        self.watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cookie, WatchReg { io, ctx });
        Ok(cookie)
    }

    /// Blocking. Ends a watch and frees its context once no callback can run.
    pub(super) fn unwatch(&self, cookie: u64) -> Result<(), Errno> {
        let reg = self
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&cookie)
            .ok_or(Errno::ENOENT)?;
        // SAFETY: `cookie` came from rados_watch2 on `reg.io` and was never unwatched.
        let ret = unsafe { rados_unwatch2(reg.io, cookie) };
        // SAFETY: the linger op is cancelled whatever unwatch2 returned; the flush waits
        // out callbacks already queued, after which `reg` may be freed.
        unsafe { rados_watch_flush(self.handle) };
        drop(reg);
        check(ret).map(drop)
    }

    /// Milliseconds since the watch was last confirmed, or its error.
    pub(super) fn watch_check(&self, cookie: u64) -> Result<u64, Errno> {
        let watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let reg = watches.get(&cookie).ok_or(Errno::ENOENT)?;
        // SAFETY: a registered, not yet unwatched cookie on its live ioctx (the lock keeps
        // `unwatch` from freeing it meanwhile). Non-blocking.
        check(unsafe { rados_watch_check(reg.io, cookie) }).map(|ms| ms as u64)
    }
}

impl Drop for Cluster {
    /// Shutting down blocks and must not run on a librados thread (the last reference may
    /// be dropped by a completion callback), so it runs on a thread of its own.
    fn drop(&mut self) {
        let watches: Vec<_> = self
            .watches
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        let (handle, connected) = (SendPtr(self.handle), self.connected);
        let shutdown = std::thread::spawn(move || {
            let handle = handle;
            if connected {
                for (cookie, reg) in &watches {
                    // SAFETY: registered cookies on their live ioctxs, unwatched once here.
                    unsafe { rados_unwatch2(reg.io, *cookie) };
                }
                // SAFETY: waits out queued watch callbacks, so the contexts may be freed;
                // the ioctxs go before the shutdown.
                unsafe { rados_watch_flush(handle.0) };
                drop(watches);
            }
            // SAFETY: the client is unreferenced; shut down once.
            unsafe { rados_shutdown(handle.0) };
        });
        pending_shutdowns().push(shutdown);
    }
}

/// Shutdown threads not yet joined. A process that exits while one still runs would tear
/// librados' globals down under it (seen: `boost::bad_get` aborting a test binary at exit),
/// so an exit handler joins them first.
fn pending_shutdowns() -> std::sync::MutexGuard<'static, Vec<std::thread::JoinHandle<()>>> {
    static PENDING: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
        std::sync::Mutex::new(Vec::new());
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn()`; librados, loaded before us, registered
        // its own exit-time destructors earlier, so ours runs first.
        unsafe { libc::atexit(join_pending_shutdowns) };
    });
    let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    pending.retain(|h| !h.is_finished());
    pending
}

extern "C" fn join_pending_shutdowns() {
    let handles = std::mem::take(&mut *pending_shutdowns());
    for h in handles {
        let _ = h.join();
    }
}

struct SendPtr(rados_t);
// SAFETY: moved to the shutdown thread, which is then its only user.
unsafe impl Send for SendPtr {}

/// Encodes a dictionary as `k\0v\0...\0` (the service-map format).
fn dict(pairs: &[(String, String)]) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        for s in [k, v] {
            if s.as_bytes().contains(&0) {
                return Err(Errno::EINVAL);
            }
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
    }
    out.push(0);
    Ok(out)
}

/// Copies and frees a librados-allocated buffer.
/// SAFETY (caller): `p` is null or a librados buffer of `len` bytes not yet freed.
unsafe fn take_buffer(p: *mut c_char, len: size_t) -> Vec<u8> {
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: per the caller contract.
    let v = unsafe { std::slice::from_raw_parts(p as *const u8, len) }.to_vec();
    // SAFETY: freed exactly once, here.
    unsafe { rados_buffer_free(p) };
    v
}

fn create_ioctx(cluster: rados_t, pool_id: i64, ns: &str) -> Result<rados_ioctx_t, Errno> {
    let n = cstr(ns)?;
    let mut io: rados_ioctx_t = ptr::null_mut();
    // SAFETY: live cluster handle, valid out-pointer.
    check(unsafe { rados_ioctx_create2(cluster, pool_id, &mut io) })?;
    // SAFETY: `io` is fresh and unshared; librados copies the namespace.
    unsafe { rados_ioctx_set_namespace(io, n.as_ptr()) };
    Ok(io)
}

/// How an ioctx is specialised at creation (never afterwards: its settings are shared
/// by every op that runs on it).
pub(super) enum IoTune<'a> {
    Head,
    /// Writes carry this snapshot context.
    WriteCtx {
        seq: u64,
        snaps: &'a [u64],
    },
    /// Reads see this snapshot.
    ReadSnap(u64),
}

/// An ioctx handle; keeps its cluster alive. Configured once at creation, then shared.
pub(super) struct RawIoCtx {
    io: rados_ioctx_t,
    _cluster: Arc<Cluster>,
}

// SAFETY: librados ioctxs are thread-safe for I/O; the settings that are not (namespace,
// snap read, write ctx) are only applied in `create`, before the handle is shared.
unsafe impl Send for RawIoCtx {}
// SAFETY: as above.
unsafe impl Sync for RawIoCtx {}

impl RawIoCtx {
    pub(super) fn create(
        cluster: &Arc<Cluster>,
        pool_id: i64,
        ns: &str,
        tune: IoTune<'_>,
    ) -> Result<RawIoCtx, Errno> {
        let io = create_ioctx(cluster.handle, pool_id, ns)?;
        let raw = RawIoCtx {
            io,
            _cluster: cluster.clone(),
        };
        match tune {
            IoTune::Head => {}
            IoTune::WriteCtx { seq, snaps } => {
                let mut snaps = snaps.to_vec();
                let n = c_int::try_from(snaps.len()).map_err(|_| Errno::EINVAL)?;
                // SAFETY: unshared ioctx; the snaps array and count match; librados copies it.
                check(unsafe {
                    rados_ioctx_selfmanaged_snap_set_write_ctx(io, seq, snaps.as_mut_ptr(), n)
                })?;
            }
            // SAFETY: unshared ioctx.
            IoTune::ReadSnap(snap) => unsafe { rados_ioctx_snap_set_read(io, snap) },
        }
        Ok(raw)
    }

    pub(super) fn pool_name(&self) -> Result<String, Errno> {
        let mut buf = vec![0u8; 1024];
        // SAFETY: buffer and length match.
        let n = check(unsafe {
            rados_ioctx_get_pool_name(self.io, buf.as_mut_ptr().cast(), buf.len() as u32)
        })?;
        buf.truncate(n as usize);
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Blocking.
    pub(super) fn selfmanaged_snap_create(&self) -> Result<u64, Errno> {
        let mut snap = 0;
        // SAFETY: live ioctx, valid out-pointer.
        check(unsafe { rados_ioctx_selfmanaged_snap_create(self.io, &mut snap) })?;
        Ok(snap)
    }

    /// Blocking.
    pub(super) fn selfmanaged_snap_remove(&self, snap: u64) -> Result<(), Errno> {
        // SAFETY: live ioctx.
        check(unsafe { rados_ioctx_selfmanaged_snap_remove(self.io, snap) }).map(drop)
    }

    /// Blocking; uses this ioctx's write snapshot context.
    pub(super) fn selfmanaged_snap_rollback(&self, oid: &str, snap: u64) -> Result<(), Errno> {
        let o = cstr(oid)?;
        // SAFETY: live ioctx; `o` outlives the call.
        check(unsafe { rados_ioctx_selfmanaged_snap_rollback(self.io, o.as_ptr(), snap) }).map(drop)
    }

    /// Blocking. Every object name in this ioctx's namespace.
    pub(super) fn list_objects(&self) -> Result<Vec<String>, Errno> {
        let mut ctx: rados_list_ctx_t = ptr::null_mut();
        // SAFETY: live ioctx, valid out-pointer; closed below on every path.
        check(unsafe { rados_nobjects_list_open(self.io, &mut ctx) })?;
        let mut names = Vec::new();
        let result = loop {
            let (mut entry, mut key, mut nspace) = (ptr::null(), ptr::null(), ptr::null());
            // SAFETY: open list context; the returned strings live until the next call.
            let ret = unsafe { nobjects_list_next(ctx, &mut entry, &mut key, &mut nspace) };
            if ret == -libc::ENOENT {
                break Ok(names);
            }
            if ret < 0 {
                break Err(Errno::from_ret(ret));
            }
            // SAFETY: on success `entry` is a NUL-terminated name.
            names.push(
                unsafe { CStr::from_ptr(entry) }
                    .to_string_lossy()
                    .into_owned(),
            );
        };
        // SAFETY: closed exactly once.
        unsafe { rados_nobjects_list_close(ctx) };
        result
    }

    /// Blocking: opens image `image_id` with librbd, demotes it (`promote: None`) or
    /// promotes it (`Some(force)`), and closes it. librbd acquires the image's exclusive
    /// lock for this, asking a live holder to release it, so it may take seconds.
    pub(super) fn mirror_image_set_primary(
        &self,
        image_id: &str,
        promote: Option<bool>,
    ) -> Result<(), Errno> {
        let rbd = librbd().map_err(|why| {
            tracing::error!(%why, "librbd is needed to promote or demote an image");
            Errno::EOPNOTSUPP
        })?;
        let id = cstr(image_id)?;
        let mut image: *mut c_void = ptr::null_mut();
        // SAFETY: live ioctx (librbd duplicates it for the image); `id` outlives the call;
        // a null snapshot name opens the head; valid out-pointer.
        check(unsafe { (rbd.open_by_id)(self.io, id.as_ptr(), &mut image, ptr::null()) })?;
        // SAFETY: `image` was opened above and is closed exactly once below.
        let ret = unsafe {
            match promote {
                None => (rbd.demote)(image),
                Some(force) => (rbd.promote)(image, force),
            }
        };
        // SAFETY: as above; nothing uses `image` afterwards.
        let closed = unsafe { (rbd.close)(image) };
        check(ret)?;
        check(closed).map(drop)
    }

    /// Acks a notify; a non-blocking submission.
    pub(super) fn notify_ack(
        &self,
        oid: &str,
        notify_id: u64,
        cookie: u64,
        reply: &[u8],
    ) -> Result<(), Errno> {
        let o = cstr(oid)?;
        let len = c_int::try_from(reply.len()).map_err(|_| Errno::E2BIG)?;
        // SAFETY: live ioctx; `o` and `reply` outlive the call (librados copies the reply).
        check(unsafe {
            rados_notify_ack(
                self.io,
                o.as_ptr(),
                notify_id,
                cookie,
                reply.as_ptr().cast(),
                len,
            )
        })
        .map(drop)
    }
}

impl Drop for RawIoCtx {
    fn drop(&mut self) {
        // SAFETY: every aio op on this ioctx holds an `Arc` to it, so none is in flight.
        unsafe { rados_ioctx_destroy(self.io) };
    }
}

/// What a watch callback needs; owned by the cluster's watch table.
struct WatchCtx {
    sender: WatchSender,
    io: rados_ioctx_t,
    oid: CString,
}

struct WatchReg {
    io: rados_ioctx_t,
    ctx: *mut WatchCtx,
}

// SAFETY: the raw pointers are only used under the rules in `Cluster::watch`/`unwatch`.
unsafe impl Send for WatchReg {}

impl Drop for WatchReg {
    fn drop(&mut self) {
        // SAFETY: only dropped after unwatch2 + watch_flush: no callback can use `ctx`, and
        // no op uses `io` (it is private to this watch).
        unsafe {
            drop(Box::from_raw(self.ctx));
            rados_ioctx_destroy(self.io);
        }
    }
}

extern "C" fn on_notify(
    arg: *mut c_void,
    notify_id: u64,
    handle: u64,
    notifier_id: u64,
    data: *mut c_void,
    len: size_t,
) {
    // SAFETY: `arg` is the WatchCtx registered with this watch, alive until unwatch + flush.
    let ctx = unsafe { &*(arg as *const WatchCtx) };
    let payload = if data.is_null() || len == 0 {
        Bytes::new()
    } else {
        // SAFETY: librados passes `len` readable bytes at `data` for the callback's duration.
        Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(data as *const u8, len) })
    };
    let n = Notification {
        notify_id,
        cookie: handle,
        notifier_id,
        payload,
    };
    if !ctx.sender.offer(n) {
        // The consumer is behind (it will see `Lagged` and re-read): ack now so that the
        // notifier does not wait out its timeout. A non-blocking submission.
        // SAFETY: the watch's own live ioctx and oid; a null, zero-length reply.
        unsafe { rados_notify_ack(ctx.io, ctx.oid.as_ptr(), notify_id, handle, ptr::null(), 0) };
    }
}

extern "C" fn on_watch_error(arg: *mut c_void, _cookie: u64, err: c_int) {
    // SAFETY: as in `on_notify`.
    let ctx = unsafe { &*(arg as *const WatchCtx) };
    ctx.sender.error(Errno::from_ret(err));
}

/// The completion bridge: an op's outputs travel with the oneshot sender to the callback.
struct Flight<T> {
    tx: Option<oneshot::Sender<Landed<T>>>,
    out: T,
}

/// A completed op: librados' return value, the object version, and the outputs.
struct Landed<T> {
    ret: c_int,
    version: u64,
    flight: Box<Flight<T>>,
}

impl<T> Landed<T> {
    fn out(&mut self) -> &mut T {
        &mut self.flight.out
    }
}

extern "C" fn on_complete<T: Send>(c: rados_completion_t, arg: *mut c_void) {
    // SAFETY: `arg` is the Flight leaked by `launch`; librados calls this exactly once.
    let mut flight = unsafe { Box::from_raw(arg as *mut Flight<T>) };
    // SAFETY: `c` is this op's completion; released once, here (librados holds its own
    // reference until the callback returns).
    let (ret, version) = unsafe { (rados_aio_get_return_value(c), rados_aio_get_version(c)) };
    // SAFETY: as above.
    unsafe { rados_aio_release(c) };
    if let Some(tx) = flight.tx.take() {
        // If the future is gone, the outputs come back and are dropped (freed) here.
        let _ = tx.send(Landed {
            ret,
            version,
            flight,
        });
    }
}

/// Submits an aio op. `submit` gets a pointer to `out` (at its final address, valid until
/// the callback is done) and the completion, and must hand the completion to exactly one
/// `rados_aio_*` call, returning that call's result (or a negative errno before any).
/// `out` owns everything the op writes into; the callback drops it if nobody awaits.
fn launch<T: Send + 'static>(
    out: T,
    submit: impl FnOnce(*mut T, rados_completion_t) -> c_int,
) -> Result<oneshot::Receiver<Landed<T>>, Errno> {
    let (tx, rx) = oneshot::channel();
    let flight = Box::into_raw(Box::new(Flight { tx: Some(tx), out }));
    let mut c: rados_completion_t = ptr::null_mut();
    // SAFETY: `flight` is a valid pointer handed to the callback, which reclaims it.
    let ret =
        unsafe { rados_aio_create_completion(flight.cast(), Some(on_complete::<T>), None, &mut c) };
    if ret < 0 {
        // SAFETY: no completion exists, so the callback never runs; reclaim the flight.
        drop(unsafe { Box::from_raw(flight) });
        return Err(Errno::from_ret(ret));
    }
    // SAFETY: `flight` is live until the callback runs, which needs `c`, which only
    // `submit` can start; `submit` must not touch `out` after handing `c` over.
    let ret = submit(unsafe { &raw mut (*flight).out }, c);
    if ret < 0 {
        // SAFETY: submission failed, so the callback never runs: release both here.
        unsafe {
            rados_aio_release(c);
            drop(Box::from_raw(flight));
        }
        return Err(Errno::from_ret(ret));
    }
    Ok(rx)
}

/// Awaits a launched op. Cancel safe: dropping the future leaves the op to the callback.
async fn land<T>(rx: oneshot::Receiver<Landed<T>>) -> Result<Landed<T>, Errno> {
    // The sender only vanishes unsent if librados never completes the op (it always does:
    // the flight keeps the ioctx, hence the client, alive).
    rx.await.map_err(|_| Errno::EIO)
}

/// Outputs of a notify: librados' reply buffer.
struct NotifyOut {
    reply: *mut c_char,
    reply_len: size_t,
    _io: Arc<RawIoCtx>,
}

// SAFETY: the reply buffer is owned by this struct alone.
unsafe impl Send for NotifyOut {}

impl NotifyOut {
    /// The encoded reply, if librados produced one (also on `ETIMEDOUT`).
    fn reply(&self) -> Option<&[u8]> {
        // SAFETY: after completion `reply` is null or a buffer of `reply_len` bytes.
        (!self.reply.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(self.reply as *const u8, self.reply_len) })
    }
}

impl Drop for NotifyOut {
    fn drop(&mut self) {
        if !self.reply.is_null() {
            // SAFETY: freed exactly once, here.
            unsafe { rados_buffer_free(self.reply) };
        }
    }
}

/// Sends a notify and waits (up to `timeout_ms`) for the watchers' acks; returns the
/// encoded reply, also when some watchers timed out (`ETIMEDOUT` with a reply).
pub(super) async fn notify(
    io: &Arc<RawIoCtx>,
    oid: &str,
    payload: &[u8],
    timeout_ms: u64,
) -> Result<Vec<u8>, Errno> {
    let o = cstr(oid)?;
    let len = c_int::try_from(payload.len()).map_err(|_| Errno::E2BIG)?;
    let out = NotifyOut {
        reply: ptr::null_mut(),
        reply_len: 0,
        _io: io.clone(),
    };
    let rx = launch(out, |out, c| {
        // SAFETY: live ioctx (held by the flight); payload copied by librados; the reply
        // pointers point into the flight, which lives until the callback is done.
        unsafe {
            rados_aio_notify(
                io.io,
                o.as_ptr(),
                c,
                payload.as_ptr().cast(),
                len,
                timeout_ms,
                &raw mut (*out).reply,
                &raw mut (*out).reply_len,
            )
        }
    })?;
    let mut landed = land(rx).await?;
    match (landed.ret, landed.out().reply()) {
        (0, reply) => Ok(reply.unwrap_or_default().to_vec()),
        (r, Some(reply)) if r == -libc::ETIMEDOUT => Ok(reply.to_vec()),
        (r, _) => Err(Errno::from_ret(r)),
    }
}

/// Copies out the entries of an omap iterator (keys, values) and nothing else.
/// SAFETY (caller): `iter` is a live iterator of a completed op.
unsafe fn omap_entries(iter: rados_omap_iter_t) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let (mut k, mut v, mut kl, mut vl) = (ptr::null_mut(), ptr::null_mut(), 0, 0);
        // SAFETY: per the caller contract; the pointers are valid until the next call.
        let ret = unsafe { rados_omap_get_next2(iter, &mut k, &mut v, &mut kl, &mut vl) };
        if ret < 0 || k.is_null() {
            return out;
        }
        // SAFETY: `k`/`v` point to `kl`/`vl` bytes (a null `v` only with `vl == 0`).
        let key = unsafe { std::slice::from_raw_parts(k as *const u8, kl) }.to_vec();
        let val = if v.is_null() {
            Vec::new()
        } else {
            unsafe { std::slice::from_raw_parts(v as *const u8, vl) }.to_vec()
        };
        out.push((key, val));
    }
}

/// Copies out the entries of an xattrs iterator.
/// SAFETY (caller): `iter` is a live iterator of a completed op.
unsafe fn xattr_entries(iter: rados_xattrs_iter_t) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let (mut n, mut v, mut len) = (ptr::null(), ptr::null(), 0);
        // SAFETY: per the caller contract; the pointers are valid until the next call.
        let ret = unsafe { rados_getxattrs_next(iter, &mut n, &mut v, &mut len) };
        if ret < 0 || n.is_null() {
            return out;
        }
        // SAFETY: `n` is NUL-terminated, `v` has `len` bytes (null only when empty).
        let name = unsafe { CStr::from_ptr(n) }.to_bytes().to_vec();
        let val = if v.is_null() {
            Vec::new()
        } else {
            unsafe { std::slice::from_raw_parts(v as *const u8, len) }.to_vec()
        };
        out.push((name, val));
    }
}
