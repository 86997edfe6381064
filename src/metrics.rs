//! Prometheus metrics: every name, its help and unit, the exporter, and one small fn per
//! event. Call sites never spell a metric name; they call an event fn here (per batch, not
//! per entry, on the replay path). Upstream rbd-mirror has no lag metric at all (entries
//! behind hide in a free-text status); here lag, backlog, throughput and latency are series.
//!
//! Naming: `rbd_relay_` prefix, base units in the name (`_seconds`, `_bytes`, `_ratio`),
//! `_total` on counters only. Per-image series carry `pool`, `namespace`, `image` (the image
//! name; its global id until the bootstrap has read the name). Other labels come from
//! bounded sets: `state`, `reason` (error codes), `source`, `op`, `errno`, `queue`.
//!
//! Cardinality: one series set per mirrored image, held by an [`ImageMetrics`] that its
//! image replayer owns. The `metrics` crate cannot delete a series, so dropping the guard
//! (replayer stopped, image removed or renamed) zeroes the image's gauges: a gone image
//! shows no state, no lag and no backlog, and its counters stop moving. Zeroed series of
//! removed images go away when the daemon restarts.
//!
//! Lag must grow while an image is stuck (an apply hanging, a cycle failing and retrying),
//! when no batch completes to update it; so besides the lag of the newest apply, each image
//! remembers when the batch it is applying was found, and a ticker started by `install`
//! raises the gauge to that batch's age every second (the entries in it are at least that
//! old on the primary).
//!
//! Without `install` no recorder exists and every event fn is a no-op. The daemon always
//! installs one (its admin socket's `perf dump` reads it); the HTTP exporter only runs with
//! a `metrics_addr`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{
    Counter, Gauge, Histogram, Label, Unit, counter, describe_counter, describe_gauge,
    describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::mirror::registry::{ImageKey, ImageView, ReplayState};
use crate::rados::{RadosOp, WatchEvent};

pub const BUILD_INFO: &str = "rbd_relay_build_info";
pub const IMAGE_STATE: &str = "rbd_relay_image_state";
pub const IMAGE_SPLIT_BRAIN: &str = "rbd_relay_image_split_brain";
pub const IMAGE_LAG: &str = "rbd_relay_image_replay_lag_seconds";
pub const IMAGE_ENTRIES_BEHIND: &str = "rbd_relay_image_entries_behind";
pub const IMAGE_BYTES_BEHIND: &str = "rbd_relay_image_bytes_behind";
pub const IMAGE_REPLAYED_ENTRIES: &str = "rbd_relay_image_replayed_entries_total";
pub const IMAGE_REPLAYED_BYTES: &str = "rbd_relay_image_replayed_bytes_total";
pub const REPLAY_LATENCY: &str = "rbd_relay_replay_latency_seconds";
pub const IMAGE_SYNC_PROGRESS: &str = "rbd_relay_image_sync_progress_ratio";
pub const IMAGE_SYNC_BYTES: &str = "rbd_relay_image_sync_copied_bytes_total";
pub const IMAGE_ERRORS: &str = "rbd_relay_image_errors_total";
pub const IMAGE_LAST_ERROR: &str = "rbd_relay_image_last_error_timestamp_seconds";
pub const IMAGES: &str = "rbd_relay_images";
pub const NOTIFICATIONS: &str = "rbd_relay_notifications_total";
pub const TAIL_PROBES: &str = "rbd_relay_tail_probes_total";
pub const WATCH_ERRORS: &str = "rbd_relay_watch_errors_total";
pub const REWATCHES: &str = "rbd_relay_rewatches_total";
pub const RADOS_OPS: &str = "rbd_relay_rados_ops_total";
pub const RADOS_ERRORS: &str = "rbd_relay_rados_errors_total";
pub const COMMITS: &str = "rbd_relay_commit_position_updates_total";
pub const PREFETCH_BYTES: &str = "rbd_relay_prefetch_bytes";
pub const QUEUE_DEPTH: &str = "rbd_relay_queue_depth";
pub const QUEUE_CAPACITY: &str = "rbd_relay_queue_capacity";
pub const INSTANCES: &str = "rbd_relay_instances";
pub const INSTANCE_LEADER: &str = "rbd_relay_instance_leader";
pub const INSTANCES_FENCED: &str = "rbd_relay_instances_fenced_total";
pub const IMAGE_MOVES: &str = "rbd_relay_image_moves_total";
pub const BALANCE_CHANGES: &str = "rbd_relay_balance_changes_total";
pub const TAKEOVER: &str = "rbd_relay_image_takeover_seconds";
pub const POOL_ERRORS: &str = "rbd_relay_pool_errors_total";

