//! The daemon's Ceph options, resolved in Ceph's order: built-in daemon defaults, then the
//! conf file (`[global]` < `[client]` < `[client.<id>]`), then `CEPH_ARGS`, then the command
//! line. Cluster, name and conf file come first (they choose the conf file and its
//! sections). Values keep their metavariables until read: `$pid` must be the daemon's pid,
//! which changes when it forks into the background.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::args::Args;
use super::file::{ConfError, ConfFile};

/// Options the daemon itself reads, with rbd-mirror's daemon defaults.
const DEFAULTS: &[(&str, &str)] = &[
    ("daemonize", "true"),
    ("run_dir", "/var/run/ceph"),
    ("admin_socket", "$run_dir/$cluster-$name.asok"),
    ("log_file", "/var/log/ceph/$cluster-$name.log"),
    ("log_to_stderr", "false"),
    ("err_to_stderr", "true"),
    ("pid_file", ""),
    ("setuser", ""),
    ("setgroup", ""),
];

/// Options consumed while resolving (they pick the conf file) or by the connection.
const CONNECTION: &[&str] = &["cluster", "id", "name", "conf", "keyring", "mon_host"];

#[derive(Debug, Clone)]
pub struct CephOptions {
    pub cluster: String,
    /// Full entity name, `client.<id>`.
    pub name: String,
    /// The conf file read, if any.
    pub conf_file: Option<PathBuf>,
    /// Normalized name → raw value, every source merged.
    values: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error(transparent)]
    Conf(#[from] ConfError),
    #[error("--name {0}: rbd-relay runs as a client (client.<id>)")]
    NotAClient(String),
}

impl CephOptions {
    /// `env` holds `CEPH_ARGS`, `argv` the command line; the command line wins.
    pub fn resolve(env: &Args, argv: &Args) -> Result<Self, OptionsError> {
        let given = || env.options.iter().chain(&argv.options);
        let last = |key: &str| {
            given()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let cluster = last("cluster").unwrap_or_else(|| "ceph".into());
        // --name and --id set the same thing: whichever came last counts.
        let name = given()
            .rev()
            .find(|(k, _)| k == "name" || k == "id")
            .map(|(k, v)| match k.as_str() {
                "id" => format!("client.{v}"),
                _ => v.clone(),
            })
            .unwrap_or_else(|| "client.admin".into());
        if !name.starts_with("client.") {
            return Err(OptionsError::NotAClient(name));
        }
        let conf_file = match last("conf") {
            // A list, as Ceph takes it: the first that exists; none existing is an error.
            Some(list) => {
                let candidates: Vec<PathBuf> = list
                    .split([',', ';', ' '])
                    .filter(|p| !p.is_empty())
                    .map(|p| PathBuf::from(p.replace("$cluster", &cluster)))
                    .collect();
                let found = candidates.iter().find(|p| p.is_file()).cloned();
                Some(found.unwrap_or_else(|| candidates.into_iter().next().unwrap_or_default()))
            }
            None => super::find_conf(&cluster),
        };
        let mut values: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(path) = &conf_file {
            values.extend(ConfFile::load(path)?.options_for(&name));
        }
        values.extend(given().cloned());
        values.insert("cluster".into(), cluster.clone());
        values.insert("name".into(), name.clone());
        Ok(CephOptions {
            cluster,
            name,
            conf_file,
            values,
        })
    }

    /// The client id (`admin` for `client.admin`).
    pub fn id(&self) -> &str {
        self.name.strip_prefix("client.").unwrap_or(&self.name)
    }

    /// The expanded value; `None` when the option was never set.
    pub fn get(&self, key: &str) -> Option<String> {
        self.values.get(key).map(|v| self.expand(v, 0))
    }

    /// The expanded value, `None` also when set to the empty string (Ceph's "off").
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.get(key).filter(|v| !v.is_empty()).map(PathBuf::from)
    }

    pub fn flag(&self, key: &str) -> bool {
        self.get(key)
            .and_then(|v| super::args::parse_bool(&v))
            .unwrap_or(false)
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.values.insert(key.into(), value.into());
    }

