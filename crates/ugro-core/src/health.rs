//! Node health rules: check results and their wire shape, the verdict (score and state) of one
//! sweep, hysteresis between sweeps, the adaptive sweep interval and the alerts a sweep raises.
//!
//! Everything here is pure: callers pass the results of a sweep, the previous state and a jitter
//! value; nothing reads a clock or draws a random number.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::parse::GpuReading;

/// Default minimum pass rate (`[health] pass_rate`).
pub const DEFAULT_PASS_RATE: f64 = 0.9;

/// Default GPU temperature above which an alert is raised, in °C.
pub const DEFAULT_GPU_TEMP_MAX: f64 = 85.0;

/// Consecutive sweeps that must agree on a new state before a node changes state.
pub const CONFIRMATIONS: u32 = 2;

/// The shortest interval [`Cadence::jittered`] ever returns, whatever the policy.
pub const MIN_JITTERED: Duration = Duration::from_millis(100);

/// Default load per core above which a node is overloaded (`[health] load_per_core_max`): the
/// load check fails when both the 5- and the 15-minute load averages exceed this many runnable
/// tasks per core. Glances and the Linuxfabrik load check call a 15-minute load above 5 per
/// core critical; netdata's 2× is only a warning, which is what busy is here.
pub const DEFAULT_LOAD_PER_CORE_MAX: f64 = 5.0;

/// Load per core above which a node is busy: more runnable tasks than cores over 15 minutes
/// (Glances' warning level). A busy node's load check fails only as a warning
/// ([`CheckResult::warning`]).
pub const LOAD_BUSY_PER_CORE: f64 = 1.0;

/// One kind of health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckName {
    Ssh,
    Latency,
    Gpu,
    Pytorch,
    Disk,
    Memory,
    Load,
}

impl CheckName {
    /// Every check, in the order a sweep reports them.
    pub const ALL: [CheckName; 7] = [
        CheckName::Ssh,
        CheckName::Latency,
        CheckName::Gpu,
        CheckName::Pytorch,
        CheckName::Disk,
        CheckName::Memory,
        CheckName::Load,
    ];

    /// The name used in JSON, the database and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Ssh => "ssh",
            CheckName::Latency => "latency",
            CheckName::Gpu => "gpu",
            CheckName::Pytorch => "pytorch",
            CheckName::Disk => "disk",
            CheckName::Memory => "memory",
            CheckName::Load => "load",
        }
    }

    /// Weight of the check in the score.
    pub fn weight(self) -> u32 {
        match self {
            CheckName::Ssh | CheckName::Gpu => 3,
            CheckName::Pytorch | CheckName::Disk => 2,
            CheckName::Latency | CheckName::Memory | CheckName::Load => 1,
        }
    }

    /// A failing critical check makes the node unreachable (ssh) or unhealthy (gpu) whatever the
    /// score.
    pub fn is_critical(self) -> bool {
        matches!(self, CheckName::Ssh | CheckName::Gpu)
    }

    /// Parses the JSON/database name.
    pub fn parse(s: &str) -> Option<CheckName> {
        CheckName::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one check in one sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not applicable to this node (e.g. ssh for the local node); not counted in the score.
    Skipped,
    /// The probe did not answer by its deadline. Counts as applicable and not passed.
    Hung,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skipped => "skipped",
            Outcome::Hung => "hung",
        }
    }

    /// `Some(true)` for pass, `Some(false)` for fail and hung, `None` for skipped.
    pub fn passed(self) -> Option<bool> {
        match self {
            Outcome::Pass => Some(true),
            Outcome::Fail | Outcome::Hung => Some(false),
            Outcome::Skipped => None,
        }
    }

    /// Failed or hung.
    pub fn is_bad(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Hung)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one check in one sweep.
///
/// JSON shape (docs/ARCHITECTURE.md "Contracts", `health` → `checks`): `{"name", "passed": bool|null, "status":
/// "pass|fail|skipped|hung", "value", "threshold", "message", "duration_ms"}`, plus
/// `"warning": true` on a failure that is only a warning. `passed` is derived from the outcome. When reading, `status` wins; without it the outcome is derived
/// from `passed` (true → pass, false → fail, null → skipped). A `status` that contradicts
/// `passed` is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "CheckResultWire", try_from = "CheckResultWire")]
pub struct CheckResult {
    pub name: CheckName,
    pub outcome: Outcome,
    /// What was measured (number, or an object for checks with several readings).
    pub value: Option<serde_json::Value>,
    /// What it was compared against.
    pub threshold: Option<serde_json::Value>,
    /// One short human line, e.g. "median 180 ms > 100 ms".
    pub message: String,
    pub duration_ms: u64,
    /// A failure that is only a warning (a busy, not overloaded, node's load): it lowers the
    /// score by half the check's weight but counts as passed for the state ([`verdict`]), raises
    /// no alert and does not keep the sweep interval short. Always false unless `outcome` is
    /// [`Outcome::Fail`].
    pub warning: bool,
}

