//! The embedded backend: in-process Ceph clusters with the semantics of RADOS, so the whole
//! pipeline (demo, fast tests, load generation) runs without Ceph. It is not a mock: the
//! conformance suite (`tests/conformance`) runs the same cases here and on a real cluster.
//!
//! A [`MemoryCluster`] holds pools of objects (data, omap, xattrs, version, snapshot clones),
//! the config-key store, the watch registry and the cls methods its "OSDs" know. Each
//! [`MemoryCluster::connect`] is a separate client with its own global id, as a librados
//! client instance is. Test hooks play faults a real cluster has: a client's watches
//! disconnected, a client blocklisted. Where RADOS has corner cases (zero at the end
//! truncates, asserts do not move versions, reads at unknown snap ids see the head, a
//! removed object disconnects its watchers, ...) this backend follows what the lab
//! measured on 16.2.15; `tests/conformance` holds each such fact as a case.
//!
//! State sits behind short-held `std` mutexes (never across an await); notify waits without
//! holding any lock.

pub mod cls;
mod store;
mod watch;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use self::cls::{Caller, ClsFlags, ClsRegistry};
use self::store::{Object, OpEnv};
use self::watch::{ObjKey, Watches};
use super::{
    AckMode, Errno, IoCtx, NOSNAP, NotifyReply, Rados, RadosError, RadosOp, RadosResult, ReadOp,
    ReadReply, ReadStep, SnapContext, SnapId, Watch, WriteOp,
};

struct Pool {
    name: String,
    /// The newest snap id handed out (the pool's `snap_seq`).
    snap_seq: SnapId,
    /// (namespace, object name) → object.
    objects: BTreeMap<(String, String), Object>,
}

#[derive(Default)]
struct Pools {
    by_id: BTreeMap<i64, Pool>,
}

struct Cluster {
    fsid: String,
    pools: Mutex<Pools>,
    config_keys: Mutex<BTreeMap<String, Bytes>>,
    watches: Watches,
    cls: ClsRegistry,
    blocklist: Mutex<HashSet<u64>>,
    /// Every client that connected, so an address can be blocklisted.
    clients: Mutex<Vec<Caller>>,
    next_gid: AtomicU64,
    next_version: AtomicU64,
}