/// Take-over buckets (seconds): a clean hand-over is sub-second; the rest is the image's
/// bootstrap, which a full sync can stretch to minutes.
const TAKEOVER_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Replay latency buckets (seconds): notification-driven replay lands in the low
/// milliseconds; upstream's 5 s poll shows in the 5–10 s buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Where notifications and watch errors come from: a remote image's journal header, or a
/// pool's `rbd_mirroring` object (local: mode and peers; remote: mirrored images).
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Journal,
    Mirroring,
    /// A local pool's `rbd_relay_instances` (daemons of this site joining and leaving).
    Instances,
}

impl Source {
    const ALL: [Source; 3] = [Source::Journal, Source::Mirroring, Source::Instances];

    fn label(self) -> &'static str {
        match self {
            Source::Journal => "journal",
            Source::Mirroring => "mirroring",
            Source::Instances => "instances",
        }
    }
}

/// Installs the recorder (needs a tokio runtime), with the exporter's HTTP listener on
/// `addr` (serves `/metrics`) if given, and registers every description, the build info
/// and the daemon-wide series at zero, so dashboards and alerts see them before the first
/// event. The handle renders the same text, for the admin socket.
pub fn install(addr: Option<SocketAddr>) -> Result<PrometheusHandle, BuildError> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REPLAY_LATENCY.into()), &LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(TAKEOVER.into()), &TAKEOVER_BUCKETS)?;
    let handle = match addr {
        Some(addr) => {
            let (recorder, exporter) = builder.with_http_listener(addr).build()?;
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)?;
            tokio::spawn(exporter);
            handle
        }
        None => {
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)?;
            let upkeep = handle.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(UPKEEP).await;
                    upkeep.run_upkeep();
                }
            });
            handle
        }
    };
    describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for source in Source::ALL {
        for name in [NOTIFICATIONS, WATCH_ERRORS, REWATCHES] {
            counter!(name, "source" => source.label()).absolute(0);
        }
    }
    counter!(TAIL_PROBES).absolute(0);
    counter!(COMMITS).absolute(0);
    gauge!(PREFETCH_BYTES).set(0.0);
    let _ = RADOS_OP_COUNTS.set(RadosOp::ALL.map(|op| counter!(RADOS_OPS, "op" => op.name())));
    sample_queues();
    tokio::spawn(async {
        let mut every = tokio::time::interval(REFRESH);
        loop {
            every.tick().await;
            Lag::refresh_all();
            sample_queues();
        }
    });
    Ok(handle)
}

/// How often histograms drop expired samples when no exporter does it (its own default).
const UPKEEP: Duration = Duration::from_secs(5);

/// How often the lag of images with a batch in flight is raised to that batch's age, and
/// the queues are sampled.
const REFRESH: Duration = Duration::from_secs(1);

