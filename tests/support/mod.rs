//! Backends for tests that run on both: a fresh embedded cluster with a pool `rbd`, or the
//! lab's site-a through librados (never skipped silently: no lab is a failure unless
//! `RBD_RELAY_SKIP_CEPH=1`). Also the lab's conf path for tests that drive the `rbd` CLI.

use std::io::Write;

use rbd_relay::rados::librados::{ConnectConfig, LibradosCluster, LibradosIoCtx};
use rbd_relay::rados::memory::{MemoryCluster, MemoryIoCtx, MemoryRados};
use rbd_relay::rados::{Errno, Rados, RadosError};

/// The pool `scripts/ceph-lab` makes for data pools on both sites.
pub const DATA_POOL: &str = "rbd-data";

pub async fn memory() -> (MemoryRados, MemoryIoCtx) {
    memory_pair().await.0
}

/// Two clients of one fresh embedded cluster with the lab's pools: `rbd`, and `rbd-data`
/// for images with a separate data pool.
pub async fn memory_pair() -> ((MemoryRados, MemoryIoCtx), (MemoryRados, MemoryIoCtx)) {
    let cluster = MemoryCluster::default();
    cluster.create_pool("rbd").expect("pool");
    cluster.create_pool(DATA_POOL).expect("pool");
    let (c1, c2) = (cluster.connect(), cluster.connect());
    let (io1, io2) = (
        c1.ioctx("rbd").await.expect("pool rbd"),
        c2.ioctx("rbd").await.expect("pool rbd"),
    );
    ((c1, io1), (c2, io2))
}

pub fn conf_path() -> String {
    std::env::var("RBD_RELAY_SITE_A_CONF").unwrap_or_else(|_| {
        let dir =
            std::env::var("RBD_RELAY_LAB_DIR").unwrap_or_else(|_| "/tmp/rbd-relay-lab".into());
        format!("{dir}/site-a/ceph.conf")
    })
}

/// The lab connection, or `None` (SKIPPED, loudly) when `RBD_RELAY_SKIP_CEPH=1`.
pub async fn librados(case: &str) -> Option<(LibradosCluster, LibradosIoCtx)> {
    if std::env::var("RBD_RELAY_SKIP_CEPH").as_deref() == Ok("1") {
        // Straight to stderr, not `eprintln!`: the test harness would swallow that.
        let _ = writeln!(
            std::io::stderr(),
            "*** SKIPPED conformance::librados::{case}: RBD_RELAY_SKIP_CEPH=1, no Ceph lab used ***"
        );
        return None;
    }
    let conf = conf_path();
    let cluster = LibradosCluster::connect(ConnectConfig::from_conf(&conf))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no Ceph lab at {conf} ({e}); run scripts/ceph-lab up or set RBD_RELAY_SKIP_CEPH=1"
            )
        });
    let io = cluster.ioctx("rbd").await.expect("pool rbd");
    Some((cluster, io))
}

/// A fresh object name, so runs and cases never share objects.
pub fn name(what: &str) -> String {
    format!("conformance.{what}.{}", uuid::Uuid::new_v4())
}

pub fn errno<T>(r: Result<T, RadosError>) -> Errno {
    match r {
        Ok(_) => panic!("expected an error, got success"),
        Err(e) => e.errno,
    }
}

/// Runs `ceph` or `rbd` against the lab's site-a; its stdout, or a panic with its stderr.
pub fn cli(tool: &str, args: &[&str]) -> String {
    let conf = conf_path();
    let out = std::process::Command::new(tool)
        .args(["-c", &conf])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh 16 MiB journaled image in the lab's pool `rbd`, made by the `rbd` CLI with
/// `journal_args` (e.g. `--journal-object-size 4K`): its name, `rbd/<name>` spec and id.
pub fn journaled_image(prefix: &str, journal_args: &[&str]) -> (String, String, String) {
    let image = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let spec = format!("rbd/{image}");
    let create = [
        "create",
        "--size",
        "16M",
        "--image-feature",
        "exclusive-lock,journaling",
    ];
    cli(
        "rbd",
        &[&create[..], journal_args, &[spec.as_str()]].concat(),
    );
    let info: serde_json::Value =
        serde_json::from_str(&cli("rbd", &["info", "--format", "json", &spec]))
            .expect("rbd info json");
    let id = info["id"].as_str().expect("image id").to_string();
    (image, spec, id)
}
