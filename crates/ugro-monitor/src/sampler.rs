//! GPU/CPU sampling of every node every `summary.metrics_interval`, stored in SQLite, with one critical event per outage.
//!
//! Ticks are aligned to the interval (all nodes share sampling instants). Each round samples
//! every configured node concurrently, each within `min(interval, 30 s)`: the local node from
//! /proc and NVML (or `nvidia-smi` when NVML is absent), a remote node with one exec of
//! [`sample::sample_command`] over the SSH session its health task keeps. The rows of a round
//! are written in one transaction. A node that cannot be sampled raises
//! `node.monitor_disconnected` once per outage and `node.monitor_reconnected` when it is back.
//! The parsing and the tick/outage rules are pure, in [`ugro_core::sample`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ugro_core::event::EventKind;

use chrono::{DateTime, Utc};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use ugro_core::health::Severity;
use ugro_core::parse::{self, ParseError};
use ugro_core::sample::{self, CpuTimes, GpuSample, NodeSample, Outage, parse_sample};

use crate::config::NodeHost;
use crate::host::Host;
use crate::ssh::{Exec, NodeSession, SshError};
use crate::store::{NewEvent, Store, StoreError, from_ms, to_ms};
use crate::systemd::Heartbeat;

/// The longest a node's sample may take, whatever the interval.
pub const MAX_NODE_DEADLINE: Duration = Duration::from_secs(30);
/// Grace beyond a node's deadline before its sample is abandoned.
const OUTER_SLACK: Duration = Duration::from_secs(2);
/// Rows per multi-row INSERT (9 parameters each, far below SQLite's 32766).
const INSERT_CHUNK: usize = 500;
/// `samples_between` reads the window in slices of this length, so a long window (30 days)
/// never holds the raw rows of the whole window besides the samples built from them.
const READ_SLICE_MS: i64 = 6 * 3600 * 1000;

/// Why a node could not be sampled (the reason in `node.monitor_disconnected`).
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("no SSH session to {0} yet (its health task has not started)")]
    NoSession(String),
    #[error("the sample command on {addr} gave no answer within {deadline:?}")]
    Hung { addr: String, deadline: Duration },
    #[error("sampling took longer than its {0:?} deadline")]
    Deadline(Duration),
    #[error("the sample command on {addr} exited with {status:?}: {detail}")]
    Command {
        addr: String,
        status: Option<u32>,
        detail: String,
    },
    #[error("reading {path}: {cause}")]
    Read {
        path: &'static str,
        cause: std::io::Error,
    },
    #[error("{0}")]
    Parse(#[from] ParseError),
}

impl SampleError {
    /// What went wrong, for an operator: the connection error itself rather than the session's
    /// "waiting before reconnecting" (the health task's attempt may have failed first).
    pub fn reason(&self) -> String {
        match self {
            SampleError::Ssh(SshError::BackingOff { last, .. }) => last.clone(),
            e => e.to_string(),
        }
    }
}

/// One node's sample: its GPUs (none on a node without NVIDIA GPUs), its CPU and memory, and
/// the /proc/stat reading the next sample's CPU figure starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub gpus: Vec<GpuSample>,
    pub node: NodeSample,
    pub cpu: CpuTimes,
}

/// The deadline of one node's sample for a sampling interval.
pub fn node_deadline(interval: Duration) -> Duration {
    interval.min(MAX_NODE_DEADLINE)
}

// ---------------------------------------------------------------------------------------------
// the supervisor

/// What the sampler remembers about a node between samples.
#[derive(Debug, Default)]
struct Track {
    prev_cpu: Option<CpuTimes>,
    outage: Outage,
}

/// What the sampler needs from the daemon beyond the common [`Host`] services: the remote
/// nodes' SSH sessions (opened and kept by their health loops). The daemon's `Shared`
/// implements it.
pub trait SamplerHost: Host {
    /// The node's SSH session, once its health loop has one.
    fn node_session(&self, node: &str) -> Option<Arc<NodeSession>>;
}

