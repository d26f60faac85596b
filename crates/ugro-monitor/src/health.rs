//! Node health: one task per configured node sweeps its checks at an adaptive interval (locally,
//! or over the node's one SSH session), applies hysteresis, records results, alerts and state
//! transitions, and answers "check now" requests. A probe past its deadline is `hung` and never
//! holds up another check or node. The rules themselves live in `ugro_core::health`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use ugro_core::event::EventKind;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use ugro_core::health::Severity;
use ugro_core::health::{
    self as core, CheckName, CheckResult, Hysteresis, IntervalPolicy, NodeState, Outcome,
};
use ugro_core::parse::{self, GpuReading, NvidiaSmi};

use crate::config::{HealthConfig, NodeConfig, NodeHost};
use crate::host::Host;
use crate::local::run_local;
use crate::ssh::{Exec, ExecOutput, NodeSession, shell_quote};
use crate::store::{NewEvent, NodeStatusRow};
use crate::view::NodeHealth;

/// Marker that separates the probes of one batched remote command.
const MARKER: &str = "@@ugro:";
/// SSH round trips per latency measurement.
const LATENCY_PINGS: usize = 5;
/// Pending "check now" requests per node; more are refused as busy.
const TRIGGER_QUEUE: usize = 8;

/// Everything the daemon knows about one node's health.
pub struct NodeRuntime {
    pub cfg: NodeConfig,
    session: Option<Arc<NodeSession>>,
    report: RwLock<NodeHealth>,
    trigger: mpsc::Sender<oneshot::Sender<NodeHealth>>,
    cancel: CancellationToken,
    hangs: Mutex<BTreeMap<CheckName, u64>>,
    last_good: Mutex<HashMap<CheckName, (DateTime<Utc>, serde_json::Value)>>,
    pytorch_last: Mutex<Option<(Instant, CheckResult)>>,
    sweeps: AtomicU64,
}

impl std::fmt::Debug for NodeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRuntime")
            .field("node", &self.cfg.name)
            .finish()
    }
}

/// Counters of one node for /metrics.
#[derive(Debug, Clone, Default)]
pub struct NodeCounters {
    pub ssh_reconnects: u64,
    pub hangs: BTreeMap<CheckName, u64>,
    pub sweeps: u64,
}

