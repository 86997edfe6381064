//! Observability, proven rather than written: the alert rules pass `promtool check rules`
//! and their unit tests (grafana/alerts_test.yml); the demo's `/metrics` passes
//! `promtool check metrics` and carries the key series with sane values; every metric the
//! dashboards and alert rules name is exported; and a real Prometheus scraping the demo
//! evaluates every dashboard query (each must return data) and every alert rule (each
//! must be healthy); and an image made to fall behind raises the lag alert. promtool and prometheus come with Debian's `prometheus` package; a
//! missing one fails these tests unless RBD_RELAY_SKIP_PROMTOOL=1 (the test command never
//! sets it).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rbd_relay::config::Settings;
use rbd_relay::demo::primary::PrimaryImage;
use rbd_relay::demo::{POOL, TwoSites, notify_image_updated};
use rbd_relay::format::mirror::{MirrorImageState, MirrorMode};
use rbd_relay::mirror::{self, Env};
use rbd_relay::rados::faults::{Faults, FaultyRados, OpFault};
use rbd_relay::rados::{Errno, Rados, RadosOp};
use rbd_relay::rbd::Image;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[allow(dead_code)] // the faulty peer connector only
mod sites;

use sites::FaultyPeer;

/// A Prometheus-suite tool, or `None` (loudly) when the opt-out is set.
fn tool(name: &str) -> Option<PathBuf> {
    if std::env::var_os("RBD_RELAY_SKIP_PROMTOOL").is_some() {
        eprintln!("SKIPPED: RBD_RELAY_SKIP_PROMTOOL is set, {name} not run");
        return None;
    }
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    Some(found.unwrap_or_else(|| {
        panic!("{name} not found: install Debian's `prometheus` package (or set RBD_RELAY_SKIP_PROMTOOL=1)")
    }))
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The body of a 200 answer to `GET path`, or `None` (not listening yet, other status).
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// Polls `f` until it yields, or panics with `what` after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Values of the samples of `name` whose label set contains every `labels` pair.
fn samples(scrape: &str, name: &str, labels: &[&str]) -> Vec<f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split(['{', ' ']).next() == Some(name)
                && labels.iter().all(|want| series.contains(want))
        })
        .filter_map(|(_, v)| v.parse().ok())
        .collect()
}

/// `rbd_relay_*` metric names in a text, histogram series folded into their metric.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("rbd_relay_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_string());
        rest = &tail[end..];
    }
    names
}

