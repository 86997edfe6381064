//! Backends for the conformance cases: a fresh embedded cluster with a pool `rbd`, or the
//! lab's site-a through librados. A [`Lab`] also opens further clients (for cross-client
//! watch/notify) and cuts a client off the way a real cluster does: the memory backend's
//! blocklist hook, or `ceph osd blocklist add <addr>` on the lab (the address found with
//! `rados listwatchers`, so only a client that watches something can be cut off).

use std::io::Write;
use std::process::Command;

use async_trait::async_trait;
use rbd_relay::rados::librados::{ConnectConfig, LibradosCluster, LibradosIoCtx};
use rbd_relay::rados::memory::{MemoryCluster, MemoryIoCtx, MemoryRados};
use rbd_relay::rados::{Errno, Rados, RadosError};

/// One cluster the cases run against.
#[async_trait]
pub trait Lab: Send + Sync {
    type R: Rados;
    /// A new client (its own global id), as a second daemon or librbd would be.
    async fn connect(&self) -> Self::R;
    /// Blocklists `client`, which watches `watched` in pool `rbd`; returns an undo token.
    async fn blocklist(&self, client: &Self::R, watched: &str) -> Option<String>;
    /// Lifts a blocklist entry made by [`Lab::blocklist`].
    async fn unblocklist(&self, token: Option<String>);
}

pub struct MemoryLab(pub MemoryCluster);

#[async_trait]
impl Lab for MemoryLab {
    type R = MemoryRados;
    async fn connect(&self) -> MemoryRados {
        self.0.connect()
    }
    async fn blocklist(&self, client: &MemoryRados, _watched: &str) -> Option<String> {
        self.0.blocklist(client.instance_id());
        None
    }
    async fn unblocklist(&self, _token: Option<String>) {}
}

pub struct CephLab {
    conf: String,
}

/// Runs a Ceph CLI command against the lab (off the tokio workers); its stdout.
async fn cli(program: &'static str, args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(program)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .expect("cli task")
}

#[async_trait]
impl Lab for CephLab {
    type R = LibradosCluster;
    async fn connect(&self) -> LibradosCluster {
        LibradosCluster::connect(ConnectConfig::from_conf(&self.conf))
            .await
            .unwrap_or_else(|e| panic!("no Ceph lab at {} ({e})", self.conf))
    }
    async fn blocklist(&self, client: &LibradosCluster, watched: &str) -> Option<String> {
        let args = ["-c", &self.conf, "-p", "rbd", "listwatchers", watched];
        let watchers = cli("rados", args.map(String::from).to_vec()).await;
        // "watcher=127.0.0.1:0/3125 client.4130 cookie=94..."
        let me = format!("client.{}", client.instance_id());
        let addr = watchers
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(me.as_str()))
            .and_then(|l| l.split_whitespace().next()?.strip_prefix("watcher="))
            .unwrap_or_else(|| panic!("{me} does not watch {watched}: {watchers}"))
            .to_string();
        let args = ["-c", &self.conf, "osd", "blocklist", "add", &addr];
        cli("ceph", args.map(String::from).to_vec()).await;
        Some(addr)
    }
    async fn unblocklist(&self, token: Option<String>) {
        if let Some(addr) = token {
            let args = ["-c", &self.conf, "osd", "blocklist", "rm", &addr];
            cli("ceph", args.map(String::from).to_vec()).await;
        }
    }
}

pub async fn memory() -> (MemoryLab, MemoryRados, MemoryIoCtx) {
    let cluster = MemoryCluster::default();
    cluster.create_pool("rbd").expect("pool");
    let c = cluster.connect();
    let io = c.ioctx("rbd").await.expect("pool rbd");
    (MemoryLab(cluster), c, io)
}

fn conf_path() -> String {
    std::env::var("RBD_RELAY_SITE_A_CONF").unwrap_or_else(|_| {
        let dir =
            std::env::var("RBD_RELAY_LAB_DIR").unwrap_or_else(|_| "/tmp/rbd-relay-lab".into());
        format!("{dir}/site-a/ceph.conf")
    })
}

/// The lab connection, or `None` (SKIPPED, loudly) when `RBD_RELAY_SKIP_CEPH=1`.
pub async fn librados(case: &str) -> Option<(CephLab, LibradosCluster, LibradosIoCtx)> {
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
    Some((CephLab { conf }, cluster, io))
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
