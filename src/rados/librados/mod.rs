//! The real-Ceph backend: [`LibradosCluster`] implements [`Rados`] over librados (the
//! `ceph` crate's bindings plus a few declarations of our own), [`LibradosIoCtx`] its
//! [`crate::rados::IoCtx`].
//!
//! - compound ops and notify use librados' aio API, bridged to tokio by completion
//!   callbacks (`ffi.rs`): no tokio worker ever blocks on the cluster;
//! - watch callbacks only hand the notification to the watch's queue (or ack it themselves
//!   when the consumer lags), as upstream's watchers must never block librados' threads;
//! - the few calls librados only offers synchronously (connect, pool lookup, watch
//!   registration, snapshots, listing, monitor commands) run on tokio's blocking pool,
//!   bounded by the client timeouts set at connect, so a down cluster is an error, not a
//!   hang.
//!
//! All `unsafe` code lives in `ffi` (the rest of this module denies it).

#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod ffi;
mod ioctx;
mod reply;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use ioctx::LibradosIoCtx;

use super::{Errno, Rados, RadosError, RadosOp, RadosResult};
use ffi::{Cluster, IoTune, RawIoCtx};

/// A cephx secret (base64). Never printed: `Debug` shows `<redacted>`, there is no
/// `Display`.
#[derive(Clone)]
pub struct CephKey(String);

impl CephKey {
    pub fn new(key: impl Into<String>) -> Self {
        CephKey(key.into())
    }

    /// The secret itself: only for handing it to librados or comparing keys.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CephKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CephKey(<redacted>)")
    }
}

/// How to reach and authenticate to one cluster.
#[derive(Clone)]
pub struct ConnectConfig {
    /// A ceph.conf to read first (`None`: only what is set below).
    pub conf_file: Option<PathBuf>,
    /// Cluster name (expands `$cluster` in the conf), usually "ceph".
    pub cluster_name: String,
    /// Full entity name, e.g. "client.admin".
    pub client_name: String,
    pub keyring: Option<PathBuf>,
    /// Monitor addresses, as `mon_host` takes them (for peers known only by config-key).
    pub mon_host: Option<String>,
    /// The client's secret, given directly instead of a keyring.
    pub key: Option<CephKey>,
    /// Bounds connecting: a cluster whose monitors do not answer fails with ETIMEDOUT.
    pub mount_timeout: Duration,
    /// Bounds every monitor command (pool ops, config-key, snapshots).
    pub mon_op_timeout: Duration,
    /// Bounds every OSD op, so no call waits forever on an unreachable PG.
    pub osd_op_timeout: Duration,
    /// Further `(option, value)` pairs for `rados_conf_set`, applied last.
    pub options: Vec<(String, String)>,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            conf_file: None,
            cluster_name: "ceph".into(),
            client_name: "client.admin".into(),
            keyring: None,
            mon_host: None,
            key: None,
            mount_timeout: Duration::from_secs(10),
            mon_op_timeout: Duration::from_secs(10),
            osd_op_timeout: Duration::from_secs(30),
            options: Vec::new(),
        }
    }
}

impl ConnectConfig {
    /// `client.admin` with everything else from `path` (as the lab's ceph.conf has it).
    pub fn from_conf(path: impl Into<PathBuf>) -> Self {
        ConnectConfig {
            conf_file: Some(path.into()),
            ..Default::default()
        }
    }

    /// What to name in errors: the conf file, else the monitors (never the key).
    fn target(&self) -> String {
        match (&self.conf_file, &self.mon_host) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(m)) => m.clone(),
            (None, None) => self.cluster_name.clone(),
        }
    }
}

impl fmt::Debug for ConnectConfig {
    /// Like a derived `Debug`, with secrets redacted (also in `options`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: Vec<(&str, &str)> = self
            .options
            .iter()
            .map(|(k, v)| {
                let secret = k.contains("key") || k.contains("secret");
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("ConnectConfig")
            .field("conf_file", &self.conf_file)
            .field("cluster_name", &self.cluster_name)
            .field("client_name", &self.client_name)
            .field("keyring", &self.keyring)
            .field("mon_host", &self.mon_host)
            .field("key", &self.key)
            .field("mount_timeout", &self.mount_timeout)
            .field("mon_op_timeout", &self.mon_op_timeout)
            .field("osd_op_timeout", &self.osd_op_timeout)
            .field("options", &options)
            .finish()
    }
}

/// A connection to one cluster (one librados client instance). Cheap to clone; the
/// connection closes when the last clone and every ioctx made from it are dropped.
#[derive(Clone)]
pub struct LibradosCluster {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Arc<Cluster>,
    fsid: String,
    instance_id: u64,
    /// `127.0.0.1:0/3546`: the form `ceph osd blocklist` takes.
    addr: String,
}

/// The first of librados' addresses without its protocol: `[v2:127.0.0.1:0/3546,...]` →
/// `127.0.0.1:0/3546`.
fn plain_addr(addrs: &str) -> String {
    let first = addrs
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .next()
        .unwrap_or_default();
    first
        .split_once(':')
        .filter(|(proto, _)| matches!(*proto, "v1" | "v2" | "any"))
        .map_or(first, |(_, a)| a)
        .to_string()
}

/// Runs a blocking librados call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Errno> + Send + 'static,
) -> Result<T, Errno> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(Errno::EIO))
}

