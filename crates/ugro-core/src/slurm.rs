//! Slurm, the pure part: the fixed `squeue` and `sinfo` command lines and the parsing of their
//! output, which jobs count as queued too long, which Slurm node a ugro node is, which job a
//! run belongs to (`SLURM_JOB_ID` of its process, or the job's working directory), and what
//! `drain_unhealthy` does with a node (drain with the `ugro: ` reason, resume only our own
//! drains, leave an operator's alone — the convention NHC follows).
//!
//! Why `squeue --format` rather than `--json`: the fixed field list has printed the same way
//! for a decade of Slurm releases, is small (ten fields per job), and filters by state on the
//! controller; `--json` exists from 21.08 on, but its schema follows the openapi plugin
//! version (22.05 prints `job_state` as a string and times as integers, 23.02 on print
//! state lists and `{set, infinite, number}` objects), it needs the openapi plugins installed
//! and, on 22.05, it prints every field of every job whatever the filters. The text format's
//! only hazards are handled: times are asked for as epoch seconds (`SLURM_TIME_FORMAT=%s`,
//! so no time zone is guessed), fields are separated by the ASCII unit separator (0x1f, never
//! in a job name or path) and the free-text working directory is last.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::health::NodeState;

/// The prefix of every drain reason ugro sets; a drain without it is an operator's.
pub const DRAIN_PREFIX: &str = "ugro: ";

/// Field separator of the `squeue` format (ASCII unit separator).
pub const SEP: char = '\u{1f}';

/// Job states listed: queued and running ones (finished jobs are not asked for).
pub const SQUEUE_STATES: &str = "PENDING,CONFIGURING,RUNNING,SUSPENDED,COMPLETING";

/// `squeue` fields, in order: job id (`%A`: one per array element), state, user, partition,
/// submit time, start time, reason, nodes, name, working directory.
pub const SQUEUE_FORMAT: &str =
    "%A\u{1f}%T\u{1f}%u\u{1f}%P\u{1f}%V\u{1f}%S\u{1f}%r\u{1f}%N\u{1f}%j\u{1f}%Z";

/// `sinfo` fields, in order: node name, complete state (`idle+drain`), host name, address,
/// reason (last: free text).
pub const SINFO_FIELDS: &str = "NodeList:|,StateComplete:|,NodeHost:|,NodeAddr:|,Reason:";

/// Environment every Slurm command runs with: times as epoch seconds.
pub const TIME_FORMAT_ENV: (&str, &str) = ("SLURM_TIME_FORMAT", "%s");

/// `squeue` arguments (program excluded).
pub fn squeue_args() -> Vec<String> {
    vec![
        "--noheader".into(),
        format!("--states={SQUEUE_STATES}"),
        format!("--format={SQUEUE_FORMAT}"),
    ]
}

/// `sinfo` arguments (program excluded): one line per node and partition.
pub fn sinfo_args() -> Vec<String> {
    vec![
        "--noheader".into(),
        "--Node".into(),
        "--Format".into(),
        SINFO_FIELDS.into(),
    ]
}

/// `scontrol` arguments draining `node` with `reason`.
pub fn drain_args(node: &str, reason: &str) -> Vec<String> {
    vec![
        "update".into(),
        format!("NodeName={node}"),
        "State=DRAIN".into(),
        format!("Reason={reason}"),
    ]
}

/// `scontrol` arguments resuming `node`.
pub fn resume_args(node: &str) -> Vec<String> {
    vec![
        "update".into(),
        format!("NodeName={node}"),
        "State=RESUME".into(),
    ]
}

/// One queued or running job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: String,
    /// `PENDING`, `RUNNING`, …
    pub state: String,
    pub user: String,
    pub partition: String,
    pub submitted: Option<DateTime<Utc>>,
    /// Started (running) or expected to start (pending, when the scheduler knows).
    pub started: Option<DateTime<Utc>>,
    /// Why it waits (`Resources`, `Priority`, `JobHeldUser`, …); `None` when running.
    pub reason: Option<String>,
    /// The nodes it runs on (Slurm's compact list, `gpu[1-3]`); empty while pending.
    pub nodes: String,
    pub name: String,
    pub work_dir: String,
}

