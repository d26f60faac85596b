//! The containers of the processes that may be runs': which container a process is in (its
//! `/proc/PID/cgroup`, read here or over SSH in the same exec as `ps`), what the node's
//! `docker inspect` says of it (one call per node and cycle for the ids not known yet, with a
//! deadline; cached per node and id, bounded), and the process's command line and working dir
//! mapped through the container's mounts to host paths, which is what run matching reads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use ugro_core::containers::{self as core, Inspected};

use crate::ssh::{Exec, NodeSession};
use crate::view::RunContainer;

use super::procs::Proc;

/// The node name local processes carry.
pub(super) const LOCAL: &str = "local";

/// At most this many containers are remembered (per root tracker); past it, the ones seen
/// longest ago are forgotten.
const MAX_CACHED: usize = 512;

/// An id `docker inspect` did not know (or could not be asked about) is asked again after
/// this long.
const UNKNOWN_AGAIN: Duration = Duration::from_secs(300);

/// Whether `docker` is on this machine's PATH is looked up again after this long.
const DOCKER_LOOKUP_EVERY: Duration = Duration::from_secs(300);

/// At most this many ids per `docker inspect` call.
const MAX_IDS_PER_CALL: usize = 64;

/// Marker of the container part of the batched remote command's output.
pub(super) const CONTAINERS_MARKER: &str = "@@ugro:containers";
/// Marker of the working dirs of containerised processes in that part.
const CWD_MARKER: &str = "@@ugro:cwd";

/// Cgroup paths worth a look (what [`core::container_of_cgroup`] can name).
const CGROUP_PATTERN: &str = "docker|containerd|libpod|crio|kubepods";

/// The container part of the batched remote command: only where `docker` is installed, the
/// cgroup lines of containerised processes (`/proc/PID/cgroup:LINE`, one `grep` over all of
/// them) and their working dirs (readable for the session user's own processes, or all of
/// them as root).
pub(super) fn remote_part() -> String {
    format!(
        "echo {CONTAINERS_MARKER}; if command -v docker >/dev/null 2>&1; then echo docker; \
         grep -sHE '{CGROUP_PATTERN}' /proc/[0-9]*/cgroup; echo {CWD_MARKER}; \
         for f in $(grep -lsE '{CGROUP_PATTERN}' /proc/[0-9]*/cgroup); do d=${{f%/cgroup}}; \
         printf '%s\\t%s\\n' \"${{d#/proc/}}\" \"$(readlink \"$d/cwd\" 2>/dev/null)\"; done; fi"
    )
}

/// `text` split around its first line that is exactly `marker`: what comes before that line,
/// and what follows it.
pub(super) fn split_at_line<'a>(text: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end_matches(['\n', '\r']) == marker {
            return Some((&text[..at], &text[at + line.len()..]));
        }
        at += line.len();
    }
    None
}

/// A process's container, as its cgroup names it, and what is known of it.
#[derive(Debug, Clone)]
pub(super) struct InContainer {
    pub(super) id: String,
    /// The working dir as the process sees it (inside the container), when readable.
    pub(super) cwd: Option<String>,
    /// What the node's runtime says of the container (None while unknown).
    pub(super) info: Option<Arc<Inspected>>,
    /// The command line, then the working dir, with container paths as host paths (only with
    /// `info`): what run matching reads instead of the command line.
    pub(super) host_text: Option<String>,
}

impl InContainer {
    fn new(id: String, cwd: Option<String>) -> Self {
        Self {
            id,
            cwd,
            info: None,
            host_text: None,
        }
    }

    /// The container as the run's process shows it.
    pub(super) fn shown(&self) -> Option<RunContainer> {
        self.info.as_ref().map(|i| RunContainer {
            id: i.id.clone(),
            name: i.name.clone(),
            image: i.image.clone(),
        })
    }
}

/// The container of the process at `proc_dir` (`/proc/PID`), when its cgroup names one (blocking).
pub(super) fn read_local(proc_dir: &Path) -> Option<InContainer> {
    let text = std::fs::read_to_string(proc_dir.join("cgroup")).ok()?;
    let r = core::container_of_cgroup(&text)?;
    let cwd = std::fs::read_link(proc_dir.join("cwd"))
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned));
    Some(InContainer::new(r.id, cwd))
}

