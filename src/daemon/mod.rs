//! `rbd-relay run`: the process contract of a Ceph daemon, so rbd-relay drops into
//! rbd-mirror's place under systemd, cephadm or a script unchanged.
//!
//! ```text
//!  OPTIONS   CEPH_ARGS + command line (wins) ──► cluster, name, conf file (search path)
//!            ──► [global] < [client] < [client.<id>] < CEPH_ARGS < command line
//!            ──► rbd_mirror_* onto Settings; every other option accepted, logged at debug
//!  PRIVILEGES --setuser/--setgroup (as root only)
//!  DAEMONIZE  (default; -f / -d / --daemonize=false stay in the foreground) fork before
//!             any thread; the parent waits for READY or a failure and exits with it
//!  LOG        log file (SIGHUP reopens it) | stderr;  PID FILE (locked, removed at exit)
//!  START      runtime; metrics recorder; connect; service map; admin socket ──► READY
//!  RUN        until SIGTERM / SIGINT ──► replayers stop (commit, unlock) within 30 s
//! ```
//! Errors before READY reach the terminal (through the parent when daemonized) and exit 1.

mod asok;
mod ffi;
mod log;
mod perf;
mod process;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::ceph_conf::args::{self, Args};
use crate::ceph_conf::options::CephOptions;
use crate::ceph_conf::{LibradosConnector, local_connect_config};
use crate::config::{CephOption, Settings};
use crate::rados::Rados;
use crate::rados::librados::LibradosCluster;

/// How long replayers get to stop (commit, release locks) after SIGTERM.
const GRACE: Duration = Duration::from_secs(30);

/// Our own options (not Ceph's): the TOML settings file and the metrics endpoint.
const OURS: &[&str] = &["config", "metrics_addr"];

const USAGE: &str = "\
usage: rbd-relay run [options...]
  --cluster NAME          cluster name (default ceph): finds $cluster.conf on the search
                          path ($CEPH_CONF, /etc/ceph, ~/.ceph, .)
  -c, --conf FILE         the conf file instead
  -i, --id ID | -n, --name client.ID   who we are (default client.admin)
  -k, --keyring FILE      -m, --mon-host ADDRS
  -f, --foreground        stay in the foreground (-d: also log to stderr only)
  --daemonize=true|false  fork into the background (the default)
  --setuser USER --setgroup GROUP   drop privileges (when started as root)
  --admin-socket PATH     --pid-file PATH    --log-file PATH    --run-dir DIR
  --rbd-mirror-journal-poll-age SECS, --rbd-mirror-pool-replayers-refresh-interval SECS,
  --rbd-mirror-image-state-check-interval SECS, --rbd-mirror-delete-retry-interval SECS,
  --rbd-mirroring-delete-delay SECS
  --config FILE           rbd-relay's own settings (TOML)
  --metrics-addr ADDR     Prometheus endpoint
Any other Ceph option (--name value or --name=value) is accepted and ignored; options
also come from CEPH_ARGS and the conf file's [global], [client] and [client.ID] sections.
";

/// Everything decided before forking.
struct Plan {
    opts: CephOptions,
    settings: Settings,
    /// Options that mean nothing here, logged once logging works.
    ignored: Vec<(String, String)>,
}

