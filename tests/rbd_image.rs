//! The `rbd` module on both backends: every case runs on the embedded cluster
//! (`memory::<case>`) and on the lab's site-a through librados (`librados::<case>`; without
//! a lab they fail unless `RBD_RELAY_SKIP_CEPH=1`). What Ceph tools make of the result is
//! checked in `tests/rbd_cli.rs`.

#[path = "rbd/cases.rs"]
mod cases;
#[path = "rbd/clone_cases.rs"]
mod clone_cases;
#[path = "support/mod.rs"]
#[allow(dead_code)] // each test crate uses part of the shared support
mod harness;
#[path = "rbd/lock_cases.rs"]
mod lock_cases;

macro_rules! both_backends {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let ((c1, io1), (c2, io2)) = crate::harness::memory_pair().await;
                    crate::$module::$case(&c1, &io1, &c2, &io2).await;
                }
            )*
        }
        mod librados {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((c1, io1)) = crate::harness::librados(stringify!($case)).await else { return };
                    let Some((c2, io2)) = crate::harness::librados(stringify!($case)).await else { return };
                    crate::$module::$case(&c1, &io1, &c2, &io2).await;
                }
            )*
        }
    };
}

both_backends!(
    cases::create_and_open,
    cases::concurrent_creates,
    cases::data_path,
    cases::batches,
    cases::snapshots_and_resize,
    cases::header_ops_and_remove,
    cases::data_pool,
    clone_cases::clones,
    lock_cases::lock_requests,
    lock_cases::promotion_notify_releases,
    lock_cases::stale_snap_context,
    lock_cases::blocklisted_client_stops_writing,
    lock_cases::releasing_holder_is_not_fenced,
    lock_cases::handed_over_on_release_notify,
);