impl NodeRuntime {
    pub fn report(&self) -> NodeHealth {
        self.report
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn counters(&self) -> NodeCounters {
        NodeCounters {
            ssh_reconnects: self.session.as_ref().map_or(0, |s| s.reconnects()),
            hangs: self.hangs.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            sweeps: self.sweeps.load(Ordering::Relaxed),
        }
    }

    /// The node's SSH session (None for the local node), shared with the sampler.
    pub fn session(&self) -> Option<&Arc<NodeSession>> {
        self.session.as_ref()
    }

    /// The node's processes from `ps` over its SSH session (None for the local node, or when
    /// the node cannot be asked now).
    pub async fn remote_processes(&self, deadline: Duration) -> Option<Vec<parse::PsProcess>> {
        let s = self.session.as_ref()?;
        match s.exec(parse::PS_COMMAND, deadline).await {
            Ok(Exec::Done(o)) if o.exit_status == Some(0) => Some(parse::ps_processes(&o.stdout)),
            _ => None,
        }
    }

    fn set_report(&self, r: NodeHealth) {
        *self.report.write().unwrap_or_else(|e| e.into_inner()) = r;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckNowError {
    #[error("no node named \"{0}\"")]
    UnknownNode(String),
    #[error("node \"{0}\" already has {TRIGGER_QUEUE} checks waiting; try again shortly")]
    Busy(String),
    #[error("the check of \"{0}\" did not finish in time")]
    Timeout(String),
}

/// The health of every configured node.
#[derive(Debug, Default)]
pub struct Health {
    nodes: RwLock<BTreeMap<String, Arc<NodeRuntime>>>,
    /// Verdicts stored by a previous daemon, shown until the first sweep.
    restored: Mutex<HashMap<String, NodeStatusRow>>,
}

fn host_label(cfg: &NodeConfig) -> String {
    match &cfg.host {
        NodeHost::Local => "local".into(),
        NodeHost::Remote(r) => format!("{}:{}", r.host, r.port),
    }
}

impl Health {
    pub fn new(restored: Vec<NodeStatusRow>) -> Self {
        Self {
            nodes: RwLock::new(BTreeMap::new()),
            restored: Mutex::new(restored.into_iter().map(|r| (r.node.clone(), r)).collect()),
        }
    }

    /// Every node's report, in name order.
    pub fn reports(&self) -> Vec<NodeHealth> {
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|n| n.report())
            .collect()
    }

    pub fn node(&self, name: &str) -> Option<Arc<NodeRuntime>> {
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn runtimes(&self) -> Vec<Arc<NodeRuntime>> {
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Runs a sweep of `name` now and returns its report.
    pub async fn check_now(
        &self,
        name: &str,
        deadline: Duration,
    ) -> Result<NodeHealth, CheckNowError> {
        let rt = self
            .node(name)
            .ok_or_else(|| CheckNowError::UnknownNode(name.into()))?;
        let (tx, rx) = oneshot::channel();
        rt.trigger
            .try_send(tx)
            .map_err(|_| CheckNowError::Busy(name.into()))?;
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(r)) => Ok(r),
            _ => Err(CheckNowError::Timeout(name.into())),
        }
    }

    fn initial_report(&self, cfg: &NodeConfig) -> (NodeHealth, NodeState) {
        let restored = self
            .restored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cfg.name)
            .cloned();
        let mut r = NodeHealth {
            name: cfg.name.clone(),
            host: host_label(cfg),
            state: NodeState::Unknown,
            healthy: false,
            observed: NodeState::Unknown,
            score: 0,
            last_check: None,
            next_check: None,
            checks: Vec::new(),
            alerts: Vec::new(),
            gpus: Vec::new(),
            interval_seconds: 0,
            restored: false,
        };
        if let Some(row) = restored {
            r.state = row.state;
            r.observed = row.state;
            r.healthy = row.state.is_healthy();
            r.score = row.score;
            r.last_check = row.last_check;
            r.checks = row.checks;
            r.gpus = row.gpus;
            r.restored = true;
        }
        let state = r.state;
        (r, state)
    }
}

/// What the health loops need from the daemon beyond the common [`Host`] services. The
/// daemon's `Shared` implements it.
pub trait HealthHost: Host {
    /// The nodes' live view this module keeps.
    fn health(&self) -> &Health;
    /// A node's state changed (after hysteresis): whoever acts on verdicts looks again now.
    fn verdict_changed(&self);
    /// A sweep finished and its report is published: live views may refresh.
    fn swept(&self);
}

/// Keeps one task per configured node, following config reloads. Beats `hb` while it runs.
pub async fn supervise<H: HealthHost>(
    host: Arc<H>,
    cancel: CancellationToken,
    hb: crate::systemd::Heartbeat,
) {
    crate::supervise::supervise_keyed(
        &*host,
        &cancel,
        &hb,
        |c| {
            c.nodes
                .iter()
                .map(|n| (n.name.clone(), n.clone()))
                .collect()
        },
        |config, name, cfg, token| {
            let (trigger, trigger_rx) = mpsc::channel(TRIGGER_QUEUE);
            let (report, state) = host.health().initial_report(cfg);
            let session = match &cfg.host {
                NodeHost::Local => None,
                NodeHost::Remote(r) => Some(Arc::new(NodeSession::new(r.clone()))),
            };
            let rt = Arc::new(NodeRuntime {
                cfg: cfg.clone(),
                session,
                report: RwLock::new(report),
                trigger,
                cancel: token,
                hangs: Mutex::new(BTreeMap::new()),
                last_good: Mutex::new(HashMap::new()),
                pytorch_last: Mutex::new(None),
                sweeps: AtomicU64::new(0),
            });
            host.health()
                .nodes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone(), rt.clone());
            // A node removed or changed by a reload ends its loop on purpose: retired, not dead.
            let node_hb = host.heartbeats().register_until(
                &format!("health:{name}"),
                node_gap(&config.health),
                &rt.cancel,
            );
            let span = tracing::info_span!("node", node = %name);
            tokio::spawn(tracing::Instrument::instrument(
                node_loop(host.clone(), rt, state, trigger_rx, node_hb),
                span,
            ));
        },
        |name| {
            host.health()
                .nodes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
        },
    )
    .await;
    // Close the SSH sessions politely (bounded).
    let sessions: Vec<Arc<NodeSession>> = host
        .health()
        .runtimes()
        .iter()
        .filter_map(|r| r.session.clone())
        .collect();
    let _ = tokio::time::timeout(Duration::from_millis(1500), async {
        for s in sessions {
            s.disconnect().await;
        }
    })
    .await;
}