/// Runs the daemon with `words` (the arguments after `run`); returns the exit status.
pub fn main(words: Vec<String>) -> ExitCode {
    let plan = match plan(&words) {
        Ok(Some(plan)) => plan,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rbd-relay: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = process::drop_privileges(&plan.opts) {
        eprintln!("rbd-relay: dropping privileges: {e}");
        return ExitCode::FAILURE;
    }
    let daemonize = plan.opts.flag("daemonize");
    let mut readiness = if daemonize {
        match process::daemonize() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("rbd-relay: daemonizing: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        process::Readiness::foreground()
    };
    let log_file = (!plan.opts.flag("log_to_stderr"))
        .then(|| plan.opts.path("log_file"))
        .flatten();
    let (log, log_error) = log::init(log_file.as_deref(), !daemonize);
    if let Some(why) = log_error {
        tracing::warn!("{why}; logging to stderr");
    }
    for (name, value) in &plan.ignored {
        tracing::debug!(option = %name, %value, "Ceph option without a meaning here; ignored");
    }
    let result = started(&plan, &mut readiness, log);
    // The log (and in the foreground its stderr copy of errors) or the waiting parent
    // shows why.
    if let Err(e) = &result {
        tracing::error!("{e:#}");
        readiness.failed(&format!("{e:#}"));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Parses and resolves every option; `None` for `--help` / `--version`.
fn plan(words: &[String]) -> anyhow::Result<Option<Plan>> {
    let env = match std::env::var("CEPH_ARGS") {
        Ok(v) => args::parse(&args::split_env(&v)).context("CEPH_ARGS")?,
        Err(_) => Args::default(),
    };
    let argv = args::parse(words)?;
    if argv.help {
        print!("{USAGE}");
        return Ok(None);
    }
    if argv.version {
        println!("rbd-relay {}", env!("CARGO_PKG_VERSION"));
        return Ok(None);
    }
    let opts = CephOptions::resolve(&env, &argv)?;
    let mut settings = match opts.path("config") {
        Some(p) => Settings::load(&p)?,
        None => Settings::default(),
    };
    if let Some(addr) = opts.get("metrics_addr") {
        settings.metrics_addr = Some(
            addr.parse()
                .with_context(|| format!("--metrics-addr {addr}"))?,
        );
    }
    let mut ignored = Vec::new();
    for (name, _) in opts.others() {
        let value = opts.get(name).unwrap_or_default();
        match CephOption::find(name) {
            Some(option) => option.apply(&mut settings, &value)?,
            None if OURS.contains(&name) => {}
            None => ignored.push((name.to_string(), value)),
        }
    }
    Ok(Some(Plan {
        opts,
        settings,
        ignored,
    }))
}

/// Pid file, runtime and the daemon itself, in the process that stays.
fn started(
    plan: &Plan,
    readiness: &mut process::Readiness,
    log: log::LogFile,
) -> anyhow::Result<()> {
    let _pid_file = match plan.opts.path("pid_file") {
        Some(p) => Some(
            process::PidFile::create(&p).with_context(|| format!("pid file {}", p.display()))?,
        ),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(run(plan, readiness, log));
    // Replayers have stopped (or the grace ran out): nothing left is worth waiting for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run(
    plan: &Plan,
    readiness: &mut process::Readiness,
    log: log::LogFile,
) -> anyhow::Result<()> {
    let opts = &plan.opts;
    for file in crate::ceph_conf::secrets::world_readable(opts) {
        tracing::warn!(file = %file.display(),
            "this file holds a cephx key and every local user can read it (chmod o-r)");
    }
    let settings = plan.settings.clone();
    let metrics = crate::metrics::install(settings.metrics_addr).context("installing metrics")?;
    let mut env =
        crate::mirror::Env::new(connect(opts).await?, LibradosConnector, settings.clone());
    let cancel = CancellationToken::new();
    let config = asok::Config {
        options: opts.clone(),
        settings: settings.clone(),
        live: env.live.clone(),
    };
    let commands = asok::commands(config, env.registry.clone(), metrics);
    serve_admin_socket(opts.path("admin_socket"), commands, &cancel).await;
    watch_signals(cancel.clone(), log)?;
    readiness.ready();
    let every = Duration::from_millis(settings.pools.refresh_interval_ms);
    loop {
        let round = cancel.child_token();
        let instance = service::register(&env.local, opts.id())
            .await
            .context("registering in the service map")?;
        // ha-check maps blocklist entries to daemons through `addr`.
        tracing::info!(cluster = %opts.cluster, client = %opts.name, %instance,
            addr = %env.local.client_addr(), conf = ?opts.conf_file, "rbd-relay running");
        tokio::spawn(service::publish_status(
            env.local.clone(),
            env.registry.clone(),
            instance,
            every,
            round.clone(),
        ));
        let registry = env.registry.clone();
        let daemon = crate::mirror::run(env.clone(), round.clone());
        tokio::pin!(daemon);
        let grace_over = async {
            cancel.cancelled().await;
            tokio::time::sleep(GRACE).await;
        };
        tokio::select! {
            _ = &mut daemon => {
                tracing::info!("stopped cleanly");
                return Ok(());
            }
            _ = registry.fenced() => {}
            _ = grace_over => return gave_up(),
        }
        round.cancel();
        tokio::select! {
            _ = &mut daemon => {}
            _ = tokio::time::sleep(GRACE) => return gave_up(),
        }
        if cancel.is_cancelled() {
            tracing::info!("stopped cleanly");
            return Ok(());
        }
        // Another instance blocklisted this client (it looked dead: a freeze, a partition)
        // and took its images. The client can never write again; a new one can, and
        // joins as a new instance, as upstream restarts a blocklisted pool replayer.
        tracing::warn!("this client was blocklisted; reconnecting as a new client");
        env = env.reconnected(connect(opts).await?);
    }
}

/// Replayers still busy after the grace: nothing left is worth waiting for.
fn gave_up() -> anyhow::Result<()> {
    tracing::error!("replayers did not stop within {GRACE:?}; exiting");
    Ok(())
}

/// The daemon's client of the local cluster.
async fn connect(opts: &CephOptions) -> anyhow::Result<LibradosCluster> {
    LibradosCluster::connect(local_connect_config(opts))
        .await
        .with_context(|| format!("connecting to cluster {} as {}", opts.cluster, opts.name))
}

/// A socket that cannot be bound is logged, not fatal, as with Ceph's daemons.
async fn serve_admin_socket(
    path: Option<PathBuf>,
    commands: crate::admin_socket::Commands,
    cancel: &CancellationToken,
) {
    let Some(path) = path else {
        return tracing::info!("no admin socket (admin_socket is empty)");
    };
    match crate::admin_socket::bind(&path).await {
        Ok(listener) => {
            tracing::info!(path = %path.display(), "admin socket");
            tokio::spawn(crate::admin_socket::serve(
                listener,
                path,
                commands,
                cancel.clone(),
            ));
        }
        Err(e) => tracing::error!(path = %path.display(), %e, "admin socket not available"),
    }
}

/// SIGTERM and SIGINT stop the daemon; SIGHUP reopens the log file.
fn watch_signals(cancel: CancellationToken, log: log::LogFile) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let log = Arc::new(log);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reopening the log file");
                    log.reopen();
                }
            }
        }
        tracing::info!("stopping: finishing applies, committing, releasing locks");
        cancel.cancel();
    });
    Ok(())
}