impl CheckResult {
    fn new(name: CheckName, outcome: Outcome, message: impl Into<String>) -> Self {
        CheckResult {
            name,
            outcome,
            value: None,
            threshold: None,
            message: message.into(),
            duration_ms: 0,
            warning: false,
        }
    }

    /// A failure that is only a warning (see [`CheckResult::warning`]).
    pub fn warn(name: CheckName, message: impl Into<String>) -> Self {
        let mut r = Self::new(name, Outcome::Fail, message);
        r.warning = true;
        r
    }

    /// Failed or hung, and not only a warning: what makes a sweep not clean.
    pub fn is_failure(&self) -> bool {
        self.outcome.is_bad() && !self.is_warning()
    }

    pub fn pass(name: CheckName, message: impl Into<String>) -> Self {
        Self::new(name, Outcome::Pass, message)
    }

    pub fn fail(name: CheckName, message: impl Into<String>) -> Self {
        Self::new(name, Outcome::Fail, message)
    }

    pub fn skipped(name: CheckName, message: impl Into<String>) -> Self {
        Self::new(name, Outcome::Skipped, message)
    }

    /// The probe did not answer within `deadline` and was killed. `duration_ms` is the deadline.
    pub fn hung(name: CheckName, deadline: Duration) -> Self {
        let ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        Self::new(
            name,
            Outcome::Hung,
            format!(
                "no answer within {} (hung); the probe was killed",
                fmt_duration(deadline)
            ),
        )
        .with_duration(ms)
    }

    /// Sets the measured value. `Value::Null` is stored as `None`.
    pub fn with_value(mut self, value: serde_json::Value) -> Self {
        self.value = (!value.is_null()).then_some(value);
        self
    }

    /// Sets the threshold. `Value::Null` is stored as `None`.
    pub fn with_threshold(mut self, threshold: serde_json::Value) -> Self {
        self.threshold = (!threshold.is_null()).then_some(threshold);
        self
    }

    pub fn with_duration(mut self, ms: u64) -> Self {
        self.duration_ms = ms;
        self
    }

    /// `Some(true)` for pass, `Some(false)` for fail and hung, `None` for skipped.
    pub fn passed(&self) -> Option<bool> {
        self.outcome.passed()
    }

    /// "name: message", the line used in reasons and alerts ("name (warning): message" for a
    /// warning).
    pub fn reason(&self) -> String {
        if self.is_warning() {
            format!("{} (warning): {}", self.name, self.message)
        } else {
            format!("{}: {}", self.name, self.message)
        }
    }

    /// A failure that is only a warning.
    pub fn is_warning(&self) -> bool {
        self.warning && self.outcome == Outcome::Fail
    }
}

/// The JSON form of [`CheckResult`].
#[derive(Serialize, Deserialize)]
struct CheckResultWire {
    name: CheckName,
    passed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Outcome>,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    threshold: Option<serde_json::Value>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    duration_ms: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    warning: bool,
}

impl From<CheckResult> for CheckResultWire {
    fn from(r: CheckResult) -> Self {
        let warning = r.is_warning();
        CheckResultWire {
            name: r.name,
            passed: r.outcome.passed(),
            status: Some(r.outcome),
            value: r.value,
            threshold: r.threshold,
            warning,
            message: r.message,
            duration_ms: r.duration_ms,
        }
    }
}

impl TryFrom<CheckResultWire> for CheckResult {
    type Error = String;

    fn try_from(w: CheckResultWire) -> Result<Self, Self::Error> {
        let outcome = match (w.status, w.passed) {
            (Some(status), passed) if status.passed() == passed => status,
            (Some(status), passed) => {
                return Err(format!(
                    "check {}: status \"{}\" contradicts passed {}",
                    w.name,
                    status,
                    passed.map_or("null".to_owned(), |p| p.to_string())
                ));
            }
            (None, Some(true)) => Outcome::Pass,
            (None, Some(false)) => Outcome::Fail,
            (None, None) => Outcome::Skipped,
        };
        Ok(CheckResult {
            name: w.name,
            outcome,
            value: w.value,
            threshold: w.threshold,
            warning: w.warning && outcome == Outcome::Fail,
            message: w.message,
            duration_ms: w.duration_ms,
        })
    }
}

