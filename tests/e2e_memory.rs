//! The daemon end to end on the embedded backend: two in-memory sites, a primary written the
//! way librbd writes (journal first), the real daemon code on site-b, and byte-for-byte
//! comparisons of image and snapshots. The same scenarios run on the lab in
//! `scripts/e2e-check` (real librbd on site-a).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rbd_relay::cls;
use rbd_relay::config::Settings;
use rbd_relay::demo::primary::{Op, PrimaryImage};
use rbd_relay::demo::{MemoryConnector, POOL, TwoSites, notify_image_updated};
use rbd_relay::format::Decode;
use rbd_relay::format::Encode;
use rbd_relay::format::client_data::{ClientData, TagData};
use rbd_relay::format::entry::Entry;
use rbd_relay::format::image::ParentImageSpec;
use rbd_relay::format::journal::data_oid;
use rbd_relay::format::mirror::{
    MirrorImage, MirrorImageState, MirrorImageStatusState, MirrorMode,
};
use rbd_relay::mirror::registry::ImageView;
use rbd_relay::mirror::{self, Connector, Env, PeerSite};
use rbd_relay::rados::faults::{Faults, FaultyRados};
use rbd_relay::rados::memory::MemoryIoCtx;
use rbd_relay::rados::memory::MemoryRados;
use rbd_relay::rados::{IoCtx, Rados, RadosResult};
use rbd_relay::rbd::{CloneOf, Image};
use tokio_util::sync::CancellationToken;

#[allow(dead_code)] // each test crate uses part of the shared support
mod sites;

use sites::{
    DEADLINE, FaultyPeer, logs, mirrored_namespace, primary, primary_with, start, status_in,
    wait_equal, wait_equal_in, workload,
};

async fn wait_status(sites: &TwoSites, name: &str, state: MirrorImageStatusState) -> String {
    wait_status_in(sites, "", name, state).await
}

async fn wait_status_in(
    sites: &TwoSites,
    namespace: &str,
    name: &str,
    state: MirrorImageStatusState,
) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some((s, d)) = status_in(sites, namespace, name).await
            && s == state
        {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never {state:?}: {:?}",
            status_in(sites, namespace, name).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_written_before_mirroring_is_synced_then_everything_replays() {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let a = sites.site_a.connect();
    let io = a.ioctx(POOL).await.unwrap();
    let global = uuid::Uuid::new_v4().to_string();
    let mut img = PrimaryImage::create(&a, io.clone(), "synced", &global, 32 << 20, 20)
        .await
        .unwrap();
    // Before the daemon ever sees it: data, a snapshot, more data, image-meta.
    workload(&mut img, 1, 300).await;
    img.writer()
        .await
        .op(rbd_relay::demo::primary::Op::SnapCreate("before".into()))
        .await
        .unwrap();
    img.writer()
        .await
        .write(0, Bytes::from(vec![7u8; 1 << 20]))
        .await
        .unwrap();
    img.writer()
        .await
        .op(rbd_relay::demo::primary::Op::MetadataSet(
            "k".into(),
            "v".into(),
        ))
        .await
        .unwrap();
    img.writer().await.flush().await.unwrap();
    let daemon = start(&sites);
    notify_image_updated(&io, img.id(), &global, MirrorImageState::Enabled)
        .await
        .unwrap();
    wait_equal(&sites, "synced").await;
    workload(&mut img, 2, 300).await;
    wait_equal(&sites, "synced").await;
    let b = sites.site_b.connect().ioctx(POOL).await.unwrap();
    let replica = Image::open_by_name(b, "synced").await.unwrap();
    assert_eq!(replica.metadata().get("k").map(|v| &v[..]), Some(&b"v"[..]));
    let description = wait_status(&sites, "synced", MirrorImageStatusState::Replaying).await;
    assert!(description.starts_with("replaying"), "{description}");
    // The sync point goes from the primary while replay runs, and from the client's record.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let primary = Image::open(io.clone(), img.id()).await.unwrap();
        let points: Vec<_> = (primary.snapshots().iter())
            .filter(|s| s.name.starts_with(".rbd-mirror."))
            .map(|s| s.name.clone())
            .collect();
        let header = rbd_relay::format::journal::header_oid(img.id());
        let clients = cls::journal::client_list(&io, &header).await.unwrap();
        let recorded = clients.iter().any(|c| {
            matches!(ClientData::from_bytes(c.data.clone()),
                Ok(ClientData::MirrorPeer(m)) if !m.sync_points.is_empty())
        });
        if points.is_empty() && !recorded {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sync point left: {points:?}, recorded {recorded}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.stop().await;
}

/// Remembers the site-a clients a daemon life opened, so that its death can time out their
/// watches too.
#[derive(Clone)]
struct Recording {
    inner: MemoryConnector,
    gids: Arc<Mutex<Vec<u64>>>,
}

#[async_trait::async_trait]
impl Connector for Recording {
    type Rados = MemoryRados;
    async fn connect(&self, peer: &PeerSite) -> RadosResult<MemoryRados> {
        let rados = self.inner.connect(peer).await?;
        self.gids.lock().unwrap().push(rados.instance_id());
        Ok(rados)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_at_random_moments_resumes_without_loss() {
    logs();
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let mut img = primary(&sites, "crashy").await;
    for round in 0..20u64 {
        // A separate runtime per daemon life: dropping it is a kill -9 (no final commit,
        // no unlock, tasks gone mid-flight).
        let site_b = sites.site_b.clone();
        let connector = Recording {
            inner: sites.connector.clone(),
            gids: Default::default(),
        };
        let remote_gids = connector.gids.clone();
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let life = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let local = site_b.connect();
                tx.send(local.instance_id()).unwrap();
                let env = Env::new(local, connector, Settings::default());
                let _ = tokio::time::timeout(
                    Duration::from_millis(30 + round % 7 * 37),
                    mirror::run(env, CancellationToken::new()),
                )
                .await;
            });
            rt.shutdown_background();
        });
        workload(&mut img, 10 + round, 150).await;
        let gid = rx.recv().unwrap();
        life.join().unwrap();
        // What the OSDs do when the dead clients' watches time out, on both sites.
        sites.site_b.disconnect_watches(gid);
        for gid in remote_gids.lock().unwrap().drain(..) {
            sites.site_a.disconnect_watches(gid);
        }
    }
    let daemon = start(&sites);
    workload(&mut img, 99, 50).await;
    wait_equal(&sites, "crashy").await;
    daemon.stop().await;
}

