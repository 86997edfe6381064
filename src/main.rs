//! The `rbd-relay` command: `run` (the daemon, connecting like Ceph's daemons), `demo` (the
//! embedded two-site default), `status` (asks a running daemon over its admin socket),
//! `promote` (a failover that proves zero loss) and `probe` (a cluster's mirroring state and
//! its `rbd_mirroring` notifications, decoded).

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
    /// The daemon: replicate every image the local cluster's pools mirror from their peers.
    Run(RunArgs),
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
    /// On the secondary: demote the peer's image, wait until this copy has replayed
    /// everything up to the demotion, then promote it here.
    ///
    /// Exit status: 0 promoted (or already primary here with the peer not primary);
    /// 3 refused, nothing changed (peer unreachable without --force, histories not linked,
    /// both primary); 4 not caught up within --timeout (or the promotion here failed): the
    /// peer was promoted again, as before; 5 as 4 but promoting the peer again failed, so
    /// no site is primary; 1 other errors; 2 bad arguments.
    Promote(PromoteCmd),
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

/// How to reach the local cluster, as Ceph's tools take it.
#[derive(clap::Args)]
struct ConnArgs {
    /// Cluster name: finds `$cluster.conf` on Ceph's search path.
    #[arg(long, default_value = "ceph")]
    cluster: String,
    #[arg(short = 'c', long = "conf")]
    conf: Option<PathBuf>,
    /// Client id (`admin` for `client.admin`).
    #[arg(short = 'i', long = "id", conflicts_with = "name")]
    id: Option<String>,
    /// Full client name (`client.admin`).
    #[arg(short = 'n', long = "name")]
    name: Option<String>,
    #[arg(long)]
    keyring: Option<PathBuf>,
}

impl ConnArgs {
    fn client_name(&self) -> String {
        match (&self.name, &self.id) {
            (Some(n), _) => n.clone(),
            (None, Some(id)) => format!("client.{id}"),
            (None, None) => "client.admin".into(),
        }
    }

    async fn connect(&self) -> anyhow::Result<LibradosCluster> {
        let name = self.client_name();
        let mut cfg = rbd_relay::ceph_conf::connect_config(&self.cluster, &name, self.conf.clone());
        cfg.keyring = self.keyring.clone();
        LibradosCluster::connect(cfg)
            .await
            .with_context(|| format!("connecting to cluster {} as {name}", self.cluster))
    }
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// rbd-relay's own settings (TOML; see config.rs for every key and default).
    #[arg(long = "config")]
    settings: Option<PathBuf>,
    /// Prometheus endpoint (overrides the settings file).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Admin socket path (default: /tmp/rbd-relay.$cluster.$name.asok).
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// Stay in the foreground (the only mode so far; accepted as Ceph daemons take it).
    #[arg(short = 'f', long = "foreground")]
    foreground: bool,
}

#[derive(clap::Args)]
struct PromoteCmd {
    #[command(flatten)]
    conn: ConnArgs,
    /// Wait until this copy has replayed everything up to the peer's demotion (the only
    /// mode: required, so the command says what it does).
    #[arg(long, required = true)]
    wait_caught_up: bool,
    /// POOL/IMAGE
    spec: String,
    /// Seconds to wait for the copy to catch up before giving the peer its role back.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// With the peer unreachable: promote by force, losing what was not replayed yet.
    #[arg(long)]
    force: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Run(args) => run(args).await,
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
        Command::Promote(cmd) => promote(cmd).await,
        Command::Probe {
            conf,
            name,
            watch_secs,
        } => probe(conf, name, Duration::from_secs(watch_secs)).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut settings = match &args.settings {
        Some(p) => rbd_relay::config::Settings::load(p)?,
        None => rbd_relay::config::Settings::default(),
    };
    if args.metrics_addr.is_some() {
        settings.metrics_addr = args.metrics_addr;
    }
    if let Some(addr) = settings.metrics_addr {
        rbd_relay::metrics::install(addr).with_context(|| format!("serving metrics on {addr}"))?;
    }
    let name = args.conn.client_name();
    let local = args.conn.connect().await?;
    let id = name.strip_prefix("client.").unwrap_or(&name).to_string();
    let host = hostname();
    let instance = local.instance_id().to_string();
    local
        .service_register(
            "rbd-mirror",
            &instance,
            vec![
                ("id".into(), id.clone()),
                ("instance_id".into(), instance.clone()),
                ("hostname".into(), host),
                ("ceph_version".into(), "rbd-relay".into()),
            ],
        )
        .await?;
    tracing::info!(cluster = %args.conn.cluster, client = %name, instance = %instance, "rbd-relay running");
    let cancel = tokio_util::sync::CancellationToken::new();
    let every = std::time::Duration::from_millis(settings.pools.refresh_interval_ms);
    tokio::spawn(publish_service_status(
        local.clone(),
        instance,
        every,
        cancel.clone(),
    ));
    let env = rbd_relay::mirror::Env::new(local, rbd_relay::ceph_conf::LibradosConnector, settings);
    let asok = args.admin_socket.unwrap_or_else(|| {
        PathBuf::from(format!("/tmp/rbd-relay.{}.{name}.asok", args.conn.cluster))
    });
    let mut commands = rbd_relay::admin_socket::Commands::default();
    let registry = env.registry.clone();
    commands.add(
        "rbd mirror status",
        "show status for all mirrored images",
        std::sync::Arc::new(move |_| Ok(status_json(&registry).to_string())),
    );
    tokio::spawn(rbd_relay::admin_socket::serve(
        asok,
        commands,
        cancel.clone(),
    ));
    let stop = cancel.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping: finishing applies, committing, releasing locks");
        stop.cancel();
    });
    let _ = args.foreground;
    let grace = std::time::Duration::from_secs(30);
    let daemon = rbd_relay::mirror::run(env, cancel.clone());
    tokio::pin!(daemon);
    tokio::select! {
        _ = &mut daemon => {}
        _ = async { cancel.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::error!("replayers did not stop within {grace:?}; exiting");
        }
    }
    Ok(())
}

