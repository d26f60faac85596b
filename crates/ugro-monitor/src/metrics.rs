//! Prometheus exposition (`GET /metrics`, on the control socket and on the optional TCP
//! listener): a prometheus-client collector that renders the current node reports, the runs
//! (counts by root and status for every status, per-run gauges only for running and stuck runs,
//! at most `http.metrics_max_runs` of them), failures by kind, and the summary/outbox state at
//! scrape time, so series of removed nodes and runs disappear with them. Every family is
//! described (HELP and TYPE) even when it has no series. OpenMetrics for scrapers that ask for
//! it, the classic text format (as `promtool check metrics` wants) for everyone else.
//! deploy/prometheus and deploy/grafana use these names; tests/metrics_ecosystem.rs checks them.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use sqlx::Row;
use ugro_core::health::{NodeState, Outcome};
use ugro_core::runs::FailureKind;
use ugro_core::runs::RunStatus;

use crate::health::NodeCounters;
use crate::shared::Shared;
use crate::store::{Store, StoreError};
use crate::view::{NodeHealth, RunInfo};

const STATES: [NodeState; 5] = [
    NodeState::Healthy,
    NodeState::Degraded,
    NodeState::Unhealthy,
    NodeState::Unreachable,
    NodeState::Unknown,
];

/// One running or stuck run with its own series.
#[derive(Debug, Clone, PartialEq)]
struct ActiveRun {
    id: String,
    root: String,
    node: String,
    stuck: bool,
    progress_ratio: f64,
    completed_epochs: u32,
    total_epochs: Option<u32>,
    eta_seconds: Option<u64>,
    last_update_age_seconds: Option<f64>,
}

/// The runs part of a scrape: counts of every root × status, and the active runs kept.
#[derive(Debug, Default, PartialEq)]
struct RunsView {
    /// (root, status) → runs; every status of every configured root, zeros included.
    counts: std::collections::BTreeMap<(String, &'static str), u64>,
    /// Stuck runs first, then running ones, each by root and id; at most the cap.
    active: Vec<ActiveRun>,
    /// Running or stuck runs left without series by the cap.
    dropped: u64,
}

impl RunsView {
    /// Folds the runs (in any order) into counts and the active runs under `cap`.
    fn build<'a>(
        roots: impl IntoIterator<Item = String>,
        runs: impl IntoIterator<Item = &'a RunInfo>,
        cap: usize,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let mut v = RunsView::default();
        let zero = |v: &mut RunsView, root: &str| {
            if !v
                .counts
                .contains_key(&(root.to_owned(), RunStatus::Running.as_str()))
            {
                for s in RunStatus::ALL.iter() {
                    v.counts.insert((root.to_owned(), s.as_str()), 0);
                }
            }
        };
        for root in roots {
            zero(&mut v, &root);
        }
        for r in runs {
            zero(&mut v, &r.root);
            *v.counts
                .entry((r.root.clone(), r.status.as_str()))
                .or_default() += 1;
            if !matches!(r.status, RunStatus::Running | RunStatus::Stuck) {
                continue;
            }
            let last = r.last_log_update.max(r.last_artifact_update);
            v.active.push(ActiveRun {
                id: r.id.clone(),
                root: r.root.clone(),
                node: r
                    .process
                    .as_ref()
                    .map(|p| p.node.clone())
                    .unwrap_or_default(),
                stuck: r.status == RunStatus::Stuck,
                progress_ratio: (r.progress.percentage / 100.0).clamp(0.0, 1.0),
                completed_epochs: r.progress.completed_epochs,
                total_epochs: r.progress.total_epochs,
                eta_seconds: r.progress.eta_seconds,
                last_update_age_seconds: last
                    .map(|t| ((now - t).num_milliseconds().max(0)) as f64 / 1000.0),
            });
        }
        v.active
            .sort_by(|a, b| (!a.stuck, &a.root, &a.id).cmp(&(!b.stuck, &b.root, &b.id)));
        if v.active.len() > cap {
            v.dropped = (v.active.len() - cap) as u64;
            v.active.truncate(cap);
        }
        v
    }
}