/// The longest a node task may stay silent: a whole sweep (the slowest probe) plus a beat gap.
fn node_gap(h: &HealthConfig) -> Duration {
    h.pytorch_timeout
        .max(h.probe_timeout)
        .saturating_mul(2)
        .saturating_add(Duration::from_secs(60))
}

async fn node_loop<H: HealthHost>(
    host: Arc<H>,
    rt: Arc<NodeRuntime>,
    initial: NodeState,
    mut trigger_rx: mpsc::Receiver<oneshot::Sender<NodeHealth>>,
    hb: crate::systemd::Heartbeat,
) {
    let policy_of = |h: &HealthConfig| IntervalPolicy {
        base: h.interval,
        min: h.min_interval,
        max: h.max_interval,
    };
    let mut hyst = if initial == NodeState::Unknown {
        Hysteresis::new(NodeState::Unknown)
    } else {
        Hysteresis::restore(initial)
    };
    let mut cadence = core::Cadence::new(&policy_of(&host.config().health));
    // First sweep soon after start, spread a little so nodes do not start in lockstep.
    let mut next = tokio::time::Instant::now() + Duration::from_millis(rand::random_range(0..500));
    let mut beat = tokio::time::interval(crate::supervise::BEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut waiters = Vec::new();
        let force = tokio::select! {
            _ = rt.cancel.cancelled() => return,
            _ = beat.tick() => { hb.beat(); continue; }
            _ = tokio::time::sleep_until(next) => false,
            req = trigger_rx.recv() => match req {
                Some(tx) => { waiters.push(tx); true }
                None => return,
            },
        };
        while let Ok(tx) = trigger_rx.try_recv() {
            waiters.push(tx);
        }
        let h = host.config().health.clone();
        let started = Utc::now();
        let (results, gpus) = tokio::select! {
            _ = rt.cancel.cancelled() => return,
            r = sweep(&rt, &h, force) => r,
        };
        hb.beat();
        rt.sweeps.fetch_add(1, Ordering::Relaxed);
        for r in results.iter().filter(|r| r.outcome == Outcome::Hung) {
            *rt.hangs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(r.name)
                .or_default() += 1;
        }

        let verdict = core::verdict(&results, h.pass_rate);
        let transition = hyst.observe(verdict.state);
        let stable = core::Cadence::is_stable_healthy(&results, transition.as_ref(), hyst.state);
        let interval = cadence.after_sweep(&policy_of(&h), stable);
        let wait = core::Cadence::jittered(interval, rand::random_range(-1.0..=1.0));
        let now_i = tokio::time::Instant::now();
        next = now_i
            .checked_add(wait)
            .unwrap_or(now_i + Duration::from_secs(3600));
        let now = Utc::now();
        let next_check = chrono::Duration::from_std(wait)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(now);

        let name = rt.cfg.name.clone();
        let alerts = core::alerts(&results, &gpus, h.gpu_temp_max);
        let open = match host.store().sync_alerts(&name, now, &alerts).await {
            Ok(changes) => {
                for a in &changes.opened {
                    host.event(NewEvent::new(
                        EventKind::NodeAlertOpened,
                        &name,
                        match a.severity {
                            Severity::Critical => Severity::Critical,
                            _ => Severity::Warning,
                        },
                        format!("{name}: {}", a.message),
                    ))
                    .await;
                }
                for (_, message) in &changes.resolved {
                    host.event(NewEvent::new(
                        EventKind::NodeAlertResolved,
                        &name,
                        Severity::Info,
                        format!("{name}: resolved: {message}"),
                    ))
                    .await;
                }
                changes.open
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record alerts");
                rt.report().alerts
            }
        };
        if let Some(t) = transition {
            host.verdict_changed();
            let severity = match t.to {
                NodeState::Healthy | NodeState::Unknown => Severity::Info,
                NodeState::Degraded => Severity::Warning,
                NodeState::Unhealthy | NodeState::Unreachable => Severity::Critical,
            };
            let why = if verdict.reasons.is_empty() {
                "all checks pass".to_string()
            } else {
                verdict.reasons.join("; ")
            };
            host.event(NewEvent::new(
                EventKind::NodeStateChanged,
                &name,
                severity,
                format!(
                    "{name}: {} → {} (score {}): {why}",
                    t.from, t.to, verdict.score
                ),
            ))
            .await;
        }
        let row = NodeStatusRow {
            node: name.clone(),
            state: hyst.state,
            score: verdict.score,
            last_check: Some(started),
            next_check: Some(next_check),
            checks: results.clone(),
            gpus: gpus.clone(),
        };
        if let Err(e) = host.store().save_sweep(&row, now).await {
            tracing::error!(error = %e, "could not record the sweep");
        }
        let report = NodeHealth {
            name: name.clone(),
            host: host_label(&rt.cfg),
            state: hyst.state,
            healthy: hyst.state.is_healthy(),
            observed: verdict.state,
            score: verdict.score,
            last_check: Some(started),
            next_check: Some(next_check),
            checks: results,
            alerts: open,
            gpus,
            interval_seconds: interval.as_secs(),
            restored: false,
        };
        rt.set_report(report.clone());
        host.swept();
        for w in waiters {
            let _ = w.send(report.clone());
        }
    }
}

