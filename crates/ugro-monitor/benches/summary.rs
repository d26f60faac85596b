//! Summary benchmark (run by hand; results go to docs/benchmarks.md): making the nightly summary
//! with 2,000 runs (100k epoch rows) and 30 days of 5-minute samples of 20 nodes × 8 GPUs
//! (≈1.4 M GPU rows) in the real SQLite store, and the database's size.
//!
//! Measured: `summary::compose` — everything `ugroctl summary` does but writing the files and
//! queueing the email: the previous snapshot, the window's events and samples, the snapshot of
//! 2,000 runs, ugro-core's build and rendering, the PNG chart, and storing summary + snapshot.
//!
//!   cargo bench -p ugro-monitor --bench summary

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::json;
use ugro_core::event::EventKind;
use ugro_core::health::Severity;
use ugro_core::sample::{GpuSample, NodeSample};
use ugro_monitor::store::{NewEvent, Store};

const NODES: usize = 20;
const GPUS: u32 = 8;
const DAYS: i64 = 30;
const STEP_MIN: i64 = 5;
const RUNS: usize = 2000;
const EPOCHS: u32 = 50;
const EVENTS_PER_DAY: usize = 400;

/// A deterministic pseudo-random number in [0, 1).
fn noise(seed: u64) -> f64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn day_of_samples(day_start: DateTime<Utc>) -> (Vec<GpuSample>, Vec<NodeSample>) {
    let rounds = 24 * 60 / STEP_MIN;
    let mut gpus = Vec::with_capacity(rounds as usize * NODES * GPUS as usize);
    let mut nodes = Vec::with_capacity(rounds as usize * NODES);
    for r in 0..rounds {
        let at = day_start + TimeDelta::minutes(r * STEP_MIN);
        let t = at.timestamp() as u64;
        for n in 0..NODES {
            let node = format!("gpu{n:02}");
            for g in 0..GPUS {
                let base = if (n + g as usize).is_multiple_of(7) {
                    2.0
                } else {
                    70.0
                };
                gpus.push(GpuSample {
                    node: node.clone(),
                    at,
                    gpu: g,
                    utilization_pct: (base + 30.0 * noise(t ^ ((n as u64) << 8) ^ u64::from(g)))
                        .min(100.0),
                    memory_used_mib: 30_000,
                    memory_total_mib: 81_920,
                    temperature_c: Some(65.0),
                    power_w: Some(300.0),
                    processes: Some(1),
                });
            }
            nodes.push(NodeSample {
                node,
                at,
                cpu_pct: Some(40.0 + 40.0 * noise(t ^ n as u64)),
                load1: 20.0,
                load5: 20.0,
                load15: 20.0,
                cores: 64,
                memory_available_bytes: 200 << 30,
                memory_total_bytes: 512 << 30,
            });
        }
    }
    (gpus, nodes)
}

fn run_info(i: usize, now: DateTime<Utc>) -> ugro_monitor::view::RunInfo {
    let status = ["running", "finished", "failed", "stuck", "outdated"][i % 5];
    let done = (i as u32 * 7) % EPOCHS + 1;
    serde_json::from_value(json!({
        "id": format!("group{}/exp{i:04}", i % 40),
        "root": "/data/experiments/logs",
        "work_dir": format!("/data/experiments/logs/group{}/exp{i:04}", i % 40),
        "runner": "trainer",
        "status": status,
        "progress": {
            "completed_epochs": done, "total_epochs": EPOCHS,
            "percentage": f64::from(done) * 100.0 / f64::from(EPOCHS),
            "early_stopped": false, "early_stopped_at_epoch": null,
            "best_score": null, "latest_score": null,
            "rate_per_hour": 2.0, "eta_seconds": 1800 * u64::from(EPOCHS - done)
        },
        "last_log_update": now - TimeDelta::minutes(i as i64 % 600),
        "last_artifact_update": now - TimeDelta::minutes(i as i64 % 600),
        "process": if status == "running" || status == "stuck" {
            json!({"node": format!("gpu{:02}", i % NODES), "pid": 1000 + i, "user": "lab", "cmd": "python train.py", "start_time": now - TimeDelta::days(3)})
        } else { json!(null) },
        "error": if status == "failed" { json!("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB") } else { json!(null) },
        "diagnostic": null
    }))
    .unwrap()
}

fn node_health(n: usize) -> ugro_monitor::view::NodeHealth {
    serde_json::from_value(json!({
        "name": format!("gpu{n:02}"), "host": format!("gpu{n:02}.lab:22"),
        "state": if n == 3 { "unreachable" } else { "healthy" },
        "healthy": n != 3, "observed": "healthy", "score": 100,
        "last_check": null, "next_check": null, "checks": [], "alerts": [],
        "gpus": [], "interval_seconds": 60
    }))
    .unwrap()
}

