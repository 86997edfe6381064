//! The daemon's admin socket commands: Ceph's `config show|get|set`, `perf dump|schema`,
//! and rbd-mirror's command words `rbd mirror status|start|stop|restart|flush`, bare (the
//! whole daemon), with `<pool> <peer site>` (one pool replayer) and with
//! `<pool>/[<namespace>/]<image>` (one image). The scoped words are listed from the
//! registry at each request, so they exist exactly while their pool or image replayer
//! does: a command for an image that went away is unknown, as with rbd-mirror.

use std::sync::{Arc, Mutex, PoisonError};

use futures::future::{BoxFuture, join_all};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::perf;
use crate::admin_socket::{Arg, AsokError, Commands, Handler, Reply, Scoped, arg};
use crate::ceph_conf::args::normalize;
use crate::ceph_conf::options::CephOptions;
use crate::config::{CEPH_OPTIONS, CephOption, LiveSettings, Settings};
use crate::mirror::image_replayer::Control;
use crate::mirror::instances::Membership;
use crate::mirror::registry::ReplayState;
use crate::mirror::{Held, ImageKey, ImageView, PoolKey, Registry};

const VERBS: [(&str, &str); 5] = [
    ("status", "get status for rbd mirror"),
    ("start", "start rbd mirror"),
    ("stop", "stop rbd mirror"),
    ("restart", "restart rbd mirror"),
    ("flush", "flush rbd mirror"),
];

/// What `config` reads and changes.
pub struct Config {
    pub options: CephOptions,
    pub settings: Settings,
    pub live: Arc<watch::Sender<LiveSettings>>,
}

pub fn commands(config: Config, registry: Arc<Registry>, metrics: PrometheusHandle) -> Commands {
    let mut c = Commands::default();
    let config = Arc::new(Mutex::new(config));
    let var = Arg {
        name: "var",
        required: true,
        many: false,
    };
    let val = Arg {
        name: "val",
        required: true,
        many: true,
    };
    let optional = |name| Arg {
        name,
        required: false,
        many: false,
    };
    let cfg = config.clone();
    c.add(
        "config show",
        &[],
        "dump current config settings",
        ready(move |_| Ok(config_show(&lock(&cfg)))),
    );
    let cfg = config.clone();
    c.add(
        "config get",
        &[var],
        "config get <field>: get the config value",
        ready(move |cmd| {
            let var = normalize(&arg(&cmd, "var").unwrap_or_default());
            let value = config_get(&lock(&cfg), &var).ok_or_else(|| {
                AsokError::not_found(format!("error getting '{var}': no such option"))
            })?;
            Ok(json!({ var: value }))
        }),
    );
    let cfg = config;
    c.add(
        "config set",
        &[var, val],
        "config set <field> <val> [<val> ...]: set a config variable",
        ready(move |cmd| {
            let var = normalize(&arg(&cmd, "var").unwrap_or_default());
            let val = arg(&cmd, "val").unwrap_or_default();
            config_set(&mut lock(&cfg), &var, &val)?;
            Ok(json!({ "success": format!("{var} = '{val}' ") }))
        }),
    );
    let m = metrics.clone();
    c.add(
        "perf dump",
        &[optional("logger"), optional("counter")],
        "dump perfcounters value",
        ready(move |cmd| {
            let (logger, counter) = (arg(&cmd, "logger"), arg(&cmd, "counter"));
            Ok(perf::dump(
                &m.render(),
                logger.as_deref(),
                counter.as_deref(),
            ))
        }),
    );
    c.add(
        "perf schema",
        &[],
        "dump perfcounters schema",
        ready(move |_| Ok(perf::schema(&metrics.render()))),
    );
    let r = registry.clone();
    c.add(
        "rbd mirror leader release",
        &[],
        "release rbd mirror leader",
        ready(move |_| {
            r.release_leadership();
            Ok(json!({}))
        }),
    );
    let mirror = Arc::new(Mirror { registry });
    for (verb, help) in VERBS {
        let m = mirror.clone();
        let handler: Handler = Arc::new(move |_| m.clone().act(verb, Scope::Daemon));
        c.add(
            &format!("rbd mirror {verb}"),
            &[],
            &format!("{help} (every image)"),
            handler,
        );
    }
    c.add_scoped(mirror);
    c
}

fn lock(c: &Mutex<Config>) -> std::sync::MutexGuard<'_, Config> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A handler that answers at once.
fn ready(f: impl Fn(Value) -> Reply + Send + Sync + 'static) -> Handler {
    Arc::new(move |cmd| {
        let reply = f(cmd);
        Box::pin(async move { reply })
    })
}

