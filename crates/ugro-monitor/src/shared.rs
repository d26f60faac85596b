//! The state the daemon's tasks and the control API share: the configuration in force (and
//! its reload), the store, each subsystem's live view, the heartbeat registry, and the event
//! log every part writes to. Composed by [`crate::daemon`]; subsystems never name it: each takes
//! a narrow handle ([`crate::host::Host`] and its own trait on top), implemented here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use ugro_core::event::EventKind;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use ugro_api::ReloadResult;
use ugro_core::health::Severity;

use crate::config::{self, Config, ConfigError, NodeHost};
use crate::ssh::NodeSession;
use crate::store::{NewEvent, Store};
use crate::systemd::{Heartbeats, Notifier};

/// State shared by the daemon's tasks and the control API.
#[derive(Debug)]
pub struct Shared {
    pub(crate) config: watch::Sender<Arc<Config>>,
    pub(crate) config_loaded_at: Mutex<DateTime<Utc>>,
    pub store: Store,
    pub health: crate::health::Health,
    pub runs: crate::runs::Runs,
    pub outbox: crate::outbox::Outbox,
    pub summaries: crate::summary::Summaries,
    pub slurm: crate::slurm::Slurm,
    pub heartbeats: Arc<Heartbeats>,
    pub notifier: Notifier,
    pub started_at: DateTime<Utc>,
    pub pid: u32,
    /// The daemon's effective uid: callers with it may use mutating endpoints.
    pub uid: u32,
    pub(crate) reload_lock: tokio::sync::Mutex<()>,
    /// The full run list as served by `/v1/runs`, with the `Runs` generation it was built at.
    pub runs_json: tokio::sync::Mutex<Option<(u64, axum::body::Bytes)>>,
    /// The change stream (`/v1/stream`): every change of runs, nodes, events and summaries.
    pub changes: crate::stream::Changes,
}

impl Shared {
    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Watch the configuration (tasks re-read it after a reload).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.config.subscribe()
    }

    pub fn config_loaded_at(&self) -> DateTime<Utc> {
        *self
            .config_loaded_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Records an event and logs it. A failing write (disk full, read-only) is logged, never
    /// fatal: the daemon keeps serving.
    pub async fn event(&self, e: NewEvent) {
        match e.severity {
            Severity::Info => tracing::info!(kind = %e.kind, subject = %e.subject, "{}", e.message),
            Severity::Warning => {
                tracing::warn!(kind = %e.kind, subject = %e.subject, "{}", e.message)
            }
            Severity::Critical => {
                tracing::error!(kind = %e.kind, subject = %e.subject, "{}", e.message)
            }
        }
        let at = Utc::now();
        match self.store.record_event(at, &e).await {
            Ok(id) => self.changes.event(id, at, &e),
            Err(err) => tracing::error!(error = %err, kind = %e.kind, "could not record event"),
        }
    }

    /// Re-reads the config file. A valid one replaces the old; an invalid one is rejected, the
    /// old one stays, and both outcomes are events.
    pub async fn reload(&self, trigger: &str) -> Result<ReloadResult, ConfigError> {
        let _guard = self.reload_lock.lock().await;
        self.notifier.reloading();
        let old = self.config();
        let path = old.path.clone();
        let outcome = match tokio::task::spawn_blocking(move || config::load(&path)).await {
            Ok(r) => r,
            Err(e) => Err(ConfigError::Read {
                path: old.path.clone(),
                cause: std::io::Error::other(e.to_string()),
            }),
        };
        match outcome {
            Ok(new) => {
                let needs_restart = new.needs_restart(&old);
                let mut msg = format!(
                    "configuration reloaded from {} ({trigger})",
                    new.path.display()
                );
                if !needs_restart.is_empty() {
                    msg.push_str(&format!(
                        "; changes to {} take effect after a restart",
                        needs_restart.join(", ")
                    ));
                }
                let result = ReloadResult {
                    config_path: new.path.display().to_string(),
                    needs_restart,
                };
                self.config.send_replace(Arc::new(new));
                *self
                    .config_loaded_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Utc::now();
                self.event(NewEvent::new(
                    EventKind::ConfigReloaded,
                    "daemon",
                    Severity::Info,
                    msg,
                ))
                .await;
                self.notifier.ready(&self.running_status());
                Ok(result)
            }
            Err(e) => {
                let lines = e.lines();
                self.event(NewEvent::new(
                    EventKind::ConfigReloadRejected,
                    "daemon",
                    Severity::Warning,
                    format!(
                        "configuration reload ({trigger}) rejected, previous configuration kept: {}",
                        lines.join("; ")
                    ),
                ))
                .await;
                self.notifier.ready(&format!(
                    "{}; last reload rejected ({} problem{})",
                    self.running_status(),
                    lines.len(),
                    if lines.len() == 1 { "" } else { "s" }
                ));
                Err(e)
            }
        }
    }

    pub(crate) fn running_status(&self) -> String {
        let c = self.config();
        format!(
            "Serving on {}: {} node{}, {} root{}",
            c.daemon.socket.display(),
            c.nodes.len(),
            if c.nodes.len() == 1 { "" } else { "s" },
            c.roots.len(),
            if c.roots.len() == 1 { "" } else { "s" }
        )
    }
}

