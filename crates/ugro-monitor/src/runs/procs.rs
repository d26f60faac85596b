//! Processes that may belong to runs: this machine's from /proc, remote nodes' from `ps` over
//! their SSH sessions, the GPU compute processes of both, and which process is which run's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ssh::Exec;
use crate::view::{RunGpu, RunProcess};

use super::Run;
use super::containers::{self, Containers, InContainer, Inspector};
use super::host::RunsHost;

/// How long a remote node's process and GPU lists are re-used.
pub(super) const PROCS_EVERY: Duration = Duration::from_secs(30);

/// How long the local GPU compute processes are re-used.
pub(super) const LOCAL_GPU_EVERY: Duration = Duration::from_secs(30);

/// Marker between `ps` and `nvidia-smi` in the output of the batched remote command.
pub(super) const APPS_MARKER: &str = "@@ugro:compute-apps";

/// A GPU a process computes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GpuUse {
    pub(super) uuid: String,
    pub(super) used_memory_mib: Option<u64>,
}

/// A process that may belong to a run.
#[derive(Debug, Clone)]
pub(super) struct Proc {
    pub(super) node: String,
    pub(super) pid: u32,
    pub(super) user: String,
    pub(super) cmd: String,
    pub(super) start_time: Option<DateTime<Utc>>,
    pub(super) gpus: Vec<GpuUse>,
    /// The container its cgroup names, if any (looked for only where `docker` is).
    pub(super) container: Option<InContainer>,
}

impl Proc {
    /// What run matching reads: the command line, or for a process in a known container its
    /// command line and working dir with container paths mapped to host paths.
    pub(super) fn match_text(&self) -> &str {
        self.container
            .as_ref()
            .and_then(|c| c.host_text.as_deref())
            .unwrap_or(&self.cmd)
    }
}

/// The processes of this machine whose command line mentions one of `needles` (the root's
/// path), with user and start time (blocking: reads /proc). Other processes cannot belong to a
/// run of the root, so only their command line is read.
/// With `containers`, also every process whose cgroup names a container (its command line may
/// name container paths only), with that container.
pub(super) fn local_processes(needles: &[String], containers: bool) -> Vec<Proc> {
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<i64>().ok())
    });
    let tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let mut users: HashMap<u32, String> = HashMap::new();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let mut path = PathBuf::from("/proc");
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        path.push(e.file_name());
        if let Some(p) = local_process(&path, pid, needles, boot, tck, &mut users, containers) {
            out.push(p);
        }
        path.pop();
    }
    out
}

/// One process of this machine if its command line mentions a needle.
pub(super) fn local_process(
    path: &Path,
    pid: u32,
    needles: &[String],
    boot: Option<i64>,
    tck: f64,
    users: &mut HashMap<u32, String>,
    containers: bool,
) -> Option<Proc> {
    let raw = std::fs::read(path.join("cmdline")).ok()?;
    if raw.is_empty() {
        return None; // kernel thread or zombie
    }
    let cmd = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let container = if containers {
        containers::read_local(path)
    } else {
        None
    };
    if container.is_none() && !needles.iter().any(|n| cmd.contains(n.as_str())) {
        return None;
    }
    let uid = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0);
    let user = users
        .entry(uid)
        .or_insert_with(|| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name)
        })
        .clone();
    let start_time = std::fs::read_to_string(path.join("stat"))
        .ok()
        .and_then(|s| {
            let after = &s[s.rfind(')')? + 2..];
            let ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
            let secs = boot? as f64 + ticks / tck;
            DateTime::from_timestamp(secs as i64, 0)
        });
    Some(Proc {
        node: "local".into(),
        pid,
        user,
        cmd,
        start_time,
        gpus: Vec::new(),
        container,
    })
}

/// Compute processes by pid, from `nvidia-smi --query-compute-apps` output.
pub(super) fn apps_by_pid(apps: Vec<ugro_core::sample::ComputeApp>) -> HashMap<u32, Vec<GpuUse>> {
    let mut out: HashMap<u32, Vec<GpuUse>> = HashMap::new();
    for a in apps {
        out.entry(a.pid).or_default().push(GpuUse {
            uuid: a.gpu_uuid,
            used_memory_mib: a.used_memory_mib,
        });
    }
    out
}