fn describe() {
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which rbd-relay runs"
    );
    describe_gauge!(
        IMAGE_STATE,
        "1 for the image's current replay state (starting_replay, syncing, replaying, stopped, error, unknown), 0 otherwise"
    );
    describe_gauge!(
        IMAGE_SPLIT_BRAIN,
        "1 while both the local and the remote image are primary (replay stopped)"
    );
    describe_gauge!(
        IMAGE_LAG,
        Unit::Seconds,
        "Age (by the primary's clock) of the newest applied entry when applied; 0 when caught up"
    );
    describe_gauge!(
        IMAGE_ENTRIES_BEHIND,
        Unit::Count,
        "Entries the primary committed that are not applied here, across journal epochs, refreshed with the status; 0 when caught up"
    );
    describe_counter!(
        IMAGE_REPLAYED_ENTRIES,
        Unit::Count,
        "Journal entries applied to the local image"
    );
    describe_counter!(
        IMAGE_REPLAYED_BYTES,
        Unit::Bytes,
        "Journal entry bytes applied to the local image"
    );
    describe_histogram!(
        REPLAY_LATENCY,
        Unit::Seconds,
        "Per batch: from the journal notification (or probe) that found it to its entries durably applied"
    );
    describe_gauge!(
        IMAGE_SYNC_PROGRESS,
        "Full image sync progress of the current phase, 0 to 1 (1 once replaying)"
    );
    describe_counter!(
        IMAGE_SYNC_BYTES,
        Unit::Bytes,
        "Object data bytes copied by full image syncs"
    );
    describe_counter!(
        IMAGE_ERRORS,
        Unit::Count,
        "Image replay failures by reason (transient ones are retried, others park the image in error)"
    );
    describe_gauge!(
        IMAGE_LAST_ERROR,
        Unit::Seconds,
        "Unix time of the image's last replay failure; 0: none since the daemon started"
    );
    describe_gauge!(IMAGES, Unit::Count, "Image replayers by state");
    describe_counter!(
        NOTIFICATIONS,
        Unit::Count,
        "Watch notifications received, by watched object kind"
    );
    describe_counter!(
        TAIL_PROBES,
        Unit::Count,
        "Journal tail probes (the safety net when no notification came)"
    );
    describe_counter!(
        WATCH_ERRORS,
        Unit::Count,
        "Broken watches (disconnect, timeout, blocklist), by watched object kind"
    );
    describe_counter!(
        REWATCHES,
        Unit::Count,
        "Watches re-established after an error, by watched object kind"
    );
    describe_counter!(
        RADOS_OPS,
        Unit::Count,
        "RADOS calls issued by kind, on both backends (a compound op counts once)"
    );
    describe_counter!(
        RADOS_ERRORS,
        Unit::Count,
        "Failed RADOS calls by op and errno (expected ENOENTs included)"
    );
    describe_counter!(
        COMMITS,
        Unit::Count,
        "Journal client commit positions stored on primaries"
    );
    describe_gauge!(
        PREFETCH_BYTES,
        Unit::Bytes,
        "Journal bytes fetched and not yet applied, all images together"
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Items waiting in the bounded queues of a kind (watch: every watch's notification queue; pool_events: the cluster watcher's), sampled every second"
    );
    describe_gauge!(
        QUEUE_CAPACITY,
        Unit::Count,
        "Slots of the bounded queues of a kind, together (a full watch queue reports Lagged and its notifications are re-read)"
    );
    describe_gauge!(
        IMAGE_BYTES_BEHIND,
        Unit::Bytes,
        "Journal bytes of the primary not applied here, from what the follower knows without a read (fetched and not applied, plus closed journal objects not read yet); a lower bound until the active object set is read; 0 when caught up or not replaying"
    );
    describe_gauge!(
        INSTANCES,
        Unit::Count,
        "Live rbd-relay instances serving the pool on this site, as this instance sees them"
    );
    describe_gauge!(
        INSTANCE_LEADER,
        "1 when this instance is the pool's leader (the lowest live instance id)"
    );
    describe_counter!(
        INSTANCES_FENCED,
        Unit::Count,
        "Silent instances this instance blocklisted before their images moved"
    );
    describe_counter!(
        IMAGE_MOVES,
        Unit::Count,
        "Images this instance took over (direction in) or handed over (out) on membership changes"
    );
    describe_counter!(
        BALANCE_CHANGES,
        Unit::Count,
        "Placement changes this instance made as leader to even out replay load (moves and dropped moves)"
    );
    describe_histogram!(
        TAKEOVER,
        Unit::Seconds,
        "From the membership change that gave this instance an image to the image replaying here"
    );
    describe_counter!(
        POOL_ERRORS,
        Unit::Count,
        "Failed reads of a pool's mirroring state (the local settings, or the remote image list), by error code"
    );
}