/// The state of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Healthy,
    Degraded,
    Unhealthy,
    /// ssh failed or hung.
    Unreachable,
    /// Never checked, or no check was applicable.
    Unknown,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Healthy => "healthy",
            NodeState::Degraded => "degraded",
            NodeState::Unhealthy => "unhealthy",
            NodeState::Unreachable => "unreachable",
            NodeState::Unknown => "unknown",
        }
    }

    pub fn is_healthy(self) -> bool {
        self == NodeState::Healthy
    }

    /// Parses the JSON/database name.
    pub fn parse(s: &str) -> Option<NodeState> {
        [
            NodeState::Healthy,
            NodeState::Degraded,
            NodeState::Unhealthy,
            NodeState::Unreachable,
            NodeState::Unknown,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The judgement of one sweep, before hysteresis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// round(100 × passed weight / applicable weight); 0 when nothing was applicable.
    pub score: u8,
    /// passed weight / applicable weight, in [0, 1]; 0 when nothing was applicable.
    pub pass_rate: f64,
    pub state: NodeState,
    /// One line per failing or hung check: "name: message".
    pub reasons: Vec<String>,
}

/// Judges one sweep.
///
/// Skipped checks are not applicable; hung checks are applicable and not passed. A warning
/// ([`CheckResult::warning`]) counts as passed for the pass rate and as half passed for the
/// score, so a busy node keeps its state and shows it in its score. State, first rule that
/// applies: ssh failed or hung → unreachable; another critical check (gpu) failed or hung →
/// unhealthy; pass rate ≥ `pass_rate_min` → healthy; pass rate < 0.5 → unhealthy; else
/// degraded. No applicable check at all → score 0, unknown.
pub fn verdict(results: &[CheckResult], pass_rate_min: f64) -> Verdict {
    // In half weights, so a warning's half credit stays an integer.
    let mut applicable: u64 = 0;
    let mut passed: u64 = 0;
    let mut scored: u64 = 0;
    for r in results {
        let w = 2 * u64::from(r.name.weight());
        match r.outcome.passed() {
            Some(true) => {
                applicable += w;
                passed += w;
                scored += w;
            }
            Some(false) if r.is_warning() => {
                applicable += w;
                passed += w;
                scored += w / 2;
            }
            Some(false) => applicable += w,
            None => {}
        }
    }
    let reasons: Vec<String> = results
        .iter()
        .filter(|r| r.outcome.is_bad())
        .map(CheckResult::reason)
        .collect();
    if applicable == 0 {
        return Verdict {
            score: 0,
            pass_rate: 0.0,
            state: NodeState::Unknown,
            reasons,
        };
    }
    let pass_rate = passed as f64 / applicable as f64;
    // Integer rounding, half up: round(100 × scored / applicable).
    let score = ((200 * scored + applicable) / (2 * applicable)).min(100);
    let score = u8::try_from(score).unwrap_or(100);

    let bad = |name: CheckName| results.iter().any(|r| r.name == name && r.is_failure());
    let state = if bad(CheckName::Ssh) {
        NodeState::Unreachable
    } else if results
        .iter()
        .any(|r| r.name.is_critical() && r.is_failure())
    {
        NodeState::Unhealthy
    } else if pass_rate + 1e-9 >= pass_rate_min {
        NodeState::Healthy
    } else if pass_rate < 0.5 {
        NodeState::Unhealthy
    } else {
        NodeState::Degraded
    };
    Verdict {
        score,
        pass_rate,
        state,
        reasons,
    }
}

/// A change of a node's (confirmed) state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub from: NodeState,
    pub to: NodeState,
}

/// Damps flapping: a node changes state only after [`CONFIRMATIONS`] consecutive sweeps agree on
/// the new state. Leaving `Unknown` (never checked) is immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hysteresis {
    /// The confirmed state.
    pub state: NodeState,
    /// A different state seen on the last sweeps, and on how many consecutive ones.
    pub pending: Option<(NodeState, u32)>,
}

impl Hysteresis {
    pub fn new(initial: NodeState) -> Self {
        Hysteresis {
            state: initial,
            pending: None,
        }
    }

    /// After a daemon restart: the last known state, nothing pending.
    pub fn restore(state: NodeState) -> Self {
        Self::new(state)
    }

    /// Feeds the state judged by one sweep; returns the transition if the confirmed state changed.
    pub fn observe(&mut self, observed: NodeState) -> Option<Transition> {
        if observed == self.state {
            self.pending = None;
            return None;
        }
        let count = match self.pending {
            Some((pending, n)) if pending == observed => n.saturating_add(1),
            _ => 1,
        };
        if self.state == NodeState::Unknown || count >= CONFIRMATIONS {
            let transition = Transition {
                from: self.state,
                to: observed,
            };
            self.state = observed;
            self.pending = None;
            Some(transition)
        } else {
            self.pending = Some((observed, count));
            None
        }
    }
}