/// The summary and outbox part of a scrape, read from the store.
#[derive(Debug, Default, Clone, PartialEq)]
struct MailView {
    /// When the newest nightly summary was made, in ms.
    last_made_ms: Option<i64>,
    /// When an email of a nightly summary was last delivered, in ms.
    last_delivered_ms: Option<i64>,
    /// Outbox messages by state (pending, delivered, given_up), zeros included.
    outbox: Vec<(&'static str, u64)>,
}

const OUTBOX_STATES: [&str; 3] = ["pending", "delivered", "given_up"];

/// How long a scrape waits for the store's answer before leaving the summary/outbox values out.
const STORE_DEADLINE: Duration = Duration::from_secs(5);

impl Store {
    /// The summary and outbox state `/metrics` shows.
    async fn metrics_mail_view(&self) -> Result<MailView, StoreError> {
        let last_made_ms: Option<i64> =
            sqlx::query_scalar("SELECT max(made_ms) FROM summaries WHERE scheduled = 1")
                .fetch_one(self.pool())
                .await
                .map_err(self.err("select last nightly summary time"))?;
        let last_delivered_ms: Option<i64> = sqlx::query_scalar(
            "SELECT max(done_ms) FROM outbox WHERE state = 'delivered' \
             AND summary_date IN (SELECT date FROM summaries WHERE scheduled = 1)",
        )
        .fetch_one(self.pool())
        .await
        .map_err(self.err("select last summary delivery time"))?;
        let rows = sqlx::query("SELECT state, count(*) FROM outbox GROUP BY state")
            .fetch_all(self.pool())
            .await
            .map_err(self.err("count outbox messages by state"))?;
        let outbox = OUTBOX_STATES
            .iter()
            .map(|s| {
                let n = rows
                    .iter()
                    .find(|r| r.get::<&str, _>(0) == *s)
                    .map_or(0, |r| r.get::<i64, _>(1).max(0) as u64);
                (*s, n)
            })
            .collect();
        Ok(MailView {
            last_made_ms,
            last_delivered_ms,
            outbox,
        })
    }
}

/// Everything one scrape shows, copied out of the daemon's state.
#[derive(Debug)]
struct Snapshot {
    nodes: Vec<(NodeHealth, NodeCounters)>,
    started_at: f64,
    runs: RunsView,
    failures: Vec<(FailureKind, u64)>,
    /// `None` when the store did not answer in time.
    mail: Option<MailView>,
    email_enabled: bool,
}

type Labels = Vec<(&'static str, String)>;

fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut family =
        enc.encode_descriptor(name, help, None, ConstGauge::new(0.0f64).metric_type())?;
    for (labels, v) in series {
        ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family =
        enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, v) in series {
        ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let node = |n: &NodeHealth| vec![("node", n.name.clone())];
        let with =
            |n: &NodeHealth, k: &'static str, v: String| vec![("node", n.name.clone()), (k, v)];

        gauges(
            &mut enc,
            "ugro_daemon_start_time_seconds",
            "When the daemon started (Unix time).",
            vec![(vec![], self.started_at)],
        )?;
        gauges(
            &mut enc,
            "ugro_node_health_score",
            "Health score of the node, 0-100 (passed check weight / applicable weight).",
            self.nodes
                .iter()
                .map(|(n, _)| (node(n), f64::from(n.score)))
                .collect(),
        )?;
        gauges(
            &mut enc,
            "ugro_node_state",
            "1 for the node's current state (after hysteresis), 0 for the others.",
            self.nodes
                .iter()
                .flat_map(|(n, _)| {
                    STATES.iter().map(move |s| {
                        (
                            with(n, "state", s.as_str().to_string()),
                            f64::from(u8::from(n.state == *s)),
                        )
                    })
                })
                .collect(),
        )?;
        // One series per node and applicable check; skipped checks are absent.
        let check_series =
            |f: &dyn Fn(&ugro_core::health::CheckResult) -> Option<f64>| -> Vec<(Labels, f64)> {
                self.nodes
                    .iter()
                    .flat_map(|(n, _)| {
                        n.checks
                            .iter()
                            .filter(|c| c.outcome != Outcome::Skipped)
                            .filter_map(move |c| {
                                f(c).map(|v| {
                                    (
                                        vec![
                                            ("node", n.name.clone()),
                                            ("check", c.name.as_str().to_string()),
                                        ],
                                        v,
                                    )
                                })
                            })
                    })
                    .collect()
            };
        gauges(
            &mut enc,
            "ugro_check_passed",
            "1 if the check passed in the last sweep, 0 if it failed or hung (skipped checks are absent).",
            check_series(&|c| c.passed().map(|p| f64::from(u8::from(p)))),
        )?;
        gauges(
            &mut enc,
            "ugro_check_warning",
            "1 if the check failed only as a warning in the last sweep (a busy node's load): it lowers the score, not the state.",
            check_series(&|c| Some(f64::from(u8::from(c.is_warning())))),
        )?;
        gauges(
            &mut enc,
            "ugro_check_hung",
            "1 if the check's probe did not answer by its deadline in the last sweep.",
            check_series(&|c| Some(f64::from(u8::from(c.outcome == Outcome::Hung)))),
        )?;
        gauges(
            &mut enc,
            "ugro_check_duration_seconds",
            "How long the check took in the last sweep.",
            check_series(&|c| Some(c.duration_ms as f64 / 1000.0)),
        )?;
        let gpu_series =
            |f: &dyn Fn(&ugro_core::parse::GpuReading) -> Option<f64>| -> Vec<(Labels, f64)> {
                self.nodes
                    .iter()
                    .flat_map(|(n, _)| {
                        n.gpus.iter().filter_map(move |g| {
                            f(g).map(|v| {
                                (
                                    vec![
                                        ("node", n.name.clone()),
                                        ("gpu", g.index.to_string()),
                                        ("uuid", g.uuid.clone()),
                                    ],
                                    v,
                                )
                            })
                        })
                    })
                    .collect()
            };
        gauges(
            &mut enc,
            "ugro_gpu_temperature_celsius",
            "GPU temperature.",
            gpu_series(&|g| g.temperature_c),
        )?;
        gauges(
            &mut enc,
            "ugro_gpu_utilization_ratio",
            "GPU utilisation, 0-1.",
            gpu_series(&|g| g.utilization_pct.map(|p| p / 100.0)),
        )?;
        gauges(
            &mut enc,
            "ugro_gpu_memory_used_bytes",
            "GPU memory in use.",
            gpu_series(&|g| g.memory_used_mib.map(|m| m * 1048576.0)),
        )?;
        gauges(
            &mut enc,
            "ugro_gpu_memory_total_bytes",
            "GPU memory in total.",
            gpu_series(&|g| g.memory_total_mib.map(|m| m * 1048576.0)),
        )?;
        gauges(
            &mut enc,
            "ugro_gpu_power_watts",
            "GPU power draw.",
            gpu_series(&|g| g.power_w),
        )?;
        counters(
            &mut enc,
            "ugro_ssh_reconnects",
            "SSH connections opened to the node after the first one.",
            self.nodes
                .iter()
                .filter(|(n, _)| n.host != "local")
                .map(|(n, c)| (node(n), c.ssh_reconnects))
                .collect(),
        )?;
        counters(
            &mut enc,
            "ugro_probe_hangs",
            "Probes that did not answer by their deadline.",
            self.nodes
                .iter()
                .flat_map(|(n, c)| {
                    c.hangs.iter().map(move |(check, v)| {
                        (
                            vec![
                                ("node", n.name.clone()),
                                ("check", check.as_str().to_string()),
                            ],
                            *v,
                        )
                    })
                })
                .collect(),
        )?;
        counters(
            &mut enc,
            "ugro_node_sweeps",
            "Health sweeps run since the daemon started.",
            self.nodes
                .iter()
                .map(|(n, c)| (node(n), c.sweeps))
                .collect(),
        )?;
        self.encode_runs(&mut enc)?;
        self.encode_mail(&mut enc)
    }
}

impl Snapshot {
    fn encode_runs(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let runs = &self.runs;
        gauges(
            enc,
            "ugro_runs",
            "Runs by root and status (every status of every root, zeros included).",
            runs.counts
                .iter()
                .map(|((root, status), n)| {
                    (
                        vec![("root", root.clone()), ("status", status.to_string())],
                        *n as f64,
                    )
                })
                .collect(),
        )?;
        let per_run = |f: &dyn Fn(&ActiveRun) -> Option<f64>| -> Vec<(Labels, f64)> {
            runs.active
                .iter()
                .filter_map(|r| {
                    f(r).map(|v| {
                        (
                            vec![
                                ("run", r.id.clone()),
                                ("root", r.root.clone()),
                                ("node", r.node.clone()),
                            ],
                            v,
                        )
                    })
                })
                .collect()
        };
        gauges(
            enc,
            "ugro_run_progress_ratio",
            "Progress of a running or stuck run, 0-1.",
            per_run(&|r| Some(r.progress_ratio)),
        )?;
        gauges(
            enc,
            "ugro_run_completed_epochs",
            "Completed epochs of a running or stuck run.",
            per_run(&|r| Some(f64::from(r.completed_epochs))),
        )?;
        gauges(
            enc,
            "ugro_run_total_epochs",
            "Total epochs of a running or stuck run (absent when unknown).",
            per_run(&|r| r.total_epochs.map(f64::from)),
        )?;
        gauges(
            enc,
            "ugro_run_eta_seconds",
            "Estimated time left of a running or stuck run (absent when unknown).",
            per_run(&|r| r.eta_seconds.map(|s| s as f64)),
        )?;
        gauges(
            enc,
            "ugro_run_last_update_age_seconds",
            "Seconds since a running or stuck run's newest log or artifact changed.",
            per_run(&|r| r.last_update_age_seconds),
        )?;
        gauges(
            enc,
            "ugro_run_stuck",
            "1 if the run is stuck (its process lives, its log is quiet), 0 if it is running.",
            per_run(&|r| Some(f64::from(u8::from(r.stuck)))),
        )?;
        gauges(
            enc,
            "ugro_run_series_dropped",
            "Running or stuck runs left without per-run series by http.metrics_max_runs.",
            vec![(vec![], runs.dropped as f64)],
        )?;
        counters(
            enc,
            "ugro_run_failures",
            "Runs that turned failed since the daemon started, by the failure kind read from their log.",
            self.failures
                .iter()
                .map(|(k, n)| (vec![("kind", k.as_str().to_string())], *n))
                .collect(),
        )
    }

