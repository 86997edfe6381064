//! The storage seam: the RADOS operations rbd-relay needs, as async traits, with two
//! backends that obey one contract (proven by `tests/conformance`):
//! - [`librados`]: real Ceph through the `ceph` crate's librados bindings;
//! - [`memory`]: the embedded default, in-process clusters with Ceph's semantics.
//!
//! [`Rados`] is a cluster connection (one librados client instance), [`IoCtx`] a pool (and
//! RADOS namespace) on it. Every object call is either a compound [`WriteOp`] / [`ReadOp`]
//! (atomic, like `rados_write_op_operate`) or one of the non-op calls (watch, notify,
//! snapshots, listing); the convenience methods below are built on those few primitives
//! so that a backend implements each semantic once.

mod error;
pub mod faults;
pub mod librados;
pub mod memory;
mod op;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

pub use error::{Errno, RadosError, RadosOp, RadosResult};
pub use op::{
    CmpOp, NOSNAP, ObjectStat, ReadOp, ReadReply, ReadResult, ReadStep, SnapContext, SnapId,
    WriteOp, WriteStep,
};

/// A connection to one cluster: one librados client instance with its own global id.
#[async_trait]
pub trait Rados: Clone + Send + Sync + 'static {
    type IoCtx: IoCtx;

    /// Opens a pool by name (`ENOENT` if it does not exist), in the default namespace.
    async fn ioctx(&self, pool: &str) -> RadosResult<Self::IoCtx>;
    /// Opens a pool by id (`ENOENT` if it does not exist).
    async fn ioctx_by_id(&self, pool_id: i64) -> RadosResult<Self::IoCtx>;
    async fn pool_lookup(&self, pool: &str) -> RadosResult<i64>;
    /// Every pool as (id, name), sorted by id.
    async fn pool_list(&self) -> RadosResult<Vec<(i64, String)>>;
    /// The cluster's fsid (a UUID string).
    fn fsid(&self) -> String;
    /// This client's global id (`client.<id>`), as watchers and notifiers see it.
    fn instance_id(&self) -> u64;
    /// This client's messenger address (`127.0.0.1:0/3546`), as lock holders and status
    /// origins record it and as `ceph osd blocklist` takes it.
    fn client_addr(&self) -> String;
    /// Blocklists a client address for `expire` (fencing: its ops fail, its watches break).
    async fn blocklist_add(&self, addr: &str, expire: Duration) -> RadosResult<()>;
    /// A value of the monitors' config-key store (`ENOENT` when absent); peers' mon hosts
    /// and keys are kept there by `rbd mirror pool peer add`.
    async fn config_key_get(&self, key: &str) -> RadosResult<Bytes>;
    async fn config_key_set(&self, key: &str, value: Bytes) -> RadosResult<()>;
}

/// The fencing capability of a connection, object-safe so that contexts and images can carry
/// it without a type parameter (every [`Rados`] has it).
#[async_trait]
pub trait Fence: Send + Sync {
    /// Blocklists a client address for `expire`, as [`Rados::blocklist_add`].
    async fn fence(&self, addr: &str, expire: Duration) -> RadosResult<()>;
}

#[async_trait]
impl<R: Rados> Fence for R {
    async fn fence(&self, addr: &str, expire: Duration) -> RadosResult<()> {
        self.blocklist_add(addr, expire).await
    }
}

/// One event of a watch. Callbacks never block: notifications go through a bounded queue;
/// when it is full the backend acknowledges the notify itself and reports `Lagged`, after
/// which the consumer must re-read whatever the watch guards (nothing is lost, only late).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Notify(Notification),
    /// Notifications were dropped because the consumer fell behind.
    Lagged,
    /// The watch broke (disconnect, timeout, blocklist); it delivers nothing more.
    /// Re-watch, then re-read.
    Error(Errno),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub notify_id: u64,
    /// The watch handle that received it (pass it back to `notify_ack`).
    pub cookie: u64,
    /// Global id of the notifying client.
    pub notifier_id: u64,
    pub payload: Bytes,
}

