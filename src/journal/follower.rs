//! Follows a remote image's journal as its primary writes it, driven by notifications:
//! the low-latency heart of rbd-relay (upstream polls every 5 s instead).
//!
//!  OPEN: find our client (register it if absent; DISCONNECTED is an error), read after its
//!        commit position, watch `journal.<id>` (auto-acked: a busy follower never holds up
//!        the primary's librbd, which waits up to 5 s for each unacked watcher)
//!    |
//!  NEXT: deliver what is readable (within the prefetch budgets)
//!    |--(caught up)--> WAIT: a notification (a burst is one wake-up), the tail probe, or the
//!    |                 commit age; then re-read the active set and the tail
//!    |--(watch error)--> REWATCH with backoff, then re-read everything (nothing is missed)
//!  ACK (entries durably applied, in order) --> COMMIT in batches (age / count) + notify
//!
//! The tail probe is only a safety net (a primary at the default 5 s commit age, a lost
//! notification): right after entries arrived it looks again at the floor delay, doubling
//! while idle up to the ceiling; `None` turns it off. Once at the ceiling it reads only if
//! the watch is not confirmed alive (librados pings it; [`WATCH_ALIVE`]), or nothing was
//! read for `probe_idle`: a live watch delivers every notification or reports an error,
//! except one that timed out while the client reconnected, so an idle image costs one
//! look per `probe_idle` instead of one per ceiling.
//! Not an actor of its own: the image replayer owns it and awaits `next`. `next` is cancel
//! safe: dropping it loses nothing (entries not yet returned are read again).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep, sleep_until};

use super::JournalError;
use super::position::CommitPosition;
use super::reader::JournalReader;
use crate::backoff::Backoff;
use crate::cls::journal as cls;
use crate::format::entry::Entry;
use crate::format::journal::{ClientState, ObjectPosition, ObjectSetPosition, header_oid};
use crate::metrics::{self, Source};
use crate::rados::{AckMode, IoCtx, Watch, WatchEvent};

#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// Tail probe delay right after entries arrived.
    pub probe_floor: Duration,
    /// Longest idle probe delay; `None` disables the probe (notifications only).
    pub probe_ceiling: Option<Duration>,
    /// At the ceiling, with the watch confirmed alive, the journal is read only this long
    /// after it was last read.
    pub probe_idle: Duration,
    /// Most entries `next` returns at once.
    pub batch_entries: usize,
    /// Bytes delivered but not yet acked, per image; past it `next` delivers nothing.
    pub image_budget_bytes: usize,
    /// Commit at least this often while acks arrive...
    pub commit_age: Duration,
    /// ...or after this many acked entries.
    pub commit_entries: usize,
}

impl Default for FollowerConfig {
    fn default() -> Self {
        FollowerConfig {
            probe_floor: Duration::from_millis(50),
            probe_ceiling: Some(Duration::from_secs(5)),
            probe_idle: Duration::from_secs(300),
            batch_entries: 256,
            image_budget_bytes: 64 << 20,
            commit_age: Duration::from_millis(100),
            commit_entries: 1024,
        }
    }
}

/// Bytes delivered and not yet acked, across every follower of the daemon. A follower
/// reserves a batch's bytes before it delivers the batch, so `used` never passes `limit`
/// (except by one entry when nothing else is held: an entry larger than the budget).
#[derive(Debug)]
pub struct PrefetchBudget {
    used: AtomicUsize,
    limit: usize,
    /// Signalled whenever bytes are given back; followers with no room wait on it.
    released: Notify,
}

impl PrefetchBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(PrefetchBudget {
            used: AtomicUsize::new(0),
            limit,
            released: Notify::new(),
        })
    }
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn room(&self) -> usize {
        self.limit.saturating_sub(self.used())
    }

    fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            self.released.notify_waiters();
        }
    }

    /// Returns once `bytes` fit, or nothing at all is held. Cancel safe.
    async fn wait_for_room(&self, bytes: usize) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release between the two is not missed.
            released.as_mut().enable();
            if self.room() >= bytes || self.used() == 0 {
                return;
            }
            released.await;
        }
    }
}

/// What made a follower look at its journal; read by the metrics layer.
#[derive(Debug, Default)]
pub struct FollowerStats {
    pub notifications: AtomicU64,
    pub probes: AtomicU64,
    pub watch_errors: AtomicU64,
    pub commits: AtomicU64,
    /// The journal header watch's cookie (0: none now), for [`watch_alive`].
    pub watch: AtomicU64,
}

/// A watch confirmed by librados within this is alive: librados pings every watch each
/// 5 s (`objecter_tick_interval`), so a healthy one is never older than that plus a round
/// trip.
pub const WATCH_ALIVE: Duration = Duration::from_secs(8);