impl Job {
    pub fn is_pending(&self) -> bool {
        self.state == "PENDING"
    }

    pub fn is_running(&self) -> bool {
        matches!(
            self.state.as_str(),
            "RUNNING" | "CONFIGURING" | "COMPLETING"
        )
    }
}

/// A line of output that could not be read, with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}: {text:?}")]
pub struct BadLine {
    pub line: usize,
    pub why: &'static str,
    pub text: String,
}

fn epoch(s: &str) -> Option<DateTime<Utc>> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| DateTime::from_timestamp(n, 0))
}

/// Parses `squeue` output in [`SQUEUE_FORMAT`]: the jobs, and the lines that were not jobs.
pub fn parse_squeue(text: &str) -> (Vec<Job>, Vec<BadLine>) {
    let mut jobs = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.splitn(10, SEP).collect();
        let problem = |why| BadLine {
            line: i + 1,
            why,
            text: line.chars().take(200).collect(),
        };
        if f.len() != 10 {
            bad.push(problem("not 10 fields"));
            continue;
        }
        let job_id = f[0].trim();
        if job_id.is_empty() || !job_id.bytes().all(|b| b.is_ascii_digit()) {
            bad.push(problem("job id is not a number"));
            continue;
        }
        let reason = f[6].trim();
        jobs.push(Job {
            job_id: job_id.to_string(),
            state: f[1].trim().to_string(),
            user: f[2].trim().to_string(),
            partition: f[3].trim().to_string(),
            submitted: epoch(f[4]),
            started: epoch(f[5]),
            reason: (!reason.is_empty() && reason != "None").then(|| reason.to_string()),
            nodes: f[7].trim().to_string(),
            name: f[8].to_string(),
            work_dir: f[9].to_string(),
        });
    }
    (jobs, bad)
}

/// One node as `sinfo` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmNode {
    pub name: String,
    /// The complete state, lower case: base state and flags (`idle+drain`, `down+drain`).
    pub state: String,
    pub hostname: String,
    pub addr: String,
    /// Empty when none.
    pub reason: String,
}

impl SlurmNode {
    /// Whether the node carries the DRAIN flag (draining or drained).
    pub fn is_drained(&self) -> bool {
        self.state.split('+').any(|f| f == "drain")
            || matches!(
                self.state
                    .trim_end_matches(['*', '~', '#', '!', '%', '$', '@', '^', '-']),
                "drained" | "draining" | "drng" | "drain"
            )
    }

    /// Whether its reason is one ugro set.
    pub fn drained_by_ugro(&self) -> bool {
        self.reason.starts_with(DRAIN_PREFIX)
    }
}

/// Parses `sinfo` output in [`SINFO_FIELDS`]: one node per name (a node listed once per
/// partition is kept once), by name, and the lines that were not nodes.
pub fn parse_sinfo(text: &str) -> (Vec<SlurmNode>, Vec<BadLine>) {
    let mut nodes = BTreeMap::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.splitn(5, '|').collect();
        if f.len() != 5 || f[0].trim().is_empty() {
            bad.push(BadLine {
                line: i + 1,
                why: "not 5 fields",
                text: line.chars().take(200).collect(),
            });
            continue;
        }
        let name = f[0].trim().to_string();
        let reason = f[4].trim();
        nodes.entry(name.clone()).or_insert(SlurmNode {
            name,
            state: f[1].trim().to_ascii_lowercase(),
            hostname: f[2].trim().to_string(),
            addr: f[3].trim().to_string(),
            reason: if reason == "none" || reason == "(null)" {
                String::new()
            } else {
                reason.to_string()
            },
        });
    }
    (nodes.into_values().collect(), bad)
}

