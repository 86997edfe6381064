//! [`LibradosIoCtx`]: one pool and namespace on a librados connection, implementing
//! [`IoCtx`].
//!
//! librados keeps the write snapshot context and the read snapshot *per ioctx*, while our
//! ops carry them per call. So each `LibradosIoCtx` keeps a small cache of librados ioctxs
//! keyed by what they are tuned for (head, a write snap context, a read snap): an ioctx is
//! configured once at creation and never changed while ops use it. RBD data writes of one
//! image share one snap context, so the cache stays tiny and hits.
//!
//! Compound ops and notify go through librados' aio API; the rare blocking calls (watch,
//! unwatch, snapshots, listing) run on tokio's blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::ffi::{self, Cluster, IoTune, RawIoCtx};
use super::reply::decode_notify_reply;
use super::{blocking, call_on};
use crate::rados::{
    AckMode, Errno, IoCtx, NOSNAP, NotifyReply, RadosError, RadosOp, RadosResult, ReadOp,
    ReadReply, ReadStep, SnapContext, SnapId, Watch, WriteOp,
};

/// What a cached librados ioctx is tuned for.
#[derive(Clone, PartialEq, Eq, Hash)]
enum IoKey {
    Head,
    Write(SnapContext),
    Snap(SnapId),
}

/// Beyond this many tuned ioctxs the cache is emptied (all but the head): snap contexts
/// change only when an image's snapshots do, so this is rare.
const IOCTX_CACHE: usize = 64;

/// How often a whole-object read retries when the object changes between its size probe
/// and the read itself.
const WHOLE_READ_ATTEMPTS: usize = 8;

/// A pool and namespace on a [`super::LibradosCluster`]. Cheap to clone.
#[derive(Clone)]
pub struct LibradosIoCtx {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Arc<Cluster>,
    /// The cluster's fsid, for the op trace.
    fsid: String,
    pool_id: i64,
    pool_name: String,
    namespace: String,
    ioctxs: Mutex<HashMap<IoKey, Arc<RawIoCtx>>>,
}

impl LibradosIoCtx {
    pub(super) fn new(
        cluster: Arc<Cluster>,
        fsid: String,
        pool_id: i64,
        pool_name: String,
        namespace: String,
        head: Option<Arc<RawIoCtx>>,
    ) -> Self {
        let ioctxs = head
            .map(|h| HashMap::from([(IoKey::Head, h)]))
            .unwrap_or_default();
        let inner = Inner {
            cluster,
            fsid,
            pool_id,
            pool_name,
            namespace,
            ioctxs: Mutex::new(ioctxs),
        };
        LibradosIoCtx {
            inner: Arc::new(inner),
        }
    }

    fn call(&self, op: RadosOp, object: &str) -> impl Fn(Errno) -> RadosError {
        call_on(&self.inner.fsid, op, object)
    }

    /// The librados ioctx tuned for `key`, created on first use (a local, non-blocking
    /// call on a connected client).
    fn io(&self, key: IoKey) -> Result<Arc<RawIoCtx>, Errno> {
        let mut map = self.inner.ioctxs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(io) = map.get(&key) {
            return Ok(io.clone());
        }
        if map.len() >= IOCTX_CACHE {
            map.retain(|k, _| *k == IoKey::Head);
        }
        let tune = match &key {
            IoKey::Head => IoTune::Head,
            IoKey::Write(snapc) => IoTune::WriteCtx {
                seq: snapc.seq,
                snaps: &snapc.snaps,
            },
            IoKey::Snap(snap) => IoTune::ReadSnap(*snap),
        };
        let io = Arc::new(RawIoCtx::create(
            &self.inner.cluster,
            self.inner.pool_id,
            &self.inner.namespace,
            tune,
        )?);
        map.insert(key, io.clone());
        Ok(io)
    }

    fn head(&self) -> Result<Arc<RawIoCtx>, Errno> {
        self.io(IoKey::Head)
    }

    fn read_key(snap: SnapId) -> IoKey {
        if snap == NOSNAP {
            IoKey::Head
        } else {
            IoKey::Snap(snap)
        }
    }

