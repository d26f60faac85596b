//! GPU/CPU sampling end to end: the real daemon samples a remote node (a real OpenSSH server
//! whose sessions see a fake 2-GPU nvidia-smi with one busy GPU) and the local node every
//! 10 s; the rows land in SQLite, aligned to the interval; killing the node's sshd makes
//! exactly one `node.monitor_disconnected` event however many samples fail, while the local
//! node goes on being sampled; bringing it back makes one `node.monitor_reconnected`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use ugro_core::event::EventKind;
use ugro_testkit::gpu::{
    BUSY_GPU_UTILIZATION, FakeApp, FakeGpu, install_fake_nvidia_smi_with_apps,
};
use ugro_testkit::sshd::{Sshd, SshdOptions};
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

const INTERVAL_MS: i64 = 10_000;

/// Read-only access to the daemon's database while it runs (WAL: readers never block it).
struct Db {
    rt: tokio::runtime::Runtime,
    pool: SqlitePool,
}

impl Db {
    fn open(path: &Path) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pool = rt
            .block_on(
                SqlitePoolOptions::new().max_connections(1).connect_with(
                    SqliteConnectOptions::new()
                        .filename(path)
                        .read_only(true)
                        .busy_timeout(Duration::from_secs(5)),
                ),
            )
            .unwrap();
        Self { rt, pool }
    }

    /// `(at_ms, gpu, util_pct, processes)` of every GPU row of `node`, oldest first.
    fn gpu_rows(&self, node: &str) -> Vec<(i64, i64, f64, Option<i64>)> {
        self.rt
            .block_on(
                sqlx::query(
                    "SELECT g.at_ms, g.gpu, g.util_pct, g.processes FROM gpu_samples g \
                     JOIN sample_nodes n ON n.id = g.node_id WHERE n.name = ? \
                     ORDER BY g.at_ms, g.gpu",
                )
                .bind(node)
                .fetch_all(&self.pool),
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    }

    /// `(at_ms, cpu_pct, cores, mem_avail_bytes, mem_total_bytes)` of every node row of `node`.
    fn node_rows(&self, node: &str) -> Vec<(i64, Option<f64>, i64, i64, i64)> {
        self.rt
            .block_on(
                sqlx::query(
                    "SELECT s.at_ms, s.cpu_pct, s.cores, s.mem_avail_bytes, s.mem_total_bytes \
                     FROM node_samples s JOIN sample_nodes n ON n.id = s.node_id \
                     WHERE n.name = ? ORDER BY s.at_ms",
                )
                .bind(node)
                .fetch_all(&self.pool),
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    }
}

fn events(d: &Daemon, kind: &str) -> Vec<Value> {
    d.ctl_json(&["events", "--kind", kind, "--subject", "gpu1"])["events"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn remote_and_local_nodes_sampled_and_one_event_per_outage() {
    let bin = tempfile::tempdir().unwrap();
    let apps = [FakeApp {
        gpu: 1,
        pid: 4242,
        process_name: "/usr/bin/python3".into(),
        used_memory_mib: Some(30000),
    }];
    install_fake_nvidia_smi_with_apps(bin.path(), FakeGpu::Healthy { count: 2 }, &apps);
    let mut sshd = Sshd::start_with(SshdOptions {
        path_prepend: Some(bin.path().to_path_buf()),
        ..Default::default()
    });
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "[health]\ninterval = \"5s\"\nmin_interval = \"5s\"\nmax_interval = \"5s\"\nprobe_timeout = \"3s\"\n\n\
             [summary]\nmetrics_interval = \"10s\"\n\n\
             [[nodes]]\nname = \"gpu1\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\ngpus = 2\n\n\
             [[nodes]]\nname = \"here\"\nhost = \"local\"\n",
            sshd.port(),
            sshd.user(),
            sshd.client_key().display(),
            sshd.known_hosts().display()
        ),
        ..Default::default()
    });
    let db = Db::open(&d.state_dir.join("ugro.db"));

    // Two samples of each node (≈ 2 intervals; the first waits for the next 10 s tick).
    let rows = wait_for("two samples of gpu1", Duration::from_secs(40), || {
        let rows = db.node_rows("gpu1");
        (rows.len() >= 2).then_some(rows)
    });
    let gpus = db.gpu_rows("gpu1");
    let (t0, t1) = (rows[0].0, rows[1].0);
    assert_eq!(t0 % INTERVAL_MS, 0, "ticks are aligned to the interval");
    assert_eq!(t1 - t0, INTERVAL_MS, "one sample per interval: {rows:?}");
    assert_eq!(
        rows[0].1, None,
        "no CPU figure from a single /proc/stat reading"
    );
    assert!(
        rows[1].1.is_some_and(|c| (0.0..=100.0).contains(&c)),
        "{rows:?}"
    );
    assert!(
        rows[1].2 >= 1 && rows[1].4 > 0 && rows[1].3 <= rows[1].4,
        "{rows:?}"
    );
    let at_t1: Vec<_> = gpus.iter().filter(|g| g.0 == t1).collect();
    assert_eq!(at_t1.len(), 2, "both GPUs of the round: {gpus:?}");
    assert_eq!((at_t1[0].2, at_t1[0].3), (0.0, Some(0)), "GPU 0 idle");
    assert_eq!(
        (at_t1[1].2, at_t1[1].3),
        (f64::from(BUSY_GPU_UTILIZATION), Some(1)),
        "GPU 1 busy with one process"
    );
    let here = db.node_rows("here");
    assert!(!here.is_empty(), "the local node is sampled too");
    assert!(
        db.gpu_rows("here").is_empty(),
        "no NVML and no nvidia-smi here: no GPU rows, and not an outage"
    );
    assert!(events(&d, EventKind::NodeMonitorDisconnected.as_str()).is_empty());

    // The node goes down for several intervals: one critical event, not one per sample.
    sshd.stop();
    let ev = wait_for(
        EventKind::NodeMonitorDisconnected.as_str(),
        Duration::from_secs(30),
        || {
            let ev = events(&d, EventKind::NodeMonitorDisconnected.as_str());
            (!ev.is_empty()).then_some(ev)
        },
    );
    assert_eq!(ev[0]["severity"], "critical");
    let msg = ev[0]["message"].as_str().unwrap();
    assert!(msg.starts_with("monitor disconnected from gpu1: "), "{msg}");
    assert!(
        msg.contains(&format!("127.0.0.1:{}", sshd.port())) && !msg.contains("backoff"),
        "the reason is the connection error itself: {msg}"
    );
    let down_rows = db.node_rows("gpu1").len();
    let here_before = db.node_rows("here").len();
    std::thread::sleep(Duration::from_secs(32));
    assert_eq!(
        events(&d, EventKind::NodeMonitorDisconnected.as_str()).len(),
        1,
        "one event per outage"
    );
    assert_eq!(db.node_rows("gpu1").len(), down_rows, "no rows while down");
    assert!(
        db.node_rows("here").len() >= here_before + 2,
        "the local node is sampled on while gpu1 is down"
    );
    assert!(events(&d, EventKind::NodeMonitorReconnected.as_str()).is_empty());

    // Back: one reconnection event with the outage's length, and samples again. (A check
    // now reconnects at once instead of after the session's backoff.)
    sshd.restart();
    let _ = d.ctl(&["check", "gpu1"]);
    let ev = wait_for(
        EventKind::NodeMonitorReconnected.as_str(),
        Duration::from_secs(40),
        || {
            let ev = events(&d, EventKind::NodeMonitorReconnected.as_str());
            (!ev.is_empty()).then_some(ev)
        },
    );
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["severity"], "info");
    let msg = ev[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("monitor reconnected to gpu1 after ")
            && msg.contains("s (disconnected since "),
        "{msg}"
    );
    assert!(db.node_rows("gpu1").len() > down_rows);
    assert_eq!(
        events(&d, EventKind::NodeMonitorDisconnected.as_str()).len(),
        1
    );
    let log = d.log();
    assert!(!log.contains("could not store the samples"), "{log}");
}
