//! The conformance suite: every behaviour of the storage seam written once, generic over
//! the backend, and run on both: `memory::*` always, `librados::*` against the lab's site-a
//! (`scripts/ceph-lab up`; `RBD_RELAY_SITE_A_CONF` or `RBD_RELAY_LAB_DIR` picks the lab).
//! Without a reachable lab the librados cases FAIL, unless `RBD_RELAY_SKIP_CEPH=1` (they
//! then print a loud SKIPPED line). The expectations are what Ceph 16.2.15 does, measured;
//! the memory backend must match.
//!
//! Most cases take one client and its `rbd` pool (`case<R: Rados>(c, io)`); the few that
//! need a second client or a blocklisted one also take the [`harness::Lab`].

mod cls;
mod data;
mod harness;
mod omap;
mod snaps;
mod watch;
mod watch_faults;

/// Instantiates each case once per backend, as `memory::<case>` and `librados::<case>`.
macro_rules! conformance {
    (
        client: [$($module:ident :: $case:ident),* $(,)?],
        lab: [$($lmodule:ident :: $lcase:ident),* $(,)?] $(,)?
    ) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_lab, c, io) = crate::harness::memory().await;
                    crate::$module::$case(&c, &io).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $lcase() {
                    let (lab, c, io) = crate::harness::memory().await;
                    crate::$lmodule::$lcase(&lab, &c, &io).await;
                }
            )*
        }
        mod librados {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((_lab, c, io)) = crate::harness::librados(stringify!($case)).await
                    else { return };
                    crate::$module::$case(&c, &io).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $lcase() {
                    let Some((lab, c, io)) = crate::harness::librados(stringify!($lcase)).await
                    else { return };
                    crate::$lmodule::$lcase(&lab, &c, &io).await;
                }
            )*
        }
    };
}

conformance!(
    client: [
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
        watch::notify_and_ack,
        watch::notify_timeout,
        watch::lagging_consumer,
        watch::unwatch_and_missing,
        watch::dropped_stream_is_acked,
        snaps::snapshot_clones,
        snaps::snapshot_edges,
        snaps::namespaces,
    ],
    lab: [
        watch_faults::cross_client_notify,
        watch_faults::unwatch_during_notify,
        watch_faults::blocklisted_watcher,
        watch_faults::remove_watched_object,
    ],
);