/// The GPU compute processes of this machine: NVML, else a local `nvidia-smi`; empty without
/// either (a machine without NVIDIA GPUs).
pub(super) async fn local_gpu_apps(deadline: Duration) -> HashMap<u32, Vec<GpuUse>> {
    if let crate::local::NvmlOutcome::Read(r) = crate::local::gpus_and_apps(deadline).await
        && let Some(apps) = r.apps
    {
        return apps_by_pid(apps);
    }
    let query = format!(
        "--query-compute-apps={}",
        ugro_core::sample::COMPUTE_APPS_QUERY
    );
    match crate::local::run_local(
        "nvidia-smi",
        &[&query, "--format=csv,noheader,nounits"],
        deadline,
    )
    .await
    {
        Ok(Exec::Done(o)) if o.exit_status == Some(0) => {
            apps_by_pid(ugro_core::sample::compute_apps(&o.stdout))
        }
        _ => HashMap::new(),
    }
}

/// The batched remote command: the process list, then the GPU compute processes (bounded by
/// their own `timeout`, so a hanging driver costs only the GPU part).
pub(super) fn remote_command(deadline: Duration) -> String {
    let secs = (deadline.as_secs() / 2).max(1);
    format!(
        "{}; echo {APPS_MARKER}; timeout -k 1 {secs} nvidia-smi --query-compute-apps={} \
         --format=csv,noheader,nounits 2>/dev/null; {}; true",
        ugro_core::parse::PS_COMMAND,
        ugro_core::sample::COMPUTE_APPS_QUERY,
        containers::remote_part()
    )
}

/// Splits the batched remote command's output into processes, each with its GPUs.
pub(super) fn remote_procs(node: &str, stdout: &str, now: DateTime<Utc>) -> Vec<Proc> {
    // The markers are looked for as whole lines: `ps` lists the batched command itself, whose
    // command line holds them too.
    let (stdout, part) =
        containers::split_at_line(stdout, containers::CONTAINERS_MARKER).unwrap_or((stdout, ""));
    let (_, mut in_containers) = containers::parse_remote(part);
    let (ps, apps) = match containers::split_at_line(stdout, APPS_MARKER) {
        Some((ps, apps)) => (ps, apps),
        None => (stdout, ""),
    };
    let mut gpus = apps_by_pid(ugro_core::sample::compute_apps(apps));
    ugro_core::parse::ps_processes(ps)
        .into_iter()
        .map(|p| Proc {
            node: node.to_owned(),
            pid: p.pid,
            user: p.user,
            cmd: p.args,
            // `ps` output is input: an absurd elapsed time gives no start time, not a panic.
            start_time: i64::try_from(p.elapsed_seconds)
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .and_then(|d| now.checked_sub_signed(d)),
            gpus: gpus.remove(&p.pid).unwrap_or_default(),
            container: in_containers.remove(&p.pid),
        })
        .collect()
}

/// Processes of every node: the local ones from /proc (every time: it is cheap and filtered)
/// with their GPUs from NVML or `nvidia-smi` (cached), remote ones with their GPUs from one
/// batched exec (`ps`, `nvidia-smi --query-compute-apps`) over the node's health SSH session,
/// cached per node. A GPU compute process is joined to its process by pid. A node that cannot
/// be asked keeps its last list (its runs are not declared dead by a blip).
#[derive(Debug, Default)]
pub(super) struct Procs {
    pub(super) remote: HashMap<String, (tokio::time::Instant, Vec<Proc>)>,
    pub(super) local_gpu: Option<(tokio::time::Instant, HashMap<u32, Vec<GpuUse>>)>,
    /// The containers of local and remote processes.
    pub(super) containers: Containers,
}

impl Procs {
    /// Whether any remote node's processes are known (cached): only those can be stale.
    pub(super) fn has_remote(&self) -> bool {
        !self.remote.is_empty()
    }