/// One sweep of every check of a node. Never takes longer than the slowest deadline.
async fn sweep(
    rt: &NodeRuntime,
    h: &HealthConfig,
    force: bool,
) -> (Vec<CheckResult>, Vec<GpuReading>) {
    let (mut results, gpus) = match &rt.session {
        None => sweep_local(rt, h).await,
        Some(s) => sweep_remote(rt, s, h, force).await,
    };
    // Keep the last good value of each check visible while it is hung or unreachable.
    let now = Utc::now();
    let mut last = rt.last_good.lock().unwrap_or_else(|e| e.into_inner());
    for r in &mut results {
        match (r.outcome, &r.value) {
            (Outcome::Pass | Outcome::Fail, Some(v)) => {
                last.insert(r.name, (now, v.clone()));
            }
            (Outcome::Hung | Outcome::Skipped, None) => {
                if let Some((at, v)) = last.get(&r.name)
                    && (r.outcome == Outcome::Hung || rt.session.is_some())
                {
                    r.value = Some(v.clone());
                    r.message = format!(
                        "{}; last good value from {}",
                        r.message,
                        at.format("%Y-%m-%d %H:%M:%S UTC")
                    );
                }
            }
            _ => {}
        }
    }
    (results, gpus)
}

fn elapsed_ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The batched cheap probes: each behind a marker, the hang-prone `df` under its own timeout.
fn batch_script(disk_paths: &[std::path::PathBuf], probe_timeout: Duration) -> String {
    let paths: Vec<String> = disk_paths
        .iter()
        .map(|p| shell_quote(&p.display().to_string()))
        .collect();
    let paths = paths.join(" ");
    let t = probe_timeout.as_secs().saturating_sub(1).max(1);
    format!(
        "echo {m}noop; true; echo {m}noop:rc=$?\n\
         echo {m}loadavg; cat /proc/loadavg; echo {m}loadavg:rc=$?\n\
         echo {m}nproc; nproc; echo {m}nproc:rc=$?\n\
         echo {m}meminfo; cat /proc/meminfo; echo {m}meminfo:rc=$?\n\
         echo {m}df; timeout -k 1 {t} df -P -B1 -- {paths}; echo {m}df:rc=$?\n\
         echo {m}dfi; timeout -k 1 {t} df -P -i -- {paths}; echo {m}dfi:rc=$?\n",
        m = MARKER
    )
}

