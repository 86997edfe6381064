//! `rbd-relay demo`: the embedded default. A primary workload on site-a (writes, discards,
//! write-same, resize, snapshots, image-meta) through the journal, the real daemon code on
//! site-b replicating, a live line of progress, and at the end a byte-for-byte check.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::primary::PrimaryImage;
use super::{POOL, TwoSites, compare, notify_image_updated};
use crate::config::Settings;
use crate::format::mirror::{MirrorImageState, MirrorMode};
use crate::mirror::{self, Env};
use crate::rados::Rados;
use crate::rbd::Image;

pub struct DemoArgs {
    pub seconds: u64,
    pub images: usize,
    pub metrics_addr: Option<SocketAddr>,
    pub seed: u64,
}

/// Runs the demo; `Ok(false)` when the sites ended up different.
pub async fn run(args: DemoArgs) -> anyhow::Result<bool> {
    if let Some(addr) = args.metrics_addr {
        crate::metrics::install(Some(addr))?;
    }
    let sites = TwoSites::new(MirrorMode::Pool).await?;
    let settings = Settings {
        metrics_addr: args.metrics_addr,
        ..Settings::default()
    };
    let env = Env::new(sites.site_b.connect(), sites.connector.clone(), settings);
    let registry = env.registry.clone();
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(mirror::run(env, cancel.clone()));

    let a = sites.site_a.connect();
    let io_a = a.ioctx(POOL).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut images = Vec::new();
    for n in 0..args.images {
        let global = uuid::Uuid::new_v4().to_string();
        let img = PrimaryImage::create(
            &a,
            a.ioctx(POOL).await?,
            &format!("demo-{n}"),
            &global,
            64 << 20,
            22,
        )
        .await?;
        // Data that predates mirroring: the daemon must sync it, not replay it.
        for i in 0..8u64 {
            img.writer()
                .await
                .write(i * (4 << 20), Bytes::from(vec![n as u8 + 1; 64 << 10]))
                .await?;
        }
        img.writer().await.flush().await?;
        notify_image_updated(&io_a, img.id(), &global, MirrorImageState::Enabled).await?;
        images.push(img);
    }
    println!(
        "demo: {} image(s) on site-a, daemon on site-b, {} s of workload",
        args.images, args.seconds
    );
    let start = Instant::now();
    let mut ops = 0u64;
    let mut last_line = Instant::now();
    let mut snaps = 0u32;
    while start.elapsed() < Duration::from_secs(args.seconds) {
        let img = &mut images[rng.random_range(0..args.images)];
        img.writer().await.random_op(&mut rng, &mut snaps).await?;
        ops += 1;
        if last_line.elapsed() >= Duration::from_secs(1) {
            last_line = Instant::now();
            print_line(&registry, ops, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for img in &mut images {
        img.writer().await.flush().await?;
    }
    println!("workload done ({ops} ops); waiting for site-b to catch up");
    let b = sites.site_b.connect();
    let io_b = b.ioctx(POOL).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut all_equal = true;
    for img in &images {
        let primary = Image::open(io_a.clone(), img.id()).await?;
        let verdict = loop {
            let verdict = match Image::open_by_name(io_b.clone(), primary.name()).await {
                Ok(replica) => compare(&primary, &replica).await?,
                Err(e) => Err(e.to_string()),
            };
            if verdict.is_ok() || Instant::now() > deadline {
                break verdict;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        match verdict {
            Ok(()) => println!(
                "{}: site-a == site-b (image and every snapshot)",
                primary.name()
            ),
            Err(why) => {
                all_equal = false;
                println!("{}: DIFFERENT: {why}", primary.name());
            }
        }
    }
    print_line(&registry, ops, start.elapsed());
    cancel.cancel();
    let _ = daemon.await;
    Ok(all_equal)
}

fn print_line(registry: &crate::mirror::Registry, ops: u64, elapsed: Duration) {
    for (_, v) in registry.snapshot() {
        println!(
            "[{:>5.1}s] primary ops {ops:>7} | {} {:<10} replayed {:>7} entries {:>9} B | lag {:.3} s | sync {:>3.0}%",
            elapsed.as_secs_f64(),
            v.name,
            v.state.as_str(),
            v.entries_replayed,
            v.bytes_replayed,
            v.lag_seconds,
            v.sync_fraction * 100.0
        );
    }
}
