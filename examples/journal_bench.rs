//! Journal follower benchmarks (numbers, never pass/fail):
//! 1. latency: isolated appends (a gap before each) by a writer that commits and notifies
//!    like librbd; time from the append to the follower delivering the entry, probe off;
//! 2. backlog: a journal of 4 KiB writes read from the start by a fresh follower, MB/s;
//! 3. idle: what the follower does for `--idle-secs` with nothing written (probes).
//!
//!   cargo run --release --example journal_bench                       # embedded backend
//!   cargo run --release --example journal_bench -- --conf site-a.conf # real Ceph, pool rbd

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rbd_relay::format::UTime;
use rbd_relay::format::event::{Event, EventEntry};
use rbd_relay::journal::follower::{Follower, FollowerConfig, FollowerStats, PrefetchBudget};
use rbd_relay::journal::position::CommitPosition;
use rbd_relay::journal::writer::JournalWriter;
use rbd_relay::rados::librados::{ConnectConfig, LibradosCluster};
use rbd_relay::rados::memory::MemoryCluster;
use rbd_relay::rados::{IoCtx, Rados};

struct Args {
    conf: Option<String>,
    samples: usize,
    backlog: usize,
    idle_secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        conf: None,
        samples: 200,
        backlog: 20_000,
        idle_secs: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag value");
        match flag.as_str() {
            "--conf" => a.conf = Some(value()),
            "--samples" => a.samples = value().parse().expect("number"),
            "--backlog" => a.backlog = value().parse().expect("number"),
            "--idle-secs" => a.idle_secs = value().parse().expect("number"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn write_4k(i: u64) -> EventEntry {
    EventEntry {
        event: Event::AioWrite {
            offset: i * 4096,
            length: 4096,
            data: Bytes::from(vec![i as u8; 4096]),
        },
        timestamp: UTime::new(1, 0),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn follower<I: IoCtx>(
    io: &I,
    id: &str,
    config: FollowerConfig,
) -> (Follower<I>, Arc<FollowerStats>) {
    let stats = Arc::new(FollowerStats::default());
    let f = Follower::open(
        io.clone(),
        id,
        "bench",
        Bytes::new(),
        config,
        PrefetchBudget::new(1 << 30),
        stats.clone(),
    )
    .await
    .unwrap();
    (f, stats)
}

async fn run<I: IoCtx>(io: I, a: &Args, backend: &str) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    // 1. Latency, notifications only.
    let id = format!("benchlat{}", &tag[..8]);
    let mut w = JournalWriter::create(io.clone(), &id, 24, 4, "")
        .await
        .unwrap();
    let (mut f, _) = follower(
        &io,
        &id,
        FollowerConfig {
            probe_ceiling: None,
            ..Default::default()
        },
    )
    .await;
    let mut committed = CommitPosition::new(4, &Default::default());
    let mut lat = Vec::with_capacity(a.samples);
    for i in 0..a.samples as u64 {
        tokio::time::sleep(Duration::from_millis(3)).await;
        let start = Instant::now();
        committed.advance(w.append(&write_4k(i)).await.unwrap());
        // librbd commits the write's position once applied, and that update notifies.
        let commit = w.commit(committed.position());
        let deliver = async {
            let batch = f.next().await.unwrap();
            let at = start.elapsed();
            for (e, p) in batch {
                f.ack(&e, p).await.unwrap();
            }
            at
        };
        let (c, at) = tokio::join!(commit, deliver);
        c.unwrap();
        lat.push(at);
    }
    lat.sort();
    println!(
        "{backend} latency (append -> delivered, {} samples): p50 {:?} p90 {:?} p99 {:?} max {:?}",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    // 3. Idle cost with the default probe.
    let (mut idle, stats) = follower(&io, &id, FollowerConfig::default()).await;
    // Drain what it finds (it starts from an empty position), then nothing more comes.
    while let Ok(batch) = tokio::time::timeout(Duration::from_millis(500), idle.next()).await {
        for (e, p) in batch.unwrap() {
            idle.ack(&e, p).await.unwrap();
        }
    }
    stats.probes.store(0, Ordering::Relaxed);
    stats.notifications.store(0, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(a.idle_secs), idle.next()).await;
    println!(
        "{backend} idle {} s: {} probes, {} notifications",
        a.idle_secs,
        stats.probes.load(Ordering::Relaxed),
        stats.notifications.load(Ordering::Relaxed)
    );
    // 2. Backlog read.
    let id = format!("benchlog{}", &tag[..8]);
    let mut w = JournalWriter::create(io.clone(), &id, 24, 4, "")
        .await
        .unwrap();
    for i in 0..a.backlog as u64 {
        w.append(&write_4k(i)).await.unwrap();
    }
    let (mut f, _) = follower(
        &io,
        &id,
        FollowerConfig {
            probe_ceiling: None,
            ..Default::default()
        },
    )
    .await;
    let start = Instant::now();
    let (mut n, mut bytes) = (0usize, 0usize);
    while n < a.backlog {
        for (e, p) in f.next().await.unwrap() {
            n += 1;
            bytes += e.data.len();
            f.ack(&e, p).await.unwrap();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{backend} backlog: {n} entries, {:.1} MB in {secs:.2} s = {:.0} MB/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    match &a.conf {
        None => {
            let cluster = MemoryCluster::default();
            cluster.create_pool("rbd").unwrap();
            run(cluster.connect().ioctx("rbd").await.unwrap(), &a, "memory").await;
        }
        Some(conf) => {
            let c = LibradosCluster::connect(ConnectConfig::from_conf(conf))
                .await
                .unwrap();
            run(c.ioctx("rbd").await.unwrap(), &a, "ceph").await;
        }
    }
}