async fn sweep_remote(
    rt: &NodeRuntime,
    s: &NodeSession,
    h: &HealthConfig,
    force: bool,
) -> (Vec<CheckResult>, Vec<GpuReading>) {
    use CheckName::*;
    let t = Instant::now();
    if let Err(e) = s.ensure_fresh_login(force, h.login_check_interval).await {
        let ssh = CheckResult::fail(Ssh, e.to_string()).with_duration(elapsed_ms(t));
        let why = format!("not checked: {} is unreachable", s.addr());
        let mut results = vec![ssh];
        for name in [Latency, Gpu, Pytorch, Disk, Memory, Load] {
            results.push(CheckResult::skipped(name, why.clone()));
        }
        return (results, Vec::new());
    }

    let latency = async {
        let t = Instant::now();
        let r = match s.ping(LATENCY_PINGS, h.probe_timeout).await {
            Ok(mut rtts) => {
                rtts.sort();
                let median = rtts[rtts.len() / 2];
                let ms = median.as_secs_f64() * 1000.0;
                let max_ms = h.latency_max.as_secs_f64() * 1000.0;
                let msg = format!("median of {} round trips {ms:.1} ms", rtts.len());
                if median > h.latency_max {
                    CheckResult::fail(Latency, format!("{msg} > {max_ms:.0} ms"))
                } else {
                    CheckResult::pass(Latency, msg)
                }
                .with_value(serde_json::json!((ms * 10.0).round() / 10.0))
                .with_threshold(serde_json::json!(max_ms))
            }
            Err(crate::ssh::SshError::Timeout { .. }) => {
                CheckResult::hung(Latency, h.probe_timeout)
            }
            Err(e) => CheckResult::fail(Latency, e.to_string()),
        };
        r.with_duration(elapsed_ms(t))
    };
    let batch = async {
        let t = Instant::now();
        let r = s
            .exec(
                &batch_script(&rt.cfg.disk_paths, h.probe_timeout),
                h.probe_timeout,
            )
            .await;
        (r, elapsed_ms(t))
    };
    let gpu = async {
        let t = Instant::now();
        let cmd = format!(
            "nvidia-smi --query-gpu={} --format=csv,noheader,nounits",
            parse::NVIDIA_SMI_QUERY
        );
        let r = match s.exec(&cmd, h.probe_timeout).await {
            Ok(Exec::Done(o)) => gpu_from_output(&o, rt.cfg.gpus),
            Ok(Exec::Hung) => (CheckResult::hung(Gpu, h.probe_timeout), Vec::new()),
            Err(e) => (CheckResult::fail(Gpu, e.to_string()), Vec::new()),
        };
        (r.0.with_duration(elapsed_ms(t)), r.1)
    };
    let pytorch = pytorch_check(rt, h, |python| async move {
        let cmd = format!(
            "{} -c {}",
            shell_quote(&python),
            shell_quote(parse::PYTORCH_PROBE)
        );
        s.exec(&cmd, h.pytorch_timeout)
            .await
            .map_err(|e| e.to_string())
    });
    // Latency first, alone: measured beside the other probes it would include the daemon's
    // own queueing under load.
    let latency = latency.await;
    let ((batch, batch_ms), (gpu, gpus), pytorch) = tokio::join!(batch, gpu, pytorch);
    // The batch starts with a no-op: it running is the ssh check's "a command ran".
    let connect_ms = elapsed_ms(t).saturating_sub(batch_ms);
    let ssh = match &batch {
        Ok(Exec::Done(o))
            if parse::section_rc(&parse::sections(&o.stdout, MARKER), "noop") == Some(0) =>
        {
            CheckResult::pass(
                Ssh,
                format!("connected as {} and ran a no-op", rt.cfg_user()),
            )
        }
        Ok(Exec::Done(o)) => CheckResult::fail(
            Ssh,
            format!(
                "commands do not run: exit {:?}: {}",
                o.exit_status,
                o.stderr.trim()
            ),
        ),
        Ok(Exec::Hung) => CheckResult::hung(Ssh, h.probe_timeout),
        Err(e) => CheckResult::fail(Ssh, e.to_string()),
    }
    .with_duration(connect_ms + batch_ms);
    let (disk, memory, load) = match batch {
        Ok(Exec::Done(o)) => from_batch(&o.stdout, h),
        Ok(Exec::Hung) => (
            CheckResult::hung(Disk, h.probe_timeout),
            CheckResult::hung(Memory, h.probe_timeout),
            CheckResult::hung(Load, h.probe_timeout),
        ),
        Err(e) => (
            CheckResult::fail(Disk, e.to_string()),
            CheckResult::fail(Memory, e.to_string()),
            CheckResult::fail(Load, e.to_string()),
        ),
    };
    (
        vec![
            ssh,
            latency,
            gpu,
            pytorch,
            disk.with_duration(batch_ms),
            memory.with_duration(batch_ms),
            load.with_duration(batch_ms),
        ],
        gpus,
    )
}