async fn promote(cmd: PromoteCmd) -> anyhow::Result<()> {
    use rbd_relay::promote::{PromoteArgs, Promoted};
    let Some((pool, image)) = cmd.spec.split_once('/') else {
        anyhow::bail!("expected POOL/IMAGE, got '{}'", cmd.spec);
    };
    let local = cmd.conn.connect().await?;
    let args = PromoteArgs {
        pool: pool.into(),
        image: image.into(),
        timeout: Duration::from_secs(cmd.timeout),
        force: cmd.force,
    };
    let _ = cmd.wait_caught_up;
    match rbd_relay::promote::promote(&local, &args).await {
        Ok(Promoted::CaughtUp {
            demoted_peer,
            waited,
        }) => {
            let how = if demoted_peer {
                "demoted the peer, "
            } else {
                ""
            };
            println!(
                "{}: {how}caught up with the demotion in {:.1} s, promoted",
                cmd.spec,
                waited.as_secs_f64()
            );
        }
        Ok(Promoted::AlreadyPrimary) => {
            println!(
                "{}: already primary here, and the peer is not: nothing to do",
                cmd.spec
            );
        }
        Ok(Promoted::Forced { peer }) => println!(
            "{}: promoted by force with {peer} unreachable: the writes {peer} acknowledged \
             after this copy's last replayed entry are not here; once {peer} is back, demote \
             and resync its image there (`rbd mirror image resync`)",
            cmd.spec
        ),
        Err(e) => {
            eprintln!("rbd-relay promote {}: {e}", cmd.spec);
            std::process::exit(e.exit_code());
        }
    }
    Ok(())
}

/// Our entry in Ceph's service map status, in rbd-mirror's shape: a `json` key holding
/// `{"<pool id>": {"instance_id": "<our global id>", "leader": true}}`. `rbd mirror pool
/// status` reports "daemon health: ERROR" for a pool nobody reports, and `--verbose` maps
/// each image status (written by our client) to "service: <id> on <host>" through
/// `instance_id`. Pools come and go without a notification, so the list is re-read at
/// the pool refresh interval; the status is sent only when it changed.
async fn publish_service_status(
    rados: LibradosCluster,
    instance: String,
    every: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut published = String::new();
    loop {
        match rados.pool_list().await {
            Ok(pools) => {
                let body: serde_json::Map<String, serde_json::Value> = pools
                    .iter()
                    .map(|(id, name)| {
                        let entry = serde_json::json!({
                            "name": name, "instance_id": instance, "leader": true,
                        });
                        (id.to_string(), entry)
                    })
                    .collect();
                let json = serde_json::Value::Object(body).to_string();
                if json != published {
                    match rados
                        .service_update_status(vec![("json".into(), json.clone())])
                        .await
                    {
                        Ok(()) => published = json,
                        Err(e) => tracing::warn!(%e, "updating the service map status"),
                    }
                }
            }
            Err(e) => tracing::warn!(%e, "listing pools for the service map status"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn status_json(registry: &rbd_relay::mirror::Registry) -> serde_json::Value {
    let images: Vec<serde_json::Value> = registry
        .snapshot()
        .into_iter()
        .map(|(k, v)| {
            serde_json::json!({ "pool": k.pool, "namespace": k.namespace,
            "global_id": k.global_id, "image": v })
        })
        .collect();
    serde_json::json!({ "images": images })
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
        "{:<12} {:<24} {:<16} {:>10} {:>10} {:>9}  description",
        "pool", "image", "state", "entries", "behind", "lag s"
    );
    for i in v["images"].as_array().into_iter().flatten() {
        let img = &i["image"];
        println!(
            "{:<12} {:<24} {:<16} {:>10} {:>10} {:>9.3}  {}",
            i["pool"].as_str().unwrap_or(""),
            img["name"].as_str().unwrap_or(""),
            img["state"].as_str().unwrap_or(""),
            img["entries_replayed"],
            img["entries_behind"],
            img["lag_seconds"].as_f64().unwrap_or(0.0),
            img["description"].as_str().unwrap_or(""),
        );
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