/// rbd-relay's site-a client blocklisted five times in a row (an operator, a peer's
/// fencing): each time the pool replayer connects a new client and replay resumes within
/// a second or two, not after a backoff the earlier faults grew (0.5 s doubling: 8 s by
/// the fifth).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_client_blocklisted_again_and_again_is_replaced_at_once() {
    logs();
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let connector = Recording {
        inner: sites.connector.clone(),
        gids: Default::default(),
    };
    let clients = connector.gids.clone();
    let env = Env::new(sites.site_b.connect(), connector, Settings::default());
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(mirror::run(env, cancel.clone()));
    let mut img = primary(&sites, "fenced").await;
    workload(&mut img, 1, 50).await;
    wait_equal(&sites, "fenced").await;
    for round in 0..5 {
        let client = *clients.lock().unwrap().last().unwrap();
        sites.site_a.blocklist(client);
        workload(&mut img, 2 + round, 30).await;
        let started = std::time::Instant::now();
        wait_equal(&sites, "fenced").await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "round {round}: resumed after {took:?}"
        );
        assert_eq!(
            clients.lock().unwrap().len() as u64,
            round + 2,
            "one new client per fault"
        );
    }
    cancel.cancel();
    daemon.await.unwrap();
}

/// Site-a's OSD down (every call hangs, then fails with ETIMEDOUT): site-b's status says
/// why the image is not replaying ("retrying: ... ETIMEDOUT") for as long as it lasts, never
/// a bare "starting replay" as if nothing were wrong, and replay resumes once site-a is
/// back, with what was written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_primary_is_shown_until_it_is_back() {
    logs();
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let site_a = Faults::new(3);
    let connector = FaultyPeer {
        inner: sites.connector.clone(),
        faults: site_a.clone(),
    };
    let local = FaultyRados::new(sites.site_b.connect(), Faults::new(4));
    let env = Env::new(local, connector, Settings::default());
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(mirror::run(env, cancel.clone()));
    let mut img = primary(&sites, "far").await;
    workload(&mut img, 1, 50).await;
    wait_equal(&sites, "far").await;
    site_a.hang("", Duration::from_millis(300));
    workload(&mut img, 2, 50).await;
    let mut seen = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        if let Some((state, description)) = status_in(&sites, "", "far").await
            && seen.last() != Some(&(state, description.clone()))
        {
            seen.push((state, description));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = seen.iter().position(|(_, d)| d.contains("ETIMEDOUT"));
    let first = first.unwrap_or_else(|| panic!("the fault never shown: {seen:?}"));
    assert!(
        seen[first..].iter().all(|(_, d)| d != "starting replay"),
        "the status looked healthy while site-a was down: {seen:?}"
    );
    site_a.clear();
    wait_equal(&sites, "far").await;
    wait_status(&sites, "far", MirrorImageStatusState::Replaying).await;
    cancel.cancel();
    daemon.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_mirroring_removes_only_the_non_primary_copy() {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let daemon = start(&sites);
    let mut img = primary(&sites, "gone").await;
    workload(&mut img, 3, 50).await;
    wait_equal(&sites, "gone").await;
    let io_a = sites.site_a.connect().ioctx(POOL).await.unwrap();
    let global = cls::mirror::image_get(&io_a, img.id())
        .await
        .unwrap()
        .global_image_id;
    let mut entry = cls::mirror::image_get(&io_a, img.id()).await.unwrap();
    entry.state = MirrorImageState::Disabling;
    cls::mirror::image_set(&io_a, img.id(), &entry)
        .await
        .unwrap();
    notify_image_updated(&io_a, img.id(), &global, MirrorImageState::Disabling)
        .await
        .unwrap();
    let io_b = sites.site_b.connect().ioctx(POOL).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while Image::open_by_name(io_b.clone(), "gone").await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "local copy not removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cls::mirror::image_get_image_id(&io_b, &global)
            .await
            .is_err()
    );
    // The primary is untouched.
    Image::open_by_name(io_a, "gone").await.unwrap();
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_entry_fails_only_its_image() {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let daemon = start(&sites);
    let mut bad = primary(&sites, "bad").await;
    let mut good = primary(&sites, "good").await;
    workload(&mut bad, 4, 20).await;
    wait_equal(&sites, "bad").await;
    // A well-framed entry (CRC fine) whose event cannot be decoded, where the next entry
    // of the current tag goes: the daemon must stop that image and name the position.
    let io_a = sites.site_a.connect().ioctx(POOL).await.unwrap();
    let id = bad.id().to_string();
    let header = rbd_relay::format::journal::header_oid(&id);
    let set = cls::journal::get_active_set(&io_a, &header).await.unwrap();
    // A new epoch whose entry 0 is the garbage (offset 0 of the active set).
    let tag = cls::journal::allocate_tag(&io_a, &header, 0, TagData::default().to_bytes())
        .await
        .unwrap();
    let garbage = Entry {
        entry_tid: 0,
        tag_tid: tag,
        data: Bytes::from_static(b"not an event"),
    };
    let oid = data_oid(io_a.pool_id(), &id, set * 4);
    cls::journal::append(&io_a, &oid, 1 << 16, garbage.to_bytes())
        .await
        .unwrap();
    io_a.notify(&header, Bytes::new(), Duration::from_secs(1))
        .await
        .unwrap();
    let why = wait_status(&sites, "bad", MirrorImageStatusState::Error).await;
    assert!(why.contains("corrupt"), "{why}");
    // The other image keeps replicating.
    workload(&mut good, 5, 100).await;
    wait_equal(&sites, "good").await;
    daemon.stop().await;
}

/// The description of the first image view of `daemon` that satisfies `pred`.
async fn wait_for_view(daemon: &sites::Daemon, pred: impl Fn(&ImageView) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let views = daemon.registry.snapshot();
        if let Some((_, v)) = views.iter().find(|(_, v)| pred(v)) {
            return v.description.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such image view: {views:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A primary clone of `parent`'s snapshot `snap` (its id on site-a), mirror-enabled.
async fn clone_of(
    sites: &TwoSites,
    parent: &PrimaryImage<MemoryIoCtx>,
    snap: u64,
    name: &str,
) -> PrimaryImage<MemoryIoCtx> {
    let io = sites.site_a.connect().ioctx(POOL).await.unwrap();
    let link = CloneOf {
        parent: ParentImageSpec {
            pool_id: io.pool_id(),
            pool_namespace: String::new(),
            image_id: parent.id().to_string(),
            snap_id: snap,
        },
        overlap: 32 << 20,
    };
    primary_with(sites, name, 40 << 20, Some(link)).await
}

/// A snapshot `name` of the primary image, returning its id.
async fn snapshot(img: &PrimaryImage<MemoryIoCtx>, name: &str) -> u64 {
    let mut w = img.writer().await;
    w.op(Op::SnapCreate(name.into())).await.unwrap();
    let user = rbd_relay::format::image::SnapshotNamespace::User;
    w.image.snapshot_by_name(name, &user).unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_replicates_as_a_clone_of_the_parents_copy() {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let mut parent = primary(&sites, "parent").await;
    workload(&mut parent, 1, 60).await;
    let gold = snapshot(&parent, "gold").await;
    workload(&mut parent, 2, 40).await; // after the snapshot: the clone must not see it
    let mut child = clone_of(&sites, &parent, gold, "child").await;
    workload(&mut child, 3, 40).await; // copy-ups on the primary, before any daemon
    let daemon = start(&sites);
    workload(&mut child, 4, 80).await; // replayed: copy-ups on site-b
    wait_equal(&sites, "parent").await;
    wait_equal(&sites, "child").await;
    let io_b = sites.site_b.connect().ioctx(POOL).await.unwrap();
    let parent_b = Image::open_by_name(io_b.clone(), "parent").await.unwrap();
    let child_b = Image::open_by_name(io_b, "child").await.unwrap();
    let link = child_b.parent().expect("the copy is a clone");
    assert_eq!(link.image_id, parent_b.id());
    let snap_b = parent_b
        .snapshots()
        .iter()
        .find(|s| s.id == link.snap_id)
        .unwrap();
    assert_eq!(snap_b.name, "gold");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_waits_for_its_parent_to_be_mirrored() {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    // A parent that is not mirrored: its clone cannot be copied (it would lack the
    // parent's data) and says what it waits for.
    let a = sites.site_a.connect();
    let io = a.ioctx(POOL).await.unwrap();
    let global = uuid::Uuid::new_v4().to_string();
    let mut parent = PrimaryImage::create(&a, io.clone(), "parent", &global, 32 << 20, 20)
        .await
        .unwrap();
    let entry = cls::mirror::image_get(&io, parent.id()).await.unwrap();
    let disabling = MirrorImage {
        state: MirrorImageState::Disabling,
        ..entry.clone()
    };
    cls::mirror::image_set(&io, parent.id(), &disabling)
        .await
        .unwrap();
    cls::mirror::image_remove(&io, parent.id()).await.unwrap();
    workload(&mut parent, 5, 40).await;
    let gold = snapshot(&parent, "gold").await;
    let mut child = clone_of(&sites, &parent, gold, "child").await;
    workload(&mut child, 6, 40).await;
    let daemon = start(&sites);
    let why = wait_for_view(&daemon, |v| v.description.contains("waiting for parent")).await;
    assert!(
        why.contains("waiting for parent rbd/parent: not mirrored"),
        "{why}"
    );
    let io_b = sites.site_b.connect().ioctx(POOL).await.unwrap();
    assert!(Image::open_by_name(io_b, "child").await.is_err());
    // Mirrored now: the parent is copied, then the clone.
    cls::mirror::image_set(&io, parent.id(), &entry)
        .await
        .unwrap();
    notify_image_updated(&io, parent.id(), &global, MirrorImageState::Enabled)
        .await
        .unwrap();
    wait_equal(&sites, "parent").await;
    wait_equal(&sites, "child").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_namespace_replicates_into_the_same_namespace() {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let daemon = start(&sites);
    // ns1 mirrors on both sites; ns2 only on site-a, so site-b does not pull it.
    for site in [&sites.site_a, &sites.site_b] {
        mirrored_namespace(site, "ns1", MirrorMode::Pool).await;
    }
    mirrored_namespace(&sites.site_a, "ns2", MirrorMode::Pool).await;
    let a = sites.site_a.connect();
    let mut images = Vec::new();
    for ns in ["ns1", "ns2"] {
        let io = a.ioctx(POOL).await.unwrap().with_namespace(ns);
        let global = uuid::Uuid::new_v4().to_string();
        let mut img = PrimaryImage::create(&a, io.clone(), "vm", &global, 32 << 20, 20)
            .await
            .unwrap();
        notify_image_updated(&io, img.id(), &global, MirrorImageState::Enabled)
            .await
            .unwrap();
        workload(&mut img, 5, 200).await;
        images.push(img);
    }
    wait_equal_in(&sites, "ns1", "vm").await;
    wait_status_in(&sites, "ns1", "vm", MirrorImageStatusState::Replaying).await;
    workload(&mut images[0], 6, 200).await;
    wait_equal_in(&sites, "ns1", "vm").await;
    let b = sites.site_b.connect().ioctx(POOL).await.unwrap();
    for (ns, name) in [("", "vm"), ("ns2", "vm")] {
        assert!(
            cls::dir::id_of(&b.with_namespace(ns), name).await.is_err(),
            "no copy in namespace {ns:?}"
        );
    }
    daemon.stop().await;
}