impl NodeRuntime {
    fn cfg_user(&self) -> String {
        match &self.cfg.host {
            NodeHost::Remote(r) => r.user.clone(),
            NodeHost::Local => String::new(),
        }
    }
}

/// Disk, memory and load from the batched probe's output.
fn from_batch(stdout: &str, h: &HealthConfig) -> (CheckResult, CheckResult, CheckResult) {
    use CheckName::*;
    let s = parse::sections(stdout, MARKER);
    let text = |k: &str| s.get(k).map(String::as_str).unwrap_or("");
    let load = match (
        parse::loadavg(text("loadavg")),
        text("nproc").trim().parse::<u32>(),
    ) {
        (Ok(loads), Ok(cores)) => parse::load_check(loads, cores, h.load_per_core_max),
        (Err(e), _) => CheckResult::fail(Load, e.to_string()),
        (_, Err(_)) => CheckResult::fail(
            Load,
            format!("unreadable core count {:?}", text("nproc").trim()),
        ),
    };
    let memory = match parse::meminfo(text("meminfo")) {
        Ok((total, avail)) => {
            parse::memory_check(total, avail, parse::DEFAULT_MIN_AVAILABLE_FRACTION)
        }
        Err(e) => CheckResult::fail(Memory, e.to_string()),
    };
    let disk = match (parse::section_rc(&s, "df"), parse::section_rc(&s, "dfi")) {
        (Some(124 | 137), _) | (_, Some(124 | 137)) => CheckResult::hung(Disk, h.probe_timeout)
            .with_threshold(serde_json::json!(h.disk_free_min)),
        _ => match (parse::df_bytes(text("df")), parse::df_inodes(text("dfi"))) {
            (Ok(b), Ok(i)) => parse::disk_check(&parse::disk_usage(&b, &i), h.disk_free_min),
            (Err(e), _) | (_, Err(e)) => CheckResult::fail(Disk, e.to_string()),
        },
    };
    (disk, memory, load)
}

/// The GPU check from nvidia-smi's output; `exit 127` means there is no nvidia-smi.
fn gpu_from_output(o: &ExecOutput, expected: Option<u32>) -> (CheckResult, Vec<GpuReading>) {
    if o.exit_status == Some(127) {
        let none = NvidiaSmi {
            gpus: Vec::new(),
            problems: Vec::new(),
        };
        let r = parse::gpu_check(&none, expected, true);
        let r = if r.outcome == Outcome::Fail {
            CheckResult {
                message: format!("nvidia-smi not found: {}", r.message),
                ..r
            }
        } else {
            CheckResult {
                message: "no nvidia-smi on the node and no GPUs declared".into(),
                ..r
            }
        };
        return (r, Vec::new());
    }
    match parse::nvidia_smi_gpus(&o.stdout) {
        Ok(smi) => {
            let mut r = parse::gpu_check(&smi, expected, o.exit_status == Some(0));
            if r.outcome == Outcome::Fail && smi.problems.is_empty() && !o.stderr.trim().is_empty()
            {
                r.message = format!("{}: {}", r.message, o.stderr.trim());
            }
            (r, smi.gpus)
        }
        Err(e) => (CheckResult::fail(CheckName::Gpu, e.to_string()), Vec::new()),
    }
}

