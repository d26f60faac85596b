//! Sampler benchmark (run by hand; the lead records the results in docs/benchmarks.md):
//! 1. one sample of a remote node over a warm SSH session (the daemon's code path: one exec of
//!    the sample command, parse) — wall time and this process's CPU per sample;
//! 2. one sample of the local node (/proc, NVML or nvidia-smi) — wall and CPU per sample;
//! 3. the real daemon sampling 20 remote nodes every 10 s — its CPU per node per sample;
//! 4. the store: 30 days of 5-minute samples of 20 nodes × 8 GPUs (≈ 1.4 M GPU rows) — insert
//!    time, database size per row, and `samples_between` for one day and for the 30 days.
//!
//! The remote node is a real OpenSSH server on 127.0.0.1 whose sessions see an 8-GPU
//! nvidia-smi stand-in (a shell script: its cost is the remote host's, not the daemon's).
//!
//!   cargo build --release --bins && cargo bench -p ugro-monitor --bench sampler [-- store|live]
//!
//! `store` runs part 4 alone, `live` parts 1–3.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use ugro_monitor::config::RemoteHost;
use ugro_monitor::sampler::{sample_local, sample_remote};
use ugro_monitor::ssh::NodeSession;
use ugro_testkit::bench::{SshFleet, cpu_ticks, median, ticks_per_sec};
use ugro_testkit::gpu::{FakeGpu, install_fake_nvidia_smi};
use ugro_testkit::sshd::{Sshd, SshdOptions};
use ugro_testkit::{Daemon, DaemonOptions};

const RUNS: usize = 300;
const LOCAL_RUNS: usize = 2000;
const DAEMON_NODES: usize = 20;

/// user + system CPU time of this process (clock-tick resolution: many runs are averaged).
fn self_cpu() -> Duration {
    Duration::from_secs_f64(cpu_ticks(std::process::id() as i32) as f64 / ticks_per_sec())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let only = |part: &str| {
        !args.iter().any(|a| a == "store" || a == "live") || args.iter().any(|a| a == part)
    };
    if only("live") {
        live();
    }
    if only("store") {
        store();
    }
}

fn store() {
    use ugro_core::sample::{GpuSample, NodeSample};
    use ugro_monitor::store::Store;
    const NODES: u32 = 20;
    const GPUS: u32 = 8;
    const DAYS: i64 = 30;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ugro.db");
    let end = ugro_core::sample::next_tick(Utc::now(), Duration::from_secs(300));
    let start = end - chrono::Duration::days(DAYS);
    let rounds = DAYS * 288;
    rt.block_on(async {
        let s = Store::open(&path).await.unwrap();
        let t = Instant::now();
        // One day per call (the daemon stores one round per call; the lead's summary bench
        // loads in bulk).
        for day in 0..DAYS {
            let mut gpus = Vec::new();
            let mut nodes = Vec::new();
            for k in 0..288 {
                let at = start + chrono::Duration::minutes(5 * (day * 288 + k));
                for n in 0..NODES {
                    let node = format!("gpu{n:02}");
                    for g in 0..GPUS {
                        let u = f64::from((n * 7 + g * 13 + k as u32) % 101);
                        gpus.push(GpuSample {
                            node: node.clone(),
                            at,
                            gpu: g,
                            utilization_pct: u,
                            memory_used_mib: (u as u64) * 800,
                            memory_total_mib: 81920,
                            temperature_c: Some(30.0 + u / 2.0),
                            power_w: Some(60.0 + u * 3.17),
                            processes: Some(u32::from(u > 10.0)),
                        });
                    }
                    nodes.push(NodeSample {
                        node,
                        at,
                        cpu_pct: Some(u_f(k)),
                        load1: 12.04,
                        load5: 9.8,
                        load15: 7.15,
                        cores: 128,
                        memory_available_bytes: 812_345_600 * 1024,
                        memory_total_bytes: 1_056_768_000 * 1024,
                    });
                }
            }
            s.insert_samples(&gpus, &nodes).await.unwrap();
        }
        let took = t.elapsed();
        let (g, n) = s.sample_counts().await.unwrap();
        assert_eq!(g, (rounds * i64::from(NODES * GPUS)) as u64);
        println!(
            "store: {g} GPU rows + {n} node rows ({DAYS} days × {NODES} nodes × {GPUS} GPUs, 5 min) inserted in {:.1} s ({:.1} µs per row)",
            took.as_secs_f64(),
            took.as_secs_f64() * 1e6 / (g + n) as f64
        );
        s.close().await;
    });
    // Store::close checkpoints: the WAL is folded into the main file.
    let size = std::fs::metadata(&path).unwrap().len();
    let rows = rounds as u64 * u64::from(NODES * (GPUS + 1));
    println!(
        "store: database {:.1} MiB = {:.1} bytes per row (GPU and node rows, indexes included)",
        size as f64 / 1048576.0,
        size as f64 / rows as f64
    );
    rt.block_on(async {
        let s = Store::open(&path).await.unwrap();
        for (label, from) in [
            ("last day", end - chrono::Duration::days(1)),
            ("30 days", start),
        ] {
            let mut walls = Vec::new();
            let mut got = 0;
            for _ in 0..3 {
                let t = Instant::now();
                let (g, _) = s.samples_between(from, end).await.unwrap();
                walls.push(ms(t.elapsed()));
                got = g.len();
            }
            println!(
                "store: samples_between({label}): {got} GPU samples in {:.0} ms (median of 3)",
                median(walls)
            );
        }
        let t = Instant::now();
        let pruned = s
            .prune_samples(start + chrono::Duration::days(1))
            .await
            .unwrap();
        println!(
            "store: prune_samples of the oldest day: {pruned} rows in {:.0} ms",
            ms(t.elapsed())
        );
    });
}

