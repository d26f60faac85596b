//! The daemon's life: start-up order (lock, database, socket, READY), composing the shared
//! state ([`crate::shared`]) and the supervised tasks, signals (TERM/INT stop, HUP reload), and
//! a bounded, graceful stop. Retention runs in [`crate::scheduler`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ugro_core::event::EventKind;

use chrono::Utc;
use nix::fcntl::{Flock, FlockArg};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use ugro_core::health::Severity;

use crate::config::{Config, ConfigError};
use crate::control::{self, ControlSocket, SocketError};
use crate::shared::Shared;
use crate::store::{NewEvent, Store, StoreError};
use crate::supervise::{BEAT_EVERY, MAX_SILENCE};
use crate::systemd::{Heartbeats, Notifier};

/// The whole stop (tasks, connections, final writes) must fit in this.
pub const STOP_DEADLINE: Duration = Duration::from_secs(4);
/// Of [`STOP_DEADLINE`]: the tasks get this long to stop, and the last writes end by
/// [`STOP_WRITES`] (main's runtime shutdown takes at most 500 ms after).
const STOP_TASKS: Duration = Duration::from_millis(2500);
const STOP_WRITES: Duration = Duration::from_millis(3400);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(
        "another ugro-monitor already uses state directory {dir} (lock {lock} is held); stop it first"
    )]
    StateLocked { dir: PathBuf, lock: PathBuf },
    #[error("cannot {op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("background task '{0}' stopped unexpectedly")]
    TaskEnded(&'static str),
}

/// Takes an exclusive, non-blocking lock on `path` (released by the kernel if we die).
fn lock_file(path: &Path, dir: &Path) -> Result<Flock<File>, DaemonError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| DaemonError::Io {
            op: "open lock file",
            path: path.to_path_buf(),
            cause: source,
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            DaemonError::StateLocked {
                dir: dir.to_path_buf(),
                lock: path.to_path_buf(),
            }
        } else {
            DaemonError::Io {
                op: "lock",
                path: path.to_path_buf(),
                cause: errno.into(),
            }
        }
    })
}

