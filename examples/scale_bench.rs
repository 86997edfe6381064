//! Scale on the embedded backend (the bench issue's scenario 6; numbers, never pass/fail):
//! N small mirrored images on site-a, the real daemon code on site-b.
//! 1. start-up: from the daemon's start until every image is replaying;
//! 2. memory: the process's RSS growth over that start-up, per image (the sites' own
//!    objects are made before, so this is the daemon's per-image cost plus the copies'
//!    few objects);
//! 3. lag with 1% of the images busy: a 4 KiB write + flush (the commit notifies, as
//!    librbd's does) on a busy image, then polling site-b's copy until it reads back;
//!    the others stay idle.
//!
//!   cargo run --release --example scale_bench -- [--images 1000] [--samples 300]

use std::time::{Duration, Instant};

use bytes::Bytes;
use rbd_relay::config::Settings;
use rbd_relay::demo::primary::PrimaryImage;
use rbd_relay::demo::{POOL, TwoSites, notify_image_updated};
use rbd_relay::format::mirror::{MirrorImageState, MirrorMode};
use rbd_relay::mirror::registry::ReplayState;
use rbd_relay::mirror::{self, Env};
use rbd_relay::rados::Rados;
use rbd_relay::rbd::Image;
use tokio_util::sync::CancellationToken;

const BLOCK: usize = 4096;

struct Args {
    images: usize,
    samples: usize,
}

fn args() -> Args {
    let mut a = Args {
        images: 1000,
        samples: 300,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag value").parse().expect("a number");
        match flag.as_str() {
            "--images" => a.images = value(),
            "--samples" => a.samples = value(),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = args();
    let sites = TwoSites::new(MirrorMode::Image).await?;
    let a = sites.site_a.connect();
    let io_a = a.ioctx(POOL).await?;
    let mut images = Vec::with_capacity(args.images);
    for n in 0..args.images {
        let global = uuid::Uuid::new_v4().to_string();
        let name = format!("scale-{n:04}");
        let img = PrimaryImage::create(&a, io_a.clone(), &name, &global, 4 << 20, 22).await?;
        img.writer()
            .await
            .write(0, Bytes::from(vec![1u8; BLOCK]))
            .await?;
        img.writer().await.flush().await?;
        notify_image_updated(&io_a, img.id(), &global, MirrorImageState::Enabled).await?;
        images.push((name, img));
    }
    let rss_before = rss_kib();

    let env = Env::new(
        sites.site_b.connect(),
        sites.connector.clone(),
        Settings::default(),
    );
    let registry = env.registry.clone();
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(mirror::run(env, cancel.clone()));
    let started = Instant::now();
    loop {
        let replaying = registry
            .snapshot()
            .iter()
            .filter(|(_, v)| v.state == ReplayState::Replaying)
            .count();
        if replaying == args.images {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {replaying} of {} replaying after 10 min",
            args.images
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let startup = started.elapsed();
    let rss_after = rss_kib();

    let io_b = sites.site_b.connect().ioctx(POOL).await?;
    let busy = (args.images / 100).max(1);
    let mut copies = Vec::with_capacity(busy);
    for (name, _) in &images[..busy] {
        copies.push(Image::open_by_name(io_b.clone(), name).await?);
    }
    let mut lags = Vec::with_capacity(args.samples);
    for s in 0..args.samples {
        let k = s % busy;
        let data = Bytes::from(vec![(s % 250) as u8 + 2; BLOCK]);
        let offset = ((s / busy) % 1000 * BLOCK) as u64;
        let t0 = Instant::now();
        {
            let mut w = images[k].1.writer().await;
            w.write(offset, data.clone()).await?;
            w.flush().await?;
        }
        while copies[k].read(offset, BLOCK as u64, None).await? != data {
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "sample {s} never arrived"
            );
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        lags.push(t0.elapsed());
    }
    lags.sort();
    cancel.cancel();
    let _ = daemon.await;

    let per_image = rss_after.saturating_sub(rss_before) as f64 / args.images as f64;
    println!("scale_bench: {} images, {busy} busy (1%)", args.images);
    println!(
        "  start-up until all replaying: {:.2} s",
        startup.as_secs_f64()
    );
    println!(
        "  RSS: {:.1} MiB before the daemon, {:.1} MiB with every image replaying: {per_image:.1} KiB per image",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  write + flush on a busy image → readable on site-b, {} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lags.len(),
        ms(percentile(&lags, 0.5)),
        ms(percentile(&lags, 0.99)),
        ms(lags[lags.len() - 1])
    );
    Ok(())
}
