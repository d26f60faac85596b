//! The headline counts and the mail subject of a built summary.

use super::{Headline, Summary};

/// The summary's headline counts: runs running, failed and stuck now, finished in the window,
/// nodes unhealthy or unreachable now.
pub fn headline(s: &Summary) -> Headline {
    let c = &s.experiments.counts;
    Headline {
        running: c.running,
        failed: c.failed,
        stuck: c.stuck,
        finished_in_window: s.experiments.finished.len(),
        nodes_unhealthy: s.nodes.unhealthy,
    }
}

/// The email subject: "[ugro] 2026-11-22 — 12 running, 3 failed, 1 node unhealthy". The running
/// count is always there; finished (in the window), failed, stuck and unhealthy nodes only when
/// not zero.
pub fn subject(s: &Summary) -> String {
    let h = headline(s);
    let mut parts = vec![format!("{} running", h.running)];
    if h.finished_in_window > 0 {
        parts.push(format!("{} finished", h.finished_in_window));
    }
    if h.failed > 0 {
        parts.push(format!("{} failed", h.failed));
    }
    if h.stuck > 0 {
        parts.push(format!("{} stuck", h.stuck));
    }
    if h.nodes_unhealthy > 0 {
        let noun = if h.nodes_unhealthy == 1 {
            "node"
        } else {
            "nodes"
        };
        parts.push(format!("{} {noun} unhealthy", h.nodes_unhealthy));
    }
    format!(
        "[ugro] {} — {}",
        s.date.format("%Y-%m-%d"),
        parts.join(", ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::health::NodeState;
    use crate::runs::RunStatus;
    use crate::summary::RunSnapshot;
    use crate::summary::fixtures::*;

    #[test]
    fn subject_has_date_and_headline_counts() {
        let mut runs: Vec<RunSnapshot> = (0..12)
            .map(|i| run(&format!("r{i}"), RunStatus::Running, 1, 10))
            .collect();
        runs.extend((0..3).map(|i| run(&format!("f{i}"), RunStatus::Failed, 1, 10)));
        let mut fx = Fx::new(runs.clone()).previous(runs);
        fx.current.nodes.push(node("gpu2", NodeState::Unhealthy));
        fx.current.nodes.push(node("gpu3", NodeState::Degraded));
        assert_eq!(
            subject(&fx.build()),
            "[ugro] 2026-11-22 — 12 running, 3 failed, 1 node unhealthy"
        );
        fx.current.nodes.push(node("gpu4", NodeState::Unreachable));
        fx.current.runs[0].status = RunStatus::Finished;
        fx.current.runs[1].status = RunStatus::Stuck;
        assert_eq!(
            subject(&fx.build()),
            "[ugro] 2026-11-22 — 10 running, 1 finished, 3 failed, 1 stuck, 2 nodes unhealthy"
        );
    }
}
