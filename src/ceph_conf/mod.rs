//! Connecting the way Ceph's tools do: cluster name, client name, conf search path
//! (`$CEPH_CONF`, `/etc/ceph/$cluster.conf`, `~/.ceph/$cluster.conf`, `./$cluster.conf`,
//! `$cluster` expanded), and peers either by the mon host + key stored in the config-key
//! store or by their own `<site>.conf` on the same search path, as rbd-mirror does. The
//! daemon's own options (`CEPH_ARGS`, the command line, the conf file's sections) are
//! parsed by [`args`], [`file`] and resolved by [`options`]; [`secrets`] finds key files
//! every local user can read.

pub mod args;
pub mod file;
pub mod options;
pub mod secrets;

use std::path::PathBuf;

use async_trait::async_trait;

use crate::mirror::{Connector, PeerSite};
use crate::rados::RadosResult;
use crate::rados::librados::{ConnectConfig, LibradosCluster};

/// The first conf file for `cluster` on Ceph's search path.
pub fn find_conf(cluster: &str) -> Option<PathBuf> {
    let expand = |p: &str| PathBuf::from(p.replace("$cluster", cluster));
    let mut candidates = Vec::new();
    if let Ok(list) = std::env::var("CEPH_CONF") {
        candidates.extend(list.split([',', ';']).map(|p| expand(p.trim())));
    }
    candidates.push(expand("/etc/ceph/$cluster.conf"));
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(format!(".ceph/{cluster}.conf")));
    }
    candidates.push(expand("./$cluster.conf"));
    candidates.into_iter().find(|p| p.is_file())
}

/// How to connect to `cluster` as `client_name`, with `conf` if given, else the search path.
/// librados gets no admin socket of its own: the conf's `admin socket` is the daemon's.
pub fn connect_config(cluster: &str, client_name: &str, conf: Option<PathBuf>) -> ConnectConfig {
    ConnectConfig {
        conf_file: conf.or_else(|| find_conf(cluster)),
        cluster_name: cluster.to_string(),
        client_name: client_name.to_string(),
        options: vec![("admin_socket".into(), String::new())],
        ..ConnectConfig::default()
    }
}

/// The local cluster's connection, from the daemon's resolved options (`--keyring` and
/// `-m` given on the command line or in `CEPH_ARGS` win over the conf file).
pub fn local_connect_config(opts: &options::CephOptions) -> ConnectConfig {
    let mut cfg = connect_config(&opts.cluster, &opts.name, opts.conf_file.clone());
    cfg.keyring = opts.path("keyring");
    cfg.mon_host = opts.get("mon_host").filter(|m| !m.is_empty());
    cfg
}

/// Connects to peers over librados.
pub struct LibradosConnector;

#[async_trait]
impl Connector for LibradosConnector {
    type Rados = LibradosCluster;

    async fn connect(&self, peer: &PeerSite) -> RadosResult<LibradosCluster> {
        let mut cfg = connect_config(&peer.site_name, &peer.client_name, None);
        if let Some(mon_host) = &peer.mon_host {
            // The stored attributes win: the peer may have no conf file here at all.
            cfg.conf_file = None;
            cfg.mon_host = Some(mon_host.clone());
            cfg.key = peer.key.as_ref().map(|k| k.0.clone());
        }
        LibradosCluster::connect(cfg).await
    }
}