// Shared is every subsystem's host: the narrow handles they take, implemented here so that no
// subsystem names the daemon's state.

impl crate::host::Host for Shared {
    fn config(&self) -> Arc<Config> {
        Shared::config(self)
    }

    fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        Shared::subscribe(self)
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn heartbeats(&self) -> &Arc<Heartbeats> {
        &self.heartbeats
    }

    fn event(&self, e: NewEvent) -> impl std::future::Future<Output = ()> + Send {
        Shared::event(self, e)
    }
}

impl crate::health::HealthHost for Shared {
    fn health(&self) -> &crate::health::Health {
        &self.health
    }

    fn verdict_changed(&self) {
        // Slurm drains and resumes on verdicts: it looks again at once.
        self.slurm.wake();
    }

    fn swept(&self) {
        self.changes.nodes_changed();
    }
}

impl crate::runs::RunsHost for Shared {
    fn runs(&self) -> &crate::runs::Runs {
        &self.runs
    }

    fn remote_sessions(&self) -> Vec<(String, Arc<NodeSession>)> {
        self.health
            .runtimes()
            .into_iter()
            .filter(|rt| matches!(rt.cfg.host, NodeHost::Remote(_)))
            .filter_map(|rt| Some((rt.cfg.name.clone(), rt.session()?.clone())))
            .collect()
    }

    fn gpu_indices(&self) -> HashMap<String, u32> {
        self.health
            .runtimes()
            .iter()
            .flat_map(|rt| rt.report().gpus)
            .map(|g| (g.uuid, g.index))
            .collect()
    }
}

impl crate::sampler::SamplerHost for Shared {
    fn node_session(&self, node: &str) -> Option<Arc<NodeSession>> {
        self.health.node(node).and_then(|rt| rt.session().cloned())
    }
}

impl crate::slurm::SlurmHost for Shared {
    fn slurm(&self) -> &crate::slurm::Slurm {
        &self.slurm
    }

    fn runs(&self) -> &crate::runs::Runs {
        &self.runs
    }

    fn health(&self) -> &crate::health::Health {
        &self.health
    }
}

impl crate::outbox::OutboxHost for Shared {
    fn outbox(&self) -> &crate::outbox::Outbox {
        &self.outbox
    }
}

impl crate::summary::SummaryHost for Shared {
    fn summaries(&self) -> &crate::summary::Summaries {
        &self.summaries
    }

    fn live(&self, now: DateTime<Utc>) -> crate::summary::Live {
        let queued_after = self.config().slurm.queued_after;
        crate::summary::Live {
            runs: self.runs.list(None, None),
            nodes: self.health.reports(),
            queued: self.slurm.queued(now, queued_after).unwrap_or_default(),
        }
    }

    fn summary_made(&self, info: &ugro_api::SummaryInfo) {
        self.changes.summary(info);
    }
}

impl crate::stream::StreamHost for Shared {
    fn changes(&self) -> &crate::stream::Changes {
        &self.changes
    }

    fn runs(&self) -> &crate::runs::Runs {
        &self.runs
    }

    fn health(&self) -> &crate::health::Health {
        &self.health
    }

    fn uid(&self) -> u32 {
        self.uid
    }

    fn late_events(&self) -> Option<tokio::sync::mpsc::Receiver<crate::store::RecordedLate>> {
        self.store.take_late_events()
    }
}
