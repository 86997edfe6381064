//! Fault injection over any backend: a [`Rados`] / [`IoCtx`] wrapper that fails chosen
//! operations with chosen errnos, hangs them as a down OSD does, and drops, duplicates or
//! delays watch notifications.
//! Tests use it on both backends to prove the invariants that do not depend on luck: a lost
//! or duplicated notification changes latency, never the result; transient errors are
//! retried with backoff; permanent ones fail one image.
//!
//! Faults are decided by a seeded generator, so a failing run can be replayed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    AckMode, Errno, IoCtx, NotifyReply, Rados, RadosError, RadosOp, RadosResult, ReadOp, ReadReply,
    SnapContext, SnapId, Watch, WatchEvent, WriteOp,
};

/// Fails matching calls: the `skip` first matches pass, then `times` matches fail.
#[derive(Clone, Debug)]
pub struct OpFault {
    pub op: RadosOp,
    /// Only objects whose name starts with this (empty: all).
    pub object_prefix: String,
    pub errno: Errno,
    pub skip: u32,
    pub times: u32,
}

/// What happens to each notification on its way to the consumer.
#[derive(Clone, Debug, Default)]
pub struct NotifyFaults {
    /// Probability (0..=1) that a notification never reaches the consumer.
    pub drop: f64,
    /// Probability that it is delivered twice.
    pub duplicate: f64,
    /// Added delay before delivery (delivery order is kept).
    pub delay: Duration,
}

#[derive(Debug)]
struct Plan {
    ops: Vec<OpFault>,
    /// See [`Faults::hang`]: object prefix and how long each call waits.
    hang: Option<(String, Duration)>,
    /// See [`Faults::delay`]: op, object prefix and how long each call waits.
    delays: Vec<(RadosOp, String, Duration)>,
    /// See [`Faults::delay_reply`]: the same, after the op took effect.
    reply_delays: Vec<(RadosOp, String, Duration)>,
    notify: NotifyFaults,
    rng: u64,
    injected: u64,
}

/// A shared, mutable fault plan; clone it into the wrapper and keep a handle in the test.
#[derive(Clone, Debug)]
pub struct Faults(Arc<Mutex<Plan>>);

impl Faults {
    pub fn new(seed: u64) -> Self {
        Faults(Arc::new(Mutex::new(Plan {
            ops: Vec::new(),
            hang: None,
            delays: Vec::new(),
            reply_delays: Vec::new(),
            notify: NotifyFaults::default(),
            rng: seed | 1,
            injected: 0,
        })))
    }

    pub fn fail(&self, fault: OpFault) {
        self.lock().ops.push(fault);
    }

    /// Every call about an object starting with `object_prefix` (calls about no object, such
    /// as unwatch, included when it is empty) waits `after` and fails with `ETIMEDOUT`, as a
    /// client with an OSD op timeout sees an OSD that is down, until [`Self::clear`].
    pub fn hang(&self, object_prefix: &str, after: Duration) {
        self.lock().hang = Some((object_prefix.to_string(), after));
    }

    /// Every `op` about an object starting with `object_prefix` waits `by`, then goes
    /// through, as on a slow OSD: opens a race window at a chosen step.
    pub fn delay(&self, op: RadosOp, object_prefix: &str, by: Duration) {
        self.lock().delays.push((op, object_prefix.to_string(), by));
    }

    /// Every `op` about an object starting with `object_prefix` takes effect, then its
    /// reply waits `by`, as on a slow network back: a caller dropped meanwhile never
    /// learns that its op succeeded.
    pub fn delay_reply(&self, op: RadosOp, object_prefix: &str, by: Duration) {
        self.lock()
            .reply_delays
            .push((op, object_prefix.to_string(), by));
    }

    pub fn set_notify(&self, notify: NotifyFaults) {
        self.lock().notify = notify;
    }

