//! 4 KiB random writes through `rbd::Image::apply` against `rbd bench` on the same pool:
//! ours on a fresh non-primary image (exclusive-lock, object-map, fast-diff, journaling;
//! the replica's data path never writes the journal), `--qd` writers each applying one
//! write at a time (queue depth 32, like `rbd bench --io-threads 32`), `--writes` writes
//! at random 4 KiB-aligned offsets of an `--size` image; then `rbd bench --io-type write
//! --io-pattern rand` with the same size, threads and total on a plain image (the pool's
//! default features, no journaling: what a non-mirrored client gets), twice: with
//! `--rbd_cache=false`, where like ours each write completes once it is durable, and with
//! the default cache, whose `writearound` policy completes a write as soon as it is sent
//! (up to `rbd_cache_max_dirty`, 24 MiB: far more than 32 writes in flight at the OSD).
//! Prints the IOPS and the ratios; the images are removed afterwards.
//!
//!   cargo run --release --example rbd_write_bench -- --conf $RBD_RELAY_SITE_A_CONF

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use rand::{RngExt, SeedableRng};
use rbd_relay::rados::Rados;
use rbd_relay::rados::librados::{ConnectConfig, LibradosCluster};
use rbd_relay::rbd::{Image, IoOp, NonPrimarySpec, create_non_primary, remove_image};

#[derive(Parser)]
struct Args {
    /// ceph.conf of the cluster (default: the lab's site-a).
    #[arg(long)]
    conf: Option<String>,
    #[arg(long, default_value = "rbd")]
    pool: String,
    /// Image size in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    #[arg(long, default_value_t = 20_000)]
    writes: u64,
    #[arg(long, default_value_t = 32)]
    qd: u64,
}

const IO_SIZE: u64 = 4096;
/// layering, exclusive-lock, object-map, fast-diff, deep-flatten, journaling.
const FEATURES: u64 = 125;

fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

async fn ours(conf: &str, a: &Args) -> anyhow::Result<f64> {
    let cluster = LibradosCluster::connect(ConnectConfig::from_conf(conf)).await?;
    let io = cluster.ioctx(&a.pool).await?;
    let spec = NonPrimarySpec {
        name: format!("relay-bench-{}", suffix()),
        global_image_id: uuid::Uuid::new_v4().to_string(),
        size: a.size_mib << 20,
        order: 22,
        features: FEATURES,
        stripe_unit: 0,
        stripe_count: 0,
        journal_order: 24,
        journal_splay_width: 4,
        primary_mirror_uuid: uuid::Uuid::new_v4().to_string(),
        data_pool: None,
        parent: None,
    };
    let id = create_non_primary(&io, &spec).await?;
    let mut image = Image::open(io.clone(), &id).await?;
    image.acquire_lock().await?;
    let image = Arc::new(image);
    let blocks = spec.size / IO_SIZE;
    let data = Bytes::from(vec![0x5a; IO_SIZE as usize]);
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..a.qd {
        // Writer w does writes w, w + qd, …: the total is exactly `writes`.
        let count = (a.writes + a.qd - 1 - w) / a.qd;
        let (image, data) = (image.clone(), data.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w);
            for _ in 0..count {
                let offset = rng.random_range(0..blocks) * IO_SIZE;
                let op = IoOp::Write {
                    offset,
                    data: data.clone(),
                };
                image.apply(&[op], 1).await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let iops = a.writes as f64 / start.elapsed().as_secs_f64();
    let mut image = Arc::into_inner(image).context("writers still hold the image")?;
    image.release_lock().await?;
    remove_image(&io, &id).await?;
    Ok(iops)
}

fn rbd(conf: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("rbd")
        .args(["-c", conf])
        .args(args)
        .output()
        .context("running rbd")?;
    if !out.status.success() {
        bail!("rbd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rbd_bench(conf: &str, a: &Args, cache: bool) -> anyhow::Result<f64> {
    let spec = format!("{}/rbd-bench-{}", a.pool, suffix());
    let cache = format!("--rbd_cache={cache}");
    rbd(
        conf,
        &["create", "--size", &format!("{}M", a.size_mib), &spec],
    )?;
    let total = (a.writes * IO_SIZE).to_string();
    let threads = a.qd.to_string();
    let out = rbd(
        conf,
        &[
            "bench",
            "--io-type",
            "write",
            "--io-size",
            "4K",
            "--io-threads",
            &threads,
            "--io-pattern",
            "rand",
            "--io-total",
            &total,
            &cache,
            &spec,
        ],
    );
    rbd(conf, &["rm", "--no-progress", &spec])?;
    let out = out?;
    // The summary: "elapsed: 5   ops: 20000   ops/sec: 3861.2   bytes/sec: …".
    let summary = out
        .lines()
        .find(|l| l.trim_start().starts_with("elapsed:"))
        .with_context(|| format!("no summary line in rbd bench output:\n{out}"))?;
    println!("  rbd bench {cache} | {}", summary.trim());
    let fields: Vec<&str> = summary.split_whitespace().collect();
    let at = fields
        .iter()
        .position(|f| *f == "ops/sec:")
        .context("no ops/sec")?;
    Ok(fields[at + 1].parse()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let conf = a.conf.clone().unwrap_or_else(|| {
        let dir =
            std::env::var("RBD_RELAY_LAB_DIR").unwrap_or_else(|_| "/tmp/rbd-relay-lab".into());
        format!("{dir}/site-a/ceph.conf")
    });
    println!(
        "{} random 4 KiB writes at queue depth {} on a {} MiB image, pool {}",
        a.writes, a.qd, a.size_mib, a.pool
    );
    let relay = ours(&conf, &a).await?;
    println!("  rbd-relay | {relay:.0} IOPS (Image::apply)");
    let uncached = rbd_bench(&conf, &a, false)?;
    let cached = rbd_bench(&conf, &a, true)?;
    println!(
        "rbd-relay {relay:.0} IOPS vs rbd bench {uncached:.0} IOPS without cache: {:.1}%, \
         {cached:.0} IOPS with the writearound cache: {:.1}%",
        100.0 * relay / uncached,
        100.0 * relay / cached
    );
    Ok(())
}
