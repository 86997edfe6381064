//! `rbd-relay check-prefix` on the embedded backend: the real daemon replicating a primary
//! written the way librbd writes, stopped at random moments of the workload (the admin
//! socket's `rbd mirror stop`), and the copy checked against the primary's journal replayed
//! up to the commit position each time. The checker must also fail: on a corrupted byte of
//! the copy (naming its offset), without its hold, and on a trimmed journal.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use rbd_relay::cls;
use rbd_relay::demo::primary::PrimaryImage;
use rbd_relay::demo::{POOL, TwoSites};
use rbd_relay::format::Encode;
use rbd_relay::format::client_data::{CHECK_HOLD_CLIENT_ID, CheckHold};
use rbd_relay::format::journal::header_oid;
use rbd_relay::format::mirror::MirrorMode;
use rbd_relay::mirror::ImageKey;
use rbd_relay::mirror::image_replayer::Control;
use rbd_relay::mirror::registry::ReplayState;
use rbd_relay::prefix_check::{self, CheckError, Pair, Report};
use rbd_relay::rados::Rados;
use rbd_relay::rados::memory::MemoryIoCtx;
use rbd_relay::rbd::Image;

#[allow(dead_code)] // each test crate uses part of the shared support
mod sites;

use sites::{DEADLINE, Daemon, primary, start};

/// A mirrored primary with the hold, the daemon replaying it, and the means to pause it.
struct Setup {
    sites: TwoSites,
    img: Arc<PrimaryImage<MemoryIoCtx>>,
    daemon: Daemon,
    control: Arc<Control>,
    io_a: MemoryIoCtx,
    io_b: MemoryIoCtx,
    uuid_a: String,
    uuid_b: String,
}

async fn setup(name: &str) -> Setup {
    let sites = TwoSites::new(MirrorMode::Image).await.unwrap();
    let img = primary(&sites, name).await;
    let io_a = sites.site_a.connect().ioctx(POOL).await.unwrap();
    let io_b = sites.site_b.connect().ioctx(POOL).await.unwrap();
    // Right after creation, as the README says: the start size is the size now.
    let held = prefix_check::hold(&io_a, img.id()).await.unwrap();
    assert_eq!(held, 32 << 20);
    // Idempotent.
    assert_eq!(prefix_check::hold(&io_a, img.id()).await.unwrap(), held);
    let global_id = cls::mirror::image_get(&io_a, img.id())
        .await
        .unwrap()
        .global_image_id;
    let daemon = start(&sites);
    let key = ImageKey {
        pool: POOL.into(),
        namespace: String::new(),
        global_id,
    };
    // Replaying (past its image sync) before the workload begins.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let control = loop {
        if let (Some(c), Some(v)) = (daemon.registry.control(&key), daemon.registry.view(&key))
            && v.state == ReplayState::Replaying
        {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never replaying"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let uuid_a = cls::mirror::uuid_get(&io_a).await.unwrap();
    let uuid_b = cls::mirror::uuid_get(&io_b).await.unwrap();
    Setup {
        sites,
        img: Arc::new(img),
        daemon,
        control,
        io_a,
        io_b,
        uuid_a,
        uuid_b,
    }
}

impl Setup {
    async fn check(&self) -> Result<Report, CheckError> {
        let local_id = cls::dir::id_of(&self.io_b, self.name()).await.unwrap();
        prefix_check::check(&Pair {
            remote_io: &self.io_a,
            remote_image_id: self.img.id(),
            local_io: &self.io_b,
            local_image_id: &local_id,
            local_uuid: &self.uuid_b,
            remote_uuid: &self.uuid_a,
        })
        .await
    }

    fn name(&self) -> &str {
        "checked"
    }

    /// Runs `ops` random operations of the demo mix on the primary, in the background, a
    /// millisecond apart (at full speed the whole workload would fit between two pauses).
    fn workload(&self, seed: u64, ops: usize) -> tokio::task::JoinHandle<()> {
        let img = self.img.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut snaps = 0;
            for _ in 0..ops {
                let mut w = img.writer().await;
                w.random_op(&mut rng, &mut snaps).await.unwrap();
                drop(w);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            img.writer().await.flush().await.unwrap();
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_at_random_moments_the_copy_equals_the_journal_prefix() {
    let s = setup("checked").await;
    let writer = s.workload(11, 1500);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut positions = Vec::new();
    for pause in 0..6 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..300))).await;
        s.control.stop().await.unwrap();
        let report = s.check().await.unwrap();
        assert_eq!(report.verdict, Ok(()), "pause {pause}: {report:?}");
        positions.push((report.position.tag_tid, report.position.entry_tid));
        s.control.start();
    }
    writer.await.unwrap();
    sites::wait_equal(&s.sites, s.name()).await;
    s.control.stop().await.unwrap();
    let last = s.check().await.unwrap();
    assert_eq!(last.verdict, Ok(()), "{last:?}");
    positions.push((last.position.tag_tid, last.position.entry_tid));
    eprintln!(
        "checked at {positions:?}, {} entries at the end",
        last.entries
    );
    // The pauses fell at different moments of the workload.
    positions.dedup();
    assert!(positions.len() >= 3, "{positions:?}");
    s.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_byte_of_the_copy_fails_the_check_at_its_offset() {
    let s = setup("checked").await;
    s.workload(12, 300).await.unwrap();
    sites::wait_equal(&s.sites, s.name()).await;
    s.control.stop().await.unwrap();
    assert_eq!(s.check().await.unwrap().verdict, Ok(()));

    // One byte of the copy flipped, through the image (the replayer let go of its lock).
    let mut copy = Image::open_by_name(s.io_b.clone(), s.name()).await.unwrap();
    let offset = 5 * 4096 + 123;
    let byte = copy.read(offset, 1, None).await.unwrap()[0];
    copy.acquire_lock().await.unwrap();
    copy.write(offset, Bytes::from(vec![!byte])).await.unwrap();
    copy.release_lock().await.unwrap();
    let report = s.check().await.unwrap();
    let why = report
        .verdict
        .expect_err("a corrupted copy must fail the check");
    assert!(
        why.contains(&format!("head: first difference at byte offset {offset} ")),
        "{why}"
    );

    // No hold: nothing can be said.
    let header = header_oid(s.img.id());
    assert!(prefix_check::release(&s.io_a, s.img.id()).await.unwrap());
    assert!(!prefix_check::release(&s.io_a, s.img.id()).await.unwrap());
    let err = s.check().await.unwrap_err();
    assert!(
        matches!(&err, CheckError::Cannot(w) if w.contains("no hold")),
        "{err}"
    );
    // A trimmed journal: neither a check nor a new hold.
    cls::journal::set_minimum_set(&s.io_a, &header, 1)
        .await
        .unwrap();
    let err = prefix_check::hold(&s.io_a, s.img.id()).await.unwrap_err();
    assert!(
        matches!(&err, CheckError::Cannot(w) if w.contains("trimmed")),
        "{err}"
    );
    let hold = CheckHold {
        image_size: 32 << 20,
    };
    cls::journal::client_register(&s.io_a, &header, CHECK_HOLD_CLIENT_ID, hold.to_bytes())
        .await
        .unwrap();
    let err = s.check().await.unwrap_err();
    assert!(
        matches!(&err, CheckError::Cannot(w) if w.contains("trimmed")),
        "{err}"
    );
    s.daemon.stop().await;
}
