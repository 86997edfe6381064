//! The `rbd-relay` command. Until the daemon lands, `probe` shows what the foundation does
//! against a real cluster: it connects like a Ceph tool, reads each pool's mirroring state
//! through cls_rbd, then watches `rbd_mirroring` and prints every notification decoded.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use rbd_relay::cls;
use rbd_relay::format::Decode;
use rbd_relay::format::mirror::MIRRORING_OBJECT;
use rbd_relay::format::notify::MirroringNotify;
use rbd_relay::rados::librados::{ConnectConfig, LibradosCluster};
use rbd_relay::rados::{IoCtx, Rados, WatchEvent};

#[derive(Parser)]
#[command(version, about = "Event-driven RBD journal mirroring for Ceph")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a cluster's pools and their mirroring state, then watch `rbd_mirroring`.
    Probe {
        /// The cluster's ceph.conf.
        #[arg(short = 'c', long = "conf")]
        conf: PathBuf,
        /// Client name, as Ceph tools take it.
        #[arg(short = 'n', long = "name", default_value = "client.admin")]
        name: String,
        /// How long to watch for notifications (0: do not watch).
        #[arg(long, default_value_t = 0)]
        watch_secs: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    match Cli::parse().command {
        Command::Probe {
            conf,
            name,
            watch_secs,
        } => probe(conf, name, Duration::from_secs(watch_secs)).await,
    }
}

async fn probe(conf: PathBuf, name: String, watch_for: Duration) -> anyhow::Result<()> {
    let cfg = ConnectConfig {
        client_name: name,
        ..ConnectConfig::from_conf(&conf)
    };
    let cluster = LibradosCluster::connect(cfg)
        .await
        .with_context(|| format!("connecting with {}", conf.display()))?;
    println!(
        "cluster {} (client.{})",
        cluster.fsid(),
        cluster.instance_id()
    );
    let mut watched = Vec::new();
    for (id, pool) in cluster.pool_list().await? {
        let io = cluster.ioctx_by_id(id).await?;
        let mode = cls::mirror::mode_get(&io).await?;
        println!("pool {id} {pool}: mirroring {mode:?}");
        if !mode.is_enabled() {
            continue;
        }
        println!("  mirror uuid {}", cls::mirror::uuid_get(&io).await?);
        for peer in cls::mirror::peer_list(&io).await? {
            let seen = if peer.mirror_uuid.is_empty() {
                "not seen yet".to_string()
            } else {
                peer.mirror_uuid.clone()
            };
            println!(
                "  peer {} site {} {} {:?} ({seen})",
                peer.uuid, peer.site_name, peer.client_name, peer.direction
            );
        }
        for (image_id, global_id) in cls::mirror::image_list(&io).await? {
            println!("  image {image_id} global {global_id}");
        }
        if !watch_for.is_zero() {
            watched.push((pool, io.watch(MIRRORING_OBJECT).await?, io));
        }
    }
    if watched.is_empty() {
        return Ok(());
    }
    println!("watching rbd_mirroring for {watch_for:?}");
    let deadline = tokio::time::Instant::now() + watch_for;
    let mut tasks = tokio::task::JoinSet::new();
    for (pool, mut watch, io) in watched {
        tasks.spawn(async move {
            while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, watch.next()).await {
                match ev {
                    WatchEvent::Notify(n) => {
                        match MirroringNotify::from_bytes(n.payload.clone()) {
                            Ok(msg) => {
                                println!("  {pool}: {msg:?} (from client.{})", n.notifier_id)
                            }
                            Err(e) => println!("  {pool}: undecodable notification ({e})"),
                        }
                        let _ = io
                            .notify_ack(MIRRORING_OBJECT, n.notify_id, n.cookie, Bytes::new())
                            .await;
                    }
                    other => println!("  {pool}: {other:?}"),
                }
            }
            let _ = io.unwatch(watch.cookie).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