/// Whether the follower's journal watch (see [`FollowerStats::watch`]) is confirmed alive
/// on `io`: then every change of the journal is being notified. A local call, no OSD op.
pub async fn watch_alive<I: IoCtx>(io: &I, stats: &FollowerStats) -> bool {
    match stats.watch.load(Ordering::Relaxed) {
        0 => false,
        cookie => io
            .watch_check(cookie)
            .await
            .is_ok_and(|age| age < WATCH_ALIVE),
    }
}

pub struct Follower<I> {
    io: I,
    header: String,
    client_id: String,
    config: FollowerConfig,
    reader: JournalReader<I>,
    watch: Option<Watch>,
    rewatch: Backoff,
    probe_delay: Duration,
    commit: CommitPosition,
    committed: ObjectSetPosition,
    uncommitted: usize,
    last_commit: Instant,
    in_flight: usize,
    budget: Arc<PrefetchBudget>,
    stats: Arc<FollowerStats>,
    /// When the last batch `next` returned was found: the notification (or probe) that
    /// woke us, else the start of its read. The replay latency histogram starts here.
    received: Instant,
    /// The last wake-up (notification or probe) not yet followed by a delivered batch.
    woke: Option<Wake>,
    /// When the journal was last read after a wake-up.
    looked: Instant,
}

