//! Slurm (`[slurm] enabled`): one loop that every `slurm.interval` (and at once when a node's
//! health changes) reads the queue (`squeue`) and the nodes (`sinfo`) on this machine or over
//! the configured node's SSH session, maps jobs to runs (the run process's `SLURM_JOB_ID` from
//! `/proc/PID/environ`, locally or over the node's session; else the job's working directory),
//! keeps what it read for `/v1/runs/{id}` and the summary, and with `drain_unhealthy` drains a
//! node ugro finds unhealthy (`ugro: <failing checks>`) and resumes it once healthy, only
//! while the drain is still ours. The rules live in `ugro_core::slurm`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use ugro_core::event::EventKind;
use ugro_core::health::{Outcome, Severity};
use ugro_core::slurm::{self as core, DrainAction, Job, QueuedJob, SlurmNode};

use crate::config::{NodeHost, SlurmConfig};
use crate::health::Health;
use crate::host::Host;
use crate::local::run_local;
use crate::runs::Runs;
use crate::ssh::{Exec, shell_quote};
use crate::store::NewEvent;
use crate::systemd::Heartbeat;

/// At most this many run processes have their environment read per node and cycle.
const MAX_PIDS_PER_NODE: usize = 4096;

/// A Slurm command that could not be run or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SlurmError {
    #[error("{command} on {node}: {message}")]
    Command {
        node: String,
        command: String,
        message: String,
    },
    #[error("slurm.node \"{0}\" is not a configured node")]
    UnknownNode(String),
    /// The node is configured but its health loop has not started yet (start-up, reload).
    #[error("node \"{0}\" has no SSH session yet")]
    NoSessionYet(String),
}

/// What the last successful read of Slurm found.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    at: Option<DateTime<Utc>>,
    jobs: Vec<Job>,
    /// The job of each run, by run id.
    by_run: HashMap<String, ugro_api::SlurmJob>,
}

/// The Slurm view shared with the control API and the summary.
#[derive(Debug, Default)]
pub struct Slurm {
    snapshot: RwLock<Snapshot>,
    wake: Notify,
}

impl Slurm {
    /// The Slurm job run `id` belongs to, if any (as of the last read).
    pub fn job_of(&self, id: &str) -> Option<ugro_api::SlurmJob> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_run
            .get(id)
            .cloned()
    }

    /// The jobs pending for more than `after` at `now`, oldest first; `None` when Slurm has not
    /// been read (disabled, or not answering).
    pub fn queued(&self, now: DateTime<Utc>, after: Duration) -> Option<Vec<QueuedJob>> {
        let s = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
        s.at?;
        let after = chrono::TimeDelta::from_std(after).unwrap_or(chrono::TimeDelta::MAX);
        Some(core::queued_too_long(&s.jobs, now, after))
    }

    /// A node's health changed: read Slurm and act now rather than at the next interval.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn set(&self, s: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = s;
    }
}

/// What the Slurm loop needs from the daemon beyond the common [`Host`] services: the view it
/// keeps, the runs it maps jobs to and the nodes' health (verdicts to drain on, and the SSH
/// sessions its commands run over). The daemon's `Shared` implements it.
pub trait SlurmHost: Host {
    fn slurm(&self) -> &Slurm;
    fn runs(&self) -> &Runs;
    fn health(&self) -> &Health;
}

/// The Slurm loop: idle while `[slurm]` is disabled, else one cycle every `slurm.interval` or
/// when woken. Beats `hb` from the `select!` that waits, and while a cycle runs.
pub async fn supervise<H: SlurmHost>(host: Arc<H>, cancel: CancellationToken, hb: Heartbeat) {
    let mut config_rx = host.subscribe();
    let mut beat = tokio::time::interval(crate::supervise::BEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut memory = Memory::default();
    loop {
        let cfg = host.config().slurm.clone();
        if cfg.enabled {
            let cycle = cycle(&host, &cfg, &mut memory);
            tokio::pin!(cycle);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = beat.tick() => hb.beat(),
                    () = &mut cycle => break,
                }
            }
            hb.beat();
        } else {
            host.slurm().set(Snapshot::default());
            memory = Memory::default();
        }
        let sleep = tokio::time::sleep(cfg.interval);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = beat.tick() => hb.beat(),
                () = &mut sleep => break,
                () = host.slurm().wake.notified() => break,
                changed = config_rx.changed() => {
                    if changed.is_err() { return }
                    break;
                }
            }
        }
    }
}

/// What the loop remembers between cycles so an outage or a left-alone drain is one event.
#[derive(Debug, Default)]
struct Memory {
    /// Slurm did not answer last time (one `slurm.unavailable` per outage).
    unavailable: bool,
    /// Nodes whose operator drain was reported as left alone, with its reason.
    skipped: BTreeMap<String, String>,
}

