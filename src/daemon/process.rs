//! The Unix side of running as a Ceph daemon: dropping privileges (`--setuser`,
//! `--setgroup`, only as root, as Ceph's daemons do), forking into the background before
//! any thread starts (`--daemonize`, the default; `-f` stays in the foreground), and the pid
//! file. Unlike Ceph's `daemon()`, the parent does not return at once: it waits until the
//! child reports that it is connected and serving, or why it failed, so a start script sees
//! a failure in the exit status.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::ffi;
use crate::ceph_conf::options::CephOptions;

/// Drops to `--setuser` / `--setgroup` when running as root; elsewhere says it ignores them.
pub fn drop_privileges(opts: &CephOptions) -> io::Result<()> {
    let user = opts.get("setuser").filter(|u| !u.is_empty());
    let group = opts.get("setgroup").filter(|g| !g.is_empty());
    if user.is_none() && group.is_none() {
        return Ok(());
    }
    if !ffi::is_root() {
        for (flag, v) in [("--setuser", &user), ("--setgroup", &group)] {
            if let Some(v) = v {
                eprintln!("ignoring {flag} {v} since I am not root");
            }
        }
        return Ok(());
    }
    let (uid, mut gid, home) = match &user {
        Some(u) => ffi::lookup_user(u)?,
        None => (0, 0, String::new()),
    };
    if let Some(g) = &group {
        gid = ffi::lookup_group(g)?;
    }
    ffi::become_user(uid, gid)?;
    if !home.is_empty() {
        ffi::set_home(&home);
    }
    Ok(())
}

/// The child's way to tell the waiting parent how start-up went.
pub struct Readiness {
    pipe: Option<io::PipeWriter>,
}

impl Readiness {
    /// Connected and serving: the parent exits 0, and the child lets go of the terminal.
    pub fn ready(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"0");
            detach_stdio();
        }
    }

    /// Start-up failed: the parent prints why and exits 1.
    pub fn failed(&mut self, why: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(format!("E{why}").as_bytes());
        }
    }

    /// For the foreground: nobody waits.
    pub fn foreground() -> Self {
        Readiness { pipe: None }
    }
}

/// Forks into the background. Returns in the child only; the parent waits for the
/// child's report and exits with it.
pub fn daemonize() -> io::Result<Readiness> {
    let (mut reader, writer) = io::pipe()?;
    match ffi::fork()? {
        ffi::Forked::Parent => {
            drop(writer);
            let mut report = Vec::new();
            let _ = reader.read_to_end(&mut report);
            match report.split_first() {
                Some((b'0', _)) => std::process::exit(0),
                Some((b'E', why)) => eprintln!("rbd-relay: {}", String::from_utf8_lossy(why)),
                _ => eprintln!("rbd-relay: the daemon exited during start-up"),
            }
            std::process::exit(1);
        }
        ffi::Forked::Child => {
            drop(reader);
            ffi::setsid()?;
            ffi::redirect(&File::open("/dev/null")?, 0)?;
            Ok(Readiness { pipe: Some(writer) })
        }
    }
}

/// Once started in the background, stdout and stderr go nowhere (the log file has it all).
fn detach_stdio() {
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = ffi::redirect(&null, 1);
        let _ = ffi::redirect(&null, 2);
    }
}

/// The pid file, locked while this process lives, so a second daemon with the same pid
/// file refuses to start instead of overwriting the first one's.
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

impl PidFile {
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        file.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is locked: is another daemon running?", path.display()),
            )
        })?;
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for PidFile {
    /// Removed on a clean exit, as Ceph's daemons do (only if it still holds our pid).
    fn drop(&mut self) {
        let ours = std::process::id().to_string();
        if std::fs::read_to_string(&self.path).is_ok_and(|s| s.trim() == ours) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_is_exclusive_and_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        let pid = PidFile::create(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        assert!(PidFile::create(&path).is_err());
        drop(pid);
        assert!(!path.exists());
    }
}