/// Debug builds only: `UGRO_FAILPOINT_PANIC=NAME` makes the supervised task NAME panic a second
/// after start, so the end-to-end tests can show what a dying task does (event, watchdog held,
/// exit 1). Release builds have no failpoint.
async fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("UGRO_FAILPOINT_PANIC").is_ok_and(|v| v == name) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        #[allow(clippy::panic)]
        {
            panic!("failpoint UGRO_FAILPOINT_PANIC={name}");
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Runs the daemon until SIGTERM/SIGINT. Returns after a clean stop.
pub async fn run(config: Config, notifier: Notifier) -> Result<(), DaemonError> {
    let started_at = Utc::now();
    let pid = std::process::id();
    notifier.status("Starting: opening database");

    // The state lock makes the database ours alone; a second daemon stops here.
    crate::store::create_private_dir(&config.daemon.state_dir).map_err(|source| {
        DaemonError::Io {
            op: "create state directory",
            path: config.daemon.state_dir.clone(),
            cause: source,
        }
    })?;
    let lock_path = config.daemon.state_dir.join("ugro.lock");
    let state_lock = match lock_file(&lock_path, &config.daemon.state_dir) {
        Ok(l) => l,
        Err(e @ DaemonError::StateLocked { .. }) => {
            // Say which socket the live daemon answers on, when it does.
            if let Err(s @ SocketError::InUse { .. }) =
                ControlSocket::bind(&config.daemon.socket, None).await
            {
                return Err(s.into());
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };

    let store = Store::open(&config.daemon.database_path()).await?;
    notifier.status("Starting: binding control socket");
    let socket = ControlSocket::bind(
        &config.daemon.socket,
        config.daemon.control_group.as_deref(),
    )
    .await?;

    let (session, unclean) = store
        .begin_session(started_at, pid, env!("CARGO_PKG_VERSION"))
        .await?;
    let heartbeats = Heartbeats::new();
    // The last known node states, served at once until the first sweeps.
    let restored = store.load_node_status().await?;
    let restored_runs = store.load_runs().await?;
    let (config_tx, _) = watch::channel(Arc::new(config));
    let shared = Arc::new(Shared {
        config: config_tx,
        config_loaded_at: Mutex::new(started_at),
        store: store.clone(),
        health: crate::health::Health::new(restored),
        runs: crate::runs::Runs::restore(restored_runs),
        outbox: crate::outbox::Outbox::new(),
        summaries: crate::summary::Summaries::new(),
        slurm: crate::slurm::Slurm::default(),
        heartbeats: heartbeats.clone(),
        notifier: notifier.clone(),
        started_at,
        pid,
        uid: nix::unistd::geteuid().as_raw(),
        reload_lock: tokio::sync::Mutex::new(()),
        runs_json: tokio::sync::Mutex::new(None),
        changes: crate::stream::Changes::new(Default::default(), started_at),
    });

    if let Some(prev) = unclean {
        shared
            .event(NewEvent::new(
                EventKind::DaemonUncleanStop,
                "daemon",
                Severity::Warning,
                format!(
                    "the previous daemon (started {}) stopped without a clean shutdown: crash, kill -9 or power loss",
                    prev.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ))
            .await;
    }
    let cfg = shared.config();
    shared
        .event(NewEvent::new(
            EventKind::DaemonStarted,
            "daemon",
            Severity::Info,
            format!(
                "ugro-monitor {} started (pid {pid}) with {}; {} node(s), {} root(s)",
                env!("CARGO_PKG_VERSION"),
                cfg.path.display(),
                cfg.nodes.len(),
                cfg.roots.len()
            ),
        ))
        .await;

    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;

    let cancel = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    // Which task a join handle is, so a panicked one is named in the event.
    let mut names: std::collections::HashMap<tokio::task::Id, &'static str> =
        std::collections::HashMap::new();
    {
        let hb = heartbeats.register("control", MAX_SILENCE);
        let router = control::router(shared.clone());
        let cancel = cancel.clone();
        let h = tasks.spawn(async move {
            control::serve(socket, router, cancel, hb, BEAT_EVERY).await;
            "control"
        });
        names.insert(h.id(), "control");
    }
    // The supervised background tasks: each beats its heartbeat and stops on `cancel`.
    macro_rules! supervised {
        ($($name:literal => $run:path),* $(,)?) => {$({
            let hb = heartbeats.register($name, MAX_SILENCE);
            let (shared, cancel) = (shared.clone(), cancel.clone());
            let h = tasks.spawn(async move {
                failpoint($name).await;
                $run(shared, cancel, hb).await;
                $name
            });
            names.insert(h.id(), $name);
        })*};
    }
    supervised! {
        "health" => crate::health::supervise,
        "runs" => crate::runs::supervise,
        "sampler" => crate::sampler::supervise,
        "scheduler" => crate::scheduler::supervise,
        "outbox" => crate::outbox::supervise,
        "slurm" => crate::slurm::supervise,
        "stream" => crate::stream::supervise,
    }
    if let Some(listen) = cfg.http.listen {
        let token = match &cfg.http.token_file {
            Some(path) => Some(crate::web::Token::load(path).map_err(|e| DaemonError::Io {
                op: "read the dashboard token file",
                path: path.clone(),
                cause: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })?),
            None => None,
        };
        let shared = shared.clone();
        let cancel = cancel.clone();
        match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => {
                tracing::info!(
                    %listen,
                    token = token.is_some(),
                    "serving the dashboard and /metrics over TCP"
                );
                let h = tasks.spawn(async move {
                    crate::web::serve_tcp(l, shared, token, cancel).await;
                    "http"
                });
                names.insert(h.id(), "http");
            }
            Err(e) => {
                shared
                    .event(NewEvent::new(
                        EventKind::DaemonHttpBindFailed,
                        "daemon",
                        Severity::Warning,
                        format!("cannot listen on {listen} for /metrics: {e}; the control socket still serves /metrics"),
                    ))
                    .await;
            }
        }
    }
    if let Some(usec) = sd_notify::watchdog_enabled() {
        let period = usec / 2;
        tracing::info!(
            period_ms = period.as_millis() as u64,
            "systemd watchdog enabled"
        );
        let (h, s, n, c) = (
            heartbeats.clone(),
            store.clone(),
            notifier.clone(),
            cancel.clone(),
        );
        let h = tasks.spawn(async move {
            crate::systemd::watchdog(period, h, s, n, c).await;
            "watchdog"
        });
        names.insert(h.id(), "watchdog");
    }

    {
        // Reads the whole file: in the background, so the start does not wait for it.
        let shared = shared.clone();
        tokio::spawn(async move {
            let problems = shared.store.quick_check().await;
            if !problems.is_empty() {
                let message = crate::store::corrupt_message(shared.store.path(), &problems);
                shared
                    .event(NewEvent::new(
                        EventKind::StoreCorrupt,
                        "daemon",
                        Severity::Critical,
                        message,
                    ))
                    .await;
            }
        });
    }
    notifier.ready(&shared.running_status());
    tracing::info!(socket = %cfg.daemon.socket.display(), database = %store.path().display(), "ready");
    drop(cfg);

    let mut failure = None;
    let reason = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => {
                if let Err(e) = shared.reload("SIGHUP").await {
                    tracing::warn!("reload rejected:\n{e}");
                }
            }
            Some(ended) = tasks.join_next_with_id() => {
                let (name, how) = match ended {
                    Ok((_, name)) => (name, "returned".to_string()),
                    Err(e) => (
                        names.get(&e.id()).copied().unwrap_or("unknown"),
                        if e.is_panic() { "panicked".to_string() } else { e.to_string() },
                    ),
                };
                shared.event(NewEvent::new(EventKind::DaemonTaskFailed, "daemon", Severity::Critical,
                    format!("background task '{name}' stopped unexpectedly ({how}); shutting down so the service manager can restart the daemon"))).await;
                failure = Some(DaemonError::TaskEnded(name));
                break "task failure";
            }
        }
    };

    // Stop: tell systemd, cancel every task, wait a bounded time, then write the last words.
    notifier.stopping();
    tracing::info!(reason, "stopping");
    cancel.cancel();
    // The budget: tasks, then the last writes (a full or locked disk must not stretch them),
    // then main's runtime shutdown (500 ms) — all within STOP_DEADLINE.
    let stop_began = tokio::time::Instant::now();
    let drained = tokio::time::timeout_at(stop_began + STOP_TASKS, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some tasks did not stop in time; aborting them");
        tasks.abort_all();
    }
    let last_words = async {
        shared
            .event(NewEvent::new(
                EventKind::DaemonStopped,
                "daemon",
                if failure.is_some() {
                    Severity::Critical
                } else {
                    Severity::Info
                },
                format!("ugro-monitor stopped ({reason})"),
            ))
            .await;
        if let Err(e) = store.end_session(session, Utc::now()).await {
            tracing::error!(error = %e, "could not record the clean stop");
        }
        store.close().await;
    };
    if tokio::time::timeout_at(stop_began + STOP_WRITES, last_words)
        .await
        .is_err()
    {
        tracing::error!(
            "the database did not take the last writes in time; stopping without them (the next start reports an unclean stop)"
        );
    }
    drop(state_lock);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