/// The Slurm node that is ugro node `name` reached at `host` (`None` for this machine, whose
/// `hostname` is given instead): its Slurm name, host name or address equal to the ugro
/// node's name or host, or its host name's first label equal to the host's.
pub fn node_for<'a>(
    nodes: &'a [SlurmNode],
    name: &str,
    host: Option<&str>,
    this_hostname: &str,
) -> Option<&'a SlurmNode> {
    let short = |h: &str| h.split('.').next().unwrap_or(h).to_string();
    let host = host.unwrap_or(this_hostname);
    let wanted = [name.to_string(), host.to_string(), short(host)];
    let hit = |n: &&SlurmNode| {
        [&n.name, &n.hostname, &n.addr]
            .iter()
            .any(|v| !v.is_empty() && wanted.iter().any(|w| w == *v))
    };
    // An exact name first, then host names and addresses.
    nodes
        .iter()
        .find(|n| n.name == name)
        .or_else(|| nodes.iter().find(hit))
}

/// The value of `SLURM_JOB_ID` in a process environment (`/proc/PID/environ`: NUL-separated).
pub fn job_id_from_environ(environ: &[u8]) -> Option<String> {
    environ
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"SLURM_JOB_ID="))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
}

/// A run as the mapping needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRef<'a> {
    pub id: &'a str,
    pub work_dir: &'a str,
    /// Whether the run is running or stuck (a containing work dir is only trusted for those).
    pub active: bool,
    /// `SLURM_JOB_ID` of its process, when it has one and it could be read.
    pub env_job_id: Option<&'a str>,
}

/// Which job each run belongs to, by run id: the job its process's `SLURM_JOB_ID` names; else
/// the job whose working directory is the run's; else, for an active run, the running job
/// whose working directory contains the run's (the deepest one).
pub fn map_runs<'j>(runs: &[RunRef<'_>], jobs: &'j [Job]) -> BTreeMap<String, &'j Job> {
    let by_id: BTreeMap<&str, &Job> = jobs.iter().map(|j| (j.job_id.as_str(), j)).collect();
    let norm = |p: &str| p.trim_end_matches('/').to_string();
    let mut out = BTreeMap::new();
    for r in runs {
        if let Some(j) = r.env_job_id.and_then(|id| by_id.get(id)) {
            out.insert(r.id.to_string(), *j);
            continue;
        }
        let dir = norm(r.work_dir);
        if let Some(j) = jobs.iter().find(|j| norm(&j.work_dir) == dir) {
            out.insert(r.id.to_string(), j);
            continue;
        }
        if !r.active {
            continue;
        }
        let containing = jobs
            .iter()
            .filter(|j| j.is_running())
            .filter(|j| {
                let jd = norm(&j.work_dir);
                !jd.is_empty() && dir.starts_with(&format!("{jd}/"))
            })
            .max_by_key(|j| j.work_dir.len());
        if let Some(j) = containing {
            out.insert(r.id.to_string(), j);
        }
    }
    out
}

/// A job pending for longer than the configured wait, as the summary reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedJob {
    pub job_id: String,
    pub name: String,
    pub user: String,
    pub partition: String,
    pub submitted: DateTime<Utc>,
    /// Slurm's pending reason (`Resources`, `Priority`, `JobHeldUser`, …).
    pub reason: String,
}

/// The jobs pending since more than `after` at `now`, oldest first.
pub fn queued_too_long(jobs: &[Job], now: DateTime<Utc>, after: TimeDelta) -> Vec<QueuedJob> {
    let mut out: Vec<QueuedJob> = jobs
        .iter()
        .filter(|j| j.is_pending())
        .filter_map(|j| {
            let submitted = j.submitted?;
            (now - submitted > after).then(|| QueuedJob {
                job_id: j.job_id.clone(),
                name: j.name.clone(),
                user: j.user.clone(),
                partition: j.partition.clone(),
                submitted,
                reason: j.reason.clone().unwrap_or_else(|| "unknown".into()),
            })
        })
        .collect();
    out.sort_by(|a, b| a.submitted.cmp(&b.submitted).then(a.job_id.cmp(&b.job_id)));
    out
}

