//! Containers of processes, as pure parsing: the container a `/proc/PID/cgroup` names (cgroup
//! v1 and v2; Docker, containerd, Podman and CRI-O scope names), `docker inspect` JSON (id,
//! name, image, mounts), and container paths mapped to host paths through the mounts (the
//! longest destination prefix wins), for a path alone or every path in a command line.

use serde::Deserialize;

/// Which runtime a cgroup path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Containerd,
    Podman,
    Crio,
}

/// The container a process is in, as its cgroup names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    pub runtime: Runtime,
    /// The full 64-hex-digit container id, lower case.
    pub id: String,
}

fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The container one path component names with a prefix: `docker-ID.scope` (systemd cgroup
/// driver), `cri-containerd-ID.scope`, `libpod-ID.scope` (not `libpod-conmon-…`, the monitor
/// beside the container), `crio-ID.scope`; `.scope` is optional (`libpod-ID` of Podman's
/// cgroupfs driver).
fn scoped(component: &str) -> Option<ContainerRef> {
    let base = component.strip_suffix(".scope").unwrap_or(component);
    for (prefix, runtime) in [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("libpod-", Runtime::Podman),
        ("crio-", Runtime::Crio),
    ] {
        if let Some(id) = base.strip_prefix(prefix)
            && is_id(id)
        {
            return Some(ContainerRef {
                runtime,
                id: id.to_owned(),
            });
        }
    }
    None
}

/// The container one cgroup path names, outermost first: a scope component, or a bare id
/// under `docker/` (cgroupfs driver), `kubepods…` (containerd under Kubernetes) or
/// `libpod_parent/`.
fn in_path(path: &str) -> Option<ContainerRef> {
    let mut parent: Option<&str> = None;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        if let Some(r) = scoped(c) {
            return Some(r);
        }
        if is_id(c)
            && let Some(p) = parent
        {
            let runtime = if p == "docker" {
                Some(Runtime::Docker)
            } else if p.starts_with("kubepods") || p.starts_with("pod") {
                Some(Runtime::Containerd)
            } else if p == "libpod_parent" {
                Some(Runtime::Podman)
            } else {
                None
            };
            if let Some(runtime) = runtime {
                return Some(ContainerRef {
                    runtime,
                    id: c.to_owned(),
                });
            }
        }
        parent = Some(c);
    }
    None
}

/// The container the process whose `/proc/PID/cgroup` is `text` runs in, if any. Lines are
/// `HIERARCHY:CONTROLLERS:PATH`; the cgroup v2 line (`0::PATH`) is looked at first, then the
/// v1 ones in order (`name=systemd` and the controllers). Lines that are not of that form are
/// skipped. The outermost container wins (the one the node's own runtime knows).
pub fn container_of_cgroup(text: &str) -> Option<ContainerRef> {
    let paths: Vec<(bool, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let hierarchy = parts.next()?;
            let _controllers = parts.next()?;
            let path = parts.next()?;
            Some((hierarchy == "0", path))
        })
        .collect();
    paths
        .iter()
        .filter(|(v2, _)| *v2)
        .chain(paths.iter().filter(|(v2, _)| !*v2))
        .find_map(|(_, p)| in_path(p))
}

/// A bind or volume mount of a container: `Source` on the host at `Destination` inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub destination: String,
}