/// Every panel and variable query of every dashboard, as (dashboard file, what, expr).
fn dashboard_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(repo().join("grafana"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "three dashboards: {files:?}");
    for file in files {
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let vars = board["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter()
                .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            "{}: no prometheus datasource variable",
            file.display()
        );
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        // A variable's `label_values(SERIES, LABEL)` lists what `count by (LABEL) (SERIES)` does.
        for v in vars.iter().filter(|v| v["type"] == "query") {
            let def = v["definition"].as_str().unwrap();
            let (series, label) = def
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .and_then(|d| d.rsplit_once(','))
                .unwrap_or_else(|| panic!("{name}: variable query {def}"));
            let expr = format!("count by ({}) ({series})", label.trim());
            out.push((name.clone(), format!("variable {}", v["name"]), expr));
        }
        for panel in board["panels"].as_array().unwrap() {
            assert_eq!(panel["datasource"]["uid"], "${datasource}");
            for t in panel["targets"].as_array().unwrap() {
                out.push((
                    name.clone(),
                    panel["title"].as_str().unwrap().to_string(),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

/// Every alert rule's expression (alerts.yml keeps each on one line).
fn alert_exprs() -> Vec<String> {
    let rules = std::fs::read_to_string(repo().join("grafana/alerts.yml")).unwrap();
    let exprs: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect();
    assert_eq!(exprs.len(), rules.matches("- alert:").count());
    exprs
}

/// A dashboard query as Grafana would send it: template variables filled in.
fn as_sent(expr: &str) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("$rpo_seconds", "30")
        .replace("$pool", ".*")
        .replace("$namespace", ".*")
        .replace("$image", ".*")
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query's answer: `Err(error)` when Prometheus rejects it, else the results.
fn query(port: u16, expr: &str) -> Result<Vec<Value>, String> {
    let body = http_get(port, &format!("/api/v1/query?query={}", url_encode(expr)))
        .ok_or_else(|| "rejected (bad query or Prometheus down)".to_string())?;
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(v["error"].to_string());
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// `Some(())` once an instant query returns data.
fn has_data(port: u16, expr: &str) -> Option<()> {
    query(port, expr).ok().filter(|r| !r.is_empty()).map(drop)
}

/// A real Prometheus on loopback in a temporary directory, scraping one target every
/// second as job `rbd-relay` and evaluating `rules` (alerts.yml text) every second.
struct Prometheus {
    port: u16,
    _process: Killed,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, target_port: u16, rules: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules_file = dir.path().join("alerts.yml");
        std::fs::write(&rules_file, rules).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 rule_files: [{rules_file:?}]\n\
                 scrape_configs:\n  - job_name: rbd-relay\n    \
                 static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let data = dir.path().join("data");
        let process = Killed(
            Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        Prometheus {
            port,
            _process: process,
            _dir: dir,
        }
    }
}

/// `rbd-relay demo` serving metrics on `port`, once both its images replay, with that
/// scrape.
fn demo_replaying(port: u16) -> (Killed, String) {
    let mut demo = Killed(
        Command::new(env!("CARGO_BIN_EXE_rbd-relay"))
            .args(["demo", "--seconds", "120", "--images", "2"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = wait_for(
        "both demo images replaying",
        Duration::from_secs(90),
        || {
            if let Some(status) = demo.0.try_wait().unwrap() {
                return Some(Err(status));
            }
            let s = http_get(port, "/metrics")?;
            let replaying = samples(&s, "rbd_relay_images", &[r#"state="replaying""#]);
            let bytes: f64 = samples(&s, "rbd_relay_image_replayed_bytes_total", &[])
                .iter()
                .sum();
            (replaying == [2.0] && bytes > 0.0).then_some(Ok(s))
        },
    );
    match ready {
        Ok(scrape) => (demo, scrape),
        Err(status) => panic!("the demo exited early ({status})"),
    }
}

#[test]
fn alert_rules_pass_promtool_checks_and_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    for args in [
        ["check", "rules", "grafana/alerts.yml"],
        ["test", "rules", "grafana/alerts_test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn demo_metrics_feed_every_dashboard_and_alert_under_a_real_prometheus() {
    let (Some(promtool), Some(prometheus)) = (tool("promtool"), tool("prometheus")) else {
        return;
    };
    let port = free_port();
    let (_demo, scrape) = demo_replaying(port);
    for image in ["demo-0", "demo-1"] {
        let label = format!(r#"image="{image}""#);
        let lag = samples(&scrape, "rbd_relay_image_replay_lag_seconds", &[&label]);
        assert!(
            lag.len() == 1 && (0.0..60.0).contains(&lag[0]),
            "{image} lag {lag:?}"
        );
        let state = samples(
            &scrape,
            "rbd_relay_image_state",
            &[&label, r#"state="replaying""#],
        );
        assert_eq!(state, [1.0], "{image} one-hot state");
    }
    assert_eq!(
        samples(&scrape, "rbd_relay_build_info", &[]),
        [1.0],
        "build info"
    );
    assert!(scrape.contains("# TYPE rbd_relay_replay_latency_seconds histogram"));
    // Every call is counted, failed ones included: more reads than failed reads.
    let reads = samples(&scrape, "rbd_relay_rados_ops_total", &[r#"op="read""#]);
    let failed: f64 = samples(&scrape, "rbd_relay_rados_errors_total", &[r#"op="read""#])
        .iter()
        .sum();
    assert!(
        reads.len() == 1 && reads[0] > failed,
        "reads {reads:?}, failed {failed}"
    );
    for image in ["demo-0", "demo-1"] {
        let label = format!(r#"image="{image}""#);
        let behind = samples(&scrape, "rbd_relay_image_bytes_behind", &[&label]);
        assert!(
            behind.len() == 1 && behind[0] >= 0.0,
            "{image} bytes behind {behind:?}"
        );
    }

    // promtool's lint: no problem at all.
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );

    // Every metric a dashboard or rule names is exported. Image errors by reason appear
    // with the first failure (an open set of reasons; the demo has none), and every query
    // of it reads `or vector(0)`.
    let mut exported = metric_names(&scrape);
    exported.insert("rbd_relay_image_errors_total".into());
    let queries = dashboard_queries();
    let rules = alert_exprs();
    let named = queries
        .iter()
        .map(|(_, _, e)| e)
        .chain(&rules)
        .flat_map(|e| metric_names(e));
    let missing: BTreeSet<String> = named.filter(|n| !exported.contains(n)).collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");

    // A real Prometheus scraping the demo every second, with the alert rules loaded.
    let alerts = std::fs::read_to_string(repo().join("grafana/alerts.yml")).unwrap();
    let prom = Prometheus::start(&prometheus, port, &alerts);
    let prom_port = prom.port;
    wait_for("15 scrapes of the demo", Duration::from_secs(60), || {
        has_data(prom_port, "count_over_time(rbd_relay_build_info[1m]) >= 15")
    });

    // Sampled every second, so the watches of the first scrape may not show there: the
    // cluster watcher's queue, and the watches' (several, 256 slots each).
    let later = http_get(port, "/metrics").unwrap();
    let slots = |queue: &str| {
        let label = format!(r#"queue="{queue}""#);
        samples(&later, "rbd_relay_queue_capacity", &[&label])
    };
    assert_eq!(slots("pool_events"), [64.0], "pool events queue");
    let watch = slots("watch");
    assert!(
        watch
            .first()
            .is_some_and(|n| *n >= 512.0 && n % 256.0 == 0.0),
        "watch queues {watch:?}"
    );

    let mut failures = Vec::new();
    for (board, title, expr) in &queries {
        match query(prom_port, &as_sent(expr)) {
            Ok(r) if r.is_empty() => failures.push(format!("{board} / {title}: no data: {expr}")),
            Ok(_) => {}
            Err(e) => failures.push(format!("{board} / {title}: {e}: {expr}")),
        }
    }
    for expr in &rules {
        if let Err(e) = query(prom_port, expr) {
            failures.push(format!("alert rule: {e}: {expr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Prometheus itself evaluated every rule, and none failed.
    let groups = wait_for("every rule evaluated", Duration::from_secs(30), || {
        let v: Value = serde_json::from_str(&http_get(prom_port, "/api/v1/rules")?).ok()?;
        let rules = v["data"]["groups"][0]["rules"].as_array()?.clone();
        rules
            .iter()
            .all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            })
            .then_some(rules)
    });
    assert_eq!(groups.len(), rules.len());
    for r in &groups {
        assert_eq!(r["health"], "ok", "rule {}: {}", r["name"], r["lastError"]);
    }
    // The demo is healthy: the daemon is up, so the "no daemon" alert stays quiet.
    let down = groups.iter().find(|r| r["name"] == "RbdRelayDown").unwrap();
    assert_eq!(down["state"], "inactive");
}

/// The lag alert, through a real Prometheus: one image whose local writes keep failing
/// falls behind, its lag grows though no batch completes, the rule goes pending for it
/// (with the RPO budget scaled from 30 s to 2 s so the test is quick; the promtool unit
/// tests cover the real threshold and `for`), never for the healthy image, and clears once
/// the image is healed and caught up. The daemon runs in this process (metrics installed
/// here), its sites behind a fault plan.
#[test]
fn a_stuck_image_raises_its_lag_alert_and_only_its_own() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let faults = Faults::new(7);
    let cancel = CancellationToken::new();
    let (sites, images) = rt.block_on(async {
        rbd_relay::metrics::install(Some(([127, 0, 0, 1], port).into())).unwrap();
        let sites = TwoSites::new(MirrorMode::Pool).await.unwrap();
        let connector = FaultyPeer {
            inner: sites.connector.clone(),
            faults: faults.clone(),
        };
        let local = FaultyRados::new(sites.site_b.connect(), faults.clone());
        let env = Env::new(local, connector, Settings::default());
        tokio::spawn(mirror::run(env, cancel.clone()));
        let a = sites.site_a.connect();
        let io = a.ioctx(POOL).await.unwrap();
        let mut images = Vec::new();
        for name in ["stuck", "fine"] {
            let global = uuid::Uuid::new_v4().to_string();
            let img = PrimaryImage::create(
                &a,
                a.ioctx(POOL).await.unwrap(),
                name,
                &global,
                16 << 20,
                22,
            )
            .await
            .unwrap();
            notify_image_updated(&io, img.id(), &global, MirrorImageState::Enabled)
                .await
                .unwrap();
            images.push(img);
        }
        (sites, images)
    });
    // The primary keeps writing both images, flushing (committing) every 16 writes.
    let writing = cancel.clone();
    rt.spawn(async move {
        let mut images = images;
        for n in 0u64.. {
            if writing.is_cancelled() {
                break;
            }
            for img in &mut images {
                let data = Bytes::from(vec![n as u8; 4096]);
                let mut w = img.writer().await;
                w.write((n % 1024) * 4096, data).await.unwrap();
                if n % 16 == 15 {
                    w.flush().await.unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    let alerts = std::fs::read_to_string(repo().join("grafana/alerts.yml")).unwrap();
    let scaled = alerts.replace(
        "rbd_relay_image_replay_lag_seconds > 30",
        "rbd_relay_image_replay_lag_seconds > 2",
    );
    assert_ne!(scaled, alerts, "the lag rule moved");
    let prom = Prometheus::start(&prometheus, port, &scaled);
    wait_for("both images replaying", Duration::from_secs(60), || {
        has_data(
            prom.port,
            r#"sum(rbd_relay_images{state="replaying"}) == 2"#,
        )
    });

    // Every write to the stuck image's local data objects now fails (transiently).
    let object_prefix = rt.block_on(async {
        let io = sites.site_b.connect().ioctx(POOL).await.unwrap();
        let image = Image::open_by_name(io, "stuck").await.unwrap();
        image.object_prefix().to_string()
    });
    faults.fail(OpFault {
        op: RadosOp::Write,
        object_prefix,
        errno: Errno::EAGAIN,
        skip: 0,
        times: u32::MAX,
    });
    let pending = r#"ALERTS{alertname="RbdRelayImageLagAboveRpo",alertstate="pending"}"#;
    let alerting = wait_for("the lag alert pending", Duration::from_secs(60), || {
        query(prom.port, pending).ok().filter(|r| !r.is_empty())
    });
    let images: Vec<&str> = alerting
        .iter()
        .map(|a| a["metric"]["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, ["stuck"], "only the stuck image alerts");
    assert!(
        has_data(
            prom.port,
            r#"sum(rbd_relay_image_errors_total{image="stuck"}) > 0"#
        )
        .is_some(),
        "its failures are counted"
    );

    // Healed, it catches up and the alert clears.
    faults.clear();
    wait_for("the lag alert cleared", Duration::from_secs(90), || {
        let r = query(prom.port, r#"ALERTS{image="stuck"}"#).ok()?;
        let lag = r#"rbd_relay_image_replay_lag_seconds{image="stuck"} < 1"#;
        (r.is_empty() && has_data(prom.port, lag).is_some()).then_some(())
    });
    cancel.cancel();
    rt.shutdown_timeout(Duration::from_secs(5));
}