fn file_size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ugro.db");
    let store = Store::open(&db).await.unwrap();
    let now = Utc::now().duration_trunc(TimeDelta::minutes(5)).unwrap();
    let start = now - TimeDelta::days(DAYS);
    store.begin_session(start, 1, "bench").await.unwrap();

    // --- fill: samples, events, runs with their epochs -----------------------------------------
    let t = Instant::now();
    let mut gpu_rows = 0usize;
    let mut node_rows = 0usize;
    for d in 0..DAYS {
        let (g, n) = day_of_samples(start + TimeDelta::days(d));
        gpu_rows += g.len();
        node_rows += n.len();
        // One round (one interval of every node) per transaction, as the sampler writes them.
        let per_round = NODES * GPUS as usize;
        for (gc, nc) in g.chunks(per_round).zip(n.chunks(NODES)) {
            store.insert_samples(gc, nc).await.unwrap();
        }
    }
    let fill_samples = t.elapsed();
    for d in 0..DAYS {
        for e in 0..EVENTS_PER_DAY {
            let at = start
                + TimeDelta::days(d)
                + TimeDelta::seconds((e as i64) * 86_400 / EVENTS_PER_DAY as i64);
            let (kind, sev) = match e % 4 {
                0 => (EventKind::RunEpochCompleted, Severity::Info),
                1 => (EventKind::RunFailed, Severity::Warning),
                2 => (EventKind::NodeStateChanged, Severity::Warning),
                _ => (EventKind::RunStarted, Severity::Info),
            };
            store
                .record_event(
                    at,
                    &NewEvent::new(
                        kind,
                        format!("group{}/exp{e:04}", e % 40),
                        sev,
                        "synthetic event",
                    ),
                )
                .await
                .unwrap();
        }
    }
    let runs: Vec<ugro_monitor::view::RunInfo> = (0..RUNS).map(|i| run_info(i, now)).collect();
    let epochs: Vec<(String, u32, DateTime<Utc>)> = runs
        .iter()
        .flat_map(|r| {
            let done = r.progress.completed_epochs;
            (0..done).map(move |e| {
                (
                    r.id.clone(),
                    e,
                    now - TimeDelta::hours(i64::from(done - e) * 2),
                )
            })
        })
        .collect();
    store
        .save_runs("/data/experiments/logs", &runs, &[], &epochs, now)
        .await
        .unwrap();
    let nodes: Vec<ugro_monitor::view::NodeHealth> = (0..NODES).map(node_health).collect();
    println!(
        "filled: {gpu_rows} GPU samples, {node_rows} node samples, {} events, {RUNS} runs, {} epoch rows in {:.1} s (samples {:.1} s)",
        DAYS as usize * EVENTS_PER_DAY,
        epochs.len(),
        t.elapsed().as_secs_f64(),
        fill_samples.as_secs_f64()
    );

    let cfg = ugro_monitor::config::SummaryConfig {
        schedule: "0 55 23 * * *".into(),
        timezone: chrono_tz::UTC,
        dir: dir.path().join("summaries"),
        retention: Duration::from_secs(30 * 86400),
        metrics_interval: Duration::from_secs(300),
        long_running: Duration::from_secs(7 * 86400),
    };
    // Last night's summary (the first one: no previous snapshot, reads every epoch time).
    let yesterday = now - TimeDelta::days(1);
    let t = Instant::now();
    let first = ugro_monitor::summary::compose(
        &store,
        &cfg,
        ugro_monitor::summary::Live {
            runs: runs.clone(),
            nodes: nodes.clone(),
            queued: Vec::new(),
        },
        yesterday,
        yesterday.date_naive(),
        true,
    )
    .await
    .unwrap();
    println!(
        "first summary (no previous snapshot): {:.0} ms, snapshot JSON {} KiB",
        t.elapsed().as_secs_f64() * 1000.0,
        first.snapshot_json.len() / 1024
    );

    // Tonight's: diffed against last night's snapshot, a 24 h window of samples and events.
    let mut times = Vec::new();
    let mut md_len = 0;
    for i in 0..5 {
        let at = now + TimeDelta::seconds(i);
        let t = Instant::now();
        let c = ugro_monitor::summary::compose(
            &store,
            &cfg,
            ugro_monitor::summary::Live {
                runs: runs.clone(),
                nodes: nodes.clone(),
                queued: Vec::new(),
            },
            at,
            at.date_naive(),
            false,
        )
        .await
        .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        md_len = c.rendered.markdown.len();
        assert!(c.rendered.chart.is_some());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "nightly summary (2,000 runs, 24 h of 20×8 GPUs): median {:.0} ms, min {:.0} ms, max {:.0} ms (goal ≤ 1000 ms); Markdown {} KiB",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        md_len / 1024
    );

    // Database size, after a checkpoint so the WAL is folded in.
    store.ping(Duration::from_secs(5)).await.unwrap();
    store.close().await;
    let wal = db.with_extension("db-wal");
    println!(
        "database: {:.1} MiB (+ WAL {:.1} MiB) for {gpu_rows} GPU rows → {:.1} bytes per GPU sample (all tables)",
        file_size(&db) as f64 / 1048576.0,
        file_size(&wal) as f64 / 1048576.0,
        (file_size(&db) + file_size(&wal)) as f64 / gpu_rows as f64
    );
}