/// The PyTorch check on its own cadence: runs `run(python)` when due, else reuses the last.
async fn pytorch_check<'a, F, Fut>(rt: &'a NodeRuntime, h: &HealthConfig, run: F) -> CheckResult
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<Exec, String>> + 'a,
{
    let Some(python) = rt.cfg.python.clone() else {
        return CheckResult::skipped(CheckName::Pytorch, "no `python` configured for this node");
    };
    let due = rt
        .pytorch_last
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_none_or(|(at, _)| at.elapsed() >= h.pytorch_interval);
    if !due
        && let Some((_, last)) = rt
            .pytorch_last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
    {
        return last.clone();
    }
    let t = Instant::now();
    let r = match run(python).await {
        Ok(Exec::Done(o)) => parse::pytorch_check(&o.stdout, o.exit_status, rt.cfg.gpus),
        Ok(Exec::Hung) => CheckResult::hung(CheckName::Pytorch, h.pytorch_timeout),
        Err(e) => CheckResult::fail(CheckName::Pytorch, e),
    }
    .with_duration(elapsed_ms(t));
    *rt.pytorch_last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), r.clone()));
    r
}

// ---------------------------------------------------------------------------------------------
// The local node: /proc, statvfs, NVML (optional at run time), local processes.

async fn sweep_local(rt: &NodeRuntime, h: &HealthConfig) -> (Vec<CheckResult>, Vec<GpuReading>) {
    use CheckName::*;
    let load = async {
        let t = Instant::now();
        let r = match tokio::fs::read_to_string("/proc/loadavg").await {
            Ok(text) => match parse::loadavg(&text) {
                Ok(loads) => {
                    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
                    parse::load_check(loads, cores, h.load_per_core_max)
                }
                Err(e) => CheckResult::fail(Load, e.to_string()),
            },
            Err(e) => CheckResult::fail(Load, format!("reading /proc/loadavg: {e}")),
        };
        r.with_duration(elapsed_ms(t))
    };
    let memory = async {
        let t = Instant::now();
        let r = match tokio::fs::read_to_string("/proc/meminfo").await {
            Ok(text) => match parse::meminfo(&text) {
                Ok((total, avail)) => {
                    parse::memory_check(total, avail, parse::DEFAULT_MIN_AVAILABLE_FRACTION)
                }
                Err(e) => CheckResult::fail(Memory, e.to_string()),
            },
            Err(e) => CheckResult::fail(Memory, format!("reading /proc/meminfo: {e}")),
        };
        r.with_duration(elapsed_ms(t))
    };
    let disk = async {
        let t = Instant::now();
        let paths = rt.cfg.disk_paths.clone();
        // statvfs on a dead network mount blocks: bound it (the blocked thread is abandoned).
        let job = tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .map(|p| statvfs_usage(p))
                .collect::<Result<Vec<_>, String>>()
        });
        let r = match tokio::time::timeout(h.probe_timeout, job).await {
            Ok(Ok(Ok(disks))) => parse::disk_check(&disks, h.disk_free_min),
            Ok(Ok(Err(e))) => CheckResult::fail(Disk, e),
            Ok(Err(e)) => CheckResult::fail(Disk, format!("disk probe failed: {e}")),
            Err(_) => CheckResult::hung(Disk, h.probe_timeout),
        };
        r.with_duration(elapsed_ms(t))
    };
    let gpu = async {
        let t = Instant::now();
        let (r, gpus) = local_gpu(rt.cfg.gpus, h.probe_timeout).await;
        (r.with_duration(elapsed_ms(t)), gpus)
    };
    let pytorch = pytorch_check(rt, h, |python| async move {
        run_local(&python, &["-c", parse::PYTORCH_PROBE], h.pytorch_timeout).await
    });
    let (load, memory, disk, (gpu, gpus), pytorch) = tokio::join!(load, memory, disk, gpu, pytorch);
    let local = "local node: checked without SSH";
    (
        vec![
            CheckResult::skipped(Ssh, local),
            CheckResult::skipped(Latency, local),
            gpu,
            pytorch,
            disk,
            memory,
            load,
        ],
        gpus,
    )
}

fn statvfs_usage(path: &Path) -> Result<parse::DiskUsage, String> {
    let s =
        nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    let frag = s.fragment_size() as u64;
    Ok(parse::DiskUsage {
        path: path.display().to_string(),
        total_bytes: (s.blocks() as u64).saturating_mul(frag),
        avail_bytes: (s.blocks_available() as u64).saturating_mul(frag),
        inodes_total: s.files() as u64,
        inodes_free: s.files_available() as u64,
    })
}