/// What a watch delivered (`None`: the watch ended, counted by nobody: its owner re-watches).
pub fn watch_event(source: Source, event: Option<&WatchEvent>) {
    let name = match event {
        Some(WatchEvent::Notify(_) | WatchEvent::Lagged) => NOTIFICATIONS,
        Some(WatchEvent::Error(_)) => WATCH_ERRORS,
        None => return,
    };
    counter!(name, "source" => source.label()).increment(1);
}

/// The pool's live instances as this one sees them.
pub fn instances(pool: &str, live: usize, leader: bool) {
    let pool = pool.to_string();
    gauge!(INSTANCES, "pool" => pool.clone()).set(live as f64);
    gauge!(INSTANCE_LEADER, "pool" => pool).set(if leader { 1.0 } else { 0.0 });
}

pub fn instance_fenced(pool: &str) {
    counter!(INSTANCES_FENCED, "pool" => pool.to_string()).increment(1);
}

/// Images that changed hands here in one reconcile (`in`: taken over, `out`: handed over).
pub fn images_moved(pool: &str, taken: u64, handed: u64) {
    for (direction, n) in [("in", taken), ("out", handed)] {
        if n > 0 {
            let labels = [
                ("pool", pool.to_string()),
                ("direction", direction.to_string()),
            ];
            counter!(IMAGE_MOVES, &labels).increment(n);
        }
    }
}

/// Reading a pool's mirroring state failed; `reason` is the error's bounded `code()`.
pub fn pool_error(pool: &str, reason: &'static str) {
    counter!(POOL_ERRORS, "pool" => pool.to_string(), "reason" => reason).increment(1);
}

pub fn balance_changes(pool: &str, n: u64) {
    counter!(BALANCE_CHANGES, "pool" => pool.to_string()).increment(n);
}

pub fn tail_probe() {
    counter!(TAIL_PROBES).increment(1);
}

pub fn rewatch(source: Source) {
    counter!(REWATCHES, "source" => source.label()).increment(1);
}

pub fn commit_position_update() {
    counter!(COMMITS).increment(1);
}

/// One counter per RADOS call kind, indexed by `RadosOp as usize`, registered (labels and
/// all) by `install`; unset without a recorder.
static RADOS_OP_COUNTS: OnceLock<[Counter; RadosOp::ALL.len()]> = OnceLock::new();

/// A RADOS call was issued (each backend calls this once per call, successful or not).
/// On this hot path: an atomic add, no label built.
pub fn rados_op(op: RadosOp) {
    if let Some(c) = RADOS_OP_COUNTS.get().and_then(|all| all.get(op as usize)) {
        c.increment(1);
    }
}

/// A kind of bounded queue in the pipeline (`queue` label of the queue gauges).
#[derive(Debug, Clone, Copy)]
pub enum Queue {
    /// Every watch's notification queue (`rados::WATCH_QUEUE` each). A full one makes the
    /// backend ack for the consumer and report `Lagged`: late, not lost.
    Watch,
    /// The cluster watcher's queue of local pools' `rbd_mirroring` watch events.
    PoolEvents,
}

impl Queue {
    const ALL: [Queue; 2] = [Queue::Watch, Queue::PoolEvents];

    fn label(self) -> &'static str {
        match self {
            Queue::Watch => "watch",
            Queue::PoolEvents => "pool_events",
        }
    }
}

/// Reads one queue's (depth, capacity); `None` once its senders are gone.
type QueueSample = Box<dyn Fn() -> Option<(usize, usize)> + Send>;

/// Every live bounded queue, sampled by the ticker (dead ones are pruned as it goes).
static QUEUES: Mutex<Vec<(Queue, QueueSample)>> = Mutex::new(Vec::new());