/// Samples every node every `summary.metrics_interval` until `cancel`, following reloads.
pub async fn supervise<H: SamplerHost>(host: Arc<H>, cancel: CancellationToken, hb: Heartbeat) {
    let mut config_rx = host.subscribe();
    let mut tracks: HashMap<String, Track> = HashMap::new();
    let mut last: Option<DateTime<Utc>> = None;
    let mut beat = tokio::time::interval(crate::supervise::BEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let interval = host.config().summary.metrics_interval;
        let due = sample::next_due(last, Utc::now(), interval);
        let wait = (due - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = cancel.cancelled() => return,
            // Re-plan at every beat too: the wall clock may have moved.
            _ = beat.tick() => { hb.beat(); continue; }
            changed = config_rx.changed() => {
                if changed.is_err() { return; }
                continue;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        hb.beat();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = round(&host, &mut tracks, due, interval) => {}
        }
        hb.beat();
        last = Some(due);
    }
}

/// Samples every configured node at `at` (concurrently, each within its deadline), stores the
/// rows in one transaction and reports outages that begin or end.
async fn round<H: SamplerHost>(
    host: &Arc<H>,
    tracks: &mut HashMap<String, Track>,
    at: DateTime<Utc>,
    interval: Duration,
) {
    let config = host.config();
    let deadline = node_deadline(interval);
    tracks.retain(|name, _| config.nodes.iter().any(|n| &n.name == name));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for node in &config.nodes {
        let name = node.name.clone();
        let prev = tracks.get(&name).and_then(|t| t.prev_cpu);
        let session = match &node.host {
            NodeHost::Local => None,
            NodeHost::Remote(_) => {
                match host.node_session(&name) {
                    Some(s) => Some(s),
                    None => {
                        // Its health task starts the session; sampled from the next round on.
                        tracing::debug!(node = %name, "no SSH session yet; not sampled this round");
                        continue;
                    }
                }
            }
        };
        set.spawn(async move {
            let t = Instant::now();
            let job = async {
                match &session {
                    None => sample_local(&name, at, prev, deadline).await,
                    Some(s) => sample_remote(s, &name, at, prev, deadline).await,
                }
            };
            // The exec and the GPU readers end within `deadline` themselves; this bound also
            // covers connecting (up to the SSH connect timeout) and is a safety net.
            let r = match tokio::time::timeout(deadline + OUTER_SLACK, job).await {
                Ok(r) => r,
                Err(_) => Err(SampleError::Deadline(deadline + OUTER_SLACK)),
            };
            (name, r, t.elapsed())
        });
    }
    let mut results = Vec::with_capacity(config.nodes.len());
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => tracing::error!(error = %e, "a node's sampling task failed"),
        }
    }
    let mut gpus = Vec::new();
    let mut nodes = Vec::new();
    let mut events = Vec::new();
    for (name, r, took) in results {
        let track = tracks.entry(name.clone()).or_default();
        match r {
            Ok(s) => {
                tracing::debug!(node = %name, gpus = s.gpus.len(), took_ms = took.as_millis() as u64, "sampled");
                track.prev_cpu = Some(s.cpu);
                gpus.extend(s.gpus);
                nodes.push(s.node);
                if let Some((since, lasted)) = track.outage.succeeded(at) {
                    events.push(NewEvent::new(
                        EventKind::NodeMonitorReconnected,
                        &name,
                        Severity::Info,
                        format!(
                            "monitor reconnected to {name} after {} (disconnected since {})",
                            human_duration(lasted),
                            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                    ));
                }
            }
            Err(e) => {
                tracing::debug!(node = %name, error = %e, "could not sample");
                if track.outage.failed(at) {
                    events.push(NewEvent::new(
                        EventKind::NodeMonitorDisconnected,
                        &name,
                        Severity::Critical,
                        format!("monitor disconnected from {name}: {}", e.reason()),
                    ));
                }
            }
        }
    }
    if !nodes.is_empty()
        && let Err(e) = host.store().insert_samples(&gpus, &nodes).await
    {
        tracing::error!(error = %e, "could not store the samples of {at}");
    }
    for e in events {
        host.event(e).await;
    }
    tracing::debug!(
        nodes = nodes.len(),
        gpus = gpus.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "sampling round done"
    );
}