    /// A read with a `Read { len: 0 }` step ("to the end"): librados' C API reads into a
    /// caller-sized buffer, so probe the size first, then read exactly that much under an
    /// assert on the probed version (head reads; snapshots are immutable), retrying if the
    /// object changed in between.
    async fn read_whole(
        &self,
        io: &Arc<RawIoCtx>,
        oid: &str,
        op: &ReadOp,
    ) -> Result<ReadReply, Errno> {
        let head = op.snap == NOSNAP;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut stat, version) =
                ffi::read(io, oid, &ReadOp::new().stat().at_snap(op.snap)).await?;
            let size = match stat.pop() {
                Some(crate::rados::ReadResult::Stat(s)) => s.size,
                _ => return Err(Errno::EIO),
            };
            let mut sized = ReadOp::new().at_snap(op.snap);
            if head {
                sized.steps.push(ReadStep::AssertVersion(version));
            }
            sized.steps.extend(op.steps.iter().map(|s| match s {
                // A zero-length read would mean "all" to the OSD and overflow the buffer;
                // one byte past the end reads nothing.
                ReadStep::Read { offset, len: 0 } => ReadStep::Read {
                    offset: *offset,
                    len: size.saturating_sub(*offset).max(1),
                },
                other => other.clone(),
            }));
            match ffi::read(io, oid, &sized).await {
                Ok((mut results, version)) => {
                    if head {
                        results.remove(0);
                    }
                    return Ok(ReadReply { results, version });
                }
                Err(e)
                    if head
                        && (e == Errno::ERANGE || e == Errno::EOVERFLOW)
                        && attempt < WHOLE_READ_ATTEMPTS => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// `rbd mirror image demote` on image `image_id`, through librbd (so a live librbd
    /// writer hands its exclusive lock over instead of being fenced); on the blocking pool.
    pub async fn mirror_image_demote(&self, image_id: &str) -> RadosResult<()> {
        self.mirror_image_set_primary(RadosOp::MirrorDemote, image_id, None)
            .await
    }

    /// `rbd mirror image promote [--force]` on image `image_id`, through librbd (which
    /// refuses a non-forced promotion unless the image is demoted: its journal's newest tag
    /// is an orphan); on the blocking pool.
    pub async fn mirror_image_promote(&self, image_id: &str, force: bool) -> RadosResult<()> {
        self.mirror_image_set_primary(RadosOp::MirrorPromote, image_id, Some(force))
            .await
    }

    async fn mirror_image_set_primary(
        &self,
        op: RadosOp,
        image_id: &str,
        promote: Option<bool>,
    ) -> RadosResult<()> {
        let err = self.call(op, image_id);
        let io = self.head().map_err(&err)?;
        let id = image_id.to_string();
        blocking(move || io.mirror_image_set_primary(&id, promote))
            .await
            .map_err(err)
    }
}

impl std::fmt::Debug for LibradosIoCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.inner;
        f.debug_struct("LibradosIoCtx")
            .field("pool_id", &i.pool_id)
            .field("pool_name", &i.pool_name)
            .field("namespace", &i.namespace)
            .finish()
    }
}

#[async_trait]
impl IoCtx for LibradosIoCtx {
    fn pool_id(&self) -> i64 {
        self.inner.pool_id
    }

    fn pool_name(&self) -> &str {
        &self.inner.pool_name
    }

    fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    fn with_namespace(&self, namespace: &str) -> Self {
        let i = &self.inner;
        LibradosIoCtx::new(
            i.cluster.clone(),
            i.fsid.clone(),
            i.pool_id,
            i.pool_name.clone(),
            namespace.to_string(),
            None,
        )
    }

    async fn pool_by_id(&self, pool_id: i64) -> RadosResult<Self> {
        let what = format!("pool id {pool_id}");
        let err = self.call(RadosOp::PoolLookup, &what);
        let (cluster, ns) = (self.inner.cluster.clone(), self.inner.namespace.clone());
        let (name, head) = blocking(move || {
            let head = RawIoCtx::create(&cluster, pool_id, &ns, IoTune::Head)?;
            Ok((head.pool_name()?, head))
        })
        .await
        .map_err(err)?;
        let ns = self.inner.namespace.clone();
        let cluster = self.inner.cluster.clone();
        Ok(LibradosIoCtx::new(
            cluster,
            self.inner.fsid.clone(),
            pool_id,
            name,
            ns,
            Some(Arc::new(head)),
        ))
    }

    async fn pool_by_name(&self, name: &str) -> RadosResult<Self> {
        let err = self.call(RadosOp::PoolLookup, name);
        let (cluster, n) = (self.inner.cluster.clone(), name.to_string());
        let id = blocking(move || cluster.pool_lookup(&n))
            .await
            .map_err(err)?;
        self.pool_by_id(id).await
    }

