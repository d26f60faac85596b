//! Prometheus exposition (`GET /metrics`, on the control socket and on the optional TCP
//! listener): a prometheus-client collector that renders the current node reports and counters
//! at scrape time, so series of removed nodes disappear with them. OpenMetrics for scrapers
//! that ask for it, the classic text format (every family with HELP and TYPE, as
//! `promtool check metrics` wants) for everyone else.

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use ugro_core::health::{NodeState, Outcome};

use crate::health::NodeCounters;
use crate::shared::Shared;
use crate::view::NodeHealth;

const STATES: [NodeState; 5] = [
    NodeState::Healthy,
    NodeState::Degraded,
    NodeState::Unhealthy,
    NodeState::Unreachable,
    NodeState::Unknown,
];

/// Everything one scrape shows, copied out of the daemon's state.
#[derive(Debug)]
struct Snapshot {
    nodes: Vec<(NodeHealth, NodeCounters)>,
    started_at: f64,
}

type Labels = Vec<(&'static str, String)>;

fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
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
    if series.is_empty() {
        return Ok(());
    }
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
        let gpu_series = |f: &dyn Fn(&ugro_core::parse::GpuReading) -> Option<f64>| -> Vec<(Labels, f64)> {
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
        Ok(())
    }
}

/// The Prometheus text exposition of the daemon's current state.
pub fn render(shared: &Shared) -> Result<String, std::fmt::Error> {
    let nodes = shared
        .health
        .runtimes()
        .iter()
        .map(|rt| (rt.report(), rt.counters()))
        .collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        nodes,
        started_at: shared.started_at.timestamp_millis() as f64 / 1000.0,
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
    match render(&shared) {
        Ok(text) if wants_openmetrics(&headers) => {
            ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
        }
        Ok(text) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], to_text_format(&text)).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response(),
    }
}

/// Serves only `/metrics` on a TCP listener (`[http] listen`), until `cancel`.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(handler))
        .with_state(shared)
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(16))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(30),
        ));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "metrics listener failed");
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