    /// Every option with its expanded value.
    pub fn entries(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), self.expand(v, 0)))
            .collect()
    }

    /// Options that mean nothing to the daemon's process side or its connection (for the
    /// caller to hand to its settings or log as ignored).
    pub fn others(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .filter(|(k, _)| {
                !DEFAULTS.iter().any(|(d, _)| d == k) && !CONNECTION.contains(&k.as_str())
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Ceph's metavariables (`$cluster`, `$name`, `$id`, `$type`, `$pid`, `$host`, and any
    /// other option by its name, e.g. `$run_dir`), also as `${var}`; unknown ones stay.
    fn expand(&self, value: &str, depth: usize) -> String {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (var, len) = match after.strip_prefix('{') {
                Some(braced) => match braced.find('}') {
                    Some(end) => (&braced[..end], end + 2),
                    None => ("", 0),
                },
                None => {
                    let end = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..end], end)
                }
            };
            match self.variable(var, depth) {
                Some(v) if !var.is_empty() => out.push_str(&v),
                _ => {
                    out.push('$');
                    rest = after;
                    continue;
                }
            }
            rest = &after[len..];
        }
        out.push_str(rest);
        out
    }

    fn variable(&self, var: &str, depth: usize) -> Option<String> {
        Some(match var {
            "cluster" => self.cluster.clone(),
            "name" => self.name.clone(),
            "id" => self.id().to_string(),
            "type" => "client".into(),
            "pid" => std::process::id().to_string(),
            "host" => short_hostname(),
            // An option naming an option naming ...: a loop is cut, not followed.
            other if depth < 8 => self.expand(self.values.get(other)?, depth + 1),
            _ => return None,
        })
    }
}

fn short_hostname() -> String {
    let full = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    full.trim()
        .split('.')
        .next()
        .unwrap_or("localhost")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::super::args::parse;
    use super::*;
    use std::io::Write;

    fn args(s: &str) -> Args {
        let words: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        parse(&words).unwrap()
    }

    fn conf(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn command_line_beats_ceph_args_beats_conf_file() {
        let f = conf(
            "[global]\nrbd mirror journal poll age = 5\npid file = /g\nlog file = /g.log\n\
             [client]\npid file = /c\n[client.b]\npid file = /run/$cluster-$name.$pid.pid\n",
        );
        let path = f.path().display();
        let env = args(&format!(
            "-c {path} --rbd-mirror-journal-poll-age 2 --log-file=/env.log --cluster x"
        ));
        let argv = args("--id b --cluster site-b --rbd_mirror_journal_poll_age=0.5");
        let o = CephOptions::resolve(&env, &argv).unwrap();
        assert_eq!(o.cluster, "site-b");
        assert_eq!(o.name, "client.b");
        assert_eq!(o.get("rbd_mirror_journal_poll_age").unwrap(), "0.5");
        assert_eq!(o.get("log_file").unwrap(), "/env.log");
        let pid = std::process::id();
        assert_eq!(
            o.get("pid_file").unwrap(),
            format!("/run/site-b-client.b.{pid}.pid")
        );
        let other = CephOptions::resolve(&env, &args("--name client.a")).unwrap();
        assert_eq!(other.get("pid_file").unwrap(), "/c");
        assert_eq!(other.get("rbd_mirror_journal_poll_age").unwrap(), "2");
    }

    #[test]
    fn defaults_expand_like_rbd_mirror() {
        let o = CephOptions::resolve(
            &Args::default(),
            &args("-c /nonexistent/x.conf --cluster c --id me --run-dir /r"),
        );
        // An explicit conf file that is missing is an error, as with Ceph's tools.
        assert!(o.is_err());
        let f = conf("[global]\n");
        let o = CephOptions::resolve(
            &Args::default(),
            &args(&format!(
                "-c {} --cluster c --id me --run-dir /r",
                f.path().display()
            )),
        )
        .unwrap();
        assert_eq!(o.get("admin_socket").unwrap(), "/r/c-client.me.asok");
        assert_eq!(o.get("log_file").unwrap(), "/var/log/ceph/c-client.me.log");
        assert!(o.flag("daemonize"));
        assert_eq!(o.path("pid_file"), None);
        assert_eq!(o.id(), "me");
    }

    #[test]
    fn expansion_keeps_unknowns_and_cuts_loops() {
        let f = conf("[global]\na = $b/x\nb = $a\nc = ${cluster}:$nosuch:$\n");
        let o = CephOptions::resolve(
            &Args::default(),
            &args(&format!("-c {}", f.path().display())),
        )
        .unwrap();
        assert_eq!(o.get("c").unwrap(), "ceph:$nosuch:$");
        assert!(o.get("a").unwrap().ends_with("/x"));
        assert!(matches!(
            CephOptions::resolve(&Args::default(), &args("-n osd.0")),
            Err(OptionsError::NotAClient(_))
        ));
    }

    #[test]
    fn others_leave_out_what_the_process_consumes() {
        let o = CephOptions::resolve(
            &Args::default(),
            &args("-c /dev/null --debug-rbd-mirror 20 --pid-file /p --keyring k"),
        )
        .unwrap();
        let others: Vec<_> = o.others().collect();
        assert_eq!(others, vec![("debug_rbd_mirror", "20")]);
    }
}