/// Has the ticker sample the queue behind `tx` while any sender of it lives. Through a
/// weak handle (it never keeps a queue open), and nothing per item sent.
pub fn queue<T: Send + 'static>(kind: Queue, tx: &tokio::sync::mpsc::Sender<T>) {
    let weak = tx.downgrade();
    let sample: QueueSample = Box::new(move || {
        let tx = weak.upgrade()?;
        Some((tx.max_capacity() - tx.capacity(), tx.max_capacity()))
    });
    let mut all = QUEUES.lock().unwrap_or_else(PoisonError::into_inner);
    // Without a recorder no ticker prunes: prune here too, at doubling sizes (amortized).
    if all.len().is_power_of_two() {
        all.retain(|(_, sample)| sample().is_some());
    }
    all.push((kind, sample));
}

/// Sets the queue gauges: depth and capacity of each kind, summed over its live queues.
fn sample_queues() {
    let mut totals = [(0, 0); Queue::ALL.len()];
    let mut all = QUEUES.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|(kind, sample)| {
        let Some((depth, capacity)) = sample() else {
            return false;
        };
        let total = &mut totals[*kind as usize];
        *total = (total.0 + depth, total.1 + capacity);
        true
    });
    drop(all);
    for (kind, (depth, capacity)) in Queue::ALL.into_iter().zip(totals) {
        gauge!(QUEUE_DEPTH, "queue" => kind.label()).set(depth as f64);
        gauge!(QUEUE_CAPACITY, "queue" => kind.label()).set(capacity as f64);
    }
}

/// A RADOS call failed (called where backends map return codes to `RadosError`).
pub fn rados_error(op: &'static str, errno: &'static str) {
    counter!(RADOS_ERRORS, "op" => op, "errno" => errno).increment(1);
}

/// One mirrored image's metrics; its replayer owns it. Counts the image in
/// `rbd_relay_images{state}` and holds its labelled series, created once the image has a
/// name (or sooner if it fails without one); dropping it zeroes them (module doc).
pub struct ImageMetrics {
    key: ImageKey,
    /// The image's name as last published (empty until the bootstrap read it).
    name: String,
    /// The state counted in `rbd_relay_images`.
    state: Option<ReplayState>,
    series: Option<ImageSeries>,
    /// Entries behind as the status writer last computed them (it reads the primary's
    /// position off the replay path).
    behind_now: Arc<AtomicU64>,
    /// When a membership change gave us this image, until it replays.
    taken_at: Option<Instant>,
    /// Bytes behind as the follower last estimated them, per batch (`Follower::bytes_behind`).
    bytes_behind: u64,
}

impl ImageMetrics {
    pub fn new(key: &ImageKey) -> Self {
        ImageMetrics {
            key: key.clone(),
            name: String::new(),
            state: None,
            series: None,
            behind_now: Arc::default(),
            taken_at: None,
            bytes_behind: 0,
        }
    }

    /// The image came here by a membership change at `at`: its first replay ends the
    /// take-over.
    pub fn taken_over(&mut self, at: Instant) {
        self.taken_at = Some(at);
    }

    /// Where the status writer stores entries behind.
    pub fn entries_behind(&self) -> Arc<AtomicU64> {
        self.behind_now.clone()
    }

    /// Follows what the replayer publishes: state (one-hot, and the daemon's count by
    /// state), lag, backlog, sync progress. A new name relabels the series.
    pub fn publish(&mut self, view: &ImageView) {
        if view.state == ReplayState::Replaying
            && let Some(at) = self.taken_at.take()
        {
            histogram!(TAKEOVER, "pool" => self.key.pool.clone()).record(at.elapsed());
        }
        if self.state != Some(view.state) {
            self.uncount();
            gauge!(IMAGES, "state" => view.state.as_str()).increment(1.0);
            self.state = Some(view.state);
        }
        if self.name != view.name {
            self.name = view.name.clone();
        }
        let unnamed_start = self.name.is_empty() && view.state == ReplayState::StartingReplay;
        if unnamed_start && self.series.is_none() {
            return;
        }
        let caught_up = view.state != ReplayState::Replaying || view.lag_seconds == 0.0;
        let replays = !matches!(
            view.state,
            ReplayState::Stopped | ReplayState::Unknown | ReplayState::Syncing
        );
        let behind = if caught_up {
            Behind::default()
        } else {
            Behind {
                entries: self.behind_now.load(Ordering::Relaxed),
                bytes: self.bytes_behind,
            }
        };
        self.series().show(view, behind, replays);
    }