    /// Every node's processes; `force` asks the remote nodes again however fresh their cached
    /// lists are.
    pub(super) async fn all<H: RunsHost>(
        &mut self,
        host: &H,
        needles: Vec<String>,
        force: bool,
    ) -> Vec<Proc> {
        let deadline = host.config().health.probe_timeout;
        let mut asking = tokio::task::JoinSet::new();
        for (node, session) in host.remote_sessions() {
            let fresh = !force
                && self
                    .remote
                    .get(&node)
                    .is_some_and(|(at, _)| at.elapsed() < PROCS_EVERY);
            if fresh {
                continue;
            }
            let cmd = remote_command(deadline);
            asking.spawn(async move {
                let out = match session.exec(&cmd, deadline).await {
                    Ok(Exec::Done(o)) => Some(o.stdout),
                    _ => None,
                };
                (node, session, out)
            });
        }
        let gpus_fresh = self
            .local_gpu
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < LOCAL_GPU_EVERY);
        if !gpus_fresh {
            let apps = local_gpu_apps(deadline).await;
            self.local_gpu = Some((tokio::time::Instant::now(), apps));
        }
        let docker_here = self.containers.docker_here();
        let mut local = tokio::task::spawn_blocking(move || local_processes(&needles, docker_here))
            .await
            .unwrap_or_default();
        if docker_here {
            self.containers
                .resolve(containers::LOCAL, Inspector::Local, &mut local, deadline)
                .await;
        }
        let now = Utc::now();
        while let Some(Ok((node, session, out))) = asking.join_next().await {
            // A node that cannot be asked now keeps its last list.
            let Some(stdout) = out else { continue };
            let mut procs = remote_procs(&node, &stdout, now);
            if procs.iter().any(|p| p.container.is_some()) {
                self.containers
                    .resolve(&node, Inspector::Remote(&session), &mut procs, deadline)
                    .await;
            }
            self.remote
                .insert(node, (tokio::time::Instant::now(), procs));
        }
        let configured: HashSet<String> =
            host.config().nodes.iter().map(|n| n.name.clone()).collect();
        self.remote.retain(|node, _| configured.contains(node));
        if let Some((_, apps)) = &self.local_gpu {
            for p in &mut local {
                if let Some(g) = apps.get(&p.pid) {
                    p.gpus = g.clone();
                }
            }
        }
        let mut all = local;
        all.extend(self.remote.values().flat_map(|(_, v)| v.iter().cloned()));
        all
    }
}

/// The process of each run that has one: its command line holds the run's absolute work dir
/// or its config file path (`dir/config.json`, which holds the dir). The oldest such process
/// wins (the launcher rather than a worker); the GPUs of every matching process on that node
/// are listed with it. Only processes that mention the root are looked at, and each run dir is
/// found by looking up the path prefixes that follow the root in the command line.
pub(super) fn match_processes(
    root: &Path,
    dirs: &HashMap<String, &str>,
    procs: &[Proc],
    gpu_index: &HashMap<String, u32>,
) -> HashMap<String, RunProcess> {
    let root_s = root.display().to_string();
    let mut by_run: HashMap<&str, Vec<&Proc>> = HashMap::new();
    for p in procs
        .iter()
        .filter(|p| p.match_text().contains(root_s.as_str()))
    {
        let text = p.match_text();
        let mut hit: HashSet<&str> = HashSet::new();
        for (at, _) in text.match_indices(root_s.as_str()) {
            let rest = &text[at..];
            // Every prefix of `rest` that ends at a path boundary may be a run dir.
            let after_root = rest[root_s.len()..]
                .char_indices()
                .map(|(i, c)| (root_s.len() + i, c))
                .chain(std::iter::once((rest.len(), '/')));
            for (end, c) in after_root {
                if !(c == '/' || c.is_whitespace() || c == '"' || c == '\'') {
                    continue;
                }
                if let Some(id) = dirs.get(&rest[..end]) {
                    hit.insert(id);
                    break;
                }
            }
        }
        for id in hit {
            by_run.entry(id).or_default().push(p);
        }
    }
    by_run
        .into_iter()
        .filter_map(|(id, ps)| {
            let main = ps.iter().min_by_key(|p| (p.start_time, p.pid))?;
            let mut gpus: Vec<RunGpu> = ps
                .iter()
                .filter(|p| p.node == main.node)
                .flat_map(|p| {
                    p.gpus.iter().map(|g| RunGpu {
                        uuid: g.uuid.clone(),
                        index: gpu_index.get(&g.uuid).copied(),
                        pid: p.pid,
                        used_memory_mib: g.used_memory_mib,
                    })
                })
                .collect();
            gpus.sort_by(|a, b| (a.index, &a.uuid, a.pid).cmp(&(b.index, &b.uuid, b.pid)));
            Some((
                id.to_owned(),
                RunProcess {
                    node: main.node.clone(),
                    pid: main.pid,
                    user: main.user.clone(),
                    cmd: main.cmd.chars().take(500).collect(),
                    start_time: main.start_time,
                    gpus,
                    container: main.container.as_ref().and_then(InContainer::shown),
                },
            ))
        })
        .collect()
}