/// Every call of this backend goes through here once: counted by kind, traced with the
/// fsid of its cluster (the bench counts what is sent to each), and given the mapping of its
/// failure to a [`RadosError`] (which counts it by errno). The object name is copied only
/// on failure.
fn call_on(fsid: &str, op: RadosOp, object: &str) -> impl Fn(Errno) -> RadosError {
    crate::metrics::rados_op(op);
    tracing::trace!(target: "rbd_relay::rados::ops", fsid, ?op, object);
    move |errno| RadosError::new(op, object, errno)
}

/// Whole seconds for Ceph's seconds-typed options (at least 1: 0 would mean "forever").
fn secs(d: Duration) -> String {
    d.as_secs_f64().ceil().max(1.0).to_string()
}

impl fmt::Debug for LibradosCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LibradosCluster")
            .field("fsid", &self.inner.fsid)
            .field("instance_id", &self.inner.instance_id)
            .finish()
    }
}

impl LibradosCluster {
    /// Connects, failing within about `mount_timeout` when the monitors are unreachable.
    pub async fn connect(cfg: ConnectConfig) -> RadosResult<Self> {
        let target = cfg.target();
        tracing::debug!(config = ?cfg, "connecting to ceph");
        let inner = blocking(move || {
            let mut cluster = Cluster::create(&cfg.cluster_name, &cfg.client_name)?;
            if let Some(conf) = &cfg.conf_file {
                cluster.conf_read_file(&conf.to_string_lossy())?;
            }
            if let Some(keyring) = &cfg.keyring {
                cluster.conf_set("keyring", &keyring.to_string_lossy())?;
            }
            if let Some(mon_host) = &cfg.mon_host {
                cluster.conf_set("mon_host", mon_host)?;
            }
            if let Some(key) = &cfg.key {
                cluster.conf_set("key", &key.0)?;
            }
            cluster.conf_set("client_mount_timeout", &secs(cfg.mount_timeout))?;
            cluster.conf_set("rados_mon_op_timeout", &secs(cfg.mon_op_timeout))?;
            cluster.conf_set("rados_osd_op_timeout", &secs(cfg.osd_op_timeout))?;
            for (option, value) in &cfg.options {
                cluster.conf_set(option, value)?;
            }
            cluster.connect()?;
            let fsid = cluster.fsid()?;
            let instance_id = cluster.instance_id();
            let addr = plain_addr(&cluster.addrs()?);
            Ok(Inner {
                cluster: Arc::new(cluster),
                fsid,
                instance_id,
                addr,
            })
        })
        .await
        // Before the connection there is no fsid to name.
        .map_err(call_on("", RadosOp::Connect, &target))?;
        Ok(LibradosCluster {
            inner: Arc::new(inner),
        })
    }

    /// Registers this client in the manager's service map as `service`/`daemon` (as
    /// rbd-mirror does, so `ceph -s` lists the daemon), with static metadata.
    pub async fn service_register(
        &self,
        service: &str,
        daemon: &str,
        metadata: Vec<(String, String)>,
    ) -> RadosResult<()> {
        let (c, s, d) = (
            self.inner.cluster.clone(),
            service.to_string(),
            daemon.to_string(),
        );
        blocking(move || c.service_register(&s, &d, &metadata))
            .await
            .map_err(self.call(RadosOp::Connect, service))
    }

    /// Replaces this daemon's status in the service map.
    pub async fn service_update_status(&self, status: Vec<(String, String)>) -> RadosResult<()> {
        let c = self.inner.cluster.clone();
        blocking(move || c.service_update_status(&status))
            .await
            .map_err(self.call(RadosOp::Connect, "service status"))
    }