async fn cycle<H: SlurmHost>(host: &Arc<H>, cfg: &SlurmConfig, memory: &mut Memory) {
    let read = async {
        let jobs = run(host, cfg, "squeue", &core::squeue_args()).await?;
        let nodes = run(host, cfg, "sinfo", &core::sinfo_args()).await?;
        Ok::<_, SlurmError>((jobs, nodes))
    };
    let (jobs_text, nodes_text) = match read.await {
        Ok(t) => t,
        // Not an outage: the node's loop starts its session in a moment; read next cycle.
        Err(e @ SlurmError::NoSessionYet(_)) => {
            tracing::debug!(error = %e, "Slurm not read this cycle");
            return;
        }
        Err(e) => {
            if !memory.unavailable {
                memory.unavailable = true;
                host.event(NewEvent::new(
                    EventKind::SlurmUnavailable,
                    where_(cfg),
                    Severity::Warning,
                    format!("Slurm cannot be read: {e}"),
                ))
                .await;
            }
            host.slurm().set(Snapshot::default());
            return;
        }
    };
    if memory.unavailable {
        memory.unavailable = false;
        tracing::info!(node = %where_(cfg), "Slurm answers again");
    }
    let (jobs, bad_jobs) = core::parse_squeue(&jobs_text);
    let (nodes, bad_nodes) = core::parse_sinfo(&nodes_text);
    for b in bad_jobs.iter().chain(&bad_nodes).take(3) {
        tracing::warn!(problem = %b, "unreadable Slurm output line skipped");
    }
    let by_run = map_runs(host, &jobs).await;
    host.slurm().set(Snapshot {
        at: Some(Utc::now()),
        jobs,
        by_run,
    });
    if cfg.drain_unhealthy {
        drain(host, cfg, &nodes, memory).await;
    }
}

/// Where the Slurm commands run, for messages and event subjects.
fn where_(cfg: &SlurmConfig) -> String {
    cfg.node.clone().unwrap_or_else(|| "local".into())
}

/// Runs a Slurm command with times as epoch seconds, on this machine or over the configured
/// node's session, with `slurm.command_timeout`. A non-zero exit is an error with its stderr.
async fn run<H: SlurmHost>(
    host: &Arc<H>,
    cfg: &SlurmConfig,
    program: &str,
    args: &[String],
) -> Result<String, SlurmError> {
    let node = where_(cfg);
    let err = |message: String| SlurmError::Command {
        node: node.clone(),
        command: program.to_string(),
        message,
    };
    let session = match &cfg.node {
        None => None,
        Some(name) => match host.health().node(name) {
            Some(rt) => rt.session().cloned(),
            None if host.config().nodes.iter().any(|n| &n.name == name) => {
                return Err(SlurmError::NoSessionYet(name.clone()));
            }
            None => return Err(SlurmError::UnknownNode(name.clone())),
        },
    };
    let (k, v) = core::TIME_FORMAT_ENV;
    let out = match session {
        None => {
            let mut full = vec![format!("{k}={v}"), program.to_string()];
            full.extend(args.iter().cloned());
            let full: Vec<&str> = full.iter().map(String::as_str).collect();
            run_local("env", &full, cfg.command_timeout)
                .await
                .map_err(err)?
        }
        Some(s) => {
            let mut line = format!("{k}={v} {program}");
            for a in args {
                line.push(' ');
                line.push_str(&shell_quote(a));
            }
            s.exec(&line, cfg.command_timeout)
                .await
                .map_err(|e| err(e.to_string()))?
        }
    };
    match out {
        Exec::Done(o) if o.exit_status == Some(0) => Ok(o.stdout),
        Exec::Done(o) => Err(err(format!(
            "exit status {}: {}",
            o.exit_status
                .map_or_else(|| "none".to_string(), |c| c.to_string()),
            o.stderr.trim().chars().take(500).collect::<String>()
        ))),
        Exec::Hung => Err(err(format!("no answer within {:?}", cfg.command_timeout))),
    }
}

/// The job of each run: `SLURM_JOB_ID` of its process (read on the process's node), else the
/// job's working directory ([`core::map_runs`]).
async fn map_runs<H: SlurmHost>(
    host: &Arc<H>,
    jobs: &[Job],
) -> HashMap<String, ugro_api::SlurmJob> {
    struct R {
        id: String,
        work_dir: String,
        active: bool,
        proc: Option<(String, u32)>,
    }
    let runs: Vec<R> = host.runs().with_all(|it| {
        it.map(|r| R {
            id: r.id.clone(),
            work_dir: r.work_dir.clone(),
            active: matches!(
                r.status,
                ugro_core::runs::RunStatus::Running | ugro_core::runs::RunStatus::Stuck
            ),
            proc: r.process.as_ref().map(|p| (p.node.clone(), p.pid)),
        })
        .collect()
    });
    // Pids per node.
    let mut pids: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for r in &runs {
        if let Some((node, pid)) = &r.proc {
            let set = pids.entry(node.clone()).or_default();
            if set.len() < MAX_PIDS_PER_NODE {
                set.insert(*pid);
            }
        }
    }
    let mut env_ids: HashMap<(String, u32), String> = HashMap::new();
    let timeout = host.config().slurm.command_timeout;
    for (node, set) in pids {
        let Some(rt) = host.health().node(&node) else {
            continue;
        };
        let found = match rt.session() {
            None => {
                let list: Vec<u32> = set.into_iter().collect();
                tokio::task::spawn_blocking(move || local_job_ids(&list))
                    .await
                    .unwrap_or_default()
            }
            Some(s) => remote_job_ids(s, &set, timeout).await,
        };
        env_ids.extend(found.into_iter().map(|(pid, id)| ((node.clone(), pid), id)));
    }
    let env_of = |r: &R| {
        r.proc
            .as_ref()
            .and_then(|p| env_ids.get(p))
            .map(String::as_str)
    };
    let refs: Vec<core::RunRef<'_>> = runs
        .iter()
        .map(|r| core::RunRef {
            id: &r.id,
            work_dir: &r.work_dir,
            active: r.active,
            env_job_id: env_of(r),
        })
        .collect();
    core::map_runs(&refs, jobs)
        .into_iter()
        .map(|(id, j)| {
            (
                id,
                ugro_api::SlurmJob {
                    job_id: j.job_id.clone(),
                    state: j.state.clone(),
                    name: j.name.clone(),
                    user: j.user.clone(),
                    partition: j.partition.clone(),
                },
            )
        })
        .collect()
}