fn config_show(c: &Config) -> Value {
    let mut all: serde_json::Map<String, Value> = c
        .options
        .entries()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    for o in CEPH_OPTIONS {
        all.insert(o.name.into(), Value::String(o.show(&c.settings)));
    }
    Value::Object(all)
}

fn config_get(c: &Config, var: &str) -> Option<String> {
    match CephOption::find(var) {
        Some(o) => Some(o.show(&c.settings)),
        None => c.options.get(var),
    }
}

/// Only settings read at each use can change; the rest would silently not apply.
fn config_set(c: &mut Config, var: &str, val: &str) -> Result<(), AsokError> {
    let refuse = |why: String| AsokError {
        errno: libc::EPERM,
        message: format!("error setting '{var}' to '{val}': {why}"),
    };
    let Some(option) = CephOption::find(var) else {
        return Err(if c.options.get(var).is_some() {
            refuse("read at start-up only; set it in the conf file and restart".into())
        } else {
            AsokError::not_found(format!("error setting '{var}' to '{val}': no such option"))
        });
    };
    if !option.live {
        let live: Vec<&str> = CEPH_OPTIONS
            .iter()
            .filter(|o| o.live)
            .map(|o| o.name)
            .collect();
        return Err(refuse(format!(
            "read at start-up only (options that change live: {})",
            live.join(", ")
        )));
    }
    option
        .apply(&mut c.settings, val)
        .map_err(|e| AsokError::invalid(e.to_string()))?;
    c.options.set(var, val);
    c.live.send_replace(c.settings.live());
    tracing::info!(option = var, value = val, "config set");
    Ok(())
}

/// What a `rbd mirror` command acts on.
#[derive(Clone)]
enum Scope {
    Daemon,
    Pool(PoolKey),
    Image(ImageKey),
}

struct Mirror {
    registry: Arc<Registry>,
}

/// `pool/image`, or `pool/namespace/image`; the global id until the name is known.
fn spec(key: &ImageKey, view: &ImageView) -> String {
    let name = if view.name.is_empty() {
        &key.global_id
    } else {
        &view.name
    };
    match key.namespace.as_str() {
        "" => format!("{}/{name}", key.pool),
        ns => format!("{}/{ns}/{name}", key.pool),
    }
}

/// rbd-mirror's state words.
fn state_word(state: ReplayState) -> &'static str {
    match state {
        ReplayState::StartingReplay => "Starting",
        ReplayState::Syncing => "Syncing",
        ReplayState::Replaying => "Replaying",
        ReplayState::Stopped => "Stopped",
        ReplayState::Error => "Error",
        ReplayState::Unknown => "Unknown",
    }
}

fn image_status(key: &ImageKey, view: &ImageView) -> Value {
    let updated = view
        .updated
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    json!({
        "name": spec(key, view), "state": state_word(view.state),
        "description": view.description, "global_id": key.global_id, "peer": view.peer,
        "entries_replayed": view.entries_replayed, "bytes_replayed": view.bytes_replayed,
        "entries_behind": view.entries_behind, "lag_seconds": view.lag_seconds,
        "sync_fraction": view.sync_fraction, "last_update": updated,
    })
}

/// Who serves a pool: this instance, the leader, every live instance. The image replayers
/// listed next to it are exactly the images this instance owns.
fn instances_status(m: &Membership) -> Value {
    let live: Vec<Value> = m
        .live
        .iter()
        .map(|i| {
            json!({ "instance_id": i.id, "addr": i.addr, "started": i.started,
                    "declined": i.declined })
        })
        .collect();
    json!({
        "instance_id": m.me, "leader": m.leader() == Some(m.me),
        "leader_instance_id": m.leader(), "live": live, "moves": m.moves,
    })
}

impl Mirror {
    /// The images in `scope`, with their controls.
    fn images(&self, scope: &Scope) -> Vec<(ImageKey, ImageView, Arc<Control>)> {
        self.registry
            .snapshot()
            .into_iter()
            .filter(|(k, v)| match scope {
                Scope::Daemon => true,
                Scope::Pool(p) => k.pool == p.pool && v.peer == p.peer,
                Scope::Image(i) => k == i,
            })
            .filter_map(|(k, v)| {
                let control = self.registry.control(&k)?;
                Some((k, v, control))
            })
            .collect()
    }

    /// Finds the scope a command's words name now.
    fn scope(&self, words: &str) -> Option<Scope> {
        if let Some((pool, peer)) = words.split_once(' ') {
            let key = PoolKey {
                pool: pool.into(),
                peer: peer.into(),
            };
            return self
                .registry
                .pools()
                .contains(&key)
                .then_some(Scope::Pool(key));
        }
        self.registry
            .snapshot()
            .into_iter()
            .find(|(k, v)| spec(k, v) == words && self.registry.control(k).is_some())
            .map(|(k, _)| Scope::Image(k))
    }