/// What `docker inspect` says of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The full id.
    pub id: String,
    /// The name, without Docker's leading `/`.
    pub name: String,
    /// The image as the container was created from it (`Config.Image`), else its id.
    pub image: String,
    pub mounts: Vec<Mount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainer {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    config: Option<RawConfig>,
    #[serde(default)]
    mounts: Option<Vec<RawMount>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    image: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawMount {
    #[serde(default)]
    source: String,
    #[serde(default)]
    destination: String,
}

/// Why `docker inspect` output could not be read.
#[derive(Debug, thiserror::Error)]
#[error("docker inspect output is not a JSON array of containers: {cause}")]
pub struct InspectError {
    pub cause: serde_json::Error,
}

/// Parses `docker inspect ID…` standard output: a JSON array with one object per container
/// found (ids it does not know are only named on stderr). Mounts without a source or
/// destination, or whose paths are not absolute, are left out.
pub fn parse_inspect(stdout: &str) -> Result<Vec<Inspected>, InspectError> {
    let raw: Vec<RawContainer> =
        serde_json::from_str(stdout.trim()).map_err(|cause| InspectError { cause })?;
    Ok(raw
        .into_iter()
        .map(|c| Inspected {
            id: c.id.to_ascii_lowercase(),
            name: c.name.strip_prefix('/').unwrap_or(&c.name).to_owned(),
            image: c
                .config
                .map(|k| k.image)
                .filter(|i| !i.is_empty())
                .unwrap_or(c.image),
            mounts: c
                .mounts
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m.source.starts_with('/') && m.destination.starts_with('/'))
                .map(|m| Mount {
                    source: m.source,
                    destination: m.destination,
                })
                .collect(),
        })
        .collect())
}

fn trim_slashes(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() { "/" } else { t }
}

/// The length of `dest` matched at the start of `path` at a path boundary (`/workspace`
/// matches `/workspace` and `/workspace/x`, not `/workspaces`), or None.
fn prefix_len(dest: &str, path: &str) -> Option<usize> {
    let d = trim_slashes(dest);
    if d == "/" {
        return path.starts_with('/').then_some(0);
    }
    let rest = path.strip_prefix(d)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(d.len())
}

/// The mount whose destination is the longest path prefix of `path`, with the length matched.
fn best_mount<'a>(mounts: &'a [Mount], path: &str) -> Option<(&'a Mount, usize)> {
    mounts
        .iter()
        .filter_map(|m| Some((m, prefix_len(&m.destination, path)?)))
        .max_by_key(|(m, len)| (*len, trim_slashes(&m.destination).len()))
}

fn join(source: &str, rest: &str) -> String {
    let s = trim_slashes(source);
    if rest.is_empty() {
        s.to_owned()
    } else if s == "/" {
        rest.to_owned()
    } else {
        format!("{s}{rest}")
    }
}

/// The host path of container path `path`: the mount whose destination is its longest prefix
/// (at a path boundary) maps it; None when no mount holds it (it is in the container's own
/// file system).
pub fn host_path(mounts: &[Mount], path: &str) -> Option<String> {
    let (m, len) = best_mount(mounts, path)?;
    Some(join(&m.source, &path[len..]))
}

/// Whether `c` may start a path in a command line: the line's start, after whitespace, `=`
/// (`--dir=/x`), a quote, `:` or `,` (lists).
fn path_may_start_after(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => c.is_whitespace() || matches!(c, '=' | '"' | '\'' | ':' | ','),
    }
}