/// The process of each run that has one ([`match_processes`]); nothing to look up when no
/// process mentions the root.
pub(super) fn processes_of_runs(
    host: &impl RunsHost,
    root: &str,
    runs: &BTreeMap<String, Run>,
    procs: &[Proc],
) -> HashMap<String, RunProcess> {
    if !procs.iter().any(|p| p.match_text().contains(root)) {
        return HashMap::new();
    }
    let dirs: HashMap<String, &str> = runs
        .values()
        .map(|r| (r.dir.display().to_string(), r.id.as_str()))
        .collect();
    match_processes(Path::new(root), &dirs, procs, &host.gpu_indices())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn p(node: &str, pid: u32, secs: i64, cmd: &str, gpus: &[&str]) -> Proc {
        Proc {
            node: node.into(),
            pid,
            user: "u".into(),
            cmd: cmd.into(),
            start_time: DateTime::from_timestamp(secs, 0),
            gpus: gpus
                .iter()
                .map(|g| GpuUse {
                    uuid: (*g).into(),
                    used_memory_mib: Some(100),
                })
                .collect(),
            container: None,
        }
    }

    fn matched(dirs: &[&str], procs: &[Proc]) -> HashMap<String, RunProcess> {
        let index: HashMap<String, &str> =
            dirs.iter().map(|d| (format!("/runs/{d}"), *d)).collect();
        let gpu_index = HashMap::from([("GPU-a".to_string(), 0), ("GPU-b".to_string(), 1)]);
        match_processes(Path::new("/runs"), &index, procs, &gpu_index)
    }

    #[test]
    fn a_process_belongs_to_a_run_by_its_dir_or_config_path_only() {
        let procs = vec![
            p("local", 10, 5, "python train.py --work-dir /runs/ab", &[]),
            p(
                "local",
                11,
                3,
                "python train.py --config /runs/a/config.json",
                &[],
            ),
            p("local", 12, 4, "python train.py --out /runs/a/", &[]),
            p("local", 13, 1, "python train.py --out /runs/abc/x", &[]),
            p(
                "local",
                14,
                1,
                "python eval.py '/runs/with space/config.json'",
                &[],
            ),
            p("local", 15, 1, "vim /runs/notes.txt /runs", &[]),
        ];
        let m = matched(&["a", "ab", "b", "with space"], &procs);
        assert_eq!(m["a"].pid, 11, "the oldest process of the run");
        assert_eq!(m["ab"].pid, 10);
        assert_eq!(m["with space"].pid, 14);
        assert!(!m.contains_key("b"));
        assert_eq!(m.len(), 3, "{m:?}");
    }

    #[test]
    fn gpu_processes_of_a_run_are_listed_with_its_process() {
        let procs = vec![
            // The launcher holds no GPU; its workers (same config) do, on two GPUs.
            p(
                "gpu1",
                100,
                1,
                "torchrun train.py --config /runs/a/config.json",
                &[],
            ),
            p(
                "gpu1",
                101,
                2,
                "python -u train.py --config /runs/a/config.json",
                &["GPU-b"],
            ),
            p(
                "gpu1",
                102,
                2,
                "python -u train.py --config /runs/a/config.json",
                &["GPU-a"],
            ),
            // Another node's process of the same run is not mixed in.
            p(
                "gpu2",
                103,
                9,
                "python -u train.py --config /runs/a/config.json",
                &["GPU-c"],
            ),
            p("gpu1", 104, 2, "python other.py", &["GPU-a"]),
        ];
        let m = matched(&["a"], &procs);
        let a = &m["a"];
        assert_eq!((a.node.as_str(), a.pid), ("gpu1", 100));
        let gpus: Vec<(Option<u32>, u32)> = a.gpus.iter().map(|g| (g.index, g.pid)).collect();
        assert_eq!(gpus, [(Some(0), 102), (Some(1), 101)]);
        assert_eq!(a.gpus[0].uuid, "GPU-a");
        assert_eq!(a.gpus[0].used_memory_mib, Some(100));
    }

    #[test]
    fn the_batched_remote_listing_joins_gpu_processes_by_pid() {
        let cmd = remote_command(Duration::from_secs(15));
        assert!(cmd.starts_with(ugro_core::parse::PS_COMMAND), "{cmd}");
        assert!(
            cmd.contains("timeout -k 1 7 nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory"),
            "{cmd}"
        );
        let out = format!(
            "    1 root        900 /sbin/init\n 4242 alice       120 python train.py --config /runs/a/config.json\n\
             {APPS_MARKER}\nGPU-4f1c, 4242, 10240\nGPU-9e2d, 4242, [N/A]\nGPU-4f1c, 777, 5\n"
        );
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let procs = remote_procs("gpu1", &out, now);
        assert_eq!(procs.len(), 2, "{procs:?}");
        let train = procs.iter().find(|p| p.pid == 4242).unwrap();
        assert_eq!(train.node, "gpu1");
        assert_eq!(train.user, "alice");
        assert_eq!(
            train.start_time,
            DateTime::from_timestamp(1_000_000 - 120, 0)
        );
        assert_eq!(
            train.gpus,
            [
                GpuUse {
                    uuid: "GPU-4f1c".into(),
                    used_memory_mib: Some(10240)
                },
                GpuUse {
                    uuid: "GPU-9e2d".into(),
                    used_memory_mib: None
                }
            ]
        );
        // Without nvidia-smi (or its output), the process list alone.
        let bare = remote_procs("gpu1", &format!(" 5 bob 3 sleep 9\n{APPS_MARKER}\n"), now);
        assert_eq!(bare.len(), 1);
        assert!(bare[0].gpus.is_empty());
    }

    #[test]
    fn an_absurd_elapsed_time_from_ps_gives_no_start_time_instead_of_a_panic() {
        // `ps` output comes from the node: past what a date can hold (chrono used to panic
        // on the first two), the process has no start time.
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let out = format!(
            " 6 eve 9223372036854776 sleep 9\n 7 eve 100000000000000 sleep 9\n\
             8 eve 18446744073709551615 sleep 9\n{APPS_MARKER}\n"
        );
        let procs = remote_procs("gpu1", &out, now);
        assert_eq!(procs.len(), 3, "{procs:?}");
        assert!(procs.iter().all(|p| p.start_time.is_none()), "{procs:?}");
    }

    #[test]
    fn local_processes_are_read_only_when_they_mention_the_root() {
        let me = std::process::id();
        let all = local_processes(&[String::new()], false);
        assert!(
            all.iter().any(|p| p.pid == me),
            "an empty needle matches all"
        );
        let mine = all.iter().find(|p| p.pid == me).unwrap();
        assert!(mine.start_time.is_some());
        let none = local_processes(&["/no/such/root/anywhere-ugro".to_string()], false);
        assert!(
            none.iter()
                .all(|p| p.cmd.contains("/no/such/root/anywhere-ugro"))
        );
    }
}
