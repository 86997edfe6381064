//! Prometheus metrics: every name, its help and unit, the exporter, and one small fn per
//! event. Call sites never spell a metric name; they call an event fn here (per batch, not
//! per entry, on the replay path). Upstream rbd-mirror has no lag metric at all (entries
//! behind hide in a free-text status); here lag, backlog, throughput and latency are series.
//!
//! Naming: `rbd_relay_` prefix, base units in the name (`_seconds`, `_bytes`, `_ratio`),
//! `_total` on counters only. Per-image series carry `pool`, `namespace`, `image` (the image
//! name; its global id until the bootstrap has read the name). Other labels come from
//! bounded sets: `state`, `reason` (error codes), `source`, `op`, `errno`.
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
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{
    Counter, Gauge, Histogram, Label, Unit, counter, describe_counter, describe_gauge,
    describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::mirror::registry::{ImageKey, ImageView, ReplayState};
use crate::rados::WatchEvent;

pub const BUILD_INFO: &str = "rbd_relay_build_info";
pub const IMAGE_STATE: &str = "rbd_relay_image_state";
pub const IMAGE_SPLIT_BRAIN: &str = "rbd_relay_image_split_brain";
pub const IMAGE_LAG: &str = "rbd_relay_image_replay_lag_seconds";
pub const IMAGE_ENTRIES_BEHIND: &str = "rbd_relay_image_entries_behind";
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
pub const RADOS_ERRORS: &str = "rbd_relay_rados_errors_total";
pub const COMMITS: &str = "rbd_relay_commit_position_updates_total";
pub const PREFETCH_BYTES: &str = "rbd_relay_prefetch_bytes";

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
}

impl Source {
    const ALL: [Source; 2] = [Source::Journal, Source::Mirroring];

    fn label(self) -> &'static str {
        match self {
            Source::Journal => "journal",
            Source::Mirroring => "mirroring",
        }
    }
}

/// Installs the recorder (needs a tokio runtime), with the exporter's HTTP listener on
/// `addr` (serves `/metrics`) if given, and registers every description, the build info
/// and the daemon-wide series at zero, so dashboards and alerts see them before the first
/// event. The handle renders the same text, for the admin socket.
pub fn install(addr: Option<SocketAddr>) -> Result<PrometheusHandle, BuildError> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REPLAY_LATENCY.into()), &LATENCY_BUCKETS)?;
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
    tokio::spawn(async {
        let mut every = tokio::time::interval(LAG_REFRESH);
        loop {
            every.tick().await;
            Lag::refresh_all();
        }
    });
    Ok(handle)
}

/// How often histograms drop expired samples when no exporter does it (its own default).
const UPKEEP: Duration = Duration::from_secs(5);

/// How often the lag of images with a batch in flight is raised to that batch's age.
const LAG_REFRESH: Duration = Duration::from_secs(1);

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
        "Entries the primary committed that are not applied here (same epoch), refreshed with the status; 0 when caught up"
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

pub fn tail_probe() {
    counter!(TAIL_PROBES).increment(1);
}

pub fn rewatch(source: Source) {
    counter!(REWATCHES, "source" => source.label()).increment(1);
}

pub fn commit_position_update() {
    counter!(COMMITS).increment(1);
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
}

impl ImageMetrics {
    pub fn new(key: &ImageKey) -> Self {
        ImageMetrics {
            key: key.clone(),
            name: String::new(),
            state: None,
            series: None,
            behind_now: Arc::default(),
        }
    }

    /// Where the status writer stores entries behind.
    pub fn entries_behind(&self) -> Arc<AtomicU64> {
        self.behind_now.clone()
    }

    /// Follows what the replayer publishes: state (one-hot, and the daemon's count by
    /// state), lag, backlog, sync progress. A new name relabels the series.
    pub fn publish(&mut self, view: &ImageView) {
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
            0
        } else {
            self.behind_now.load(Ordering::Relaxed)
        };
        self.series().show(view, behind, replays);
    }

    /// A batch was fetched, found at `received` (its notification or probe): until it is
    /// applied the image's lag is at least its age. A batch fetched again after a failed
    /// cycle keeps the first one's time: those entries are still not applied.
    pub fn batch_received(&mut self, received: Instant) {
        self.series()
            .lag
            .update(|l| l.pending_since = l.pending_since.or(Some(received)));
    }

    /// The batch was applied and acked (the replay latency is observed here).
    pub fn batch_applied(&mut self, entries: u64, bytes: u64, prefetch_bytes: usize) {
        let s = self.series();
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

/// The per-image series under one `image` label value; Drop zeroes the gauges.
struct ImageSeries {
    labels: Vec<Label>,
    image: String,
    /// The state shown as 1 in `rbd_relay_image_state`.
    state: Option<ReplayState>,
    lag: Arc<Lag>,
    behind: Gauge,
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
    fn show(&mut self, view: &ImageView, entries_behind: u64, replays: bool) {
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
        self.behind.set(entries_behind as f64);
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
