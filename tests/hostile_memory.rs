//! Hostile input on the embedded backend (issue 8, part 4): the real daemon replicates two
//! images from site-a to site-b, then bytes no librbd writes appear on site-a — one kind per
//! test. Each test asserts what the affected image (or pool) shows in its status, the
//! error metric, and that another image keeps replicating (sites compared equal).
//! `scripts/hostile-check` does the same on the lab with real librbd writing.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use rbd_relay::cls;
use rbd_relay::demo::primary::PrimaryImage;
use rbd_relay::demo::{POOL, TwoSites};
use rbd_relay::format::client_data::TagData;
use rbd_relay::format::entry::Entry;
use rbd_relay::format::event::{Event, EventEntry};
use rbd_relay::format::journal::{data_oid, header_oid};
use rbd_relay::format::mirror::{MIRRORING_OBJECT, MirrorImageStatusState, MirrorMode};
use rbd_relay::format::{Encode, UTime};
use rbd_relay::rados::memory::MemoryIoCtx;
use rbd_relay::rados::{IoCtx, Rados};

mod sites;

use sites::{
    DEADLINE, Daemon, io_in, mirrored_namespace, primary, status_of, wait_equal, workload,
};

/// The process-wide metrics recorder (one per test binary; series are told apart by image).
fn scrape() -> String {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| rbd_relay::metrics::install(None).expect("recorder"))
        .render()
}

/// The daemon on site-b, with the metrics recorder installed.
fn start(sites: &TwoSites) -> Daemon {
    scrape();
    sites::start(sites)
}

/// Waits until `check` holds, or fails naming `what`.
async fn wait_for<F: AsyncFn() -> Option<T>, T>(what: &str, check: F) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for `name`'s copy to show `up+error`; its description.
async fn wait_error(sites: &TwoSites, name: &str) -> String {
    wait_for(&format!("{name} in error"), async || {
        status_of(sites, name)
            .await
            .filter(|(s, _)| *s == MirrorImageStatusState::Error)
            .map(|(_, d)| d)
    })
    .await
}