fn u_f(k: i64) -> f64 {
    (k % 100) as f64 + 0.5
}

fn live() {
    let bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi(bin.path(), FakeGpu::Healthy { count: 8 });
    let sshd = Sshd::start_with(SshdOptions {
        path_prepend: Some(bin.path().to_path_buf()),
        ..Default::default()
    });
    println!(
        "machine: {} cores; remote node: OpenSSH on 127.0.0.1, fake nvidia-smi with 8 GPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let deadline = Duration::from_secs(30);

    // 1. Remote, warm session.
    let session = NodeSession::new(RemoteHost::loopback(
        sshd.port(),
        sshd.user(),
        sshd.client_key(),
        sshd.known_hosts(),
    ));
    let (walls, cpu) = rt.block_on(async {
        session.ensure_connected(true).await.unwrap();
        let mut prev = None;
        // Warm-up (first exec, caches).
        for _ in 0..3 {
            let s = sample_remote(&session, "gpu1", Utc::now(), prev, deadline)
                .await
                .unwrap();
            prev = Some(s.cpu);
        }
        let mut walls = Vec::new();
        let c0 = self_cpu();
        for _ in 0..RUNS {
            let t = Instant::now();
            let s = sample_remote(&session, "gpu1", Utc::now(), prev, deadline)
                .await
                .unwrap();
            walls.push(ms(t.elapsed()));
            assert_eq!(s.gpus.len(), 8);
            prev = Some(s.cpu);
        }
        (walls, self_cpu() - c0)
    });
    println!(
        "remote sample over a warm session ({RUNS} runs): wall median {:.1} ms (min {:.1}, max {:.1}); daemon-side CPU {:.2} ms per sample",
        median(walls.clone()),
        walls.iter().cloned().fold(f64::MAX, f64::min),
        walls.iter().cloned().fold(0.0, f64::max),
        ms(cpu) / RUNS as f64
    );

    // 2. Local node (no NVML on this machine; nvidia-smi only if on PATH).
    let (walls, cpu, gpus) = rt.block_on(async {
        let mut prev = None;
        let mut gpus = 0;
        for _ in 0..3 {
            let s = sample_local("local", Utc::now(), prev, deadline)
                .await
                .unwrap();
            prev = Some(s.cpu);
        }
        let mut walls = Vec::new();
        let c0 = self_cpu();
        for _ in 0..LOCAL_RUNS {
            let t = Instant::now();
            let s = sample_local("local", Utc::now(), prev, deadline)
                .await
                .unwrap();
            walls.push(ms(t.elapsed()));
            gpus = s.gpus.len();
            prev = Some(s.cpu);
        }
        (walls, self_cpu() - c0, gpus)
    });
    println!(
        "local sample ({LOCAL_RUNS} runs, {gpus} GPUs found): wall median {:.2} ms (max {:.2}); CPU {:.3} ms per sample",
        median(walls.clone()),
        walls.iter().cloned().fold(0.0, f64::max),
        ms(cpu) / LOCAL_RUNS as f64
    );
    rt.block_on(session.disconnect());

    // 3. The daemon: 20 remote nodes (proxies in front of the one sshd) sampled every 10 s.
    // Health sweeps every 5 min: after the first sweep they stay out of the measurement.
    let fleet = SshFleet::start(&sshd, DAEMON_NODES);
    let config = String::from(
        "[health]\ninterval = \"5m\"\nmin_interval = \"5m\"\nmax_interval = \"5m\"\n\n[summary]\nmetrics_interval = \"10s\"\n\n",
    ) + &fleet.nodes_toml(&sshd);
    let d = Daemon::start(&DaemonOptions {
        extra_config: config,
        ..Default::default()
    });
    let pid = d.pid().as_raw();
    let db = d.state_dir.join("ugro.db");
    let count = || -> u64 {
        let out = std::process::Command::new("sqlite3")
            .args([
                "-readonly",
                db.to_str().unwrap(),
                "SELECT count(*) FROM node_samples",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    // Let connections open, the first health sweep and two sampling rounds pass.
    let settle = Instant::now();
    while count() < 2 * DAEMON_NODES as u64 && settle.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let ticks = ticks_per_sec();
    let (c0, n0) = (cpu_ticks(pid), count());
    let window = Duration::from_secs(60);
    std::thread::sleep(window);
    let (c1, n1) = (cpu_ticks(pid), count());
    let samples = n1 - n0;
    let cpu_ms = (c1 - c0) as f64 / ticks * 1000.0;
    println!(
        "daemon, {DAEMON_NODES} remote nodes every 10 s over {}s: {samples} node samples stored; daemon CPU {cpu_ms:.0} ms = {:.2} ms per node per sample ({:.2} % of a core)",
        window.as_secs(),
        cpu_ms / samples.max(1) as f64,
        cpu_ms / ms(window) * 100.0
    );
    drop(d);
}