    async fn mon_command(
        &self,
        cmd: serde_json::Value,
        input: Bytes,
        op: RadosOp,
        key: &str,
    ) -> RadosResult<Vec<u8>> {
        let err = self.call(op, key);
        let c = self.inner.cluster.clone();
        let res =
            tokio::task::spawn_blocking(move || c.mon_command(&cmd.to_string(), &input)).await;
        match res {
            Ok(Ok(out)) => Ok(out),
            // The status text may echo a value: not logged.
            Ok(Err((errno, _status))) => Err(err(errno)),
            Err(_) => Err(err(Errno::EIO)),
        }
    }

    fn call(&self, op: RadosOp, object: &str) -> impl Fn(Errno) -> RadosError {
        call_on(&self.inner.fsid, op, object)
    }

    fn head_ioctx(&self, pool_id: i64) -> Result<RawIoCtx, Errno> {
        RawIoCtx::create(&self.inner.cluster, pool_id, "", IoTune::Head)
    }
}

#[async_trait]
impl Rados for LibradosCluster {
    type IoCtx = LibradosIoCtx;

    async fn ioctx(&self, pool: &str) -> RadosResult<LibradosIoCtx> {
        let err = self.call(RadosOp::PoolLookup, pool);
        let (this, name) = (self.clone(), pool.to_string());
        let (id, head) = blocking(move || {
            let id = this.inner.cluster.pool_lookup(&name)?;
            Ok((id, this.head_ioctx(id)?))
        })
        .await
        .map_err(err)?;
        Ok(LibradosIoCtx::new(
            self.inner.cluster.clone(),
            self.inner.fsid.clone(),
            id,
            pool.to_string(),
            String::new(),
            Some(Arc::new(head)),
        ))
    }

    async fn ioctx_by_id(&self, pool_id: i64) -> RadosResult<LibradosIoCtx> {
        let what = format!("pool id {pool_id}");
        let err = self.call(RadosOp::PoolLookup, &what);
        let this = self.clone();
        let (name, head) = blocking(move || {
            let head = this.head_ioctx(pool_id)?;
            Ok((head.pool_name()?, head))
        })
        .await
        .map_err(err)?;
        Ok(LibradosIoCtx::new(
            self.inner.cluster.clone(),
            self.inner.fsid.clone(),
            pool_id,
            name,
            String::new(),
            Some(Arc::new(head)),
        ))
    }

    async fn pool_lookup(&self, pool: &str) -> RadosResult<i64> {
        let err = self.call(RadosOp::PoolLookup, pool);
        let (c, name) = (self.inner.cluster.clone(), pool.to_string());
        blocking(move || c.pool_lookup(&name)).await.map_err(err)
    }

    async fn pool_list(&self) -> RadosResult<Vec<(i64, String)>> {
        let err = self.call(RadosOp::PoolList, "");
        let c = self.inner.cluster.clone();
        blocking(move || {
            let mut pools = Vec::new();
            for name in c.pool_names()? {
                match c.pool_lookup(&name) {
                    Ok(id) => pools.push((id, name)),
                    Err(Errno::ENOENT) => {} // deleted meanwhile
                    Err(e) => return Err(e),
                }
            }
            pools.sort();
            Ok(pools)
        })
        .await
        .map_err(err)
    }

    fn fsid(&self) -> String {
        self.inner.fsid.clone()
    }

    fn instance_id(&self) -> u64 {
        self.inner.instance_id
    }

    fn client_addr(&self) -> String {
        self.inner.addr.clone()
    }

    async fn blocklist_add(&self, addr: &str, expire: Duration) -> RadosResult<()> {
        let cmd = serde_json::json!({
            "prefix": "osd blocklist", "blocklistop": "add", "addr": addr,
            "expire": expire.as_secs_f64(),
        });
        self.mon_command(cmd, Bytes::new(), RadosOp::Blocklist, addr)
            .await?;
        // As librbd's lock breaker does: the lock may only be broken once the OSDs refuse
        // the fenced client, and our next ops make them catch up to this map.
        let c = self.inner.cluster.clone();
        blocking(move || c.wait_for_latest_osdmap())
            .await
            .map_err(|errno| RadosError::new(RadosOp::Blocklist, addr, errno))
    }

    async fn config_key_get(&self, key: &str) -> RadosResult<Bytes> {
        let cmd = serde_json::json!({ "prefix": "config-key get", "key": key });
        self.mon_command(cmd, Bytes::new(), RadosOp::ConfigKey, key)
            .await
            .map(Bytes::from)
    }

    async fn config_key_set(&self, key: &str, value: Bytes) -> RadosResult<()> {
        // The value travels as the command's input buffer, so binary values survive.
        let cmd = serde_json::json!({ "prefix": "config-key set", "key": key });
        self.mon_command(cmd, value, RadosOp::ConfigKey, key)
            .await
            .map(drop)
    }
}
