//! The conformance suite: every behaviour of the storage seam written once, generic over
//! the backend, and run on both: `memory::*` always, `librados::*` against the lab's site-a
//! (`scripts/ceph-lab up`; `RBD_RELAY_SITE_A_CONF` or `RBD_RELAY_LAB_DIR` picks the lab).
//! Without a reachable lab the librados cases FAIL, unless `RBD_RELAY_SKIP_CEPH=1` (they
//! then print a loud SKIPPED line). The expectations are what Ceph 16.2.15 does, measured;
//! the memory backend must match.

mod cls;
mod cls_journal;
mod cls_lock;
mod cls_rbd_cli;
mod cls_rbd_clone;
mod cls_rbd_dir;
mod cls_rbd_image;
mod cls_rbd_leader;
mod cls_rbd_mirror;
mod cls_rbd_snaps;
mod cls_rbd_status;
mod data;
#[path = "../support/mod.rs"]
#[allow(dead_code)] // each test crate uses part of the shared support
mod harness;
mod librados_only;
mod omap;
mod snaps;
mod watch;
mod watch_faults;

/// Instantiates each case once per backend, as `memory::<case>` and `librados::<case>`.
macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (c, io) = crate::harness::memory().await;
                    crate::$module::$case(&c, &io).await;
                }
            )*
        }
        mod librados {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((c, io)) = crate::harness::librados(stringify!($case)).await else { return };
                    crate::$module::$case(&c, &io).await;
                }
            )*
        }
    };
}

conformance!(
    watch::auto_ack,
    cls_rbd_leader::mirror_instances,
    data::cluster_and_pools,
    data::data_ops_and_versions,
    data::zero_and_truncate,
    data::versions_move_on_modification,
    data::missing_objects,
    omap::omap_paging,
    omap::omap_cmp_cancels,
    omap::xattrs,
    omap::racing_ops,
    cls::cls_exec,
    cls_journal::journal_header,
    cls_journal::journal_clients,
    cls_journal::journal_tags,
    cls_journal::journal_append,
    cls_rbd_mirror::mirror_mode_uuid,
    cls_rbd_mirror::mirror_peers,
    cls_rbd_mirror::mirror_images,
    cls_rbd_image::image_header,
    cls_rbd_snaps::image_snapshots,
    cls_rbd_clone::image_clones,
    cls_rbd_image::image_metadata,
    cls_rbd_image::object_map,
    cls_rbd_dir::directory,
    watch::notify_and_ack,
    watch::notify_timeout,
    watch::lagging_consumer,
    watch::unwatch_and_missing,
    watch::dropped_stream_is_acked,
    snaps::snapshot_clones,
    snaps::snapshot_edges,
    snaps::namespaces,
);

/// Instantiates cases that need two clients of one cluster, for both backends.
macro_rules! conformance_two_clients {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod memory_two_clients {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let ((c1, io1), (c2, io2)) = crate::harness::memory_pair().await;
                    crate::$module::$case(&c1, &io1, &c2, &io2).await;
                }
            )*
        }
        mod librados_two_clients {
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

conformance_two_clients!(
    cls_lock::exclusive_lock,
    cls_lock::shared_lock,
    watch_faults::cross_client_notify,
    watch_faults::unwatch_during_notify,
    watch_faults::blocklisted_watcher,
    watch_faults::remove_watched_object,
    cls_rbd_status::mirror_statuses,
);
