//! The kinds of event the daemon records: one enum, written to the store and served as the dotted
//! strings below (`run.failed`), so a misspelt kind is a compile error, not a lost event.

use std::fmt;
use std::str::FromStr;

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident = $s:literal,)*) => {
        /// Every kind of event the daemon records.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The kind as stored and served (`run.failed`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $s,)*
                }
            }
        }

        impl FromStr for EventKind {
            type Err = UnknownEventKind;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok(EventKind::$variant),)*
                    _ => Err(UnknownEventKind(s.to_owned())),
                }
            }
        }
    };
}

event_kinds! {
    /// The configuration file was re-read and is now in force.
    ConfigReloaded = "config.reloaded",
    /// A re-read configuration was invalid; the old one stays.
    ConfigReloadRejected = "config.reload_rejected",
    /// The `[http]` listener could not be bound.
    DaemonHttpBindFailed = "daemon.http_bind_failed",
    DaemonStarted = "daemon.started",
    DaemonStopped = "daemon.stopped",
    /// A background task ended or panicked; the daemon exits for its supervisor to restart it.
    DaemonTaskFailed = "daemon.task_failed",
    /// The previous run of the daemon did not stop cleanly.
    DaemonUncleanStop = "daemon.unclean_stop",
    EmailDeferred = "email.deferred",
    EmailDelivered = "email.delivered",
    EmailGivenUp = "email.given_up",
    NodeAlertOpened = "node.alert_opened",
    NodeAlertResolved = "node.alert_resolved",
    /// The node's persistent SSH session was lost.
    NodeMonitorDisconnected = "node.monitor_disconnected",
    NodeMonitorReconnected = "node.monitor_reconnected",
    /// healthy / degraded / unhealthy / unreachable, after hysteresis.
    NodeStateChanged = "node.state_changed",
    RetentionFailed = "retention.failed",
    RetentionFileErrors = "retention.file_errors",
    RootBack = "root.back",
    RootMissing = "root.missing",
    RootScanned = "root.scanned",
    /// inotify could not be used (or ran out of watches); the root is polled.
    RootWatchFallback = "root.watch_fallback",
    RunDiscovered = "run.discovered",
    RunEpochCompleted = "run.epoch_completed",
    RunFailed = "run.failed",
    RunFinished = "run.finished",
    RunOutdated = "run.outdated",
    RunProgressWriteFailed = "run.progress_write_failed",
    RunRemoved = "run.removed",
    RunStarted = "run.started",
    RunStuck = "run.stuck",
    RunUnknownRunner = "run.unknown_runner",
    StoreCorrupt = "store.corrupt",
    /// Events that could not be written (disk full) and were counted instead.
    StoreEventsLost = "store.events_lost",
    StoreRecovered = "store.recovered",
    SummaryCaughtUp = "summary.caught_up",
    SummaryFailed = "summary.failed",
    SummaryMade = "summary.made",
    SummaryWriteFailed = "summary.write_failed",
    /// `[slurm] drain_unhealthy`: a node ugro finds unhealthy was drained (reason `ugro: …`).
    SlurmDrained = "slurm.drained",
    /// An unhealthy node is drained by an operator already: left alone, never resumed by ugro.
    SlurmDrainSkipped = "slurm.drain_skipped",
    /// A node ugro drained is healthy again and was resumed.
    SlurmResumed = "slurm.resumed",
    /// `squeue` or `sinfo` failed or did not answer (once per outage).
    SlurmUnavailable = "slurm.unavailable",
}

impl EventKind {
    /// The part before the dot (`run`, `node`, …).
    pub fn family(self) -> &'static str {
        let s = self.as_str();
        s.split_once('.').map_or(s, |(f, _)| f)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for EventKind {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A string that names no [`EventKind`] (e.g. a row written by a newer daemon).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownEventKind(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in EventKind::ALL {
            assert!(seen.insert(k.as_str()), "{k} twice");
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(*k));
            let (family, name) = k.as_str().split_once('.').expect("dotted");
            assert!(!family.is_empty() && !name.is_empty() && k.family() == family);
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{k}\""));
        }
        assert_eq!(
            "run.faild".parse::<EventKind>(),
            Err(UnknownEventKind("run.faild".into()))
        );
    }
}