    /// A batch was fetched, found at `received` (its notification or probe): until it is
    /// applied the image's lag is at least its age. A batch fetched again after a failed
    /// cycle keeps the first one's time: those entries are still not applied.
    pub fn batch_received(&mut self, received: Instant, bytes_behind: u64) {
        self.set_bytes_behind(bytes_behind)
            .lag
            .update(|l| l.pending_since = l.pending_since.or(Some(received)));
    }

    /// The batch was applied and acked (the replay latency is observed here).
    pub fn batch_applied(
        &mut self,
        entries: u64,
        bytes: u64,
        prefetch_bytes: usize,
        bytes_behind: u64,
    ) {
        let s = self.set_bytes_behind(bytes_behind);
        s.entries.increment(entries);
        s.bytes.increment(bytes);
        if let Some(received) = s.lag.update(|l| l.pending_since.take()) {
            s.latency.record(received.elapsed().as_secs_f64());
        }
        gauge!(PREFETCH_BYTES).set(prefetch_bytes as f64);
    }

    pub fn sync_progress(&mut self, ratio: f64) {
        self.series().sync_progress.set(ratio);
    }

    pub fn sync_copied(&mut self, bytes: u64) {
        self.series().sync_bytes.increment(bytes);
    }

    /// A replay cycle failed; `reason` is the error's bounded `code()`. The counter by
    /// reason appears with the first failure (the set of codes is open, so it is not
    /// pre-registered); the last-error time exists from the start.
    pub fn error(&mut self, reason: &'static str) {
        let series = self.series();
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        series.last_error.set(now.map_or(0.0, |d| d.as_secs_f64()));
        let mut labels = series.labels.clone();
        labels.push(Label::new("reason", reason));
        counter!(IMAGE_ERRORS, labels).increment(1);
    }

    /// Both sides are primary, or the histories diverged (a forced promotion): replay stays
    /// stopped until an operator demotes one side and resyncs it.
    pub fn split_brain(&mut self, both_primary: bool) {
        let value = if both_primary { 1.0 } else { 0.0 };
        self.series().split_brain.set(value);
    }

    /// Keeps the follower's estimate for `publish` and shows it.
    fn set_bytes_behind(&mut self, bytes: u64) -> &mut ImageSeries {
        self.bytes_behind = bytes;
        let s = self.series();
        s.bytes_behind.set(bytes as f64);
        s
    }

    /// The image's series, (re)labelled with its current name (its global id before).
    fn series(&mut self) -> &mut ImageSeries {
        let image = if self.name.is_empty() {
            &self.key.global_id
        } else {
            &self.name
        };
        if self.series.as_ref().is_none_or(|s| s.image != *image) {
            self.series = Some(ImageSeries::new(&self.key, image));
        }
        self.series.as_mut().expect("just set")
    }

    fn uncount(&mut self) {
        if let Some(old) = self.state.take() {
            gauge!(IMAGES, "state" => old.as_str()).decrement(1.0);
        }
    }
}

impl Drop for ImageMetrics {
    fn drop(&mut self) {
        self.uncount();
    }
}

/// An image's backlog as published (zero when caught up).
#[derive(Default)]
struct Behind {
    entries: u64,
    bytes: u64,
}

/// The per-image series under one `image` label value; Drop zeroes the gauges.
struct ImageSeries {
    labels: Vec<Label>,
    image: String,
    /// The state shown as 1 in `rbd_relay_image_state`.
    state: Option<ReplayState>,
    lag: Arc<Lag>,
    behind: Gauge,
    bytes_behind: Gauge,
    sync_progress: Gauge,
    split_brain: Gauge,
    last_error: Gauge,
    entries: Counter,
    bytes: Counter,
    sync_bytes: Counter,
    latency: Histogram,
}