impl<I: IoCtx> Follower<I> {
    /// Opens the journal `journal_id` as client `client_id`, registering it with
    /// `client_data` if it is not registered yet.
    pub async fn open(
        io: I,
        journal_id: &str,
        client_id: &str,
        client_data: Bytes,
        config: FollowerConfig,
        budget: Arc<PrefetchBudget>,
        stats: Arc<FollowerStats>,
    ) -> Result<Self, JournalError> {
        let header = header_oid(journal_id);
        let registered = async {
            match cls::get_client(&io, &header, client_id).await {
                Err(e) if e.is_not_found() => {
                    cls::client_register(&io, &header, client_id, client_data).await?;
                    cls::get_client(&io, &header, client_id).await
                }
                other => other,
            }
        };
        // Together: a replayer taking an image over waits for both. The watch comes before
        // the reader's first read: whatever is written after that read is notified.
        let (client, watch) = tokio::join!(registered, io.watch_with(&header, AckMode::Auto));
        let watch = watch?;
        let opened = match client {
            Ok(client) if client.state == ClientState::Disconnected => {
                Err(JournalError::Disconnected {
                    journal: journal_id.into(),
                    client: client_id.into(),
                })
            }
            Ok(client) => JournalReader::open(io.clone(), journal_id, &client.commit_position)
                .await
                .map(|reader| (client, reader)),
            Err(e) => Err(e.into()),
        };
        let (client, reader) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                let _ = io.unwatch(watch.cookie).await;
                return Err(e);
            }
        };
        stats.watch.store(watch.cookie, Ordering::Relaxed);
        Ok(Follower {
            commit: CommitPosition::new(reader.splay_width(), &client.commit_position),
            committed: client.commit_position,
            io,
            header,
            client_id: client_id.into(),
            probe_delay: config.probe_floor,
            config,
            reader,
            watch: Some(watch),
            rewatch: Backoff::new(Duration::from_millis(100), 2, Duration::from_secs(10)),
            uncommitted: 0,
            last_commit: Instant::now(),
            in_flight: 0,
            budget,
            stats,
            received: Instant::now(),
            woke: None,
            looked: Instant::now(),
        })
    }

    /// The next entries in journal order; waits while there are none, and while other
    /// images hold the whole global prefetch budget. Returns nothing at once when this
    /// image's own deliveries fill a budget: apply and [`ack`](Self::ack) first.
    /// Cancel safe (the replayer selects on it): fetched entries stay in the reader and a
    /// wake-up that arrived stays pending until the journal was re-read.
    pub async fn next(&mut self) -> Result<Vec<(Entry, ObjectPosition)>, JournalError> {
        loop {
            let room = self.room();
            if room == 0 {
                if self.in_flight > 0 {
                    return Ok(Vec::new());
                }
                self.budget.wait_for_room(1).await;
                continue;
            }
            let woken = self.woke.filter(|w| w.pending);
            if woken.is_some() {
                self.looked = Instant::now();
                self.reader.wake().await?;
                self.woke = self.woke.map(|w| Wake {
                    pending: false,
                    ..w
                });
            }
            let read_at = Instant::now();
            let batch = self.reader.read(self.config.batch_entries, room).await?;
            if woken.is_some_and(|w| w.notified) && batch.is_empty() {
                // A notification with nothing new may be a client change: ours disconnected.
                self.check_connected().await?;
            }
            if let Some((first, _)) = batch.first() {
                let first = first.data.len();
                let batch = self.reserve(batch);
                if batch.is_empty() {
                    // Others took the room meanwhile.
                    if self.in_flight > 0 {
                        return Ok(Vec::new());
                    }
                    self.budget.wait_for_room(first).await;
                    continue;
                }
                self.received = self.woke.take().map_or(read_at, |w| w.at);
                self.probe_delay = self.config.probe_floor;
                return Ok(batch);
            }
            self.wait().await?;
        }
    }

    /// Room left for deliveries under both budgets.
    fn room(&self) -> usize {
        // At least a byte when nothing is in flight: one entry always may pass (`reserve`).
        let image = self
            .config
            .image_budget_bytes
            .max(1)
            .saturating_sub(self.in_flight);
        image.min(self.budget.room())
    }

    /// Takes the longest head of `batch` that fits both budgets and counts it as in
    /// flight; the rest goes back to the reader. A first entry larger than a budget still
    /// passes that budget when it holds nothing (this image's: nothing in flight; the
    /// global one: nothing used), the same rule [`PrefetchBudget::wait_for_room`] waits
    /// on, so an oversized entry waits instead of spinning. Atomic against other
    /// followers, so the global budget is a hard bound.
    fn reserve(&mut self, mut batch: Vec<(Entry, ObjectPosition)>) -> Vec<(Entry, ObjectPosition)> {
        let image_room = self
            .config
            .image_budget_bytes
            .saturating_sub(self.in_flight);
        let mut used = self.budget.used();
        loop {
            let global_room = self.budget.limit.saturating_sub(used);
            let (mut n, mut bytes) = (0, 0);
            for (e, _) in &batch {
                let end = bytes + e.data.len();
                let first = n == 0;
                let image_fits = end <= image_room || (first && self.in_flight == 0);
                let global_fits = end <= global_room || (first && used == 0);
                if !(image_fits && global_fits) {
                    break;
                }
                bytes = end;
                n += 1;
            }
            if n == 0 {
                self.reader.unread(batch);
                return Vec::new();
            }
            match self.budget.used.compare_exchange(
                used,
                used + bytes,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.reader.unread(batch.split_off(n));
                    self.in_flight += bytes;
                    return batch;
                }
                Err(now) => used = now,
            }
        }
    }

    /// Marks an entry durably applied (entries must be acked in journal order); commits
    /// when the batch is due.
    pub async fn ack(
        &mut self,
        entry: &Entry,
        position: ObjectPosition,
    ) -> Result<(), JournalError> {
        self.commit.advance(position);
        self.uncommitted += 1;
        let bytes = entry.data.len().min(self.in_flight);
        self.in_flight -= bytes;
        self.budget.release(bytes);
        if self.uncommitted >= self.config.commit_entries
            || self.last_commit.elapsed() >= self.config.commit_age
        {
            self.flush_commit().await?;
        }
        Ok(())
    }

    /// Stores the acked position now (also at shutdown) and notifies the header so the
    /// primary can trim.
    pub async fn flush_commit(&mut self) -> Result<(), JournalError> {
        let position = self.commit.position();
        self.last_commit = Instant::now();
        self.uncommitted = 0;
        if position == self.committed {
            return Ok(());
        }
        cls::client_commit(&self.io, &self.header, &self.client_id, position.clone()).await?;
        self.committed = position;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        metrics::commit_position_update();
        self.notify_header().await;
        Ok(())
    }

    /// Notifies the header (the backend acks for every follower, ourselves included).
    async fn notify_header(&self) {
        if let Err(e) = self
            .io
            .notify(&self.header, Bytes::new(), Duration::from_secs(5))
            .await
        {
            tracing::debug!(%e, "journal header notify");
        }
    }

    /// Fails once the primary has disconnected our client: what it trims is no longer
    /// kept for us, so replaying on could skip entries.
    async fn check_connected(&self) -> Result<(), JournalError> {
        let client = cls::get_client(&self.io, &self.header, &self.client_id).await?;
        if client.state == ClientState::Disconnected {
            return Err(JournalError::Disconnected {
                journal: self.header.clone(),
                client: self.client_id.clone(),
            });
        }
        Ok(())
    }

    /// Journal bytes the primary holds that are not applied here, from what this follower
    /// already knows (no RADOS call): delivered and not acked, plus what the reader counts
    /// (see [`JournalReader::bytes_behind`]; a lower bound until the active set is read).
    pub fn bytes_behind(&self) -> u64 {
        self.in_flight as u64 + self.reader.bytes_behind()
    }

    /// When the batch `next` returned last was found (see the field).
    pub fn received(&self) -> Instant {
        self.received
    }

    /// The position last stored on the primary.
    pub fn committed(&self) -> &ObjectSetPosition {
        &self.committed
    }

    /// Stops watching (the replayer calls it on its way out, after `flush_commit`).
    pub async fn close(mut self) {
        self.drop_watch().await;
    }

    /// Waits for a reason to look at the journal again.
    async fn wait(&mut self) -> Result<(), JournalError> {
        let probe_at = self
            .config
            .probe_ceiling
            .map(|_| Instant::now() + self.probe_delay);
        let commit_at = (self.uncommitted > 0).then(|| self.last_commit + self.config.commit_age);
        let Some(watch) = self.watch.as_mut() else {
            return self.rewatch().await;
        };
        let woke = tokio::select! {
            ev = watch.next() => Woke::Event(ev),
            _ = maybe_sleep_until(probe_at) => Woke::Probe,
            _ = maybe_sleep_until(commit_at) => Woke::CommitDue,
        };
        // Recorded before anything else awaits, so a cancelled wait loses no wake-up.
        if let Woke::Event(_) = woke {
            self.mark_woken(true);
        }
        match woke {
            Woke::Event(ev) => self.handle(ev).await?,
            Woke::Probe => self.probe().await,
            Woke::CommitDue => self.flush_commit().await?,
        }
        // A burst of notifications is one wake-up: take whatever else already arrived.
        while let Some(ev) = self.watch.as_mut().and_then(|w| w.next().now_or_never()) {
            self.mark_woken(true);
            self.handle(ev).await?;
        }
        Ok(())
    }

    /// The probe's turn: a tail read while entries arrived recently (the primary may be at
    /// the default 5 s commit age), or at the ceiling when the watch is not confirmed alive.
    async fn probe(&mut self) {
        let Some(ceiling) = self.config.probe_ceiling else {
            return;
        };
        let idle = self.probe_delay >= ceiling;
        self.probe_delay = (self.probe_delay * 2).min(ceiling);
        if idle
            && self.looked.elapsed() < self.config.probe_idle
            && watch_alive(&self.io, &self.stats).await
        {
            return;
        }
        self.stats.probes.fetch_add(1, Ordering::Relaxed);
        metrics::tail_probe();
        self.mark_woken(false);
    }

    /// Notes a wake-up (`notified`: a notification, else a probe): the next `next` re-reads
    /// the journal.
    fn mark_woken(&mut self, notified: bool) {
        let (at, notified) = match self.woke {
            // An earlier wake-up, not acted on yet.
            Some(w) if w.pending => (w.at, w.notified || notified),
            _ => (Instant::now(), notified),
        };
        self.woke = Some(Wake {
            at,
            pending: true,
            notified,
        });
    }

    async fn handle(&mut self, ev: Option<WatchEvent>) -> Result<(), JournalError> {
        metrics::watch_event(Source::Journal, ev.as_ref());
        match ev {
            // Already acked by the backend (an auto-ack watch).
            Some(WatchEvent::Notify(_)) | Some(WatchEvent::Lagged) => {
                self.stats.notifications.fetch_add(1, Ordering::Relaxed);
            }
            Some(WatchEvent::Error(errno)) => {
                self.stats.watch_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(object = %self.header, %errno, "journal watch broke; re-watching");
                self.drop_watch().await;
                self.rewatch().await?;
            }
            None => {
                self.drop_watch().await;
                self.rewatch().await?;
            }
        }
        Ok(())
    }

    async fn drop_watch(&mut self) {
        self.stats.watch.store(0, Ordering::Relaxed);
        if let Some(w) = self.watch.take() {
            let _ = self.io.unwatch(w.cookie).await;
        }
    }

    /// Watches the header again, backing off while the cluster is unreachable. The caller
    /// then re-reads everything, so what a lost notification carried is not missed.
    async fn rewatch(&mut self) -> Result<(), JournalError> {
        loop {
            sleep(self.rewatch.next_delay()).await;
            match self.io.watch_with(&self.header, AckMode::Auto).await {
                Ok(w) => {
                    self.stats.watch.store(w.cookie, Ordering::Relaxed);
                    self.watch = Some(w);
                    self.rewatch.reset();
                    metrics::rewatch(Source::Journal);
                    return Ok(());
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(%e, "journal re-watch failed; retrying")
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl<I> Drop for Follower<I> {
    /// Entries delivered and never acked (the replayer failed or was stopped mid-batch)
    /// give their bytes back: they will be read again by the next follower.
    fn drop(&mut self) {
        self.budget.release(self.in_flight);
    }
}

/// A wake-up of the follower: when it came, whether the journal was re-read since, and
/// whether a notification was among its causes.
#[derive(Clone, Copy)]
struct Wake {
    at: Instant,
    pending: bool,
    notified: bool,
}

enum Woke {
    Event(Option<WatchEvent>),
    Probe,
    CommitDue,
}

async fn maybe_sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}
