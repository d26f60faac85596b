//! Node-health benchmark (run by hand; results go to docs/benchmarks.md):
//! 1. one sweep of 50 nodes (all checks but PyTorch): wall time and daemon CPU, cold (first
//!    sweep, connections opened) and warm (persistent connections);
//! 2. per-check cost over the persistent SSH connection vs a fresh `ssh host cmd` process per
//!    check (the way scripts do it), in the same run.
//!
//! The 50 nodes are 50 loopback endpoints (TCP proxies without delay) in front of one real
//! OpenSSH server whose sessions see an 8-GPU nvidia-smi stand-in.
//!
//!   cargo build --release --bins && cargo bench -p ugro-monitor --bench health

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ugro_monitor::config::RemoteHost;
use ugro_monitor::ssh::{Exec, NodeSession};
use ugro_testkit::bench::{SshFleet, cpu_ticks, median, ticks_per_sec};
use ugro_testkit::gpu::{FakeGpu, install_fake_nvidia_smi};
use ugro_testkit::sshd::{Sshd, SshdOptions};
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

const NODES: usize = 50;

fn main() {
    let bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi(bin.path(), FakeGpu::Healthy { count: 8 });
    let sshd = Sshd::start_with(SshdOptions {
        path_prepend: Some(bin.path().to_path_buf()),
        ..Default::default()
    });
    let fleet = SshFleet::start(&sshd, NODES);
    let nodes = String::from(
        "[health]\ninterval = \"5m\"\nmin_interval = \"5m\"\nmax_interval = \"5m\"\nprobe_timeout = \"15s\"\n\n",
    ) + &fleet.nodes_toml(&sshd);
    let ticks = ticks_per_sec();
    println!(
        "machine: {} cores; {NODES} nodes, each: ssh no-op, 5 latency pings, batched disk/memory/load probe, nvidia-smi (8 GPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1a. Cold: daemon start until every node has been swept once (connections included).
    let t0 = Instant::now();
    let d = Daemon::start(&DaemonOptions {
        extra_config: nodes,
        ..Default::default()
    });
    let pid = d.pid().as_raw();
    wait_for(
        "the first sweep of every node",
        Duration::from_secs(120),
        || {
            let v = d.ctl_report(&["health"]);
            let nodes = v["nodes"].as_array().unwrap();
            nodes
                .iter()
                .all(|n| !n["last_check"].is_null())
                .then_some(())
        },
    );
    let cold = t0.elapsed();
    let cold_cpu = cpu_ticks(pid) as f64 / ticks;
    let v = d.ctl_report(&["health"]);
    let healthy = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == "healthy")
        .count();
    println!(
        "cold: start → all {NODES} swept: {:.0} ms wall; daemon CPU since start {:.0} ms; {healthy}/{NODES} healthy",
        cold.as_secs_f64() * 1000.0,
        cold_cpu * 1000.0
    );

    // 1b. Warm: 5 rounds of "check all 50 now", concurrently, over the persistent connections.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..5 {
        let c0 = cpu_ticks(pid);
        let t = Instant::now();
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..NODES {
                let client = d.client().with_timeout(Duration::from_secs(60));
                set.spawn(async move {
                    client
                        .post::<serde_json::Value>(&format!("/v1/nodes/gpu{i:02}/check"), None)
                        .await
                        .unwrap()
                });
            }
            while let Some(r) = set.join_next().await {
                let n = r.unwrap();
                if n["observed"] != "healthy" {
                    let bad: Vec<String> = n["checks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|c| c["status"] == "fail" || c["status"] == "hung")
                        .map(|c| format!("{}: {}", c["name"], c["message"]))
                        .collect();
                    println!(
                        "  note: {} observed {} ({})",
                        n["name"],
                        n["observed"],
                        bad.join("; ")
                    );
                }
            }
        });
        walls.push(t.elapsed().as_secs_f64() * 1000.0);
        cpus.push((cpu_ticks(pid) - c0) as f64 / ticks * 1000.0);
        std::thread::sleep(Duration::from_millis(300));
    }
    println!(
        "warm sweep of {NODES} nodes (5 rounds): wall median {:.0} ms (min {:.0}, max {:.0}); daemon CPU median {:.0} ms per sweep",
        median(walls.clone()),
        walls.iter().cloned().fold(f64::MAX, f64::min),
        walls.iter().cloned().fold(0.0, f64::max),
        median(cpus)
    );
    let conns: usize = fleet.proxies.iter().map(|p| p.connections()).sum();
    println!("connections held by the daemon: {conns} for {NODES} nodes");
    drop(d);

    // 2. Per-check cost: `true` over one persistent session vs a fresh ssh process.
    let session = NodeSession::new(RemoteHost::loopback(
        sshd.port(),
        sshd.user(),
        sshd.client_key(),
        sshd.known_hosts(),
    ));
    let persistent: Vec<f64> = rt.block_on(async {
        session.ensure_connected(true).await.unwrap();
        let mut v = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            match session.exec("true", Duration::from_secs(10)).await.unwrap() {
                Exec::Done(o) => assert_eq!(o.exit_status, Some(0)),
                Exec::Hung => panic!("hung"),
            }
            v.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        v
    });
    let pings: Vec<f64> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..50 {
            let r = session.ping(1, Duration::from_secs(5)).await.unwrap();
            v.push(r[0].as_secs_f64() * 1000.0);
        }
        v
    });
    let mut fresh = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let out = sshd.ssh_command("true").output().unwrap();
        assert!(out.status.success());
        fresh.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (p, f) = (median(persistent), median(fresh));
    println!(
        "per check `true`: persistent session median {p:.2} ms (200 runs); fresh `ssh host true` median {f:.1} ms (30 runs); ratio {:.0}×",
        f / p
    );
    println!(
        "SSH-level round trip (latency probe, no exec): median {:.3} ms (50 pings)",
        median(pings)
    );
}