/// The value of the first series of `metric` whose labels include every one of `labels`.
fn metric(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape().lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| set.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

fn image_errors(image: &str, reason: &str) -> Option<f64> {
    metric(
        "rbd_relay_image_errors_total",
        &[("image", image), ("reason", reason)],
    )
}

/// Two mirrored images, both replicated: the victim and a bystander.
struct Pair {
    sites: TwoSites,
    daemon: Daemon,
    victim: PrimaryImage<MemoryIoCtx>,
    bystander: PrimaryImage<MemoryIoCtx>,
    names: (String, String),
}

async fn pair(case: &str) -> Pair {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let daemon = start(&sites);
    let names = (format!("{case}-victim"), format!("{case}-bystander"));
    let mut victim = primary(&sites, &names.0).await;
    let mut bystander = primary(&sites, &names.1).await;
    workload(&mut victim, 1, 20).await;
    workload(&mut bystander, 2, 20).await;
    wait_equal(&sites, &names.0).await;
    wait_equal(&sites, &names.1).await;
    Pair {
        sites,
        daemon,
        victim,
        bystander,
        names,
    }
}

impl Pair {
    async fn io_a(&self) -> MemoryIoCtx {
        self.sites.site_a.connect().ioctx(POOL).await.unwrap()
    }

    /// Appends raw `bytes` to the first object of the victim's active set and notifies its
    /// journal header, as a primary's commit would.
    async fn append_to_journal(&self, bytes: &[u8]) {
        let io = self.io_a().await;
        let id = self.victim.id();
        let header = header_oid(id);
        let set = cls::journal::get_active_set(&io, &header).await.unwrap();
        let g = cls::journal::geometry(&io, &header).await.unwrap();
        let oid = data_oid(io.pool_id(), id, set * u64::from(g.splay_width));
        io.append(&oid, Bytes::copy_from_slice(bytes))
            .await
            .unwrap();
        self.notify_journal().await;
    }

    async fn notify_journal(&self) {
        let io = self.io_a().await;
        io.notify(
            &header_oid(self.victim.id()),
            Bytes::new(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    }

    /// Appends a write entry of a new epoch with its framed bytes edited by `edit`.
    async fn append_edited_record(&self, edit: impl FnOnce(&mut Vec<u8>)) {
        let tag = self.new_tag().await;
        let mut raw = write_entry(tag).0.to_bytes().to_vec();
        edit(&mut raw);
        self.append_to_journal(&raw).await;
    }

    /// A new epoch on the victim's journal (its tag tid), as librbd opens one.
    async fn new_tag(&self) -> u64 {
        let io = self.io_a().await;
        let header = header_oid(self.victim.id());
        cls::journal::allocate_tag(&io, &header, 0, TagData::default().to_bytes())
            .await
            .unwrap()
    }

    /// The victim's copy fails with a description containing every one of `words`, the
    /// error counter has `reason`, and the bystander keeps replicating.
    async fn assert_victim_failed(mut self, words: &[&str], reason: &str) {
        let why = wait_error(&self.sites, &self.names.0).await;
        for w in words {
            assert!(why.contains(w), "{w:?} not in {why:?}");
        }
        let counted = image_errors(&self.names.0, reason);
        assert!(counted.is_some_and(|n| n >= 1.0), "{reason}: {counted:?}");
        assert_eq!(image_errors(&self.names.1, reason), None);
        workload(&mut self.bystander, 3, 40).await;
        wait_equal(&self.sites, &self.names.1).await;
        let state = status_of(&self.sites, &self.names.1).await.map(|s| s.0);
        assert_eq!(state, Some(MirrorImageStatusState::Replaying));
        self.daemon.stop().await;
    }
}

/// A framed entry of `tag`, entry 0, holding a 512-byte write at offset 0.
fn write_entry(tag_tid: u64) -> (Entry, Bytes) {
    let data = Bytes::from(vec![0x5a; 512]);
    let event = EventEntry {
        event: Event::AioWrite {
            offset: 0,
            length: 512,
            data: data.clone(),
        },
        timestamp: UTime::from_duration(Duration::from_secs(1_700_000_000)),
    };
    let entry = Entry {
        entry_tid: 0,
        tag_tid,
        data: event.to_bytes(),
    };
    (entry, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_crc_fails_only_its_image() {
    let p = pair("crc").await;
    // A payload byte: the record's CRC no longer matches.
    p.append_edited_record(|raw| raw[40] ^= 0x01).await;
    p.assert_victim_failed(&["object", "offset", "crc"], "bad_crc")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_preamble_fails_only_its_image() {
    let p = pair("preamble").await;
    p.append_to_journal(&[0xab; 64]).await;
    p.assert_victim_failed(&["object", "offset", "bad preamble"], "bad_preamble")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_length_field_fails_at_once_without_allocating_it() {
    let p = pair("huge").await;
    // Not waited for as a tail: no entry of 64 KiB journal objects is 4 GiB long.
    p.append_edited_record(|raw| raw[25..29].copy_from_slice(&0xffff_fff0u32.to_le_bytes()))
        .await;
    p.assert_victim_failed(
        &["object", "offset", "payload length 4294967280"],
        "bad_length",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_type_fails_only_its_image() {
    let p = pair("unknown").await;
    let tag = p.new_tag().await;
    let event = EventEntry {
        event: Event::Unknown {
            event_type: 99,
            body: Bytes::from_static(b"from a newer librbd"),
        },
        timestamp: UTime::default(),
    };
    let entry = Entry {
        entry_tid: 0,
        tag_tid: tag,
        data: event.to_bytes(),
    };
    p.append_to_journal(&entry.to_bytes()).await;
    let at = format!("event type 99 at object {{}} tag {tag} entry 0");
    let at = at.split("{}").collect::<Vec<_>>();
    p.assert_victim_failed(&at, "unsupported").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_of_a_tag_from_the_future_fails_only_its_image() {
    let p = pair("future").await;
    let io = p.io_a().await;
    let header = header_oid(p.victim.id());
    let future = cls::journal::get_next_tag_tid(&io, &header).await.unwrap() + 1000;
    p.append_to_journal(&write_entry(future).0.to_bytes()).await;
    let missing = format!("tag {future} does not exist");
    p.assert_victim_failed(&["corrupt", &missing], "corrupt")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_tail_entry_is_waited_for_then_replayed() {
    let mut p = pair("tail").await;
    let tag = p.new_tag().await;
    let (entry, data) = write_entry(tag);
    let raw = entry.to_bytes();
    // librbd journals first, then writes the image: the primary has the data.
    p.victim.writer().await.image.write(0, data).await.unwrap();
    p.append_to_journal(&raw[..300]).await;
    // The probe and notifications keep finding the same half record: no error.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        p.notify_journal().await;
    }
    let state = status_of(&p.sites, &p.names.0).await.map(|s| s.0);
    assert_eq!(state, Some(MirrorImageStatusState::Replaying));
    assert!(!scrape().contains(&format!("image=\"{}\",reason", p.names.0)));
    // The rest arrives: the entry is replayed and both sites agree.
    p.append_to_journal(&raw[300..]).await;
    wait_equal(&p.sites, &p.names.0).await;
    workload(&mut p.bystander, 4, 20).await;
    wait_equal(&p.sites, &p.names.1).await;
    p.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_active_set_fails_only_its_image() {
    let p = pair("active").await;
    let io = p.io_a().await;
    let header = header_oid(p.victim.id());
    let set = cls::journal::get_active_set(&io, &header).await.unwrap();
    let absurd = set + 1_000_000_000;
    // The reader must not walk a billion sets of missing objects.
    let raw = BTreeMap::from([("active_set".to_string(), absurd.to_bytes())]);
    io.omap_set(&header, raw).await.unwrap();
    p.notify_journal().await;
    let first_empty = format!("object set {} holds no entry", set + 1);
    p.assert_victim_failed(&[&first_empty], "bad_header").await;
}

/// Headers that cannot be right, found when a replayer opens the journal: each of three
/// images fails with its own reason while a fourth replicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_journal_headers_fail_only_their_images() {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let io = sites.site_a.connect().ioctx(POOL).await.unwrap();
    let cases: [(&str, &str, Bytes, &str); 3] = [
        (
            "hdr-min",
            "minimum_set",
            7u64.to_bytes(),
            "is below the minimum set 7",
        ),
        (
            "hdr-order",
            "order",
            200u8.to_bytes(),
            "journal order: invalid value 200",
        ),
        (
            "hdr-splay",
            "splay_width",
            0u8.to_bytes(),
            "splay_width: invalid value 0",
        ),
    ];
    for (name, key, value, _) in &cases {
        let mut img = primary(&sites, name).await;
        workload(&mut img, 5, 10).await;
        let kv = BTreeMap::from([(key.to_string(), value.clone())]);
        io.omap_set(&header_oid(img.id()), kv).await.unwrap();
    }
    let mut good = primary(&sites, "hdr-good").await;
    let daemon = start(&sites);
    for (name, _, _, words) in &cases {
        let why = wait_error(&sites, name).await;
        assert!(why.contains(words), "{name}: {why}");
        let reasons = ["bad_header", "bad_value"];
        assert!(
            reasons.iter().any(|r| image_errors(name, r).is_some()),
            "{name}: {}",
            scrape()
        );
    }
    workload(&mut good, 6, 40).await;
    wait_equal(&sites, "hdr-good").await;
    daemon.stop().await;
}

/// The pool's error as the daemon reports it (service map callouts, `rbd mirror status`).
fn pool_errors(daemon: &Daemon) -> Vec<String> {
    (daemon.registry.pool_errors(POOL).into_iter())
        .map(|(_, text)| text)
        .collect()
}

/// Notifies site-a's `rbd_mirroring` with a payload no watcher decodes: the pool replayer
/// lists the pool again.
async fn poke_mirroring(io: &MemoryIoCtx) {
    io.notify(
        MIRRORING_OBJECT,
        Bytes::from_static(b"?"),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
}

/// The image record Ceph's `mirror_image_list` cannot decode (it answers EIO).
const BAD_IMAGE_KEY: &str = "image_feedfacecafe";

/// Plants [`BAD_IMAGE_KEY`] in `io`'s `rbd_mirroring` (or removes it: `plant` false), pokes
/// the pool replayer and waits until the daemon's pool errors show it (or are clear).
async fn bad_image_record(daemon: &Daemon, io: &MemoryIoCtx, plant: bool) -> Vec<String> {
    if plant {
        let bad = BTreeMap::from([(
            BAD_IMAGE_KEY.to_string(),
            Bytes::from_static(b"\x09\x09garbage"),
        )]);
        io.omap_set(MIRRORING_OBJECT, bad).await.unwrap();
    } else {
        io.omap_rm_keys(MIRRORING_OBJECT, &[BAD_IMAGE_KEY])
            .await
            .unwrap();
    }
    poke_mirroring(io).await;
    wait_for("the pool errors", async || {
        Some(pool_errors(daemon)).filter(|e| e.is_empty() != plant)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_remote_mirroring_record_is_a_pool_error_and_images_keep_replicating() {
    let mut p = pair("omap-remote").await;
    let io = p.io_a().await;
    let before = metric("rbd_relay_pool_errors_total", &[("reason", "EIO")]).unwrap_or(0.0);
    let errors = bad_image_record(&p.daemon, &io, true).await;
    assert!(
        errors[0].contains("mirrored images: exec rbd_mirroring"),
        "{errors:?}"
    );
    assert!(errors[0].contains("EIO"), "{errors:?}");
    let after = metric("rbd_relay_pool_errors_total", &[("reason", "EIO")]);
    assert!(after.is_some_and(|n| n > before), "{after:?}");
    // Both images keep replicating meanwhile.
    workload(&mut p.victim, 7, 20).await;
    workload(&mut p.bystander, 8, 20).await;
    wait_equal(&p.sites, &p.names.0).await;
    wait_equal(&p.sites, &p.names.1).await;
    // Repaired: the next list clears the error.
    bad_image_record(&p.daemon, &io, false).await;
    p.daemon.stop().await;
}

/// Each RBD namespace lists its images on its own: a namespace's undecodable record stays a
/// pool error, naming the namespace, while the default namespace lists fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_s_undecodable_mirroring_record_stays_a_pool_error() {
    let p = pair("omap-ns").await;
    for site in [&p.sites.site_a, &p.sites.site_b] {
        mirrored_namespace(site, "ns1", MirrorMode::Image).await;
    }
    let ns = io_in(&p.sites.site_a, "ns1").await;
    let errors = bad_image_record(&p.daemon, &ns, true).await;
    assert!(errors[0].starts_with("namespace 'ns1': "), "{errors:?}");
    // The default namespace lists again, then replicates a new image (so the list is done).
    poke_mirroring(&p.io_a().await).await;
    let mut late = primary(&p.sites, "omap-ns-late").await;
    workload(&mut late, 3, 10).await;
    wait_equal(&p.sites, "omap-ns-late").await;
    assert_eq!(pool_errors(&p.daemon), errors, "still reported");
    // Repaired: the namespace's next list clears it.
    bad_image_record(&p.daemon, &ns, false).await;
    p.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_local_mirroring_record_is_a_pool_error_and_images_keep_replicating() {
    let mut p = pair("omap-local").await;
    let io_b = p.sites.site_b.connect().ioctx(POOL).await.unwrap();
    let key = "mirror_peer_0badbadb-0bad-0bad-0bad-0badbadbadba";
    let bad = BTreeMap::from([(key.to_string(), Bytes::from_static(b"\x02\x01junk"))]);
    io_b.omap_set(MIRRORING_OBJECT, bad).await.unwrap();
    let errors = wait_for("a pool error", async || {
        Some(pool_errors(&p.daemon)).filter(|e| !e.is_empty())
    })
    .await;
    assert!(errors[0].contains("mirroring configuration"), "{errors:?}");
    workload(&mut p.victim, 9, 20).await;
    wait_equal(&p.sites, &p.names.0).await;
    io_b.omap_rm_keys(MIRRORING_OBJECT, &[key]).await.unwrap();
    wait_for("the pool error cleared", async || {
        Some(()).filter(|_| pool_errors(&p.daemon).is_empty())
    })
    .await;
    p.daemon.stop().await;
}
