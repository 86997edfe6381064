//! The `rbd-relay` command: `run` (the daemon, a Ceph daemon's process contract: see
//! `daemon`), `demo` (the
//! embedded two-site default), `status` (asks a running daemon over its admin socket) and
//! `probe` (a cluster's mirroring state and its `rbd_mirroring` notifications, decoded).

use std::path::PathBuf;
use std::process::ExitCode;
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
    /// The daemon: replicate every image the local cluster's pools mirror from their peers.
    /// Takes Ceph's daemon options (`run --help` lists them).
    #[command(disable_help_flag = true)]
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Two embedded sites, a primary workload, the daemon replicating, then a full compare.
    Demo {
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        images: usize,
        /// Prometheus endpoint while the demo runs.
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Pools, images, states and lag of a running daemon.
    Status {
        #[arg(long)]
        admin_socket: PathBuf,
        /// `plain` or `json`.
        #[arg(long, default_value = "plain")]
        format: String,
    },
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

fn main() -> anyhow::Result<ExitCode> {
    let command = Cli::parse().command;
    // The daemon forks before any thread starts and sets up its own logging.
    if let Command::Run { args } = command {
        return Ok(rbd_relay::daemon::main(args));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    tokio::runtime::Runtime::new()?.block_on(tool(command))?;
    Ok(ExitCode::SUCCESS)
}

async fn tool(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { .. } => unreachable!("handled before the runtime starts"),
        Command::Demo {
            seconds,
            images,
            metrics_addr,
            seed,
        } => {
            let args = rbd_relay::demo::run::DemoArgs {
                seconds,
                images,
                metrics_addr,
                seed,
            };
            if rbd_relay::demo::run::run(args).await? {
                Ok(())
            } else {
                anyhow::bail!("the sites differ")
            }
        }
        Command::Status {
            admin_socket,
            format,
        } => status(admin_socket, &format).await,
        Command::Probe {
            conf,
            name,
            watch_secs,
        } => probe(conf, name, Duration::from_secs(watch_secs)).await,
    }
}

async fn status(asok: PathBuf, format: &str) -> anyhow::Result<()> {
    let cmd = serde_json::json!({ "prefix": "rbd mirror status", "format": "json" });
    let out = rbd_relay::admin_socket::request(&asok, &cmd)
        .await
        .with_context(|| format!("asking {}", asok.display()))?;
    if format == "json" {
        println!("{out}");
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_str(&out)?;
    println!(
        "{:<12} {:<12} {:<32} {:<10} {:>10} {:>10} {:>9}  description",
        "pool", "peer", "image", "state", "entries", "behind", "lag s"
    );
    for pool in v["pool_replayers"].as_array().into_iter().flatten() {
        for img in pool["image_replayers"].as_array().into_iter().flatten() {
            println!(
                "{:<12} {:<12} {:<32} {:<10} {:>10} {:>10} {:>9.3}  {}",
                pool["pool"].as_str().unwrap_or(""),
                pool["peer"].as_str().unwrap_or(""),
                img["name"].as_str().unwrap_or(""),
                img["state"].as_str().unwrap_or(""),
                img["entries_replayed"],
                img["entries_behind"],
                img["lag_seconds"].as_f64().unwrap_or(0.0),
                img["description"].as_str().unwrap_or(""),
            );
        }
    }
    Ok(())
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