/// `1h 5m 30s`: whole seconds, for event messages.
fn human_duration(d: chrono::Duration) -> String {
    let secs = u64::try_from(d.num_seconds()).unwrap_or(0);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

// ---------------------------------------------------------------------------------------------
// one node

/// Samples a remote node with one exec of [`sample::sample_command`] over its session.
pub async fn sample_remote(
    session: &NodeSession,
    node: &str,
    at: DateTime<Utc>,
    prev_cpu: Option<CpuTimes>,
    deadline: Duration,
) -> Result<Sampled, SampleError> {
    match session
        .exec(&sample::sample_command(deadline), deadline)
        .await?
    {
        Exec::Hung => Err(SampleError::Hung {
            addr: session.addr().to_owned(),
            deadline,
        }),
        Exec::Done(o) => match parse_sample(&o.stdout, node, at, prev_cpu) {
            Ok((gpus, node, cpu)) => Ok(Sampled { gpus, node, cpu }),
            // The shell itself failed (no /proc, killed): say how, not what is missing.
            Err(_) if o.exit_status != Some(0) => Err(SampleError::Command {
                addr: session.addr().to_owned(),
                status: o.exit_status,
                detail: first_line(&o.stderr),
            }),
            Err(e) => Err(e.into()),
        },
    }
}

fn first_line(s: &str) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    line.chars().take(200).collect()
}

/// Samples this machine: /proc for CPU, load and memory; NVML for the GPUs, or `nvidia-smi`
/// (within the deadline) where NVML is absent; no GPU rows when neither is there.
pub async fn sample_local(
    node: &str,
    at: DateTime<Utc>,
    prev_cpu: Option<CpuTimes>,
    deadline: Duration,
) -> Result<Sampled, SampleError> {
    let read = |path: &'static str| async move {
        tokio::fs::read_to_string(path)
            .await
            .map_err(|cause| SampleError::Read { path, cause })
    };
    let procs = async {
        tokio::try_join!(
            read("/proc/loadavg"),
            read("/proc/meminfo"),
            read("/proc/stat")
        )
    };
    // The GPU readers get most of the deadline; /proc answers at once.
    let gpu_deadline = deadline.mul_f64(0.8);
    let (procs, gpus) = tokio::join!(procs, local_gpus(node, at, gpu_deadline));
    let (loadavg, meminfo, stat) = procs?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let (node_sample, cpu) =
        sample::node_sample(node, at, &loadavg, cores, &meminfo, &stat, prev_cpu)?;
    Ok(Sampled {
        gpus: gpus?,
        node: node_sample,
        cpu,
    })
}

async fn local_gpus(
    node: &str,
    at: DateTime<Utc>,
    deadline: Duration,
) -> Result<Vec<GpuSample>, SampleError> {
    use crate::local::NvmlOutcome;
    match crate::local::gpus_and_apps(deadline).await {
        NvmlOutcome::Read(r) => Ok(sample::gpu_samples(node, at, &r.gpus, r.apps.as_deref())),
        NvmlOutcome::Absent(_) => smi_gpus(node, at, deadline).await,
        NvmlOutcome::Hung => {
            tracing::warn!(
                ?deadline,
                "sampler: NVML did not answer in time; no GPU rows this time"
            );
            Ok(Vec::new())
        }
    }
}