/// The drain reason for a node whose `failing` checks fail: `ugro: disk, gpu`. Slurm keeps
/// reasons short; this one stays under 200 bytes.
pub fn drain_reason(failing: &[&str]) -> String {
    let mut r = format!("{DRAIN_PREFIX}{}", failing.join(", "));
    if failing.is_empty() {
        r.push_str("unhealthy");
    }
    if r.len() > 200 {
        let mut cut = 200;
        while !r.is_char_boundary(cut) {
            cut -= 1;
        }
        r.truncate(cut);
    }
    r
}

/// What `drain_unhealthy` does with a node this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainAction {
    /// Nothing to do.
    None,
    /// Drain it with this reason.
    Drain(String),
    /// Resume it: healthy again, still drained, and the reason is still ours.
    Resume,
    /// Unhealthy, but an operator drained it already (reason given): leave it alone.
    OperatorDrain(String),
}

/// Decides for a node in ugro `state` (after hysteresis; `confirmed` is false while the state is
/// only the one a previous daemon stored) that Slurm shows as `node`. Only `unhealthy` drains:
/// `degraded` is a warning, `unreachable` and `unknown` mean ugro cannot tell. Only `healthy`
/// resumes, and only a drain whose reason is still ours.
pub fn drain_action(
    state: NodeState,
    confirmed: bool,
    node: &SlurmNode,
    failing: &[&str],
) -> DrainAction {
    if !confirmed {
        return DrainAction::None;
    }
    match state {
        NodeState::Unhealthy if !node.is_drained() => DrainAction::Drain(drain_reason(failing)),
        NodeState::Unhealthy if !node.drained_by_ugro() => {
            DrainAction::OperatorDrain(node.reason.clone())
        }
        NodeState::Healthy if node.is_drained() && node.drained_by_ugro() => DrainAction::Resume,
        _ => DrainAction::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real `squeue` output (Slurm 22.05.8, Debian 12): a running job whose name holds a `|`,
    /// a held one, one waiting for resources, a pending array; 0x1f shown as `~`.
    const SQUEUE: &str = "6~PENDING~root~debug~1796131586~N/A~Resources~~big~/tmp/slurmt.FOaj/work
7~PENDING~root~debug~1796131586~N/A~Priority~~arr~/tmp/slurmt.FOaj/work
5~PENDING~root~debug~1796131586~N/A~JobHeldUser~~held~/tmp/slurmt.FOaj/work
4~RUNNING~root~debug~1796131586~1796131587~None~vm~name with | pipe and spaces~/tmp/slurmt.FOaj/work
";

    /// Real `sinfo` output (22.05.8): a node drained by ugro with a long reason.
    const SINFO: &str = "vm|allocated+drain|vm|127.0.0.1|ugro: disk, memory; a very long reason that goes on and on beyond twenty characters for sure = yes\n";

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn squeue() -> Vec<Job> {
        let (jobs, bad) = parse_squeue(&SQUEUE.replace('~', "\u{1f}"));
        assert!(bad.is_empty(), "{bad:?}");
        jobs
    }

    #[test]
    fn squeue_lines_become_jobs() {
        let jobs = squeue();
        assert_eq!(jobs.len(), 4);
        let run = &jobs[3];
        assert_eq!(run.job_id, "4");
        assert!(run.is_running() && !run.is_pending());
        assert_eq!(run.name, "name with | pipe and spaces");
        assert_eq!(run.reason, None);
        assert_eq!(run.nodes, "vm");
        assert_eq!(run.submitted, DateTime::from_timestamp(1796131586, 0));
        assert_eq!(run.started, DateTime::from_timestamp(1796131587, 0));
        assert_eq!(run.work_dir, "/tmp/slurmt.FOaj/work");
        let held = &jobs[2];
        assert!(held.is_pending());
        assert_eq!(held.reason.as_deref(), Some("JobHeldUser"));
        assert_eq!(held.started, None, "N/A is no time");
    }

    #[test]
    fn broken_squeue_lines_are_reported_not_guessed() {
        let text = "12\u{1f}RUNNING\nabc\u{1f}R\u{1f}u\u{1f}p\u{1f}1\u{1f}1\u{1f}r\u{1f}n\u{1f}j\u{1f}/w\n\n";
        let (jobs, bad) = parse_squeue(text);
        assert!(jobs.is_empty());
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].line, 1);
        assert_eq!(bad[1].why, "job id is not a number");
    }

    #[test]
    fn a_work_dir_with_the_separator_stays_whole() {
        let line =
            format!("9{SEP}RUNNING{SEP}u{SEP}p{SEP}1{SEP}2{SEP}None{SEP}n{SEP}j{SEP}/a{SEP}b");
        let (jobs, _) = parse_squeue(&line);
        assert_eq!(jobs[0].work_dir, format!("/a{SEP}b"));
    }

    #[test]
    fn sinfo_lines_become_nodes_once_each() {
        let twice = format!("{SINFO}{}", SINFO.replace("allocated+drain", "mixed+drain"));
        let (nodes, bad) = parse_sinfo(&twice);
        assert!(bad.is_empty());
        assert_eq!(nodes.len(), 1);
        let n = &nodes[0];
        assert_eq!(
            (n.name.as_str(), n.hostname.as_str(), n.addr.as_str()),
            ("vm", "vm", "127.0.0.1")
        );
        assert!(n.is_drained() && n.drained_by_ugro());
        assert!(n.reason.ends_with("for sure = yes"), "{}", n.reason);
        let (idle, _) = parse_sinfo("vm|idle|vm|127.0.0.1|none\n");
        assert!(!idle[0].is_drained());
        assert_eq!(idle[0].reason, "");
        let (down, _) = parse_sinfo("vm|down+drain+not_responding|vm|10.0.0.2|fan\n");
        assert!(down[0].is_drained() && !down[0].drained_by_ugro());
    }

    #[test]
    fn ugro_nodes_find_their_slurm_node() {
        let (nodes, _) = parse_sinfo(
            "gpu1|idle|gpu1|10.0.0.1|none\ngpu2|idle|gpu2.lab|10.0.0.2|none\nvm|idle|vm|127.0.0.1|none\n",
        );
        let name = |n: Option<&SlurmNode>| n.map(|n| n.name.clone());
        assert_eq!(
            name(node_for(&nodes, "gpu1", Some("x.lab"), "vm")),
            Some("gpu1".into())
        );
        assert_eq!(
            name(node_for(&nodes, "b", Some("gpu2.lab"), "vm")),
            Some("gpu2".into())
        );
        assert_eq!(
            name(node_for(&nodes, "b", Some("10.0.0.1"), "vm")),
            Some("gpu1".into())
        );
        assert_eq!(
            name(node_for(&nodes, "local", None, "vm")),
            Some("vm".into())
        );
        assert_eq!(name(node_for(&nodes, "c", Some("gpu9"), "vm")), None);
    }

    #[test]
    fn job_id_comes_from_the_environment() {
        assert_eq!(
            job_id_from_environ(b"PATH=/bin\0SLURM_JOB_ID=42\0SLURM_JOB_NAME=x\0"),
            Some("42".into())
        );
        assert_eq!(job_id_from_environ(b"SLURM_JOB_IDX=4\0HOME=/\0"), None);
        assert_eq!(job_id_from_environ(b"SLURM_JOB_ID=\0"), None);
    }

    #[test]
    fn runs_map_by_environment_then_work_dir() {
        let mut jobs = squeue();
        jobs[0].work_dir = "/exp/a".into(); // pending, same dir as run a
        jobs[3].work_dir = "/exp".into(); // running, contains b and c
        let runs = [
            RunRef {
                id: "a",
                work_dir: "/exp/a/",
                active: false,
                env_job_id: None,
            },
            RunRef {
                id: "b",
                work_dir: "/exp/b",
                active: true,
                env_job_id: None,
            },
            RunRef {
                id: "c",
                work_dir: "/exp/c",
                active: false,
                env_job_id: None,
            },
            RunRef {
                id: "d",
                work_dir: "/other",
                active: true,
                env_job_id: Some("5"),
            },
            RunRef {
                id: "e",
                work_dir: "/other2",
                active: true,
                env_job_id: Some("999"),
            },
            RunRef {
                id: "f",
                work_dir: "/expx/f",
                active: true,
                env_job_id: None,
            },
        ];
        let m = map_runs(&runs, &jobs);
        let ids: Vec<(&str, &str)> = m
            .iter()
            .map(|(r, j)| (r.as_str(), j.job_id.as_str()))
            .collect();
        assert_eq!(ids, [("a", "6"), ("b", "4"), ("d", "5")]);
    }

    #[test]
    fn queued_means_pending_longer_than_the_wait() {
        let jobs = squeue();
        let submitted = jobs[0].submitted.unwrap();
        let hour = TimeDelta::hours(1);
        assert!(queued_too_long(&jobs, submitted + hour, hour).is_empty());
        let q = queued_too_long(&jobs, submitted + hour + TimeDelta::seconds(1), hour);
        let ids: Vec<(&str, &str)> = q
            .iter()
            .map(|j| (j.job_id.as_str(), j.reason.as_str()))
            .collect();
        assert_eq!(
            ids,
            [("5", "JobHeldUser"), ("6", "Resources"), ("7", "Priority")]
        );
        assert_eq!(q[0].submitted, t("2026-12-01T13:26:26Z"));
    }

    #[test]
    fn drains_follow_the_nhc_convention() {
        let node = |state: &str, reason: &str| SlurmNode {
            name: "vm".into(),
            state: state.into(),
            hostname: "vm".into(),
            addr: "127.0.0.1".into(),
            reason: reason.into(),
        };
        use DrainAction as A;
        use NodeState as S;
        let idle = node("idle", "");
        let ours = node("idle+drain", "ugro: disk");
        let operator = node("idle+drain", "bad fan");
        assert_eq!(
            drain_action(S::Unhealthy, true, &idle, &["disk", "gpu"]),
            A::Drain("ugro: disk, gpu".into())
        );
        assert_eq!(
            drain_action(S::Unhealthy, false, &idle, &["disk"]),
            A::None,
            "restored, not seen"
        );
        assert_eq!(drain_action(S::Unhealthy, true, &ours, &["disk"]), A::None);
        assert_eq!(
            drain_action(S::Unhealthy, true, &operator, &["disk"]),
            A::OperatorDrain("bad fan".into())
        );
        assert_eq!(drain_action(S::Healthy, true, &ours, &[]), A::Resume);
        assert_eq!(
            drain_action(S::Healthy, true, &operator, &[]),
            A::None,
            "never undo an operator"
        );
        assert_eq!(
            drain_action(S::Degraded, true, &ours, &[]),
            A::None,
            "not healthy yet"
        );
        assert_eq!(drain_action(S::Unreachable, true, &idle, &[]), A::None);
        assert_eq!(drain_action(S::Healthy, true, &idle, &[]), A::None);
        assert_eq!(drain_reason(&[]), "ugro: unhealthy");
        assert!(drain_reason(&["é"; 300]).len() <= 200);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(text in "[\\x00-\\x7f|\u{1f}\n]{0,400}") {
            let _ = parse_squeue(&text);
            let _ = parse_sinfo(&text);
            let _ = job_id_from_environ(text.as_bytes());
        }

        #[test]
        fn squeue_lines_round_trip(
            id in 1u64..10_000_000,
            name in "[^\u{1f}\n]{0,40}",
            dir in "/[^\n\r]{0,60}",
            submitted in 1i64..4_000_000_000,
        ) {
            let line = [id.to_string(), "PENDING".into(), "u".into(), "p".into(),
                submitted.to_string(), "N/A".into(), "Priority".into(), String::new(),
                name.clone(), dir.clone()].join("\u{1f}");
            let (jobs, bad) = parse_squeue(&line);
            proptest::prop_assert!(bad.is_empty());
            proptest::prop_assert_eq!(&jobs[0].job_id, &id.to_string());
            proptest::prop_assert_eq!(&jobs[0].name, &name);
            proptest::prop_assert_eq!(&jobs[0].work_dir, &dir);
            proptest::prop_assert_eq!(jobs[0].submitted, DateTime::from_timestamp(submitted, 0));
        }
    }
}
