//! Files that hold this daemon's cephx key and that every local user can read: anyone on
//! the host could then act as the daemon's client on the cluster. Ceph's own daemons do not
//! check; we warn at start-up (the daemon still runs: refusing would turn a loose `chmod`
//! into an outage).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::options::CephOptions;

/// Ceph's keyring search list when `keyring` is not set (`$cluster`, `$name` expanded).
const DEFAULT_KEYRINGS: &str = "/etc/ceph/$cluster.$name.keyring,/etc/ceph/$cluster.keyring,/etc/ceph/keyring,/etc/ceph/keyring.bin";

/// The key-holding files of `opts` that are world-readable: every existing keyring of the
/// `keyring` list, the `keyfile`, and the conf file when it carries a `key` itself.
pub fn world_readable(opts: &CephOptions) -> Vec<PathBuf> {
    let keyrings = opts.get("keyring").unwrap_or_else(|| {
        DEFAULT_KEYRINGS
            .replace("$cluster", &opts.cluster)
            .replace("$name", &opts.name)
    });
    let mut files: Vec<PathBuf> = keyrings
        .split([',', ';'])
        .map(|p| PathBuf::from(p.trim()))
        .chain(opts.path("keyfile"))
        .collect();
    if let Some(conf) = &opts.conf_file
        && holds_key(conf)
    {
        files.push(conf.clone());
    }
    files.retain(|f| readable_by_all(f));
    files
}

/// Whether a conf file sets `key` (spaces and underscores alike, any section).
fn holds_key(conf: &Path) -> bool {
    std::fs::read_to_string(conf).is_ok_and(|text| {
        text.lines().any(|line| {
            line.split_once('=')
                .is_some_and(|(name, _)| name.trim() == "key")
        })
    })
}

fn readable_by_all(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o004 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceph_conf::args::{Args, parse};

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn opts(args: &str) -> CephOptions {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        CephOptions::resolve(&Args::default(), &parse(&args).unwrap()).unwrap()
    }

    #[test]
    fn keyrings_and_confs_with_keys_readable_by_all_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "[client.admin]\n\tkey = AQBsecretsecretsecretsecretsecret==\n";
        let open = write(dir.path(), "open.keyring", secret, 0o644);
        let closed = write(dir.path(), "closed.keyring", secret, 0o600);
        let conf_key = write(dir.path(), "key.conf", "[global]\nkey = AQBx==\n", 0o644);
        let conf_plain = write(dir.path(), "plain.conf", "[global]\nmon host = x\n", 0o644);
        let keyrings = format!("{},{}", open.display(), closed.display());
        let found = world_readable(&opts(&format!(
            "-c {} --keyring {keyrings}",
            conf_key.display()
        )));
        assert_eq!(found, vec![open.clone(), conf_key]);
        let found = world_readable(&opts(&format!(
            "-c {} --keyring {}",
            conf_plain.display(),
            closed.display()
        )));
        assert!(found.is_empty(), "{found:?}");
    }
}