impl ImageSeries {
    fn new(key: &ImageKey, image: &str) -> Self {
        let labels = vec![
            Label::new("pool", key.pool.clone()),
            Label::new("namespace", key.namespace.clone()),
            Label::new("image", image.to_string()),
        ];
        ImageSeries {
            lag: Lag::new(gauge!(IMAGE_LAG, labels.iter())),
            behind: gauge!(IMAGE_ENTRIES_BEHIND, labels.iter()),
            bytes_behind: gauge!(IMAGE_BYTES_BEHIND, labels.iter()),
            sync_progress: gauge!(IMAGE_SYNC_PROGRESS, labels.iter()),
            split_brain: gauge!(IMAGE_SPLIT_BRAIN, labels.iter()),
            last_error: gauge!(IMAGE_LAST_ERROR, labels.iter()),
            entries: counter!(IMAGE_REPLAYED_ENTRIES, labels.iter()),
            bytes: counter!(IMAGE_REPLAYED_BYTES, labels.iter()),
            sync_bytes: counter!(IMAGE_SYNC_BYTES, labels.iter()),
            latency: histogram!(REPLAY_LATENCY, labels.iter()),
            image: image.to_string(),
            state: None,
            labels,
        }
    }

    /// `replays`: false when nothing replays by design (stopped, remote not primary,
    /// syncing), so a batch dropped on the way there does not age.
    fn show(&mut self, view: &ImageView, behind: Behind, replays: bool) {
        if self.state != Some(view.state) {
            self.set_state(self.state, 0.0);
            self.set_state(Some(view.state), 1.0);
            if view.state != ReplayState::Stopped {
                self.split_brain.set(0.0);
            }
            self.state = Some(view.state);
        }
        self.lag.update(|l| {
            l.applied = view.lag_seconds;
            if !replays {
                l.pending_since = None;
            }
        });
        self.behind.set(behind.entries as f64);
        self.bytes_behind.set(behind.bytes as f64);
        self.sync_progress.set(view.sync_fraction);
    }

    fn set_state(&self, state: Option<ReplayState>, value: f64) {
        if let Some(state) = state {
            let mut labels = self.labels.clone();
            labels.push(Label::new("state", state.as_str()));
            gauge!(IMAGE_STATE, labels).set(value);
        }
    }
}

impl Drop for ImageSeries {
    fn drop(&mut self) {
        self.set_state(self.state, 0.0);
        self.lag.update(|l| *l = LagState::default());
        for g in [
            &self.behind,
            &self.bytes_behind,
            &self.sync_progress,
            &self.split_brain,
            &self.last_error,
        ] {
            g.set(0.0);
        }
    }
}

/// An image's lag gauge and what it is computed from, shared with the ticker.
struct Lag {
    gauge: Gauge,
    state: Mutex<LagState>,
}

#[derive(Default)]
struct LagState {
    /// The lag the replayer computed at its newest apply (0: caught up).
    applied: f64,
    /// When the batch being applied was found; `None` while none is in flight.
    pending_since: Option<Instant>,
}

/// Every live image's lag, for the ticker (dead ones are pruned as it goes).
static LAGS: Mutex<Vec<Weak<Lag>>> = Mutex::new(Vec::new());

impl Lag {
    fn new(gauge: Gauge) -> Arc<Self> {
        let lag = Arc::new(Lag {
            gauge,
            state: Mutex::default(),
        });
        let mut all = LAGS.lock().unwrap_or_else(PoisonError::into_inner);
        all.push(Arc::downgrade(&lag));
        lag
    }

    /// Changes the state and sets the gauge from it, under one lock: the ticker never
    /// writes a stale value over a newer one (nor over the zero of a dropped image).
    fn update<T>(&self, change: impl FnOnce(&mut LagState) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let out = change(&mut s);
        let pending = s.pending_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
        self.gauge.set(s.applied.max(pending));
        out
    }

    fn refresh_all() {
        let mut all = LAGS.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|weak| match weak.upgrade() {
            Some(lag) => {
                lag.update(|_| ());
                true
            }
            None => false,
        });
    }
}
