//! The few POSIX calls the process side needs that std does not wrap: fork, setsid, dup2,
//! the user and group database, and dropping privileges. All of this module's `unsafe`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::AsRawFd;

pub enum Forked {
    Parent,
    Child,
}

/// Forks. Only sound while the process has one thread (before any runtime or logger
/// thread starts): the child gets a copy of this thread alone.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: called before any other thread exists (see above); the child continues with
    // ordinary Rust code in a single-threaded copy of the process.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        _ => Ok(Forked::Parent),
    }
}

/// Leaves the parent's session and controlling terminal.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no pointers; fails only with EPERM for a group leader (never after fork).
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Points `target` (0, 1 or 2) at `file`'s open description.
pub fn redirect(file: &std::fs::File, target: i32) -> io::Result<()> {
    // SAFETY: both are open descriptors; dup2 replaces `target` atomically.
    if unsafe { libc::dup2(file.as_raw_fd(), target) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// A user's uid, primary gid and home, by name or number.
pub fn lookup_user(user: &str) -> io::Result<(u32, u32, String)> {
    let name = CString::new(user).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut buf = vec![0u8; 16 << 10];
    // SAFETY: zeroed passwd is a valid out-parameter (plain C struct of pointers/ints).
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let r = match user.parse::<u32>() {
        // SAFETY: every pointer is valid for the call; buf outlives our reads of pw.
        Ok(uid) => unsafe {
            libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found)
        },
        // SAFETY: as above; `name` is NUL-terminated.
        Err(_) => unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        },
    };
    if found.is_null() {
        return Err(match r {
            0 => io::Error::new(io::ErrorKind::NotFound, format!("no user '{user}'")),
            e => io::Error::from_raw_os_error(e),
        });
    }
    // SAFETY: found == &pw, whose strings point into buf, still alive.
    let home = unsafe { CStr::from_ptr(pw.pw_dir) }
        .to_string_lossy()
        .into_owned();
    Ok((pw.pw_uid, pw.pw_gid, home))
}

/// A group's gid, by name or number.
pub fn lookup_group(group: &str) -> io::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name = CString::new(group).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut buf = vec![0u8; 16 << 10];
    // SAFETY: zeroed group is a valid out-parameter.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `name` is NUL-terminated.
    let r = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut gr,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if found.is_null() {
        return Err(match r {
            0 => io::Error::new(io::ErrorKind::NotFound, format!("no group '{group}'")),
            e => io::Error::from_raw_os_error(e),
        });
    }
    Ok(gr.gr_gid)
}

/// Becomes `uid:gid` for good (supplementary groups dropped, group first).
pub fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscalls; a failure is reported before anything else changes.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) == -1
            || libc::setgid(gid) == -1
            || libc::setuid(uid) == -1
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `HOME` follows the user we became (librados looks for `~/.ceph`). Only sound while the
/// process has one thread, which is when privileges are dropped.
pub fn set_home(home: &str) {
    // SAFETY: single-threaded (before fork and before the runtime), see above.
    unsafe { std::env::set_var("HOME", home) };
}