/// `cmd` with every absolute path that starts at a word boundary and lies under a mount's
/// destination replaced by its host path (the longest destination wins; each path is mapped
/// once, so a source that contains a destination is not mapped again). Paths under no mount
/// are kept as they are.
pub fn host_command(mounts: &[Mount], cmd: &str) -> String {
    if mounts.is_empty() {
        return cmd.to_owned();
    }
    let mut out = String::with_capacity(cmd.len());
    let mut prev: Option<char> = None;
    let mut i = 0;
    while i < cmd.len() {
        let rest = &cmd[i..];
        let Some(c) = rest.chars().next() else { break };
        if c == '/' && path_may_start_after(prev) {
            // The path runs to the next whitespace or quote.
            let end = rest
                .find(|ch: char| ch.is_whitespace() || ch == '"' || ch == '\'' || ch == ',')
                .unwrap_or(rest.len());
            let path = &rest[..end];
            match host_path(mounts, path) {
                Some(h) => out.push_str(&h),
                None => out.push_str(path),
            }
            prev = path.chars().next_back();
            i += end;
            continue;
        }
        out.push(c);
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "3f1c2b7a9d0e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";

    #[test]
    fn docker_under_cgroup_v2_with_the_systemd_driver() {
        let text = format!("0::/system.slice/docker-{ID}.scope\n");
        let r = container_of_cgroup(&text).unwrap();
        assert_eq!(r.runtime, Runtime::Docker);
        assert_eq!(r.id, ID);
        // A sub-cgroup of the scope (`init` of a container with its own cgroup namespace).
        let sub = format!("0::/system.slice/docker-{ID}.scope/init\n");
        assert_eq!(container_of_cgroup(&sub).unwrap().id, ID);
    }

    #[test]
    fn docker_under_cgroup_v1_with_the_cgroupfs_driver() {
        let text =
            format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n");
        let r = container_of_cgroup(&text).unwrap();
        assert_eq!((r.runtime, r.id.as_str()), (Runtime::Docker, ID));
        // Hybrid: the v2 line is empty, a v1 line names the container.
        let hybrid = format!("9:name=systemd:/init.scope\n8:pids:/docker/{ID}\n0::/\n");
        assert_eq!(container_of_cgroup(&hybrid).unwrap().id, ID);
    }

    #[test]
    fn containerd_podman_and_crio_scopes() {
        let k = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(
            container_of_cgroup(&k).unwrap().runtime,
            Runtime::Containerd
        );
        let k1 = format!("4:memory:/kubepods/burstable/pod1a2b-3c4d/{ID}\n");
        assert_eq!(
            container_of_cgroup(&k1).unwrap().runtime,
            Runtime::Containerd
        );
        let p = format!(
            "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"
        );
        assert_eq!(container_of_cgroup(&p).unwrap().runtime, Runtime::Podman);
        let c = format!("0::/kubepods.slice/crio-{ID}.scope\n");
        assert_eq!(container_of_cgroup(&c).unwrap().runtime, Runtime::Crio);
    }

    #[test]
    fn no_container_for_host_processes_monitors_or_odd_ids() {
        for text in [
            "0::/init.scope\n".to_string(),
            "0::/user.slice/user-1000.slice/session-3.scope\n".into(),
            // conmon, Podman's monitor process, is not in the container.
            format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"),
            // An id of the wrong length or case, or a bare id under an unknown parent.
            format!("0::/system.slice/docker-{}.scope\n", &ID[..63]),
            format!("0::/system.slice/docker-{}.scope\n", ID.to_uppercase()),
            format!("0::/mine/{ID}\n"),
            "garbage without colons\n".into(),
            String::new(),
        ] {
            assert_eq!(container_of_cgroup(&text), None, "{text}");
        }
    }

    #[test]
    fn the_outermost_container_wins() {
        let other = "a".repeat(64);
        let text = format!("0::/system.slice/docker-{ID}.scope/docker/{other}\n");
        assert_eq!(container_of_cgroup(&text).unwrap().id, ID);
    }

    const INSPECT: &str = r#"[
    {
        "Id": "3f1c2b7a9d0e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c",
        "Created": "2026-11-30T08:00:00.123456789Z",
        "Path": "python",
        "Args": ["train.py"],
        "State": {"Status": "running", "Running": true, "Pid": 4242},
        "Image": "sha256:9b1f3a",
        "Name": "/trainer-7",
        "Mounts": [
            {"Type": "bind", "Source": "/data/runs", "Destination": "/workspace", "Mode": "", "RW": true, "Propagation": "rprivate"},
            {"Type": "volume", "Name": "cache", "Source": "/var/lib/docker/volumes/cache/_data", "Destination": "/root/.cache", "Driver": "local", "Mode": "z", "RW": true, "Propagation": ""},
            {"Type": "tmpfs", "Source": "", "Destination": "/scratch"}
        ],
        "Config": {"Image": "pytorch/pytorch:2.4.0-cuda12.1", "WorkingDir": "/workspace"}
    }
]
"#;

    #[test]
    fn docker_inspect_gives_name_image_and_mounts() {
        let c = parse_inspect(INSPECT).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].id, ID);
        assert_eq!(c[0].name, "trainer-7");
        assert_eq!(c[0].image, "pytorch/pytorch:2.4.0-cuda12.1");
        assert_eq!(
            c[0].mounts,
            [
                Mount {
                    source: "/data/runs".into(),
                    destination: "/workspace".into()
                },
                Mount {
                    source: "/var/lib/docker/volumes/cache/_data".into(),
                    destination: "/root/.cache".into()
                }
            ]
        );
        assert!(parse_inspect("[]\n").unwrap().is_empty());
        assert!(parse_inspect("Error: No such object: x").is_err());
    }

    fn m(source: &str, destination: &str) -> Mount {
        Mount {
            source: source.into(),
            destination: destination.into(),
        }
    }

    #[test]
    fn the_longest_destination_maps_a_path() {
        let mounts = [
            m("/data/runs", "/workspace"),
            m("/nvme/ckpt", "/workspace/ckpt/"),
            m("/", "/host"),
        ];
        assert_eq!(
            host_path(&mounts, "/workspace/exp/run_1").as_deref(),
            Some("/data/runs/exp/run_1")
        );
        assert_eq!(
            host_path(&mounts, "/workspace").as_deref(),
            Some("/data/runs")
        );
        assert_eq!(
            host_path(&mounts, "/workspace/ckpt/a").as_deref(),
            Some("/nvme/ckpt/a")
        );
        assert_eq!(host_path(&mounts, "/host/etc").as_deref(), Some("/etc"));
        assert_eq!(host_path(&mounts, "/workspaces/x"), None);
        assert_eq!(host_path(&mounts, "/opt/x"), None);
    }

    #[test]
    fn every_path_of_a_command_line_is_mapped_once() {
        let mounts = [m("/data/workspace/runs", "/workspace"), m("/ckpt", "/c")];
        assert_eq!(
            host_command(
                &mounts,
                "python /workspace/train.py --config=/workspace/exp/a/config.json --out '/c/x' /opt/y /workspaces"
            ),
            "python /data/workspace/runs/train.py --config=/data/workspace/runs/exp/a/config.json --out '/ckpt/x' /opt/y /workspaces"
        );
        // Not a path start: inside a word.
        assert_eq!(host_command(&mounts, "a/workspace/x"), "a/workspace/x");
        assert_eq!(host_command(&[], "/workspace/x"), "/workspace/x");
    }

    proptest! {
        /// Any text: the parser never panics, and what it finds is a 64-hex id present in it.
        #[test]
        fn the_cgroup_parser_takes_any_text(text in "\\PC{0,300}") {
            if let Some(r) = container_of_cgroup(&text) {
                prop_assert!(is_id(&r.id));
                prop_assert!(text.contains(&r.id));
            }
        }

        /// A well-formed cgroup file with one Docker scope among host cgroups names exactly
        /// that container, whatever the other lines and hierarchy numbers are.
        #[test]
        fn a_docker_scope_among_host_lines_is_found(
            id in "[0-9a-f]{64}",
            host in proptest::collection::vec(("[1-9][0-9]?", "[a-z_=,]{0,12}", "(/[a-z.@-]{1,12}){0,3}"), 0..8),
            at in 0usize..8,
            v2 in any::<bool>(),
        ) {
            let mut lines: Vec<String> = host
                .iter()
                .map(|(h, c, p)| format!("{h}:{c}:{}", if p.is_empty() { "/" } else { p }))
                .collect();
            let line = if v2 {
                format!("0::/system.slice/docker-{id}.scope")
            } else {
                format!("7:pids:/docker/{id}")
            };
            lines.insert(at.min(lines.len()), line);
            let text = lines.join("\n");
            let r = container_of_cgroup(&text).unwrap();
            prop_assert_eq!(r.runtime, Runtime::Docker);
            prop_assert_eq!(r.id, id);
        }

        /// Mapping a command line with no mount destination in it changes nothing.
        #[test]
        fn a_command_without_destinations_is_kept(cmd in "[a-z /=.'-]{0,80}") {
            let mounts = [m("/data", "/WORKSPACE")];
            prop_assert_eq!(host_command(&mounts, &cmd), cmd);
        }
    }
}