    async fn operate_write(&self, oid: &str, op: WriteOp) -> RadosResult<u64> {
        let err = self.call(op.kind(), oid);
        let key = match &op.snap_context {
            Some(snapc) if *snapc != SnapContext::default() => IoKey::Write(snapc.clone()),
            _ => IoKey::Head,
        };
        let io = self.io(key).map_err(&err)?;
        ffi::write(&io, oid, &op).await.map_err(err)
    }

    async fn operate_read(&self, oid: &str, op: ReadOp) -> RadosResult<ReadReply> {
        let err = self.call(op.kind(), oid);
        let io = self.io(Self::read_key(op.snap)).map_err(&err)?;
        if op
            .steps
            .iter()
            .any(|s| matches!(s, ReadStep::Read { len: 0, .. }))
        {
            return self.read_whole(&io, oid, &op).await.map_err(err);
        }
        let (results, version) = ffi::read(&io, oid, &op).await.map_err(err)?;
        Ok(ReadReply { results, version })
    }

    async fn watch_with(&self, oid: &str, ack: AckMode) -> RadosResult<Watch> {
        let err = self.call(RadosOp::Watch, oid);
        let (sender, mut watch) = Watch::channel(0, ack);
        let (cluster, pool, ns, o) = (
            self.inner.cluster.clone(),
            self.inner.pool_id,
            self.inner.namespace.clone(),
            oid.to_string(),
        );
        watch.cookie = blocking(move || cluster.watch(pool, &ns, &o, sender))
            .await
            .map_err(err)?;
        Ok(watch)
    }

    async fn unwatch(&self, cookie: u64) -> RadosResult<()> {
        let what = format!("cookie {cookie}");
        let err = self.call(RadosOp::Unwatch, &what);
        let cluster = self.inner.cluster.clone();
        blocking(move || cluster.unwatch(cookie)).await.map_err(err)
    }

    async fn watch_check(&self, cookie: u64) -> RadosResult<Duration> {
        let what = format!("cookie {cookie}");
        let ms = self
            .inner
            .cluster
            .watch_check(cookie)
            .map_err(self.call(RadosOp::WatchCheck, &what))?;
        Ok(Duration::from_millis(ms))
    }

    async fn notify(
        &self,
        oid: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> RadosResult<NotifyReply> {
        let err = self.call(RadosOp::Notify, oid);
        let io = self.head().map_err(&err)?;
        let timeout_ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let reply = ffi::notify(&io, oid, &payload, timeout_ms)
            .await
            .map_err(&err)?;
        decode_notify_reply(&reply).map_err(err)
    }

    async fn notify_ack(
        &self,
        oid: &str,
        notify_id: u64,
        cookie: u64,
        reply: Bytes,
    ) -> RadosResult<()> {
        let err = self.call(RadosOp::NotifyAck, oid);
        self.head()
            .map_err(&err)?
            .notify_ack(oid, notify_id, cookie, &reply)
            .map_err(err)
    }

    async fn selfmanaged_snap_create(&self) -> RadosResult<SnapId> {
        let err = self.call(RadosOp::SnapCreate, &self.inner.pool_name);
        let io = self.head().map_err(&err)?;
        blocking(move || io.selfmanaged_snap_create())
            .await
            .map_err(err)
    }

    async fn selfmanaged_snap_remove(&self, snap: SnapId) -> RadosResult<()> {
        let err = self.call(RadosOp::SnapRemove, &self.inner.pool_name);
        let io = self.head().map_err(&err)?;
        blocking(move || io.selfmanaged_snap_remove(snap))
            .await
            .map_err(err)
    }

    async fn selfmanaged_snap_rollback(
        &self,
        oid: &str,
        snap: SnapId,
        snapc: &SnapContext,
    ) -> RadosResult<()> {
        let err = self.call(RadosOp::SnapRollback, oid);
        let io = self.io(IoKey::Write(snapc.clone())).map_err(&err)?;
        let o = oid.to_string();
        blocking(move || io.selfmanaged_snap_rollback(&o, snap))
            .await
            .map_err(err)
    }

    async fn list_objects(&self) -> RadosResult<Vec<String>> {
        let err = self.call(RadosOp::List, &self.inner.pool_name);
        let io = self.head().map_err(&err)?;
        blocking(move || io.list_objects()).await.map_err(err)
    }
}