/// Who acknowledges a watch's notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// The consumer acks each one with [`IoCtx::notify_ack`], possibly with a reply payload
    /// (an image header's lock requests need one).
    Consumer,
    /// The backend acks each one with an empty payload as it arrives, before the consumer
    /// sees it: for objects whose notifiers want no answer (journal headers), so a busy
    /// consumer never holds a notifier up (librbd waits up to 5 s per unacked watcher).
    Auto,
}

/// Capacity of a watch's queue before notifications are auto-acked and reported `Lagged`.
pub const WATCH_QUEUE: usize = 256;

/// A registered watch: the stream of its events. Dropping it does not unwatch; call
/// [`IoCtx::unwatch`] with `cookie` (the backend then stops delivering).
pub struct Watch {
    pub cookie: u64,
    events: mpsc::Receiver<WatchEvent>,
    flags: Arc<WatchFlags>,
    /// An event received while a flag took precedence; delivered next.
    stash: Option<WatchEvent>,
}

/// Conditions raised while the queue was full; they must reach the consumer regardless.
#[derive(Default)]
struct WatchFlags {
    lagged: AtomicBool,
    /// Errno of a watch error that did not fit in the queue (0: none).
    error: AtomicI32,
}

/// The sending half a backend keeps for a watch.
#[derive(Clone)]
pub struct WatchSender {
    events: mpsc::Sender<WatchEvent>,
    ack: AckMode,
    flags: Arc<WatchFlags>,
}

impl Watch {
    pub fn channel(cookie: u64, ack: AckMode) -> (WatchSender, Watch) {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        crate::metrics::queue(crate::metrics::Queue::Watch, &tx);
        let flags = Arc::new(WatchFlags::default());
        let watch = Watch {
            cookie,
            events: rx,
            flags: flags.clone(),
            stash: None,
        };
        (
            WatchSender {
                events: tx,
                flags,
                ack,
            },
            watch,
        )
    }

    /// The next event; `None` after unwatch. Cancel safe.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        if let Some(ev) = self.raised().or_else(|| self.stash.take()) {
            return Some(ev);
        }
        let ev = self.events.recv().await;
        // A flag raised meanwhile is older news than what the queue holds: report it first.
        match self.raised() {
            Some(flag) => {
                self.stash = ev;
                Some(flag)
            }
            None => ev,
        }
    }

    fn raised(&self) -> Option<WatchEvent> {
        if self.flags.lagged.swap(false, Ordering::AcqRel) {
            return Some(WatchEvent::Lagged);
        }
        match self.flags.error.swap(0, Ordering::AcqRel) {
            0 => None,
            e => Some(WatchEvent::Error(Errno(e))),
        }
    }
}