    /// Removes every fault (the test's "heal").
    pub fn clear(&self) {
        let mut plan = self.lock();
        plan.ops.clear();
        plan.hang = None;
        plan.delays.clear();
        plan.reply_delays.clear();
        plan.notify = NotifyFaults::default();
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Plan> {
        // A panic while holding this lock can only come from a test; keep going.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The plan's verdict on one call: a hang first (the lock is not held while waiting).
    async fn check(&self, op: RadosOp, object: &str) -> RadosResult<()> {
        self.wait(op, object, |plan| &plan.delays).await;
        let hang = self.lock().hang.clone();
        if let Some((prefix, after)) = hang
            && object.starts_with(&prefix)
        {
            tokio::time::sleep(after).await;
            self.lock().injected += 1;
            return Err(RadosError::new(op, object, Errno::ETIMEDOUT));
        }
        self.fail_now(op, object)
    }

    /// Waits as long as the first of `delays` matching the call says, if any.
    async fn wait(
        &self,
        op: RadosOp,
        object: &str,
        delays: fn(&Plan) -> &Vec<(RadosOp, String, Duration)>,
    ) {
        let delay = delays(&self.lock()).iter().find_map(|(o, prefix, by)| {
            (*o == op && object.starts_with(prefix.as_str())).then_some(*by)
        });
        if let Some(by) = delay {
            tokio::time::sleep(by).await;
        }
    }

    fn fail_now(&self, op: RadosOp, object: &str) -> RadosResult<()> {
        let mut plan = self.lock();
        let hit = plan.ops.iter_mut().find(|f| {
            f.op == op && object.starts_with(&f.object_prefix) && (f.skip > 0 || f.times > 0)
        });
        match hit {
            Some(f) if f.skip > 0 => {
                f.skip -= 1;
                Ok(())
            }
            Some(f) => {
                f.times -= 1;
                let errno = f.errno;
                plan.injected += 1;
                Err(RadosError::new(op, object, errno))
            }
            None => Ok(()),
        }
    }

    /// How many copies of a notification to deliver (0, 1 or 2) and after what delay.
    fn route(&self) -> (usize, Duration) {
        let mut plan = self.lock();
        let (drop, dup, delay) = (plan.notify.drop, plan.notify.duplicate, plan.notify.delay);
        let copies = if plan.chance(drop) {
            0
        } else if plan.chance(dup) {
            2
        } else {
            1
        };
        if copies != 1 {
            plan.injected += 1;
        }
        (copies, delay)
    }
}

impl Plan {
    /// xorshift64*: deterministic per seed, no dependency on an RNG crate's API.
    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (x as f64 / (1u64 << 53) as f64) < p
    }
}

/// A cluster connection whose pools inject the plan's faults.
#[derive(Clone)]
pub struct FaultyRados<R> {
    inner: R,
    faults: Faults,
}

impl<R: Rados> FaultyRados<R> {
    pub fn new(inner: R, faults: Faults) -> Self {
        FaultyRados { inner, faults }
    }

    fn wrap(&self, io: R::IoCtx) -> FaultyIoCtx<R::IoCtx> {
        FaultyIoCtx::new(io, self.faults.clone())
    }
}

#[async_trait]
impl<R: Rados> Rados for FaultyRados<R> {
    type IoCtx = FaultyIoCtx<R::IoCtx>;