/// The local GPUs from `nvidia-smi` (both queries within `deadline`); none when it is absent,
/// fails or hangs (the health check reports those).
async fn smi_gpus(
    node: &str,
    at: DateTime<Utc>,
    deadline: Duration,
) -> Result<Vec<GpuSample>, SampleError> {
    let each = (deadline / 2).max(Duration::from_millis(500));
    const FORMAT: &str = "--format=csv,noheader,nounits";
    let query = format!("--query-gpu={}", parse::NVIDIA_SMI_QUERY);
    let o = match crate::local::run_local("nvidia-smi", &[&query, FORMAT], each).await {
        Ok(Exec::Done(o)) => o,
        Ok(Exec::Hung) => {
            tracing::debug!("sampler: nvidia-smi hung; no GPU rows this time");
            return Ok(Vec::new());
        }
        Err(e) => {
            tracing::debug!(error = %e, "sampler: nvidia-smi failed; no GPU rows this time");
            return Ok(Vec::new());
        }
    };
    let gpus = match parse::nvidia_smi_gpus(&o.stdout) {
        Ok(smi) => smi.gpus,
        Err(e) if o.exit_status == Some(0) => return Err(e.into()),
        Err(_) => Vec::new(),
    };
    if gpus.is_empty() {
        return Ok(Vec::new());
    }
    let apps = if o.exit_status == Some(0) {
        let query = format!("--query-compute-apps={}", sample::COMPUTE_APPS_QUERY);
        match crate::local::run_local("nvidia-smi", &[&query, FORMAT], each).await {
            Ok(Exec::Done(a)) if a.exit_status == Some(0) => Some(sample::compute_apps(&a.stdout)),
            _ => None,
        }
    } else {
        None
    };
    Ok(sample::gpu_samples(node, at, &gpus, apps.as_deref()))
}

// ---------------------------------------------------------------------------------------------
// storage

