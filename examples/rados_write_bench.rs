//! Small-write throughput of the librados backend against `rados bench` on the same pool:
//! each op writes a new object of `--size` bytes, `--qd` ops in flight, for `--seconds`
//! (what `rados bench -p POOL SECS write -b SIZE -t QD` does). Runs ours, then rados
//! bench, then ours again (drift check), cleaning up after each run.
//!
//!   cargo run --release --example rados_write_bench -- --conf /tmp/lab/site-a/ceph.conf

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use rbd_relay::rados::librados::{ConnectConfig, LibradosCluster, LibradosIoCtx};
use rbd_relay::rados::{IoCtx, Rados, WriteOp};

#[derive(Parser)]
struct Args {
    /// ceph.conf of the cluster (default: the lab's site-a).
    #[arg(long)]
    conf: Option<String>,
    #[arg(long, default_value = "rbd")]
    pool: String,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 32)]
    qd: usize,
    #[arg(long, default_value_t = 4096)]
    size: usize,
}

struct Run {
    ops: u64,
    elapsed: Duration,
    mean_latency: Duration,
}

impl Run {
    fn iops(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

async fn ours(io: &LibradosIoCtx, a: &Args, tag: &str) -> anyhow::Result<Run> {
    let data = Bytes::from(vec![0x5a; a.size]);
    let (ops, lat_us) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.seconds);
    let mut workers = Vec::new();
    for w in 0..a.qd {
        let (io, data, ops, lat_us, tag) = (
            io.clone(),
            data.clone(),
            ops.clone(),
            lat_us.clone(),
            tag.to_string(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                io.operate_write(
                    &format!("{tag}.{w}.{i}"),
                    WriteOp::new().write_full(data.clone()),
                )
                .await?;
                lat_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                ops.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(i)
        }));
    }
    let mut written = Vec::new();
    for (w, h) in workers.into_iter().enumerate() {
        written.push((w, h.await??));
    }
    let elapsed = start.elapsed();
    let ops = ops.load(Ordering::Relaxed);
    let mean_latency = Duration::from_micros(lat_us.load(Ordering::Relaxed) / ops.max(1));
    // Cleanup, 64 removals in flight.
    let names = written
        .into_iter()
        .flat_map(|(w, n)| (0..n).map(move |i| format!("{tag}.{w}.{i}")));
    futures::stream::iter(names)
        .for_each_concurrent(64, |oid| {
            let io = io.clone();
            async move {
                io.remove(&oid)
                    .await
                    .unwrap_or_else(|e| eprintln!("cleanup: {e}"))
            }
        })
        .await;
    Ok(Run {
        ops,
        elapsed,
        mean_latency,
    })
}

fn rados_bench(conf: &str, a: &Args) -> anyhow::Result<f64> {
    let out = Command::new("rados")
        .args([
            "-c",
            conf,
            "bench",
            "-p",
            &a.pool,
            &a.seconds.to_string(),
            "write",
        ])
        .args([
            "-b",
            &a.size.to_string(),
            "-t",
            &a.qd.to_string(),
            "--no-cleanup",
        ])
        .output()
        .context("running rados bench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let cleanup = Command::new("rados")
        .args(["-c", conf, "-p", &a.pool, "cleanup"])
        .output()?;
    if !out.status.success() || !cleanup.status.success() {
        bail!(
            "rados bench failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = text
        .lines()
        .find(|l| l.starts_with("Average IOPS:"))
        .context("no 'Average IOPS' line")?;
    for l in text.lines().filter(|l| {
        l.starts_with("Average IOPS")
            || l.starts_with("Average Latency")
            || l.starts_with("Total writes")
    }) {
        println!("  rados bench | {l}");
    }
    Ok(line.trim_start_matches("Average IOPS:").trim().parse()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let conf = a.conf.clone().unwrap_or_else(|| {
        let dir =
            std::env::var("RBD_RELAY_LAB_DIR").unwrap_or_else(|_| "/tmp/rbd-relay-lab".into());
        format!("{dir}/site-a/ceph.conf")
    });
    let cluster = LibradosCluster::connect(ConnectConfig::from_conf(&conf)).await?;
    let io = cluster.ioctx(&a.pool).await?;
    println!(
        "{}s of {}-byte object writes at queue depth {} on pool {}",
        a.seconds, a.size, a.qd, a.pool
    );

    let first = ours(&io, &a, "relay_bench.1").await?;
    println!(
        "  rbd-relay   | {} ops, {:.0} IOPS, mean latency {:?}",
        first.ops,
        first.iops(),
        first.mean_latency
    );
    let rados = rados_bench(&conf, &a)?;
    let second = ours(&io, &a, "relay_bench.2").await?;
    println!(
        "  rbd-relay   | {} ops, {:.0} IOPS, mean latency {:?} (second run)",
        second.ops,
        second.iops(),
        second.mean_latency
    );
    let mean = (first.iops() + second.iops()) / 2.0;
    println!(
        "rbd-relay {mean:.0} IOPS (mean of two runs) vs rados bench {rados:.0} IOPS: {:.1}%",
        100.0 * mean / rados
    );
    Ok(())
}