    async fn ioctx(&self, pool: &str) -> RadosResult<Self::IoCtx> {
        self.faults.check(RadosOp::PoolLookup, pool).await?;
        Ok(self.wrap(self.inner.ioctx(pool).await?))
    }
    async fn ioctx_by_id(&self, pool_id: i64) -> RadosResult<Self::IoCtx> {
        self.faults
            .check(RadosOp::PoolLookup, &pool_id.to_string())
            .await?;
        Ok(self.wrap(self.inner.ioctx_by_id(pool_id).await?))
    }
    async fn pool_lookup(&self, pool: &str) -> RadosResult<i64> {
        self.faults.check(RadosOp::PoolLookup, pool).await?;
        self.inner.pool_lookup(pool).await
    }
    async fn pool_list(&self) -> RadosResult<Vec<(i64, String)>> {
        self.faults.check(RadosOp::PoolList, "").await?;
        self.inner.pool_list().await
    }
    fn fsid(&self) -> String {
        self.inner.fsid()
    }
    fn instance_id(&self) -> u64 {
        self.inner.instance_id()
    }
    fn client_addr(&self) -> String {
        self.inner.client_addr()
    }
    async fn blocklist_add(&self, addr: &str, expire: Duration) -> RadosResult<()> {
        self.faults.check(RadosOp::Blocklist, addr).await?;
        self.inner.blocklist_add(addr, expire).await
    }
    async fn config_key_get(&self, key: &str) -> RadosResult<Bytes> {
        self.faults.check(RadosOp::ConfigKey, key).await?;
        self.inner.config_key_get(key).await
    }
    async fn config_key_set(&self, key: &str, value: Bytes) -> RadosResult<()> {
        self.faults.check(RadosOp::ConfigKey, key).await?;
        self.inner.config_key_set(key, value).await
    }
}

/// A pool whose calls pass through the fault plan first.
#[derive(Clone)]
pub struct FaultyIoCtx<I> {
    inner: I,
    faults: Faults,
}

impl<I> FaultyIoCtx<I> {
    pub fn new(inner: I, faults: Faults) -> Self {
        FaultyIoCtx { inner, faults }
    }
}

#[async_trait]
impl<I: IoCtx> IoCtx for FaultyIoCtx<I> {
    fn pool_id(&self) -> i64 {
        self.inner.pool_id()
    }
    fn pool_name(&self) -> &str {
        self.inner.pool_name()
    }
    fn namespace(&self) -> &str {
        self.inner.namespace()
    }
    fn with_namespace(&self, namespace: &str) -> Self {
        FaultyIoCtx {
            inner: self.inner.with_namespace(namespace),
            faults: self.faults.clone(),
        }
    }
    async fn pool_by_id(&self, pool_id: i64) -> RadosResult<Self> {
        Ok(FaultyIoCtx {
            inner: self.inner.pool_by_id(pool_id).await?,
            faults: self.faults.clone(),
        })
    }
    async fn pool_by_name(&self, name: &str) -> RadosResult<Self> {
        Ok(FaultyIoCtx {
            inner: self.inner.pool_by_name(name).await?,
            faults: self.faults.clone(),
        })
    }
    // Faults match the kind errors and metrics name: an op with a cls call is `Exec`.
    async fn operate_write(&self, oid: &str, op: WriteOp) -> RadosResult<u64> {
        let kind = op.kind();
        self.faults.check(kind, oid).await?;
        let result = self.inner.operate_write(oid, op).await;
        self.faults.wait(kind, oid, |plan| &plan.reply_delays).await;
        result
    }
    async fn operate_read(&self, oid: &str, op: ReadOp) -> RadosResult<ReadReply> {
        self.faults.check(op.kind(), oid).await?;
        self.inner.operate_read(oid, op).await
    }
    async fn watch_with(&self, oid: &str, ack: AckMode) -> RadosResult<Watch> {
        self.faults.check(RadosOp::Watch, oid).await?;
        let mut inner = self.inner.watch_with(oid, ack).await?;
        let (tx, outer) = Watch::channel(inner.cookie, AckMode::Consumer);
        let (faults, io, oid) = (self.faults.clone(), self.inner.clone(), oid.to_string());
        // Forwarder: ends when the inner watch ends (unwatch) or the consumer drops its side.
        tokio::spawn(async move {
            while let Some(ev) = inner.next().await {
                let WatchEvent::Notify(n) = ev else {
                    match ev {
                        WatchEvent::Error(e) => tx.error(e),
                        _ => tx.lagged(),
                    }
                    continue;
                };
                let (copies, delay) = faults.route();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                // An auto-ack watch was acked by the backend already.
                let must_ack = ack == AckMode::Consumer;
                if copies == 0 && must_ack {
                    // Lost on the way: the notifier still gets its ack, the consumer nothing.
                    let _ = io
                        .notify_ack(&oid, n.notify_id, n.cookie, Bytes::new())
                        .await;
                }
                for _ in 0..copies {
                    if !tx.offer(n.clone()) && must_ack {
                        let _ = io
                            .notify_ack(&oid, n.notify_id, n.cookie, Bytes::new())
                            .await;
                    }
                }
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(outer)
    }
    async fn unwatch(&self, cookie: u64) -> RadosResult<()> {
        self.faults.check(RadosOp::Unwatch, "").await?;
        self.inner.unwatch(cookie).await
    }
    async fn watch_check(&self, cookie: u64) -> RadosResult<Duration> {
        self.faults.check(RadosOp::WatchCheck, "").await?;
        self.inner.watch_check(cookie).await
    }
    async fn notify(
        &self,
        oid: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> RadosResult<NotifyReply> {
        self.faults.check(RadosOp::Notify, oid).await?;
        self.inner.notify(oid, payload, timeout).await
    }
    async fn notify_ack(
        &self,
        oid: &str,
        notify_id: u64,
        cookie: u64,
        reply: Bytes,
    ) -> RadosResult<()> {
        self.faults.check(RadosOp::NotifyAck, oid).await?;
        self.inner.notify_ack(oid, notify_id, cookie, reply).await
    }
    async fn selfmanaged_snap_create(&self) -> RadosResult<SnapId> {
        self.faults.check(RadosOp::SnapCreate, "").await?;
        self.inner.selfmanaged_snap_create().await
    }
    async fn selfmanaged_snap_remove(&self, snap: SnapId) -> RadosResult<()> {
        self.faults.check(RadosOp::SnapRemove, "").await?;
        self.inner.selfmanaged_snap_remove(snap).await
    }
    async fn selfmanaged_snap_rollback(
        &self,
        oid: &str,
        snap: SnapId,
        snapc: &SnapContext,
    ) -> RadosResult<()> {
        self.faults.check(RadosOp::SnapRollback, oid).await?;
        self.inner.selfmanaged_snap_rollback(oid, snap, snapc).await
    }
    async fn list_objects(&self) -> RadosResult<Vec<String>> {
        self.faults.check(RadosOp::List, "").await?;
        self.inner.list_objects().await
    }
}