/// What the container part of the remote output says: whether `docker` is there, and the
/// container of each pid its cgroup names one for.
pub(super) fn parse_remote(part: &str) -> (bool, HashMap<u32, InContainer>) {
    let mut lines = part.lines().map(str::trim_end).filter(|l| !l.is_empty());
    if lines.next() != Some("docker") {
        return (false, HashMap::new());
    }
    let mut cgroups: HashMap<u32, String> = HashMap::new();
    let mut cwds: HashMap<u32, String> = HashMap::new();
    let mut in_cwds = false;
    for l in lines {
        if l == CWD_MARKER {
            in_cwds = true;
        } else if in_cwds {
            if let Some((pid, cwd)) = l.split_once('\t')
                && let Ok(pid) = pid.parse::<u32>()
                && cwd.starts_with('/')
            {
                cwds.insert(pid, cwd.to_owned());
            }
        } else if let Some(rest) = l.strip_prefix("/proc/")
            && let Some((pid, line)) = rest.split_once("/cgroup:")
            && let Ok(pid) = pid.parse::<u32>()
        {
            let text = cgroups.entry(pid).or_default();
            text.push_str(line);
            text.push('\n');
        }
    }
    let found = cgroups
        .into_iter()
        .filter_map(|(pid, text)| {
            let r = core::container_of_cgroup(&text)?;
            Some((pid, InContainer::new(r.id, cwds.remove(&pid))))
        })
        .collect();
    (true, found)
}

/// Whether `cmd` is an interactive shell with no script (`bash`, `/bin/sh -l`): its working
/// dir says where someone is looking, not which run it is.
fn bare_shell(cmd: &str) -> bool {
    let mut words = cmd.split_whitespace();
    let Some(first) = words.next() else {
        return true;
    };
    let name = first.rsplit('/').next().unwrap_or(first);
    let name = name.trim_start_matches('-');
    matches!(
        name,
        "sh" | "bash" | "dash" | "zsh" | "fish" | "ash" | "ksh"
    ) && words.all(|w| matches!(w, "-l" | "-i" | "--login" | "-il" | "-li"))
}

/// The command line and working dir of a process in container `info`, with container paths
/// as host paths. The working dir counts only for a process that is not a bare shell.
fn host_text(info: &Inspected, cmd: &str, cwd: Option<&str>) -> String {
    let mut text = core::host_command(&info.mounts, cmd);
    if let Some(cwd) = cwd.filter(|_| !bare_shell(cmd))
        && let Some(host) = core::host_path(&info.mounts, cwd)
    {
        text.push(' ');
        text.push_str(&host);
    }
    text
}

/// Where `docker inspect` runs.
pub(super) enum Inspector<'a> {
    Local,
    Remote(&'a NodeSession),
}

struct Entry {
    /// None: not known to the node's runtime (asked again after [`UNKNOWN_AGAIN`]).
    info: Option<Arc<Inspected>>,
    asked: Instant,
    seen: Instant,
}

/// What the tracker of one root knows of containers: per node and id, and whether `docker` is
/// on this machine.
#[derive(Default)]
pub(super) struct Containers {
    cache: HashMap<(String, String), Entry>,
    local_docker: Option<(Instant, bool)>,
    /// Nodes whose `docker inspect` failed, said once until it works again.
    failing: std::collections::HashSet<String>,
}

impl std::fmt::Debug for Containers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containers")
            .field("cached", &self.cache.len())
            .field("local_docker", &self.local_docker.map(|(_, d)| d))
            .finish()
    }
}

/// Said once per daemon: no `docker` here.
static SAID_NO_DOCKER: AtomicBool = AtomicBool::new(false);

fn docker_on_path() -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join("docker"))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