/// The configured sweep intervals (`[health] interval`, `min_interval`, `max_interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalPolicy {
    pub base: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Default for IntervalPolicy {
    fn default() -> Self {
        IntervalPolicy {
            base: Duration::from_secs(60),
            min: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

/// The adaptive sweep interval of one node: stretched ×1.5 (up to max) by each stable healthy
/// sweep, dropped to min by any failure or state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    current: Duration,
}

impl Cadence {
    /// Starts at the base interval (kept within [min, max] should the policy disagree).
    pub fn new(policy: &IntervalPolicy) -> Self {
        Cadence {
            current: policy.base.min(policy.max).max(policy.min),
        }
    }

    /// Whether a sweep counts as stable healthy: no failing or hung check (warnings aside), no
    /// state change, and the confirmed state is healthy.
    pub fn is_stable_healthy(
        results: &[CheckResult],
        transition: Option<&Transition>,
        state: NodeState,
    ) -> bool {
        transition.is_none() && state.is_healthy() && !results.iter().any(CheckResult::is_failure)
    }

    /// Adapts to the sweep just done and returns the new (un-jittered) interval.
    pub fn after_sweep(&mut self, policy: &IntervalPolicy, stable_healthy: bool) -> Duration {
        self.current = if stable_healthy {
            let stretched = self.current.checked_mul(3).map_or(Duration::MAX, |d| d / 2);
            stretched.min(policy.max).max(policy.min)
        } else {
            policy.min
        };
        self.current
    }

    pub fn current(&self) -> Duration {
        self.current
    }

    /// Spreads `interval` by ±10 % so nodes don't sweep in lockstep: `jitter` in [-1, 1] (out of
    /// range is clamped, NaN is 0) maps to 90 %..110 %. Never below [`MIN_JITTERED`].
    pub fn jittered(interval: Duration, jitter: f64) -> Duration {
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(-1.0, 1.0)
        };
        // Parts per million, so ±1 gives exactly 90 % and 110 %.
        let ppm = (1_000_000.0 + 100_000.0 * jitter).round() as u128;
        let nanos = interval.as_nanos() * ppm / 1_000_000;
        let Ok(secs) = u64::try_from(nanos / 1_000_000_000) else {
            return Duration::MAX;
        };
        let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
        Duration::new(secs, sub).max(MIN_JITTERED)
    }
}

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition worth telling an operator about. `key` identifies the condition on its node
/// (e.g. "disk", "gpu3.temperature") so the daemon can track since when it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub key: String,
    pub severity: Severity,
    pub message: String,
}

/// The alerts one sweep raises: one per failing or hung check (critical for critical checks,
/// else warning; the check's message; none for a check that only warns), plus one warning per
/// GPU hotter than `gpu_temp_max` °C.
pub fn alerts(results: &[CheckResult], gpus: &[GpuReading], gpu_temp_max: f64) -> Vec<Alert> {
    let mut out: Vec<Alert> = results
        .iter()
        .filter(|r| r.is_failure())
        .map(|r| Alert {
            key: r.name.as_str().to_owned(),
            severity: if r.name.is_critical() {
                Severity::Critical
            } else {
                Severity::Warning
            },
            message: r.message.clone(),
        })
        .collect();
    for gpu in gpus {
        if let Some(t) = gpu.temperature_c
            && t > gpu_temp_max
        {
            out.push(Alert {
                key: format!("gpu{}.temperature", gpu.index),
                severity: Severity::Warning,
                message: format!(
                    "GPU {} at {} °C (> {} °C)",
                    gpu.index,
                    fmt_num(t),
                    fmt_num(gpu_temp_max)
                ),
            });
        }
    }
    out
}