impl Store {
    /// Stores a round of samples in one transaction. Node names are kept once, in a lookup
    /// table; a sample already stored for the same (instant, node, GPU) is replaced.
    pub async fn insert_samples(
        &self,
        gpus: &[GpuSample],
        nodes: &[NodeSample],
    ) -> Result<(), StoreError> {
        if gpus.is_empty() && nodes.is_empty() {
            return Ok(());
        }
        let (mut tx, _turn) = self.begin_write("store samples").await?;
        let mut ids: HashMap<&str, i64> = HashMap::new();
        for name in gpus
            .iter()
            .map(|g| g.node.as_str())
            .chain(nodes.iter().map(|n| n.node.as_str()))
        {
            if ids.contains_key(name) {
                continue;
            }
            sqlx::query("INSERT OR IGNORE INTO sample_nodes (name) VALUES (?)")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(self.err("insert sample node"))?;
            let id: i64 = sqlx::query_scalar("SELECT id FROM sample_nodes WHERE name = ?")
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(self.err("select sample node"))?;
            ids.insert(name, id);
        }
        let id = |name: &str| ids.get(name).copied().unwrap_or_default();
        for chunk in gpus.chunks(INSERT_CHUNK) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT OR REPLACE INTO gpu_samples (at_ms, node_id, gpu, util_pct, mem_used_mib, \
                 mem_total_mib, temp_c, power_dw, processes) ",
            );
            q.push_values(chunk, |mut b, g| {
                b.push_bind(to_ms(g.at))
                    .push_bind(id(&g.node))
                    .push_bind(i64::from(g.gpu))
                    .push_bind(g.utilization_pct)
                    .push_bind(i64::try_from(g.memory_used_mib).unwrap_or(i64::MAX))
                    .push_bind(i64::try_from(g.memory_total_mib).unwrap_or(i64::MAX))
                    .push_bind(g.temperature_c)
                    .push_bind(g.power_w.map(|w| (w * 10.0).round() as i64))
                    .push_bind(g.processes.map(i64::from));
            });
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(self.err("insert gpu samples"))?;
        }
        for chunk in nodes.chunks(INSERT_CHUNK) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT OR REPLACE INTO node_samples (at_ms, node_id, cpu_pct, load1, load5, \
                 load15, cores, mem_avail_bytes, mem_total_bytes) ",
            );
            q.push_values(chunk, |mut b, n| {
                b.push_bind(to_ms(n.at))
                    .push_bind(id(&n.node))
                    .push_bind(n.cpu_pct)
                    .push_bind(n.load1)
                    .push_bind(n.load5)
                    .push_bind(n.load15)
                    .push_bind(i64::from(n.cores))
                    .push_bind(i64::try_from(n.memory_available_bytes).unwrap_or(i64::MAX))
                    .push_bind(i64::try_from(n.memory_total_bytes).unwrap_or(i64::MAX));
            });
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(self.err("insert node samples"))?;
        }
        tx.commit().await.map_err(self.err("commit samples"))
    }

    /// Every sample taken in `[start, end)`, ordered by time, then node, then GPU.
    pub async fn samples_between(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<(Vec<GpuSample>, Vec<NodeSample>), StoreError> {
        let names: HashMap<i64, String> = sqlx::query("SELECT id, name FROM sample_nodes")
            .fetch_all(self.pool())
            .await
            .map_err(self.err("select sample nodes"))?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let name = |id: i64| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
        let (start, end) = (to_ms(start), to_ms(end));
        let mut gpus = Vec::new();
        let mut nodes = Vec::new();
        let mut from = start;
        while from < end {
            let to = from.saturating_add(READ_SLICE_MS).min(end);
            type GpuRow = (
                i64,
                i64,
                i64,
                f64,
                i64,
                i64,
                Option<f64>,
                Option<i64>,
                Option<i64>,
            );
            let rows: Vec<GpuRow> = sqlx::query_as(
                "SELECT at_ms, node_id, gpu, util_pct, mem_used_mib, mem_total_mib, temp_c, \
                 power_dw, processes FROM gpu_samples WHERE at_ms >= ? AND at_ms < ? \
                 ORDER BY at_ms, node_id, gpu",
            )
            .bind(from)
            .bind(to)
            .fetch_all(self.pool())
            .await
            .map_err(self.err("select gpu samples"))?;
            gpus.extend(rows.into_iter().map(
                |(at, node, gpu, util, used, total, temp, power, procs)| GpuSample {
                    node: name(node),
                    at: from_ms(at),
                    gpu: u32::try_from(gpu).unwrap_or(0),
                    utilization_pct: util,
                    memory_used_mib: u64::try_from(used).unwrap_or(0),
                    memory_total_mib: u64::try_from(total).unwrap_or(0),
                    temperature_c: temp,
                    power_w: power.map(|dw| dw as f64 / 10.0),
                    processes: procs.and_then(|p| u32::try_from(p).ok()),
                },
            ));
            type NodeRow = (i64, i64, Option<f64>, f64, f64, f64, i64, i64, i64);
            let rows: Vec<NodeRow> = sqlx::query_as(
                "SELECT at_ms, node_id, cpu_pct, load1, load5, load15, cores, mem_avail_bytes, \
                 mem_total_bytes FROM node_samples WHERE at_ms >= ? AND at_ms < ? \
                 ORDER BY at_ms, node_id",
            )
            .bind(from)
            .bind(to)
            .fetch_all(self.pool())
            .await
            .map_err(self.err("select node samples"))?;
            nodes.extend(rows.into_iter().map(
                |(at, node, cpu, l1, l5, l15, cores, avail, total)| NodeSample {
                    node: name(node),
                    at: from_ms(at),
                    cpu_pct: cpu,
                    load1: l1,
                    load5: l5,
                    load15: l15,
                    cores: u32::try_from(cores).unwrap_or(0),
                    memory_available_bytes: u64::try_from(avail).unwrap_or(0),
                    memory_total_bytes: u64::try_from(total).unwrap_or(0),
                },
            ));
            from = to;
        }
        Ok((gpus, nodes))
    }

    /// Deletes samples taken before `before`; returns how many rows (GPU and node) went.
    pub async fn prune_samples(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let (mut tx, _turn) = self.begin_write("prune samples").await?;
        let mut n = 0;
        for sql in [
            "DELETE FROM gpu_samples WHERE at_ms < ?",
            "DELETE FROM node_samples WHERE at_ms < ?",
        ] {
            n += sqlx::query(sql)
                .bind(to_ms(before))
                .execute(&mut *tx)
                .await
                .map_err(self.err("prune samples"))?
                .rows_affected();
        }
        tx.commit()
            .await
            .map_err(self.err("commit prune samples"))?;
        Ok(n)
    }

    /// How many GPU rows and node rows are stored.
    pub async fn sample_counts(&self) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM gpu_samples), (SELECT count(*) FROM node_samples)",
        )
        .fetch_one(self.pool())
        .await
        .map_err(self.err("count samples"))?;
        let (g, n): (i64, i64) = (row.get(0), row.get(1));
        Ok((g.max(0) as u64, n.max(0) as u64))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::TimeZone;
    use ugro_testkit::gpu::{
        FakeApp, FakeGpu, fake_gpu_uuid, install_fake_nvidia_smi, install_fake_nvidia_smi_with_apps,
    };

    use super::*;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap()
    }

    fn gpu(node: &str, at: DateTime<Utc>, i: u32) -> GpuSample {
        GpuSample {
            node: node.into(),
            at,
            gpu: i,
            utilization_pct: f64::from(i * 12),
            memory_used_mib: 4 + u64::from(i) * 1000,
            memory_total_mib: 81920,
            temperature_c: (i != 3).then_some(30.0 + f64::from(i)),
            power_w: (i != 5).then_some(61.2 + f64::from(i) * 30.5),
            processes: (i != 7).then_some(i % 3),
        }
    }

    fn node(name: &str, at: DateTime<Utc>, cpu: Option<f64>) -> NodeSample {
        NodeSample {
            node: name.into(),
            at,
            cpu_pct: cpu,
            load1: 12.04,
            load5: 9.8,
            load15: 7.15,
            cores: 128,
            memory_available_bytes: 831_841_894_400,
            memory_total_bytes: 1_082_130_432_000,
        }
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ugro.db")).await.unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn samples_round_trip_by_window_and_prune() {
        let (_dir, s) = store().await;
        assert_eq!(s.sample_counts().await.unwrap(), (0, 0));
        // Three rounds, 8 GPUs on gpu3, none on cpu1; one round later than 6 h (two read
        // slices).
        let mut all_gpus = Vec::new();
        let mut all_nodes = Vec::new();
        for (k, at) in [t(10, 0), t(10, 5), t(17, 30)].into_iter().enumerate() {
            let gpus: Vec<GpuSample> = (0..8).map(|i| gpu("gpu3", at, i)).collect();
            let nodes = vec![
                node("gpu3", at, (k > 0).then_some(37.5)),
                node("cpu1", at, Some(99.25)),
            ];
            s.insert_samples(&gpus, &nodes).await.unwrap();
            all_gpus.extend(gpus);
            all_nodes.extend(nodes);
        }
        assert_eq!(s.sample_counts().await.unwrap(), (24, 6));

        let (gpus, nodes) = s.samples_between(t(0, 0), t(23, 0)).await.unwrap();
        assert_eq!(gpus, all_gpus, "every field survives the round trip");
        // Ordered by time then node id: gpu3 was stored first.
        assert_eq!(nodes, all_nodes);
        assert_eq!(gpus[5].power_w, None);
        assert_eq!(gpus[3].temperature_c, None);
        assert_eq!(gpus[7].processes, None);
        assert_eq!(nodes[0].cpu_pct, None);

        // [start, end): the 10:05 round only.
        let (gpus, nodes) = s.samples_between(t(10, 5), t(17, 30)).await.unwrap();
        assert_eq!(gpus.len(), 8);
        assert!(gpus.iter().all(|g| g.at == t(10, 5)));
        assert_eq!(nodes.len(), 2);
        let (gpus, nodes) = s.samples_between(t(11, 0), t(12, 0)).await.unwrap();
        assert!(gpus.is_empty() && nodes.is_empty());

        // The same instant again replaces, never duplicates.
        let mut again = gpu("gpu3", t(10, 5), 2);
        again.utilization_pct = 100.0;
        s.insert_samples(&[again.clone()], &[]).await.unwrap();
        assert_eq!(s.sample_counts().await.unwrap(), (24, 6));
        let (gpus, _) = s.samples_between(t(10, 5), t(10, 6)).await.unwrap();
        assert_eq!(gpus[2], again);

        // Prune before 10:05: the first round goes (8 GPU rows + 2 node rows).
        assert_eq!(s.prune_samples(t(10, 5)).await.unwrap(), 10);
        assert_eq!(s.sample_counts().await.unwrap(), (16, 4));
        let (gpus, _) = s.samples_between(t(0, 0), t(23, 0)).await.unwrap();
        assert_eq!(gpus.first().unwrap().at, t(10, 5));
        assert_eq!(s.prune_samples(t(10, 5)).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_large_batch_is_stored_in_one_go() {
        let (_dir, s) = store().await;
        // One day of 5-minute samples of 4 nodes × 8 GPUs: more rows than one INSERT carries.
        let mut gpus = Vec::new();
        let mut nodes = Vec::new();
        for k in 0..288 {
            let at = t(0, 0) + chrono::Duration::minutes(5 * k);
            for n in 0..4 {
                let name = format!("gpu{n}");
                gpus.extend((0..8).map(|i| gpu(&name, at, i)));
                nodes.push(node(&name, at, Some(1.5)));
            }
        }
        s.insert_samples(&gpus, &nodes).await.unwrap();
        assert_eq!(s.sample_counts().await.unwrap(), (288 * 32, 288 * 4));
        let (back, back_nodes) = s
            .samples_between(t(0, 0), t(0, 0) + chrono::Duration::days(1))
            .await
            .unwrap();
        assert_eq!(back.len(), gpus.len());
        assert_eq!(back_nodes.len(), nodes.len());
        assert_eq!(back[1000], gpus[1000]);
    }

    #[tokio::test]
    async fn window_and_prune_queries_search_the_primary_key() {
        let (_dir, s) = store().await;
        for (table, cols) in [
            ("gpu_samples", "at_ms, node_id, gpu"),
            ("node_samples", "at_ms, node_id"),
        ] {
            for sql in [
                format!(
                    "SELECT {cols} FROM {table} WHERE at_ms >= 1 AND at_ms < 2 ORDER BY {cols}"
                ),
                format!("DELETE FROM {table} WHERE at_ms < 2"),
            ] {
                let plan: Vec<String> =
                    sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                        .fetch_all(s.pool())
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| r.get::<String, _>(3))
                        .collect();
                assert!(
                    plan.iter().any(|p| p.starts_with(&format!(
                        "SEARCH {table} USING PRIMARY KEY (at_ms>? AND at_ms<?)"
                    )) || p
                        .starts_with(&format!("SEARCH {table} USING PRIMARY KEY (at_ms<?)"))),
                    "{sql}: {plan:?}"
                );
                assert!(
                    !plan.iter().any(|p| p.contains("TEMP B-TREE")),
                    "no sort: {plan:?}"
                );
            }
        }
    }

    /// The sample command under a real shell, with the fake nvidia-smi first on PATH.
    fn run_sample_command(path_dir: Option<&std::path::Path>, deadline: Duration) -> String {
        let path = match path_dir {
            Some(d) => format!("{}:/usr/bin:/bin", d.display()),
            None => "/usr/bin:/bin".to_owned(),
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(sample::sample_command(deadline))
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn the_sample_command_runs_under_sh_with_and_without_gpus() {
        let bin = tempfile::tempdir().unwrap();
        let apps = [
            FakeApp {
                gpu: 1,
                pid: 4242,
                process_name: "python".into(),
                used_memory_mib: Some(70000),
            },
            FakeApp {
                gpu: 1,
                pid: 4243,
                process_name: "python".into(),
                used_memory_mib: None,
            },
        ];
        install_fake_nvidia_smi_with_apps(bin.path(), FakeGpu::Healthy { count: 8 }, &apps);
        let out = run_sample_command(Some(bin.path()), Duration::from_secs(30));
        let prev = CpuTimes { total: 0, idle: 0 };
        let (gpus, n, cpu) = parse_sample(&out, "gpu3", t(10, 0), Some(prev)).unwrap();
        assert_eq!(gpus.len(), 8, "{out}");
        assert_eq!(gpus[1].utilization_pct, 97.0);
        assert_eq!(gpus[1].memory_used_mib, 70004);
        assert_eq!(gpus[1].processes, Some(2));
        assert_eq!(gpus[0].processes, Some(0));
        assert!(cpu.total > 0 && n.cpu_pct.is_some());
        assert!(n.cores >= 1 && n.memory_total_bytes > 0);
        assert!(out.contains(&fake_gpu_uuid(1)));

        // No nvidia-smi at all: the node is sampled, without GPU rows.
        let empty = tempfile::tempdir().unwrap();
        let out = run_sample_command(Some(empty.path()), Duration::from_secs(30));
        let (gpus, n, _) = parse_sample(&out, "cpu1", t(10, 0), None).unwrap();
        assert!(gpus.is_empty());
        assert!(n.cores >= 1);

        // nvidia-smi stuck in the driver: cut off by its own timeout, the rest arrives.
        install_fake_nvidia_smi(bin.path(), FakeGpu::Hang);
        let started = Instant::now();
        let out = run_sample_command(Some(bin.path()), Duration::from_secs(6));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        let (gpus, n, _) = parse_sample(&out, "gpu3", t(10, 0), None).unwrap();
        assert!(gpus.is_empty());
        assert!(n.memory_total_bytes > 0);
    }

    #[tokio::test]
    async fn the_local_node_is_sampled_from_proc() {
        let deadline = Duration::from_secs(10);
        let first = sample_local("here", t(10, 0), None, deadline)
            .await
            .unwrap();
        assert_eq!(first.node.node, "here");
        assert_eq!(first.node.at, t(10, 0));
        assert_eq!(first.node.cpu_pct, None);
        assert!(first.node.memory_total_bytes >= first.node.memory_available_bytes);
        assert!(first.node.memory_total_bytes > 0 && first.node.cores >= 1);
        // Burn some CPU so that the counters move, then sample again.
        let mut x = 0u64;
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        let second = sample_local("here", t(10, 1), Some(first.cpu), deadline)
            .await
            .unwrap();
        let pct = second.node.cpu_pct.expect("a CPU figure from two readings");
        assert!((0.0..=100.0).contains(&pct), "{pct}");
        assert!(second.cpu.total > first.cpu.total);
    }

    #[test]
    fn durations_read_like_an_operator_writes_them() {
        assert_eq!(human_duration(chrono::Duration::seconds(330)), "5m 30s");
        assert_eq!(
            human_duration(chrono::Duration::milliseconds(10_400)),
            "10s"
        );
        assert_eq!(human_duration(chrono::Duration::seconds(-3)), "0s");
        assert_eq!(
            node_deadline(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(node_deadline(Duration::from_secs(300)), MAX_NODE_DEADLINE);
    }
}