impl Containers {
    /// Whether `docker` is on this machine's PATH (looked up every few minutes; its absence is
    /// logged once).
    pub(super) fn docker_here(&mut self) -> bool {
        if let Some((at, here)) = self.local_docker
            && at.elapsed() < DOCKER_LOOKUP_EVERY
        {
            return here;
        }
        let here = docker_on_path();
        if !here && !SAID_NO_DOCKER.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "no docker on PATH: processes in containers are matched to runs by their \
                 command line only"
            );
        }
        self.local_docker = Some((Instant::now(), here));
        here
    }

    /// Fills in what is known of the containers of `procs` (all of node `node`): the ids not
    /// known yet, or not known last time and due again, are asked in one `docker inspect`
    /// (bounded by `deadline`); then each containerised process gets its container and its
    /// host-path text.
    pub(super) async fn resolve(
        &mut self,
        node: &str,
        inspector: Inspector<'_>,
        procs: &mut [Proc],
        deadline: Duration,
    ) {
        let now = Instant::now();
        let mut ask: Vec<String> = Vec::new();
        for p in procs.iter() {
            let Some(c) = &p.container else { continue };
            let key = (node.to_owned(), c.id.clone());
            match self.cache.get_mut(&key) {
                Some(e) if e.info.is_some() || e.asked.elapsed() < UNKNOWN_AGAIN => e.seen = now,
                _ => {
                    if !ask.contains(&c.id) && ask.len() < MAX_IDS_PER_CALL {
                        ask.push(c.id.clone());
                    }
                }
            }
        }
        if !ask.is_empty() {
            let found = self.inspect(node, inspector, &ask, deadline).await;
            for id in ask {
                let info = found.iter().find(|i| i.id == id).cloned().map(Arc::new);
                if info.is_none() {
                    tracing::debug!(node, container = %id, "container not known to docker");
                }
                self.cache.insert(
                    (node.to_owned(), id),
                    Entry {
                        info,
                        asked: now,
                        seen: now,
                    },
                );
            }
            self.bound();
        }
        for p in procs.iter_mut() {
            let cmd = p.cmd.clone();
            let Some(c) = &mut p.container else { continue };
            c.info = self
                .cache
                .get(&(node.to_owned(), c.id.clone()))
                .and_then(|e| e.info.clone());
            c.host_text = c
                .info
                .as_ref()
                .map(|i| host_text(i, &cmd, c.cwd.as_deref()));
        }
    }

    /// Forgets the containers seen longest ago past [`MAX_CACHED`].
    fn bound(&mut self) {
        if self.cache.len() <= MAX_CACHED {
            return;
        }
        let mut by_age: Vec<(Instant, (String, String))> = self
            .cache
            .iter()
            .map(|(k, e)| (e.seen, k.clone()))
            .collect();
        by_age.sort();
        let drop = self.cache.len() - MAX_CACHED;
        for (_, k) in by_age.into_iter().take(drop) {
            self.cache.remove(&k);
        }
    }

    /// One `docker inspect ID…` on the node; what it found (an id it does not know is only
    /// named on its stderr, the others are still printed). A failure is logged once per node
    /// until it works again.
    async fn inspect(
        &mut self,
        node: &str,
        inspector: Inspector<'_>,
        ids: &[String],
        deadline: Duration,
    ) -> Vec<Inspected> {
        let out = match inspector {
            Inspector::Local => {
                let mut args = vec!["inspect"];
                args.extend(ids.iter().map(String::as_str));
                crate::local::run_local("docker", &args, deadline).await
            }
            Inspector::Remote(session) => {
                // Ids are 64 hex digits (checked by the cgroup parser): nothing to quote.
                let cmd = format!("docker inspect {}", ids.join(" "));
                session
                    .exec(&cmd, deadline)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        let problem = match out {
            Ok(Exec::Done(o)) => match core::parse_inspect(&o.stdout) {
                Ok(found) => {
                    if self.failing.remove(node) {
                        tracing::info!(node, "docker inspect works again");
                    }
                    return found;
                }
                Err(e) => format!(
                    "{e} (exit {:?}): {}",
                    o.exit_status,
                    o.stderr.trim().chars().take(300).collect::<String>()
                ),
            },
            Ok(Exec::Hung) => format!("no answer within {deadline:?}"),
            Err(e) => e,
        };
        if self.failing.insert(node.to_owned()) {
            tracing::warn!(
                node,
                error = %problem,
                "docker inspect failed: processes in containers are matched by their command \
                 line only"
            );
        }
        Vec::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2b7a9d0e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";

    #[test]
    fn the_remote_part_gives_each_containerised_pid_its_container_and_cwd() {
        let out = format!(
            "docker\n/proc/42/cgroup:9:name=systemd:/init.scope\n\
             /proc/42/cgroup:0::/system.slice/docker-{ID}.scope\n\
             /proc/43/cgroup:0::/system.slice/containerd.service\n\
             {CWD_MARKER}\n42\t/workspace/exp/run_1\n43\t/\n"
        );
        let (docker, found) = parse_remote(&out);
        assert!(docker);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[&42].id, ID);
        assert_eq!(found[&42].cwd.as_deref(), Some("/workspace/exp/run_1"));
        // Without docker on the node the part is empty.
        let (docker, found) = parse_remote("\n");
        assert!(!docker && found.is_empty());
    }

    #[test]
    fn the_working_dir_counts_unless_the_process_is_a_bare_shell() {
        let info = Inspected {
            id: ID.into(),
            name: "t".into(),
            image: "i".into(),
            mounts: vec![core::Mount {
                source: "/data/runs".into(),
                destination: "/workspace".into(),
            }],
        };
        assert_eq!(
            host_text(&info, "python train.py", Some("/workspace/exp/a")),
            "python train.py /data/runs/exp/a"
        );
        assert_eq!(
            host_text(&info, "/bin/bash -l", Some("/workspace/exp/a")),
            "/bin/bash -l"
        );
        assert_eq!(
            host_text(&info, "bash run.sh", Some("/workspace/exp/a")),
            "bash run.sh /data/runs/exp/a"
        );
        assert_eq!(
            host_text(&info, "python /workspace/exp/b/train.py", Some("/opt")),
            "python /data/runs/exp/b/train.py"
        );
    }

    #[test]
    fn the_batched_listing_gives_gpus_and_containers_though_ps_shows_the_command_itself() {
        use super::super::procs::{APPS_MARKER, remote_procs};
        let cmd = super::super::procs::remote_command(Duration::from_secs(10));
        let out = format!(
            " 42 root 60 python train.py --config /workspace/exp/a/config.json\n\
             900 alice 0 sh -c {cmd}\n{APPS_MARKER}\nGPU-4f1c, 42, 1024\n\
             {CONTAINERS_MARKER}\ndocker\n/proc/42/cgroup:0::/system.slice/docker-{ID}.scope\n\
             {CWD_MARKER}\n42\t/workspace/exp/a\n"
        );
        let now = chrono::DateTime::from_timestamp(1_000_000, 0).unwrap();
        let procs = remote_procs("gpu1", &out, now);
        assert_eq!(procs.len(), 2, "{procs:?}");
        let p = procs.iter().find(|p| p.pid == 42).unwrap();
        assert_eq!(p.gpus.len(), 1, "{p:?}");
        let c = p.container.as_ref().unwrap();
        assert_eq!(c.id, ID);
        assert_eq!(c.cwd.as_deref(), Some("/workspace/exp/a"));
        assert!(
            procs
                .iter()
                .find(|p| p.pid == 900)
                .unwrap()
                .container
                .is_none()
        );
    }

    #[test]
    fn markers_count_only_as_whole_lines() {
        // `ps` lists the batched command itself, markers and all.
        let text = format!(
            " 7 root 1 sh -c ps ...; echo {CONTAINERS_MARKER}; ...\n{CONTAINERS_MARKER}\ndocker\n"
        );
        let (before, after) = split_at_line(&text, CONTAINERS_MARKER).unwrap();
        assert!(
            before.starts_with(" 7 root") && before.ends_with("...\n"),
            "{before}"
        );
        assert_eq!(after, "docker\n");
        assert_eq!(split_at_line("a\nb", CONTAINERS_MARKER), None);
    }

    #[test]
    fn the_remote_part_is_one_shell_snippet_only_where_docker_is() {
        let part = remote_part();
        assert!(part.starts_with(&format!("echo {CONTAINERS_MARKER}; if command -v docker")));
        assert!(part.ends_with("; fi"), "{part}");
    }
}