    fn act(self: Arc<Self>, verb: &'static str, scope: Scope) -> BoxFuture<'static, Reply> {
        Box::pin(async move {
            let images = self.images(&scope);
            let held = match &scope {
                Scope::Daemon => Some(Held::Daemon),
                Scope::Pool(p) => Some(Held::Pool(p.clone())),
                Scope::Image(_) => None,
            };
            match verb {
                "status" => Ok(self.status(&scope, &images)),
                "stop" => {
                    if let Some(h) = held {
                        self.registry.hold(h, true);
                    }
                    let stops = join_all(images.iter().map(|(_, _, c)| c.stop())).await;
                    stops
                        .into_iter()
                        .collect::<Result<Vec<()>, String>>()
                        .map_err(AsokError::invalid)?;
                    Ok(json!({}))
                }
                "start" | "restart" => {
                    if let Some(h) = held {
                        self.registry.hold(h, false);
                    }
                    for (_, _, c) in &images {
                        if verb == "start" {
                            c.start()
                        } else {
                            c.restart()
                        }
                    }
                    Ok(json!({}))
                }
                _ => {
                    let replaying: Vec<_> = images
                        .iter()
                        .filter(|(_, v, _)| v.state == ReplayState::Replaying)
                        .collect();
                    if let (Scope::Image(_), Some((k, v, _))) = (&scope, images.first())
                        && replaying.is_empty()
                    {
                        return Err(AsokError::invalid(format!(
                            "{} is not replaying ({})",
                            spec(k, v),
                            state_word(v.state)
                        )));
                    }
                    let flushes = join_all(replaying.iter().map(|(_, _, c)| c.flush())).await;
                    flushes
                        .into_iter()
                        .collect::<Result<Vec<()>, String>>()
                        .map_err(AsokError::invalid)?;
                    Ok(json!({}))
                }
            }
        })
    }

    fn status(&self, scope: &Scope, images: &[(ImageKey, ImageView, Arc<Control>)]) -> Value {
        let instances = self.registry.instances();
        let of_pool = |p: &PoolKey| {
            let replayers: Vec<Value> = images
                .iter()
                .filter(|(k, v, _)| k.pool == p.pool && v.peer == p.peer)
                .map(|(k, v, _)| image_status(k, v))
                .collect();
            let members = instances.iter().find(|(pool, _)| *pool == p.pool);
            // This peer's image list, and the local pool's settings.
            let errors: Vec<String> = (self.registry.pool_errors(&p.pool).into_iter())
                .filter(|(k, _)| k.peer == p.peer || k.peer.is_empty())
                .map(|(_, text)| text)
                .collect();
            json!({
                "pool": p.pool, "peer": p.peer, "image_replayers": replayers,
                "instances": members.map(|(_, m)| instances_status(m)),
                "errors": errors,
            })
        };
        match scope {
            Scope::Image(_) => images.first().map_or(
                json!({}),
                |(k, v, _)| json!({ "image_replayer": image_status(k, v) }),
            ),
            Scope::Pool(p) => json!({ "pool_replayer": of_pool(p) }),
            Scope::Daemon => {
                let pools: Vec<Value> = self.registry.pools().iter().map(of_pool).collect();
                json!({ "pool_replayers": pools })
            }
        }
    }
}

impl Scoped for Mirror {
    fn list(&self) -> Vec<(String, String)> {
        let pools = self
            .registry
            .pools()
            .into_iter()
            .map(|p| format!("{} {}", p.pool, p.peer));
        let images = self
            .registry
            .snapshot()
            .into_iter()
            .filter(|(k, _)| self.registry.control(k).is_some())
            .map(|(k, v)| spec(&k, &v));
        pools
            .chain(images)
            .flat_map(|scope| {
                VERBS.iter().map(move |(verb, help)| {
                    (
                        format!("rbd mirror {verb} {scope}"),
                        format!("{help} {scope}"),
                    )
                })
            })
            .collect()
    }

    fn call(&self, prefix: &str, _cmd: Value) -> Option<BoxFuture<'static, Reply>> {
        let rest = prefix.strip_prefix("rbd mirror ")?;
        let (verb, words) = rest.split_once(' ')?;
        let verb = VERBS.iter().find(|(v, _)| *v == verb)?.0;
        let scope = self.scope(words)?;
        let me = Arc::new(Mirror {
            registry: self.registry.clone(),
        });
        Some(me.act(verb, scope))
    }
}