impl WatchSender {
    /// Hands a notification to the consumer without blocking. Returns false when the
    /// backend must ack the notify itself, at once: an auto-ack watch, or a queue that was
    /// full or closed.
    pub fn offer(&self, n: Notification) -> bool {
        match self.events.try_send(WatchEvent::Notify(n)) {
            Ok(()) => self.ack == AckMode::Consumer,
            Err(mpsc::error::TrySendError::Full(_)) => {
                // The queue is non-empty, so the consumer will wake and see the flag.
                self.flags.lagged.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Reports a broken watch; never blocks and is never lost.
    pub fn error(&self, errno: Errno) {
        if self.events.try_send(WatchEvent::Error(errno)).is_err() {
            self.flags.error.store(errno.0, Ordering::Release);
        }
    }

    /// Reports that notifications were lost upstream of this watch.
    pub fn lagged(&self) {
        if self.events.try_send(WatchEvent::Lagged).is_err() {
            self.flags.lagged.store(true, Ordering::Release);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.events.is_closed()
    }
}

/// The outcome of a notify: who acked (with their reply payloads) and who timed out.
/// Timeouts are data here, not an error, so callers can tell a slow watcher from no watcher.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyReply {
    pub acks: Vec<NotifyAck>,
    /// (global id, cookie) of watchers that did not ack within the timeout.
    pub timeouts: Vec<(u64, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyAck {
    pub notifier_id: u64,
    pub cookie: u64,
    pub payload: Bytes,
}

/// A pool (and RADOS namespace) on one connection. Cheap to clone.
#[async_trait]
pub trait IoCtx: Clone + Send + Sync + 'static {
    fn pool_id(&self) -> i64;
    fn pool_name(&self) -> &str;
    fn namespace(&self) -> &str;
    /// The same pool in another RADOS namespace (`""` is the default one).
    fn with_namespace(&self, namespace: &str) -> Self;
    /// Another pool of the same cluster, in this namespace: an image's data pool.
    async fn pool_by_id(&self, pool_id: i64) -> RadosResult<Self>;
    /// As [`Self::pool_by_id`], by name; `ENOENT` if the cluster has no such pool.
    async fn pool_by_name(&self, name: &str) -> RadosResult<Self>;

    /// Runs an atomic compound write; returns the object's new version.
    async fn operate_write(&self, oid: &str, op: WriteOp) -> RadosResult<u64>;
    /// Runs a compound read; fails with the first failing step's errno.
    async fn operate_read(&self, oid: &str, op: ReadOp) -> RadosResult<ReadReply>;

    /// Watches an object; see [`AckMode`] for who acks its notifications.
    async fn watch_with(&self, oid: &str, ack: AckMode) -> RadosResult<Watch>;
    async fn unwatch(&self, cookie: u64) -> RadosResult<()>;
    /// How long ago the watch was last confirmed alive, or its error (e.g. `ENOTCONN`).
    async fn watch_check(&self, cookie: u64) -> RadosResult<Duration>;
    async fn notify(
        &self,
        oid: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> RadosResult<NotifyReply>;
    async fn notify_ack(
        &self,
        oid: &str,
        notify_id: u64,
        cookie: u64,
        reply: Bytes,
    ) -> RadosResult<()>;

    /// Allocates a self-managed snapshot id from the pool.
    async fn selfmanaged_snap_create(&self) -> RadosResult<SnapId>;
    async fn selfmanaged_snap_remove(&self, snap: SnapId) -> RadosResult<()>;
    /// Rolls an object back to its state at `snap` (a write under `snapc`).
    async fn selfmanaged_snap_rollback(
        &self,
        oid: &str,
        snap: SnapId,
        snapc: &SnapContext,
    ) -> RadosResult<()>;

    /// Names of all objects in this pool and namespace.
    async fn list_objects(&self) -> RadosResult<Vec<String>>;

    // ---- conveniences over the primitives (backends do not override these) ----

    /// Watches an object; the consumer acks each notification.
    async fn watch(&self, oid: &str) -> RadosResult<Watch> {
        self.watch_with(oid, AckMode::Consumer).await
    }

    async fn read(&self, oid: &str, offset: u64, len: u64) -> RadosResult<Bytes> {
        data(
            self.operate_read(oid, ReadOp::new().read(offset, len))
                .await?,
        )
    }
    async fn read_at_snap(
        &self,
        oid: &str,
        offset: u64,
        len: u64,
        snap: SnapId,
    ) -> RadosResult<Bytes> {
        data(
            self.operate_read(oid, ReadOp::new().read(offset, len).at_snap(snap))
                .await?,
        )
    }
    async fn stat(&self, oid: &str) -> RadosResult<ObjectStat> {
        match self
            .operate_read(oid, ReadOp::new().stat())
            .await?
            .results
            .pop()
        {
            Some(ReadResult::Stat(s)) => Ok(s),
            _ => Err(RadosError::new(RadosOp::Read, oid, Errno::EIO)),
        }
    }
    async fn write(&self, oid: &str, offset: u64, data: Bytes) -> RadosResult<()> {
        self.operate_write(oid, WriteOp::new().write(offset, data))
            .await
            .map(drop)
    }
    async fn write_full(&self, oid: &str, data: Bytes) -> RadosResult<()> {
        self.operate_write(oid, WriteOp::new().write_full(data))
            .await
            .map(drop)
    }
    async fn append(&self, oid: &str, data: Bytes) -> RadosResult<()> {
        self.operate_write(oid, WriteOp::new().append(data))
            .await
            .map(drop)
    }
    async fn truncate(&self, oid: &str, size: u64) -> RadosResult<()> {
        self.operate_write(oid, WriteOp::new().truncate(size))
            .await
            .map(drop)
    }
    async fn remove(&self, oid: &str) -> RadosResult<()> {
        self.operate_write(oid, WriteOp::new().remove())
            .await
            .map(drop)
    }
    /// Runs a read-only cls method and returns its output.
    async fn exec(&self, oid: &str, class: &str, method: &str, input: Bytes) -> RadosResult<Bytes> {
        data(
            self.operate_read(oid, ReadOp::new().exec(class, method, input))
                .await?,
        )
    }
    /// Runs a cls method with write rights (its output, if any, is dropped).
    async fn exec_write(
        &self,
        oid: &str,
        class: &str,
        method: &str,
        input: Bytes,
    ) -> RadosResult<()> {
        self.operate_write(oid, WriteOp::new().exec(class, method, input))
            .await
            .map(drop)
    }
    /// Up to `max` omap pairs after `start_after` with keys starting with `prefix`.
    async fn omap_get_vals(
        &self,
        oid: &str,
        start_after: &str,
        prefix: &str,
        max: u64,
    ) -> RadosResult<(BTreeMap<String, Bytes>, bool)> {
        omap(
            self.operate_read(oid, ReadOp::new().omap_get_vals(start_after, prefix, max))
                .await?,
        )
    }
    /// Every omap pair with keys starting with `prefix`, paging through large maps.
    async fn omap_get_all(&self, oid: &str, prefix: &str) -> RadosResult<BTreeMap<String, Bytes>> {
        const PAGE: u64 = 1024;
        let mut all = BTreeMap::new();
        let mut after = String::new();
        loop {
            let (page, more) = self.omap_get_vals(oid, &after, prefix, PAGE).await?;
            if let Some(last) = page.keys().next_back() {
                after = last.clone();
            }
            let empty = page.is_empty();
            all.extend(page);
            if !more || empty {
                return Ok(all);
            }
        }
    }
    async fn omap_get_by_keys(
        &self,
        oid: &str,
        keys: &[&str],
    ) -> RadosResult<BTreeMap<String, Bytes>> {
        let op = ReadOp::new().omap_get_vals_by_keys(keys.iter().copied());
        omap(self.operate_read(oid, op).await?).map(|(m, _)| m)
    }
    async fn omap_set(&self, oid: &str, kv: BTreeMap<String, Bytes>) -> RadosResult<()> {
        self.operate_write(oid, WriteOp::new().omap_set(kv))
            .await
            .map(drop)
    }
    async fn omap_rm_keys(&self, oid: &str, keys: &[&str]) -> RadosResult<()> {
        self.operate_write(oid, WriteOp::new().omap_rm_keys(keys.iter().copied()))
            .await
            .map(drop)
    }
    async fn get_xattr(&self, oid: &str, name: &str) -> RadosResult<Bytes> {
        data(
            self.operate_read(oid, ReadOp::new().get_xattr(name))
                .await?,
        )
    }
    async fn set_xattr(&self, oid: &str, name: &str, value: Bytes) -> RadosResult<()> {
        self.operate_write(oid, WriteOp::new().set_xattr(name, value))
            .await
            .map(drop)
    }
}

fn data(mut reply: ReadReply) -> RadosResult<Bytes> {
    match reply.results.pop() {
        Some(ReadResult::Data(b)) => Ok(b),
        other => unreachable_result(other),
    }
}

fn omap(mut reply: ReadReply) -> RadosResult<(BTreeMap<String, Bytes>, bool)> {
    match reply.results.pop() {
        Some(ReadResult::Omap { entries, more }) => Ok((entries, more)),
        other => unreachable_result(other),
    }
}

/// A backend returned a result of the wrong kind for a step: a backend bug, reported as EIO
/// rather than a panic.
fn unreachable_result<T>(got: Option<ReadResult>) -> RadosResult<T> {
    tracing::error!(?got, "backend returned a mismatched read result");
    Err(RadosError::new(RadosOp::Read, "<result>", Errno::EIO))
}
