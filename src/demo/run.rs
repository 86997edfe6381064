//! `rbd-relay demo`: the embedded default. A primary workload on site-a (writes, discards,
//! write-same, resize, snapshots, image-meta) through the journal, the real daemon code on
//! site-b replicating, a live line of progress, and at the end a byte-for-byte check.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::primary::{Op, PrimaryImage};
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
        crate::metrics::install(addr)?;
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
        let mut img =
            PrimaryImage::create(io_a.clone(), &format!("demo-{n}"), &global, 64 << 20, 22).await?;
        // Data that predates mirroring: the daemon must sync it, not replay it.
        for i in 0..8u64 {
            img.write(i * (4 << 20), Bytes::from(vec![n as u8 + 1; 64 << 10]))
                .await?;
        }
        img.flush().await?;
        notify_image_updated(&io_a, img.image.id(), &global, MirrorImageState::Enabled).await?;
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
        step(img, &mut rng, &mut snaps).await?;
        ops += 1;
        if last_line.elapsed() >= Duration::from_secs(1) {
            last_line = Instant::now();
            print_line(&registry, ops, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for img in &mut images {
        img.flush().await?;
    }
    println!("workload done ({ops} ops); waiting for site-b to catch up");
    let b = sites.site_b.connect();
    let io_b = b.ioctx(POOL).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut all_equal = true;
    for img in &images {
        let primary = Image::open(io_a.clone(), img.image.id()).await?;
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

/// One random primary operation, mostly 4 KiB writes.
async fn step<I: crate::rados::IoCtx>(
    img: &mut PrimaryImage<I>,
    rng: &mut impl Rng,
    snaps: &mut u32,
) -> anyhow::Result<()> {
    let size = img.image.size();
    let block = 4096u64;
    let offset = rng.random_range(0..size / block) * block;
    match rng.random_range(0..1000) {
        0..900 => {
            let byte: u8 = rng.random();
            img.write(offset, Bytes::from(vec![byte; block as usize]))
                .await?;
        }
        900..940 => img.flush().await?,
        940..960 => img.discard(offset, (4 << 20).min(size - offset)).await?,
        960..975 => img.write_zeroes(offset, block).await?,
        975..990 => {
            let pattern = Bytes::from(vec![rng.random::<u8>(); 512]);
            img.write_same(offset, 8 * 512, pattern).await?;
        }
        990..994 => {
            *snaps += 1;
            img.op(Op::SnapCreate(format!("snap-{snaps}"))).await?;
        }
        994..996 if *snaps > 0 => {
            let name = format!("snap-{snaps}");
            if img
                .image
                .snapshot_by_name(&name, &crate::format::image::SnapshotNamespace::User)
                .is_some()
            {
                img.op(Op::SnapRemove(name)).await?;
            }
        }
        996..998 => {
            let grow = rng.random_bool(0.5);
            let new = if grow {
                size + (4 << 20)
            } else {
                (size - (4 << 20)).max(16 << 20)
            };
            img.op(Op::Resize(new)).await?;
        }
        _ => {
            let n: u8 = rng.random();
            img.op(Op::MetadataSet(
                format!("key-{}", n % 4),
                format!("value-{n}"),
            ))
            .await?;
        }
    }
    Ok(())
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