impl Cluster {
    /// Its watches break with `ENOTCONN` (what librados reports, measured on 16.2.15) and
    /// notifies stop waiting for them; every later call fails with `ESHUTDOWN`.
    fn blocklist(&self, gid: u64) {
        lock(&self.blocklist).insert(gid);
        self.watches.break_client(gid, Errno::ENOTCONN);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State stays consistent across a panicking test thread: every update is one step.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One embedded cluster (a "site"). Cheap to clone.
#[derive(Clone)]
pub struct MemoryCluster {
    inner: Arc<Cluster>,
}

impl Default for MemoryCluster {
    fn default() -> Self {
        Self::new(ClsRegistry::with_ceph_classes())
    }
}

impl MemoryCluster {
    /// A cluster whose OSDs know the methods of `cls`.
    pub fn new(cls: ClsRegistry) -> Self {
        MemoryCluster {
            inner: Arc::new(Cluster {
                fsid: uuid::Uuid::new_v4().to_string(),
                pools: Mutex::default(),
                config_keys: Mutex::default(),
                watches: Watches::default(),
                cls,
                blocklist: Mutex::default(),
                clients: Mutex::default(),
                next_gid: AtomicU64::new(4100),
                next_version: AtomicU64::new(1),
            }),
        }
    }

    /// Creates a pool and returns its id; `EEXIST` if the name is taken.
    pub fn create_pool(&self, name: &str) -> RadosResult<i64> {
        let mut pools = lock(&self.inner.pools);
        if pools.by_id.values().any(|p| p.name == name) {
            return Err(RadosError::new(RadosOp::PoolLookup, name, Errno::EEXIST));
        }
        let id = pools.by_id.keys().next_back().map_or(1, |k| k + 1);
        let pool = Pool {
            name: name.into(),
            snap_seq: 0,
            objects: BTreeMap::new(),
        };
        pools.by_id.insert(id, pool);
        Ok(id)
    }

    /// A new client connection with its own global id.
    pub fn connect(&self) -> MemoryRados {
        let gid = self.inner.next_gid.fetch_add(1, Ordering::Relaxed);
        let caller = Caller {
            gid,
            nonce: rand::random(),
        };
        lock(&self.inner.clients).push(caller);
        MemoryRados {
            cluster: self.inner.clone(),
            caller,
            alive: Arc::new(()),
        }
    }

    /// Fault hook: breaks every watch of client `gid`, as a lost session whose watches
    /// timed out on the OSD does: their streams report `Error(ENOTCONN)`, `watch_check`
    /// fails with it, pending notifies stop waiting for them and `unwatch` answers
    /// `ENOENT`. The client itself keeps working (it may re-watch).
    pub fn disconnect_watches(&self, gid: u64) {
        self.inner.watches.break_client(gid, Errno::ENOTCONN);
    }

    /// Fault hook: blocklists client `gid`, as `ceph osd blocklist add` does: its watches
    /// break with `ENOTCONN` (what librados reports, measured on 16.2.15), notifies stop
    /// waiting for them, and every later call fails with `ESHUTDOWN` (Ceph's EBLOCKLISTED).
    pub fn blocklist(&self, gid: u64) {
        self.inner.blocklist(gid);
    }
}

/// A client connection to a [`MemoryCluster`].
#[derive(Clone)]
pub struct MemoryRados {
    cluster: Arc<Cluster>,
    caller: Caller,
    /// Shared by every clone of this connection: when the last one is gone, the client is
    /// dead (a killed process), and its watches expire.
    alive: Arc<()>,
}

impl MemoryRados {
    /// Every call of this connection starts here (watch_check aside: a local call in
    /// librados that a blocklist does not refuse): counted, then refused when the client
    /// is blocklisted, as Ceph refuses a fenced client.
    fn admit(&self, op: RadosOp, object: &str) -> RadosResult<()> {
        crate::metrics::rados_op(op);
        tracing::trace!(target: "rbd_relay::rados::ops", ?op, object, client = self.caller.gid);
        if lock(&self.cluster.blocklist).contains(&self.caller.gid) {
            return Err(RadosError::new(op, object, Errno::EBLOCKLISTED));
        }
        Ok(())
    }

    /// The pool's ioctx; the caller was admitted.
    fn open(&self, pool_id: i64, what: &str) -> RadosResult<MemoryIoCtx> {
        let pools = lock(&self.cluster.pools);
        let pool = pools
            .by_id
            .get(&pool_id)
            .ok_or_else(|| RadosError::new(RadosOp::PoolLookup, what, Errno::ENOENT))?;
        Ok(MemoryIoCtx {
            conn: self.clone(),
            pool_id,
            pool_name: pool.name.clone(),
            namespace: String::new(),
        })
    }
}

#[async_trait]
impl Rados for MemoryRados {
    type IoCtx = MemoryIoCtx;

    async fn ioctx(&self, pool: &str) -> RadosResult<MemoryIoCtx> {
        let id = self.pool_lookup(pool).await?;
        self.open(id, pool)
    }
    async fn ioctx_by_id(&self, pool_id: i64) -> RadosResult<MemoryIoCtx> {
        let what = pool_id.to_string();
        self.admit(RadosOp::PoolLookup, &what)?;
        self.open(pool_id, &what)
    }
    async fn pool_lookup(&self, pool: &str) -> RadosResult<i64> {
        self.admit(RadosOp::PoolLookup, pool)?;
        let pools = lock(&self.cluster.pools);
        let found = pools
            .by_id
            .iter()
            .find(|(_, p)| p.name == pool)
            .map(|(id, _)| *id);
        found.ok_or_else(|| RadosError::new(RadosOp::PoolLookup, pool, Errno::ENOENT))
    }
    async fn pool_list(&self) -> RadosResult<Vec<(i64, String)>> {
        self.admit(RadosOp::PoolList, "")?;
        Ok(lock(&self.cluster.pools)
            .by_id
            .iter()
            .map(|(id, p)| (*id, p.name.clone()))
            .collect())
    }
    fn fsid(&self) -> String {
        self.cluster.fsid.clone()
    }
    fn instance_id(&self) -> u64 {
        self.caller.gid
    }
    fn client_addr(&self) -> String {
        format!("127.0.0.1:0/{}", self.caller.nonce)
    }
    async fn blocklist_add(&self, addr: &str, _expire: Duration) -> RadosResult<()> {
        self.admit(RadosOp::Blocklist, addr)?;
        let nonce = addr
            .rsplit_once('/')
            .and_then(|(_, n)| n.parse::<u32>().ok());
        let nonce =
            nonce.ok_or_else(|| RadosError::new(RadosOp::Blocklist, addr, Errno::EINVAL))?;
        // Every connection of this cluster with that address (there is at most one).
        let gid = lock(&self.cluster.clients)
            .iter()
            .find(|c| c.nonce == nonce)
            .map(|c| c.gid);
        if let Some(gid) = gid {
            self.cluster.blocklist(gid);
        }
        Ok(())
    }
    async fn config_key_get(&self, key: &str) -> RadosResult<Bytes> {
        self.admit(RadosOp::ConfigKey, key)?;
        let keys = lock(&self.cluster.config_keys);
        keys.get(key)
            .cloned()
            .ok_or_else(|| RadosError::new(RadosOp::ConfigKey, key, Errno::ENOENT))
    }
    async fn config_key_set(&self, key: &str, value: Bytes) -> RadosResult<()> {
        self.admit(RadosOp::ConfigKey, key)?;
        lock(&self.cluster.config_keys).insert(key.to_string(), value);
        Ok(())
    }
}

/// A pool (and namespace) on a memory connection.
#[derive(Clone)]
pub struct MemoryIoCtx {
    conn: MemoryRados,
    pool_id: i64,
    pool_name: String,
    namespace: String,
}

impl MemoryIoCtx {
    fn key(&self, oid: &str) -> ObjKey {
        (self.pool_id, self.namespace.clone(), oid.to_string())
    }

    fn cluster(&self) -> &Cluster {
        &self.conn.cluster
    }

    /// Runs `f` on this pool under the store lock; `ENOENT` if the pool was deleted.
    fn with_pool<T>(
        &self,
        op: RadosOp,
        oid: &str,
        f: impl FnOnce(&mut Pool) -> Result<T, Errno>,
    ) -> RadosResult<T> {
        self.conn.admit(op, oid)?;
        let mut pools = lock(&self.cluster().pools);
        let pool = pools.by_id.get_mut(&self.pool_id).ok_or(Errno::ENOENT);
        pool.and_then(f).map_err(|e| RadosError::new(op, oid, e))
    }

    fn env(&self, oid: &str, steps_exec: bool) -> OpEnv<'_> {
        // Only cls methods look at watchers; skip the registry walk for plain I/O.
        let watchers = if steps_exec {
            self.cluster().watches.watchers(&self.key(oid))
        } else {
            Vec::new()
        };
        OpEnv {
            cls: &self.cluster().cls,
            caller: self.conn.caller,
            watchers,
        }
    }

    /// Watch and notify need the object to exist (`ENOENT`), as on Ceph.
    fn require_object(&self, op: RadosOp, oid: &str) -> RadosResult<()> {
        let key = (self.namespace.clone(), oid.to_string());
        self.with_pool(op, oid, |pool| match pool.objects.get(&key) {
            Some(o) if o.head.is_some() => Ok(()),
            _ => Err(Errno::ENOENT),
        })
    }

    /// A new object version: one counter per cluster (Ceph's count per PG), taken under
    /// the store lock so that each object's versions only grow.
    fn next_version(&self) -> u64 {
        self.cluster().next_version.fetch_add(1, Ordering::Relaxed)
    }
}

/// librados' `SnapContext::is_valid`: snaps strictly descending, none above `seq`.
fn valid_snapc(snapc: Option<&SnapContext>) -> Result<(), Errno> {
    let Some(c) = snapc else { return Ok(()) };
    let descending = c.snaps.windows(2).all(|w| w[0] > w[1]);
    let below_seq = c.snaps.first().is_none_or(|s| *s <= c.seq);
    if descending && below_seq && c.seq <= MAX_SNAP {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

/// Ceph's `CEPH_MAXSNAP`: the largest valid snap id.
const MAX_SNAP: SnapId = NOSNAP - 1;

#[async_trait]
impl IoCtx for MemoryIoCtx {
    fn pool_id(&self) -> i64 {
        self.pool_id
    }
    fn pool_name(&self) -> &str {
        &self.pool_name
    }
    fn namespace(&self) -> &str {
        &self.namespace
    }
    fn with_namespace(&self, namespace: &str) -> Self {
        MemoryIoCtx {
            namespace: namespace.to_string(),
            ..self.clone()
        }
    }
    async fn pool_by_id(&self, pool_id: i64) -> RadosResult<Self> {
        let io = self.conn.ioctx_by_id(pool_id).await?;
        Ok(io.with_namespace(&self.namespace))
    }
    async fn pool_by_name(&self, name: &str) -> RadosResult<Self> {
        let io = self.conn.ioctx(name).await?;
        Ok(io.with_namespace(&self.namespace))
    }

    async fn operate_write(&self, oid: &str, op: WriteOp) -> RadosResult<u64> {
        let kind = op.kind();
        let env = self.env(oid, kind == RadosOp::Exec);
        let ns_oid = (self.namespace.clone(), oid.to_string());
        let mut removed = false;
        let result = self.with_pool(kind, oid, |pool| {
            store::validate_write(&op.steps)?;
            valid_snapc(op.snap_context.as_ref())?;
            let obj = pool.objects.entry(ns_oid.clone()).or_default();
            if store::may_modify(&op.steps) {
                obj.preserve(op.snap_context.as_ref());
            }
            let backup = store::needs_backup(&op.steps).then(|| obj.head.clone());
            let existed = obj.head.is_some();
            let result = store::apply_write(&env, &mut obj.head, obj.version, &op.steps);
            removed = existed && obj.head.is_none() && result.is_ok();
            match &result {
                // Allocated under the store lock, so an object's versions only grow.
                Ok(true) => obj.version = self.next_version(),
                Ok(false) => {}
                Err(_) => {
                    if let Some(b) = backup {
                        obj.head = b;
                    }
                }
            }
            let version = obj.version;
            if obj.is_empty() {
                pool.objects.remove(&ns_oid);
            }
            result.map(|_| version)
        });
        if removed {
            self.cluster().watches.break_object(&self.key(oid));
        }
        result
    }

    async fn operate_read(&self, oid: &str, op: ReadOp) -> RadosResult<ReadReply> {
        let cls = &self.cluster().cls;
        let may_write = op.steps.iter().any(|s| match s {
            ReadStep::Exec { class, method, .. } => {
                matches!(cls.lookup(class, method), Ok((ClsFlags::ReadWrite, _)))
            }
            _ => false,
        });
        let kind = op.kind();
        let env = self.env(oid, kind == RadosOp::Exec);
        let ns_oid = (self.namespace.clone(), oid.to_string());
        let mut removed = false;
        let result = self.with_pool(kind, oid, |pool| {
            if op.steps.is_empty() {
                return Err(Errno::EINVAL);
            }
            let obj = pool.objects.entry(ns_oid.clone()).or_default();
            let backup = may_write.then(|| obj.head.clone());
            let existed = obj.head.is_some();
            let result = store::apply_read(&env, obj, op.snap, &op.steps, may_write);
            removed = existed && obj.head.is_none() && result.is_ok();
            match (&result, backup) {
                (Ok((_, true)), _) => obj.version = self.next_version(),
                (Err(_), Some(b)) => obj.head = b,
                _ => {}
            }
            let version = obj.version;
            if obj.is_empty() {
                pool.objects.remove(&ns_oid);
            }
            result.map(|(results, _)| ReadReply { results, version })
        });
        if removed {
            self.cluster().watches.break_object(&self.key(oid));
        }
        result
    }

    async fn watch_with(&self, oid: &str, ack: AckMode) -> RadosResult<Watch> {
        self.require_object(RadosOp::Watch, oid)?;
        Ok(self.cluster().watches.watch(
            self.key(oid),
            self.conn.caller,
            Arc::downgrade(&self.conn.alive),
            ack,
        ))
    }
    async fn unwatch(&self, cookie: u64) -> RadosResult<()> {
        self.conn.admit(RadosOp::Unwatch, &cookie.to_string())?;
        let r = self.cluster().watches.unwatch(self.conn.caller.gid, cookie);
        r.map_err(|e| RadosError::new(RadosOp::Unwatch, cookie.to_string(), e))
    }
    async fn watch_check(&self, cookie: u64) -> RadosResult<Duration> {
        crate::metrics::rados_op(RadosOp::WatchCheck);
        let r = self.cluster().watches.check(self.conn.caller.gid, cookie);
        r.map_err(|e| RadosError::new(RadosOp::WatchCheck, cookie.to_string(), e))
    }
    async fn notify(
        &self,
        oid: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> RadosResult<NotifyReply> {
        self.require_object(RadosOp::Notify, oid)?;
        Ok(self
            .cluster()
            .watches
            .notify(self.key(oid), self.conn.caller.gid, payload, timeout)
            .await)
    }
    async fn notify_ack(
        &self,
        oid: &str,
        notify_id: u64,
        cookie: u64,
        reply: Bytes,
    ) -> RadosResult<()> {
        self.conn.admit(RadosOp::NotifyAck, oid)?;
        let r = self
            .cluster()
            .watches
            .ack(self.conn.caller.gid, notify_id, cookie, reply);
        r.map_err(|e| RadosError::new(RadosOp::NotifyAck, oid, e))
    }

    async fn selfmanaged_snap_create(&self) -> RadosResult<SnapId> {
        self.with_pool(RadosOp::SnapCreate, &self.pool_name, |pool| {
            pool.snap_seq += 1;
            Ok(pool.snap_seq)
        })
    }
    async fn selfmanaged_snap_remove(&self, snap: SnapId) -> RadosResult<()> {
        self.with_pool(RadosOp::SnapRemove, &self.pool_name, |pool| {
            pool.objects.retain(|_, o| {
                o.trim(snap);
                !o.is_empty()
            });
            Ok(())
        })
    }
    async fn selfmanaged_snap_rollback(
        &self,
        oid: &str,
        snap: SnapId,
        snapc: &SnapContext,
    ) -> RadosResult<()> {
        let key = (self.namespace.clone(), oid.to_string());
        let removed = self.with_pool(RadosOp::SnapRollback, oid, |pool| {
            valid_snapc(Some(snapc))?;
            // Rolling back an object that never existed is a no-op, as on Ceph.
            let Some(obj) = pool.objects.get_mut(&key) else {
                return Ok(false);
            };
            let existed = obj.head.is_some();
            obj.preserve(Some(snapc));
            obj.rollback(snap);
            obj.version = self.next_version();
            let removed = existed && obj.head.is_none();
            if obj.is_empty() {
                pool.objects.remove(&key);
            }
            Ok(removed)
        })?;
        if removed {
            self.cluster().watches.break_object(&self.key(oid));
        }
        Ok(())
    }

    async fn list_objects(&self) -> RadosResult<Vec<String>> {
        self.with_pool(RadosOp::List, &self.pool_name, |pool| {
            Ok(pool
                .objects
                .iter()
                .filter(|((ns, _), o)| *ns == self.namespace && o.head.is_some())
                .map(|((_, name), _)| name.clone())
                .collect())
        })
    }
}