/// The local GPU check: NVML ([`crate::local`]), else an `nvidia-smi` on PATH, which is also
/// absent on a machine without NVIDIA GPUs.
async fn local_gpu(expected: Option<u32>, deadline: Duration) -> (CheckResult, Vec<GpuReading>) {
    use crate::local::NvmlOutcome;
    match crate::local::gpus_and_apps(deadline).await {
        NvmlOutcome::Read(r) => {
            let smi = NvidiaSmi {
                gpus: r.gpus,
                problems: Vec::new(),
            };
            let r = parse::gpu_check(&smi, expected, true);
            (r, smi.gpus)
        }
        NvmlOutcome::Absent(why) => {
            let cmd = format!("--query-gpu={}", parse::NVIDIA_SMI_QUERY);
            match run_local(
                "nvidia-smi",
                &[&cmd, "--format=csv,noheader,nounits"],
                deadline,
            )
            .await
            {
                Ok(Exec::Done(o)) => {
                    let (mut r, gpus) = gpu_from_output(&o, expected);
                    if o.exit_status == Some(127) {
                        r.message = if r.outcome == Outcome::Skipped {
                            format!(
                                "no NVIDIA driver on this machine (NVML: {why}; no nvidia-smi) and no GPUs declared"
                            )
                        } else {
                            format!(
                                "no NVIDIA driver: NVML: {why}; nvidia-smi not found; {} GPU(s) declared",
                                expected.unwrap_or(0)
                            )
                        };
                    }
                    (r, gpus)
                }
                Ok(Exec::Hung) => (CheckResult::hung(CheckName::Gpu, deadline), Vec::new()),
                Err(e) => (CheckResult::fail(CheckName::Gpu, e), Vec::new()),
            }
        }
        NvmlOutcome::Hung => (CheckResult::hung(CheckName::Gpu, deadline), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_output_becomes_three_checks() {
        let h = crate::config::parse(Path::new("/etc/ugro/x.toml"), "")
            .unwrap()
            .health;
        let out = "@@ugro:loadavg\n0.50 0.40 0.30 1/200 999\n@@ugro:loadavg:rc=0\n\
                   @@ugro:nproc\n8\n@@ugro:nproc:rc=0\n\
                   @@ugro:meminfo\nMemTotal:       16000000 kB\nMemFree: 1000 kB\nMemAvailable:   8000000 kB\n@@ugro:meminfo:rc=0\n\
                   @@ugro:df\nFilesystem 1-blocks Used Available Capacity Mounted on\n/dev/vda1 100000000000 20000000000 80000000000 20% /\n@@ugro:df:rc=0\n\
                   @@ugro:dfi\nFilesystem Inodes IUsed IFree IUse% Mounted on\n/dev/vda1 6000000 100000 5900000 2% /\n@@ugro:dfi:rc=0\n";
        let (disk, memory, load) = from_batch(out, &h);
        assert_eq!(disk.outcome, Outcome::Pass, "{}", disk.message);
        assert_eq!(memory.outcome, Outcome::Pass, "{}", memory.message);
        assert_eq!(load.outcome, Outcome::Pass, "{}", load.message);

        let hung_df = out.replace("@@ugro:df:rc=0", "@@ugro:df:rc=124");
        assert_eq!(from_batch(&hung_df, &h).0.outcome, Outcome::Hung);
    }

    #[test]
    fn batch_script_quotes_paths_and_bounds_df() {
        let s = batch_script(&["/".into(), "/data dir".into()], Duration::from_secs(15));
        assert!(
            s.contains("timeout -k 1 14 df -P -B1 -- '/' '/data dir'"),
            "{s}"
        );
    }

    #[test]
    fn missing_nvidia_smi_is_skipped_unless_gpus_are_declared() {
        let o = ExecOutput {
            exit_status: Some(127),
            ..Default::default()
        };
        assert_eq!(gpu_from_output(&o, None).0.outcome, Outcome::Skipped);
        let (r, _) = gpu_from_output(&o, Some(8));
        assert_eq!(r.outcome, Outcome::Fail);
        assert!(r.message.contains("nvidia-smi not found"), "{}", r.message);
    }
}