/// "15s", "1.5s", "250ms".
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A number without a useless ".0": 91 → "91", 85.5 → "85.5".
pub(crate) fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all_pass() -> Vec<CheckResult> {
        CheckName::ALL
            .into_iter()
            .map(|n| CheckResult::pass(n, "ok"))
            .collect()
    }

    fn with(outcomes: &[(CheckName, Outcome)]) -> Vec<CheckResult> {
        let mut rs = all_pass();
        for &(name, outcome) in outcomes {
            for r in rs.iter_mut().filter(|r| r.name == name) {
                r.outcome = outcome;
                r.message = format!("{} {}", name, outcome);
            }
        }
        rs
    }

    #[test]
    fn check_names_and_weights() {
        let total: u32 = CheckName::ALL.iter().map(|c| c.weight()).sum();
        assert_eq!(total, 13);
        assert_eq!(CheckName::Gpu.as_str(), "gpu");
        assert_eq!(CheckName::parse("pytorch"), Some(CheckName::Pytorch));
        assert_eq!(CheckName::parse("nope"), None);
        let crit: Vec<_> = CheckName::ALL
            .into_iter()
            .filter(|c| c.is_critical())
            .collect();
        assert_eq!(crit, vec![CheckName::Ssh, CheckName::Gpu]);
        assert_eq!(
            serde_json::to_value(CheckName::Load).unwrap(),
            json!("load")
        );
        assert_eq!(NodeState::parse("degraded"), Some(NodeState::Degraded));
    }

    #[test]
    fn all_pass_is_healthy_100() {
        let v = verdict(&all_pass(), 0.9);
        assert_eq!(v.score, 100);
        assert_eq!(v.pass_rate, 1.0);
        assert_eq!(v.state, NodeState::Healthy);
        assert!(v.reasons.is_empty());
    }

    #[test]
    fn latency_failure_still_healthy() {
        // 12 of 13 = 0.923 ≥ 0.9.
        let mut rs = all_pass();
        rs[1] = CheckResult::fail(CheckName::Latency, "median 180 ms > 100 ms");
        let v = verdict(&rs, 0.9);
        assert_eq!(v.score, 92);
        assert_eq!(v.state, NodeState::Healthy);
        assert_eq!(v.reasons, vec!["latency: median 180 ms > 100 ms"]);
    }

    #[test]
    fn disk_failure_degrades() {
        // 11 of 13 = 0.846: below 0.9, at least 0.5.
        let v = verdict(&with(&[(CheckName::Disk, Outcome::Fail)]), 0.9);
        assert_eq!(v.score, 85);
        assert_eq!(v.state, NodeState::Degraded);
    }

    #[test]
    fn saturated_node_is_degraded_not_dead() {
        let v = verdict(
            &with(&[
                (CheckName::Memory, Outcome::Fail),
                (CheckName::Load, Outcome::Fail),
                (CheckName::Latency, Outcome::Fail),
            ]),
            0.9,
        );
        // 10 of 13.
        assert_eq!(v.score, 77);
        assert_eq!(v.state, NodeState::Degraded);
        assert_eq!(v.reasons.len(), 3);
    }

    #[test]
    fn low_pass_rate_is_unhealthy() {
        // pytorch 2 + disk 2 + memory 1 + load 1 + latency 1 fail: 6 of 13 = 0.46.
        let v = verdict(
            &with(&[
                (CheckName::Pytorch, Outcome::Fail),
                (CheckName::Disk, Outcome::Fail),
                (CheckName::Memory, Outcome::Fail),
                (CheckName::Load, Outcome::Hung),
                (CheckName::Latency, Outcome::Fail),
            ]),
            0.9,
        );
        assert_eq!(v.score, 46);
        assert_eq!(v.state, NodeState::Unhealthy);
    }

    #[test]
    fn gpu_failure_is_unhealthy_even_with_high_score() {
        // 10 of 13 passes a pass_rate of 0.7, but gpu is critical.
        let v = verdict(&with(&[(CheckName::Gpu, Outcome::Fail)]), 0.7);
        assert_eq!(v.score, 77);
        assert_eq!(v.state, NodeState::Unhealthy);
        let v = verdict(&with(&[(CheckName::Gpu, Outcome::Hung)]), 0.7);
        assert_eq!(v.state, NodeState::Unhealthy);
        assert_eq!(v.reasons, vec!["gpu: gpu hung"]);
    }

    #[test]
    fn ssh_failure_or_hang_is_unreachable() {
        let v = verdict(&with(&[(CheckName::Ssh, Outcome::Fail)]), 0.9);
        assert_eq!(v.state, NodeState::Unreachable);
        let rs = vec![
            CheckResult::hung(CheckName::Ssh, Duration::from_secs(15)),
            CheckResult::fail(CheckName::Gpu, "x"),
        ];
        let v = verdict(&rs, 0.9);
        assert_eq!(v.state, NodeState::Unreachable);
        assert_eq!(v.score, 0);
    }

    #[test]
    fn skipped_checks_are_not_applicable() {
        // Local node: ssh skipped; no GPUs declared: gpu skipped; remaining weight 7.
        let rs = with(&[
            (CheckName::Ssh, Outcome::Skipped),
            (CheckName::Gpu, Outcome::Skipped),
            (CheckName::Load, Outcome::Fail),
        ]);
        let v = verdict(&rs, 0.9);
        // 6 of 7 = 0.857.
        assert_eq!(v.score, 86);
        assert_eq!(v.state, NodeState::Degraded);
        assert_eq!(v.reasons.len(), 1);
    }

    /// The quick start's node: this machine, no SSH, no GPUs, no python.
    fn local_node(load: CheckResult) -> Vec<CheckResult> {
        vec![
            CheckResult::skipped(CheckName::Ssh, "local"),
            CheckResult::skipped(CheckName::Latency, "local"),
            CheckResult::skipped(CheckName::Gpu, "no GPUs"),
            CheckResult::skipped(CheckName::Pytorch, "no python"),
            CheckResult::pass(CheckName::Disk, "ok"),
            CheckResult::pass(CheckName::Memory, "ok"),
            load,
        ]
    }

    #[test]
    fn busy_two_core_machine_stays_healthy_with_a_lower_score() {
        use crate::parse::load_check;
        // Load 3.5 on 2 cores, sustained: busy, not overloaded; so is 8.
        assert!(load_check((8.0, 8.0, 8.0), 2, DEFAULT_LOAD_PER_CORE_MAX).is_warning());
        let load = load_check((3.5, 3.5, 3.5), 2, DEFAULT_LOAD_PER_CORE_MAX);
        assert!(load.is_warning(), "{load:?}");
        let rs = local_node(load);
        let v = verdict(&rs, DEFAULT_PASS_RATE);
        assert_eq!(v.state, NodeState::Healthy);
        // disk 2 + memory 1 pass, load 1 warns (half): 3.5 of 4.
        assert_eq!(v.score, 88);
        assert_eq!(v.pass_rate, 1.0);
        assert_eq!(v.reasons.len(), 1);
        assert!(v.reasons[0].starts_with("load (warning): busy: "), "{v:?}");
        // No alert, and the sweep counts as clean for the adaptive interval.
        assert!(alerts(&rs, &[], DEFAULT_GPU_TEMP_MAX).is_empty());
        assert!(Cadence::is_stable_healthy(&rs, None, v.state));

        // Idle: 100.
        let v = verdict(
            &local_node(load_check((0.2, 0.3, 0.4), 2, DEFAULT_LOAD_PER_CORE_MAX)),
            DEFAULT_PASS_RATE,
        );
        assert_eq!((v.state, v.score), (NodeState::Healthy, 100));
    }

    #[test]
    fn overloaded_machine_is_degraded_and_alerts() {
        use crate::parse::load_check;
        // Load 11 on 2 cores for a quarter of an hour.
        let rs = local_node(load_check((12.0, 11.0, 10.5), 2, DEFAULT_LOAD_PER_CORE_MAX));
        let v = verdict(&rs, DEFAULT_PASS_RATE);
        // 3 of 4.
        assert_eq!((v.state, v.score), (NodeState::Degraded, 75));
        let a = alerts(&rs, &[], DEFAULT_GPU_TEMP_MAX);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].severity, Severity::Warning);
        assert!(!Cadence::is_stable_healthy(&rs, None, NodeState::Healthy));
    }

    #[test]
    fn warning_json_round_trips_and_only_on_failures() {
        let r = CheckResult::warn(CheckName::Load, "busy").with_duration(1);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"name": "load", "passed": false, "status": "fail", "warning": true,
                   "value": null, "threshold": null, "message": "busy", "duration_ms": 1})
        );
        assert_eq!(serde_json::from_value::<CheckResult>(v).unwrap(), r);
        // A "warning" on a pass means nothing.
        let r: CheckResult = serde_json::from_value(
            json!({"name": "load", "passed": true, "status": "pass", "warning": true}),
        )
        .unwrap();
        assert!(!r.warning && !r.is_warning());
        assert!(!CheckResult::pass(CheckName::Load, "").is_failure());
        assert!(CheckResult::hung(CheckName::Load, Duration::from_secs(1)).is_failure());
    }

    #[test]
    fn nothing_applicable_is_unknown() {
        assert_eq!(
            verdict(&[], 0.9),
            Verdict {
                score: 0,
                pass_rate: 0.0,
                state: NodeState::Unknown,
                reasons: vec![]
            }
        );
        let rs = vec![CheckResult::skipped(CheckName::Gpu, "no GPUs")];
        assert_eq!(verdict(&rs, 0.9).state, NodeState::Unknown);
    }

    #[test]
    fn pass_rate_boundary_is_inclusive() {
        // ssh 3 + gpu 3 + pytorch 2 + latency 1 pass, memory 1 fails: exactly 9 of 10.
        let rs = vec![
            CheckResult::pass(CheckName::Ssh, "ok"),
            CheckResult::pass(CheckName::Gpu, "ok"),
            CheckResult::pass(CheckName::Pytorch, "ok"),
            CheckResult::pass(CheckName::Latency, "ok"),
            CheckResult::skipped(CheckName::Disk, "none"),
            CheckResult::fail(CheckName::Memory, "low"),
        ];
        let v = verdict(&rs, 0.9);
        assert_eq!(v.score, 90);
        assert_eq!(v.state, NodeState::Healthy);
        assert_eq!(verdict(&rs, 0.91).state, NodeState::Degraded);
    }

    #[test]
    fn check_result_json_shape_and_round_trip() {
        let r = CheckResult::fail(CheckName::Latency, "median 180 ms > 100 ms")
            .with_value(json!(180))
            .with_threshold(json!(100))
            .with_duration(42);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"name": "latency", "passed": false, "status": "fail", "value": 180,
                   "threshold": 100, "message": "median 180 ms > 100 ms", "duration_ms": 42})
        );
        let back: CheckResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);

        for r in [
            CheckResult::pass(CheckName::Ssh, "ok"),
            CheckResult::skipped(CheckName::Ssh, "local node"),
            CheckResult::hung(CheckName::Gpu, Duration::from_secs(15)),
        ] {
            let s = serde_json::to_string(&r).unwrap();
            let back: CheckResult = serde_json::from_str(&s).unwrap();
            assert_eq!(back, r, "{s}");
        }
        let skipped = serde_json::to_value(CheckResult::skipped(CheckName::Ssh, "local")).unwrap();
        assert_eq!(skipped["passed"], json!(null));
        assert_eq!(skipped["value"], json!(null));
    }

    #[test]
    fn check_result_from_json_without_status() {
        let r: CheckResult =
            serde_json::from_value(json!({"name": "disk", "passed": null, "message": "m"}))
                .unwrap();
        assert_eq!(r.outcome, Outcome::Skipped);
        let r: CheckResult =
            serde_json::from_value(json!({"name": "disk", "passed": false})).unwrap();
        assert_eq!(r.outcome, Outcome::Fail);
        let err = serde_json::from_value::<CheckResult>(
            json!({"name": "disk", "passed": true, "status": "hung"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("contradicts"), "{err}");
    }

    #[test]
    fn hung_message_and_passed() {
        let r = CheckResult::hung(CheckName::Pytorch, Duration::from_secs(15));
        assert_eq!(
            r.message,
            "no answer within 15s (hung); the probe was killed"
        );
        assert_eq!(r.duration_ms, 15_000);
        assert_eq!(r.passed(), Some(false));
        assert_eq!(
            CheckResult::hung(CheckName::Load, Duration::from_millis(500)).message,
            "no answer within 500ms (hung); the probe was killed"
        );
        assert_eq!(CheckResult::pass(CheckName::Load, "").passed(), Some(true));
        assert_eq!(CheckResult::skipped(CheckName::Load, "").passed(), None);
    }

    #[test]
    fn hysteresis_unknown_takes_first_observation() {
        let mut h = Hysteresis::new(NodeState::Unknown);
        assert_eq!(h.observe(NodeState::Unknown), None);
        assert_eq!(
            h.observe(NodeState::Degraded),
            Some(Transition {
                from: NodeState::Unknown,
                to: NodeState::Degraded
            })
        );
        assert_eq!(h.state, NodeState::Degraded);
        assert_eq!(h.pending, None);
    }

    #[test]
    fn hysteresis_one_bad_sweep_does_not_flip_two_do() {
        let mut h = Hysteresis::restore(NodeState::Healthy);
        assert_eq!(h.observe(NodeState::Unhealthy), None);
        assert_eq!(h.state, NodeState::Healthy);
        assert_eq!(h.pending, Some((NodeState::Unhealthy, 1)));
        assert_eq!(h.observe(NodeState::Healthy), None);
        assert_eq!(h.pending, None);

        assert_eq!(h.observe(NodeState::Unhealthy), None);
        assert_eq!(
            h.observe(NodeState::Unhealthy),
            Some(Transition {
                from: NodeState::Healthy,
                to: NodeState::Unhealthy
            })
        );
        assert_eq!(h.state, NodeState::Unhealthy);
        assert_eq!(h.pending, None);
        assert_eq!(h.observe(NodeState::Unhealthy), None);
    }

    #[test]
    fn hysteresis_flapping_never_flips() {
        let mut h = Hysteresis::new(NodeState::Healthy);
        for _ in 0..10 {
            assert_eq!(h.observe(NodeState::Degraded), None);
            assert_eq!(h.observe(NodeState::Healthy), None);
        }
        assert_eq!(h.state, NodeState::Healthy);
    }

    #[test]
    fn hysteresis_third_state_restarts_count() {
        let mut h = Hysteresis::new(NodeState::Healthy);
        assert_eq!(h.observe(NodeState::Degraded), None);
        assert_eq!(h.observe(NodeState::Unreachable), None);
        assert_eq!(h.pending, Some((NodeState::Unreachable, 1)));
        assert_eq!(h.state, NodeState::Healthy);
        assert!(h.observe(NodeState::Unreachable).is_some());
        assert_eq!(h.state, NodeState::Unreachable);
    }

    fn policy() -> IntervalPolicy {
        IntervalPolicy {
            base: Duration::from_secs(60),
            min: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }

    #[test]
    fn cadence_grows_to_max_drops_to_min_and_grows_again() {
        let p = policy();
        let mut c = Cadence::new(&p);
        assert_eq!(c.current(), Duration::from_secs(60));
        assert_eq!(c.after_sweep(&p, true), Duration::from_secs(90));
        assert_eq!(c.after_sweep(&p, true), Duration::from_secs(135));
        assert_eq!(c.after_sweep(&p, true), Duration::from_millis(202_500));
        assert_eq!(c.after_sweep(&p, true), Duration::from_secs(300));
        assert_eq!(c.after_sweep(&p, true), Duration::from_secs(300));
        // Failure.
        assert_eq!(c.after_sweep(&p, false), Duration::from_secs(10));
        assert_eq!(c.current(), Duration::from_secs(10));
        // Stable again.
        assert_eq!(c.after_sweep(&p, true), Duration::from_secs(15));
        assert_eq!(c.after_sweep(&p, true), Duration::from_millis(22_500));
    }

    #[test]
    fn cadence_stability_rule() {
        let ok = all_pass();
        let change = Transition {
            from: NodeState::Degraded,
            to: NodeState::Healthy,
        };
        assert!(Cadence::is_stable_healthy(&ok, None, NodeState::Healthy));
        // State change.
        assert!(!Cadence::is_stable_healthy(
            &ok,
            Some(&change),
            NodeState::Healthy
        ));
        // Not healthy.
        assert!(!Cadence::is_stable_healthy(&ok, None, NodeState::Degraded));
        // A failing check, even while still healthy.
        let bad = with(&[(CheckName::Latency, Outcome::Fail)]);
        assert!(!Cadence::is_stable_healthy(&bad, None, NodeState::Healthy));
        let hung = with(&[(CheckName::Latency, Outcome::Hung)]);
        assert!(!Cadence::is_stable_healthy(&hung, None, NodeState::Healthy));
    }

    #[test]
    fn cadence_never_panics_on_odd_policies() {
        let p = IntervalPolicy {
            base: Duration::MAX,
            min: Duration::from_secs(1),
            max: Duration::MAX,
        };
        let mut c = Cadence::new(&p);
        assert_eq!(c.after_sweep(&p, true), Duration::MAX);
        let p = IntervalPolicy {
            base: Duration::from_secs(1),
            min: Duration::from_secs(20),
            max: Duration::from_secs(5),
        };
        let mut c = Cadence::new(&p);
        c.after_sweep(&p, true);
        assert_eq!(Cadence::jittered(Duration::MAX, 1.0), Duration::MAX);
    }

    #[test]
    fn jitter_bounds() {
        let i = Duration::from_secs(60);
        assert_eq!(Cadence::jittered(i, -1.0), Duration::from_secs(54));
        assert_eq!(Cadence::jittered(i, 1.0), Duration::from_secs(66));
        assert_eq!(Cadence::jittered(i, 0.0), i);
        assert_eq!(Cadence::jittered(i, 0.5), Duration::from_secs(63));
        assert_eq!(Cadence::jittered(i, -7.0), Duration::from_secs(54));
        assert_eq!(Cadence::jittered(i, 7.0), Duration::from_secs(66));
        assert_eq!(Cadence::jittered(i, f64::NAN), i);
        assert_eq!(Cadence::jittered(Duration::ZERO, 1.0), MIN_JITTERED);
        assert_eq!(
            Cadence::jittered(Duration::from_millis(50), 0.0),
            MIN_JITTERED
        );
    }

    #[test]
    fn alerts_for_failing_checks_and_hot_gpu() {
        let rs = vec![
            CheckResult::pass(CheckName::Ssh, "ok"),
            CheckResult::fail(CheckName::Disk, "/data: 3.2 GB free < 10.0 GB"),
            CheckResult::fail(CheckName::Gpu, "found 7 GPUs, expected 8"),
            CheckResult::hung(CheckName::Pytorch, Duration::from_secs(60)),
            CheckResult::skipped(CheckName::Latency, "local"),
        ];
        let gpu = |index, t| GpuReading {
            index,
            uuid: format!("GPU-{index}"),
            name: "NVIDIA A100-SXM4-80GB".into(),
            temperature_c: t,
            utilization_pct: None,
            memory_used_mib: None,
            memory_total_mib: None,
            power_w: None,
            ecc_uncorrected: None,
        };
        let gpus = vec![
            gpu(0, Some(60.0)),
            gpu(3, Some(91.0)),
            gpu(4, None),
            gpu(5, Some(85.0)),
        ];
        let a = alerts(&rs, &gpus, DEFAULT_GPU_TEMP_MAX);
        assert_eq!(
            a,
            vec![
                Alert {
                    key: "disk".into(),
                    severity: Severity::Warning,
                    message: "/data: 3.2 GB free < 10.0 GB".into()
                },
                Alert {
                    key: "gpu".into(),
                    severity: Severity::Critical,
                    message: "found 7 GPUs, expected 8".into()
                },
                Alert {
                    key: "pytorch".into(),
                    severity: Severity::Warning,
                    message: "no answer within 60s (hung); the probe was killed".into()
                },
                Alert {
                    key: "gpu3.temperature".into(),
                    severity: Severity::Warning,
                    message: "GPU 3 at 91 °C (> 85 °C)".into()
                },
            ]
        );
        assert_eq!(
            serde_json::to_value(&a[1]).unwrap()["severity"],
            json!("critical")
        );
        assert!(alerts(&all_pass(), &[], 85.0).is_empty());
    }
}