    fn encode_mail(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mail = self.mail.clone().unwrap_or_default();
        let secs = |ms: Option<i64>| -> Vec<(Labels, f64)> {
            ms.map(|ms| (vec![], ms as f64 / 1000.0))
                .into_iter()
                .collect()
        };
        gauges(
            enc,
            "ugro_email_enabled",
            "1 if the nightly summary is emailed ([email] enabled), else 0.",
            vec![(vec![], f64::from(u8::from(self.email_enabled)))],
        )?;
        gauges(
            enc,
            "ugro_summary_last_made_timestamp_seconds",
            "When the newest nightly summary was made (Unix time; absent before the first).",
            secs(mail.last_made_ms),
        )?;
        gauges(
            enc,
            "ugro_summary_last_delivered_timestamp_seconds",
            "When an email of a nightly summary was last delivered (Unix time; absent before the first).",
            secs(mail.last_delivered_ms),
        )?;
        gauges(
            enc,
            "ugro_outbox_messages",
            "Emails in the outbox by state: pending (queued or retrying), delivered, given_up (failed for 24 h).",
            mail.outbox
                .iter()
                .map(|(s, n)| (vec![("state", s.to_string())], *n as f64))
                .collect(),
        )
    }
}

/// The Prometheus text exposition of the daemon's current state (OpenMetrics).
pub async fn render(shared: &Shared) -> Result<String, std::fmt::Error> {
    let mail = match tokio::time::timeout(STORE_DEADLINE, shared.store.metrics_mail_view()).await {
        Ok(Ok(m)) => Some(m),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "/metrics: summary and outbox state left out");
            None
        }
        Err(_) => {
            tracing::warn!(
                "/metrics: the store did not answer within 5 s; summary and outbox state left out"
            );
            None
        }
    };
    let config = shared.config();
    let nodes = shared
        .health
        .runtimes()
        .iter()
        .map(|rt| (rt.report(), rt.counters()))
        .collect();
    let runs = shared.runs.with_all(|all| {
        RunsView::build(
            config.roots.iter().map(|r| r.path.display().to_string()),
            all,
            config.http.metrics_max_runs as usize,
            chrono::Utc::now(),
        )
    });
    let mut registry = match &config.http.cluster {
        Some(c) => Registry::with_labels(std::iter::once(("cluster".into(), c.clone().into()))),
        None => Registry::default(),
    };
    registry.register_collector(Box::new(Snapshot {
        nodes,
        started_at: shared.started_at.timestamp_millis() as f64 / 1000.0,
        runs,
        failures: shared.runs.failures.counts(),
        mail,
        email_enabled: config.email.enabled,
    }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The classic Prometheus text format (0.0.4) of an OpenMetrics exposition: a counter family is
/// named after its samples (`x_total`, where OpenMetrics names it `x`), and there is no `# EOF`.
/// Without this, text-format parsers see each counter's samples as a family with no HELP.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE ", "# UNIT "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some(("# UNIT ", _)) => continue,
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Whether a scraper's `Accept` header asks for OpenMetrics (Prometheus does; curl and promtool
/// do not).
fn wants_openmetrics(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// `GET /metrics`: OpenMetrics when asked for, else the classic text format.
pub async fn handler(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> Response {
    match render(&shared).await {
        Ok(text) if wants_openmetrics(&headers) => {
            ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
        }
        Ok(text) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], to_text_format(&text)).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_names_counter_families_after_their_samples() {
        let om = "# HELP ugro_node_health_score Health score.\n\
                  # TYPE ugro_node_health_score gauge\n\
                  ugro_node_health_score{node=\"local\"} 100\n\
                  # HELP ugro_node_sweeps Health sweeps run.\n\
                  # TYPE ugro_node_sweeps counter\n\
                  ugro_node_sweeps_total{node=\"local\"} 3\n\
                  # EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP ugro_node_health_score Health score.\n\
             # TYPE ugro_node_health_score gauge\n\
             ugro_node_health_score{node=\"local\"} 100\n\
             # HELP ugro_node_sweeps_total Health sweeps run.\n\
             # TYPE ugro_node_sweeps_total counter\n\
             ugro_node_sweeps_total{node=\"local\"} 3\n"
        );
    }

    /// A run as the API serialises it (the contract's fields only).
    fn run(root: &str, id: &str, status: &str, node: Option<&str>) -> RunInfo {
        serde_json::from_value(serde_json::json!({
            "id": id, "root": root, "work_dir": format!("{root}/{id}"), "runner": "trainer",
            "status": status,
            "progress": {"completed_epochs": 3, "total_epochs": 10, "percentage": 30.0,
                         "early_stopped": false, "early_stopped_at_epoch": null,
                         "best_score": null, "latest_score": null, "rate_per_hour": 1.5,
                         "eta_seconds": 16800},
            "last_log_update": "2026-12-01T10:00:00Z",
            "last_artifact_update": "2026-12-01T09:59:00Z",
            "process": node.map(|n| serde_json::json!({"node": n, "pid": 7, "user": "u",
                                                       "cmd": "python train.py",
                                                       "start_time": null})),
            "error": null, "diagnostic": null
        }))
        .unwrap()
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-12-01T10:01:30Z".parse().unwrap()
    }

    #[test]
    fn run_counts_have_every_status_of_every_root_and_the_cap_keeps_stuck_runs_first() {
        let runs = vec![
            run("/b", "r3", "running", Some("gpu1")),
            run("/a", "r2", "running", None),
            run("/a", "r1", "finished", None),
            run("/b", "r9", "stuck", Some("gpu2")),
            run("/a", "r0", "running", None),
        ];
        let v = RunsView::build(["/a".to_string(), "/c".to_string()], &runs, 2, now());
        // Every status of every root (configured or holding runs), zeros included.
        assert_eq!(v.counts.len(), 3 * RunStatus::ALL.len());
        assert_eq!(v.counts[&("/a".to_string(), "running")], 2);
        assert_eq!(v.counts[&("/a".to_string(), "finished")], 1);
        assert_eq!(v.counts[&("/b".to_string(), "stuck")], 1);
        assert_eq!(v.counts[&("/c".to_string(), "failed")], 0);
        // Four active runs, a cap of two: the stuck one, then the first running one by root
        // and id; the other two are counted as dropped.
        let kept: Vec<&str> = v.active.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(kept, ["r9", "r0"]);
        assert_eq!(v.dropped, 2);
        let stuck = &v.active[0];
        assert!(stuck.stuck);
        assert_eq!(stuck.node, "gpu2");
        assert!((stuck.progress_ratio - 0.3).abs() < 1e-9);
        assert_eq!(stuck.total_epochs, Some(10));
        assert_eq!(stuck.eta_seconds, Some(16800));
        assert_eq!(stuck.last_update_age_seconds, Some(90.0));

        let all = RunsView::build(Vec::<String>::new(), &runs, 500, now());
        assert_eq!(all.active.len(), 4);
        assert_eq!(all.dropped, 0);
    }

    #[test]
    fn run_series_escape_their_labels_and_every_family_is_described() {
        let weird = "exp/a \"quoted\" \\ back\nslash";
        let runs = vec![run("/r", weird, "running", None)];
        let snap = Snapshot {
            nodes: vec![],
            started_at: 1.0,
            runs: RunsView::build(["/r".to_string()], &runs, 10, now()),
            failures: crate::runs::RunFailures::default().counts(),
            mail: None,
            email_enabled: false,
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snap));
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &registry).unwrap();
        let text = to_text_format(&om);
        assert!(
            text.contains(
                "ugro_run_progress_ratio{run=\"exp/a \\\"quoted\\\" \\\\ back\\nslash\",root=\"/r\",node=\"\"} 0.3"
            ),
            "{text}"
        );
        // Families with no series (no GPUs, no summary yet) are still described.
        for name in [
            "ugro_gpu_utilization_ratio",
            "ugro_summary_last_made_timestamp_seconds",
            "ugro_run_failures_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
        }
        assert!(
            text.contains("ugro_run_failures_total{kind=\"cuda_oom\"} 0\n"),
            "{text}"
        );
        assert!(
            !text.contains("ugro_summary_last_made_timestamp_seconds{"),
            "{text}"
        );
        assert!(text.contains("ugro_run_series_dropped{} 0.0\n"), "{text}");
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let mut h = axum::http::HeaderMap::new();
        assert!(!wants_openmetrics(&h));
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        assert!(!wants_openmetrics(&h));
        h.insert(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
                .parse()
                .unwrap(),
        );
        assert!(wants_openmetrics(&h));
    }
}
