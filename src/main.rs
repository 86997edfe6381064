//! The `rbd-relay` command: `run` (the daemon, a Ceph daemon's process contract: see
//! `daemon`), `demo` (the embedded two-site default), `status` (asks a running daemon over
//! its admin socket), `promote` (a failover that proves zero loss), `check-prefix` (a
//! stopped copy against the primary's journal replayed up to its commit position) and
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
    /// On the secondary: demote the peer's image, wait until this copy has replayed
    /// everything up to the demotion, then promote it here.
    ///
    /// Exit status: 0 promoted (or already primary here with the peer not primary);
    /// 3 refused, nothing changed (peer unreachable without --force, histories not linked,
    /// both primary); 4 not caught up within --timeout (or the promotion here failed): the
    /// peer was promoted again, as before; 5 as 4 but promoting the peer again failed, so
    /// no site is primary; 1 other errors; 2 bad arguments.
    Promote(PromoteCmd),
    /// On the secondary, with the image's replayer stopped (`rbd mirror stop POOL/IMAGE` on
    /// the daemon's admin socket): check that the copy equals the primary's state at the
    /// copy's commit position, by replaying the primary's journal from its start up to it
    /// into a reference image on the embedded backend. Needs the hold (`--hold`, right
    /// after the primary was created), which keeps the primary from trimming its journal.
    ///
    /// Exit status: 0 equal (or hold / release done); 4 the copy differs (the first
    /// difference is printed); 3 cannot check (no hold, journal trimmed, copy syncing,
    /// replayer not stopped); 1 other errors; 2 bad arguments.
    CheckPrefix(CheckPrefixCmd),
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

#[derive(clap::Args)]
struct CheckPrefixCmd {
    #[command(flatten)]
    conn: ConnArgs,
    /// POOL/IMAGE
    spec: String,
    /// Register the hold on the primary's journal instead of checking.
    #[arg(long, conflicts_with = "release")]
    hold: bool,
    /// Unregister the hold (the primary trims its journal again) instead of checking.
    #[arg(long)]
    release: bool,
}

/// glibc's malloc raises its mmap threshold to the largest block freed (up to 32 MiB) and
/// keeps freed memory in per-thread arenas, so 1 MiB journal read buffers stayed resident
/// long after use (drain peak RSS 71 MiB; 53 MiB with fixed thresholds, same drain rate).
/// Fixed thresholds return large blocks and arena tops to the kernel on free.
fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}

fn main() -> anyhow::Result<ExitCode> {
    tune_malloc();
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
        Command::Promote(cmd) => promote(cmd).await,
        Command::CheckPrefix(cmd) => check_prefix(cmd).await,
        Command::Probe {
            conf,
            name,
            watch_secs,
        } => probe(conf, name, Duration::from_secs(watch_secs)).await,
    }
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

async fn check_prefix(cmd: CheckPrefixCmd) -> anyhow::Result<()> {
    use rbd_relay::prefix_check::{Action, Done, exit_code, run};
    let Some((pool, image)) = cmd.spec.split_once('/') else {
        anyhow::bail!("expected POOL/IMAGE, got '{}'", cmd.spec);
    };
    let action = match (cmd.hold, cmd.release) {
        (true, _) => Action::Hold,
        (_, true) => Action::Release,
        _ => Action::Check,
    };
    let local = cmd.conn.connect().await?;
    let result = run(&local, pool, image, action).await;
    match &result {
        Ok(Done::Held { start_size }) => println!(
            "{}: hold registered on the primary's journal (start size {start_size} bytes); \
             it keeps the whole journal until `--release`",
            cmd.spec
        ),
        Ok(Done::Released(true)) => println!("{}: hold released", cmd.spec),
        Ok(Done::Released(false)) => println!("{}: there was no hold", cmd.spec),
        Ok(Done::Checked(r)) => {
            let at = format!(
                "tag {} entry {} ({} entries replayed)",
                r.position.tag_tid, r.position.entry_tid, r.entries
            );
            match &r.verdict {
                Ok(()) => println!(
                    "{}: equal to the primary at {at}: size, head and {} snapshots",
                    cmd.spec, r.snapshots
                ),
                Err(why) => println!("{}: DIFFERS from the primary at {at}: {why}", cmd.spec),
            }
        }
        Err(e) => eprintln!("rbd-relay check-prefix {}: {e}", cmd.spec),
    }
    match exit_code(&result) {
        0 => Ok(()),
        code => std::process::exit(code),
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
    for pool in v["pool_replayers"].as_array().into_iter().flatten() {
        let m = &pool["instances"];
        if m.is_null() {
            continue;
        }
        let live: Vec<String> = m["live"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["instance_id"].to_string())
            .collect();
        println!(
            "pool {} peer {}: instance {}{}, live instances {} (leader {}); owns the images below",
            pool["pool"].as_str().unwrap_or(""),
            pool["peer"].as_str().unwrap_or(""),
            m["instance_id"],
            if m["leader"].as_bool() == Some(true) {
                " (leader)"
            } else {
                ""
            },
            live.join(" "),
            m["leader_instance_id"],
        );
    }
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