/// `SLURM_JOB_ID` of local processes (blocking: reads /proc). A process gone or not readable is
/// left out.
fn local_job_ids(pids: &[u32]) -> Vec<(u32, String)> {
    pids.iter()
        .filter_map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            core::job_id_from_environ(&env).map(|id| (*pid, id))
        })
        .collect()
}

/// `SLURM_JOB_ID` of a remote node's processes, in one exec over its session.
async fn remote_job_ids(
    s: &crate::ssh::NodeSession,
    pids: &BTreeSet<u32>,
    timeout: Duration,
) -> Vec<(u32, String)> {
    if pids.is_empty() {
        return Vec::new();
    }
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    let cmd = format!(
        "for p in {}; do printf '%s ' \"$p\"; tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | grep -m1 '^SLURM_JOB_ID=' || echo; done",
        list.join(" ")
    );
    match s.exec(&cmd, timeout).await {
        Ok(Exec::Done(o)) => o
            .stdout
            .lines()
            .filter_map(|l| {
                let (pid, kv) = l.split_once(' ')?;
                let id = core::job_id_from_environ(kv.as_bytes())?;
                Some((pid.parse().ok()?, id))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `drain_unhealthy`: every ugro node that is a Slurm node is drained, resumed or left alone
/// as [`core::drain_action`] says; each step is an event.
async fn drain<H: SlurmHost>(
    host: &Arc<H>,
    cfg: &SlurmConfig,
    nodes: &[SlurmNode],
    memory: &mut Memory,
) {
    let hostname = tokio::fs::read_to_string("/proc/sys/kernel/hostname")
        .await
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    for rt in host.health().runtimes() {
        let address = match &rt.cfg.host {
            NodeHost::Local => None,
            NodeHost::Remote(r) => Some(r.host.as_str()),
        };
        let name = rt.cfg.name.clone();
        let Some(sn) = core::node_for(nodes, &name, address, &hostname) else {
            continue;
        };
        let report = rt.report();
        let confirmed = !report.restored && report.last_check.is_some();
        let failing: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| (c.outcome == Outcome::Fail && !c.warning) || c.outcome == Outcome::Hung)
            .map(|c| c.name.as_str())
            .collect();
        let action = core::drain_action(report.state, confirmed, sn, &failing);
        if !matches!(action, DrainAction::OperatorDrain(_)) {
            memory.skipped.remove(&name);
        }
        match action {
            DrainAction::None => {}
            DrainAction::Drain(reason) => {
                match run(host, cfg, "scontrol", &core::drain_args(&sn.name, &reason)).await {
                    Ok(_) => {
                        host
                            .event(NewEvent::new(
                                EventKind::SlurmDrained,
                                &name,
                                Severity::Warning,
                                format!(
                                    "{name}: Slurm node {} drained (reason \"{reason}\"): ugro finds it unhealthy",
                                    sn.name
                                ),
                            ))
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "could not drain the Slurm node")
                    }
                }
            }
            DrainAction::Resume => {
                match run(host, cfg, "scontrol", &core::resume_args(&sn.name)).await {
                    Ok(_) => {
                        host
                            .event(NewEvent::new(
                                EventKind::SlurmResumed,
                                &name,
                                Severity::Info,
                                format!(
                                    "{name}: Slurm node {} resumed: healthy again (ugro's drain \"{}\" lifted)",
                                    sn.name, sn.reason
                                ),
                            ))
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "could not resume the Slurm node")
                    }
                }
            }
            DrainAction::OperatorDrain(reason) => {
                if memory.skipped.get(&name) != Some(&reason) {
                    memory.skipped.insert(name.clone(), reason.clone());
                    host
                        .event(NewEvent::new(
                            EventKind::SlurmDrainSkipped,
                            &name,
                            Severity::Info,
                            format!(
                                "{name}: unhealthy, but Slurm node {} is drained by an operator (reason \"{reason}\"): left alone",
                                sn.name
                            ),
                        ))
                        .await;
                }
            }
        }
    }
}
