//! A `docker` stand-in for tests, beside the nvidia-smi one: an executable shell script that
//! answers `docker --version` and `docker inspect ID…` with real-format JSON (the fields of
//! Docker 28's output the monitor reads, and a few more) from per-container fixture files the
//! test writes, and logs each call. Put its directory first on the daemon's PATH (before any
//! real `docker` client) or an sshd's (via [`crate::sshd::SshdOptions::path_prepend`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The version line the stand-in prints.
pub const DOCKER_VERSION: &str = "Docker version 28.2.2, build e6534b4";

/// A container the stand-in knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeContainer {
    /// 64 lower-case hex digits.
    pub id: String,
    /// Without Docker's leading `/` (the JSON has it).
    pub name: String,
    /// `Config.Image`, e.g. `pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime`.
    pub image: String,
    /// Bind mounts: host source, container destination.
    pub mounts: Vec<(PathBuf, String)>,
    /// `State.Pid`.
    pub pid: u32,
}

/// A random-looking, deterministic container id from `seed`.
pub fn fake_container_id(seed: u64) -> String {
    let mut x = seed;
    (0..4)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            format!("{:016x}", z ^ (z >> 31))
        })
        .collect()
}

/// The `docker inspect` object of `c`, shaped like Docker 28's.
pub fn inspect_object(c: &FakeContainer) -> serde_json::Value {
    let mounts: Vec<serde_json::Value> = c
        .mounts
        .iter()
        .map(|(src, dst)| {
            serde_json::json!({
                "Type": "bind",
                "Source": src.display().to_string(),
                "Destination": dst,
                "Mode": "",
                "RW": true,
                "Propagation": "rprivate"
            })
        })
        .collect();
    let binds: Vec<String> = c
        .mounts
        .iter()
        .map(|(src, dst)| format!("{}:{dst}", src.display()))
        .collect();
    serde_json::json!({
        "Id": c.id,
        "Created": "2026-11-30T08:00:00.123456789Z",
        "Path": "python",
        "Args": ["train.py"],
        "State": {
            "Status": "running", "Running": true, "Paused": false, "Restarting": false,
            "OOMKilled": false, "Dead": false, "Pid": c.pid, "ExitCode": 0, "Error": "",
            "StartedAt": "2026-11-30T08:00:01.5Z", "FinishedAt": "0001-01-01T00:00:00Z"
        },
        "Image": "sha256:9b1f3a5c7e2d4f6a8b0c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1a3b5c7d9e1f3a",
        "Name": format!("/{}", c.name),
        "RestartCount": 0,
        "Driver": "overlay2",
        "HostConfig": {"Binds": binds, "NetworkMode": "host", "IpcMode": "host", "ShmSize": 67108864},
        "Mounts": mounts,
        "Config": {
            "Hostname": "gpu1", "User": "", "Tty": false,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["python", "train.py"],
            "Image": c.image,
            "WorkingDir": "/workspace",
            "Labels": {}
        }
    })
}

/// The installed stand-in: its directory, the fixtures it answers from and its call log.
#[derive(Debug)]
pub struct FakeDocker {
    dir: PathBuf,
}

impl FakeDocker {
    /// Writes an executable `dir/docker` (and its fixture dir); no container known yet.
    pub fn install(dir: &Path) -> Self {
        let containers = dir.join("docker-containers");
        fs::create_dir_all(&containers).expect("create fake docker dirs");
        let script = format!(
            "#!/bin/sh\n# docker stand-in (ugro-testkit)\nD={}\nprintf '%s\\n' \"$*\" >> {}\n{}",
            sh_quote(&containers.display().to_string()),
            sh_quote(&dir.join("docker-calls.log").display().to_string()),
            SCRIPT_BODY.replace("@VERSION@", DOCKER_VERSION)
        );
        let tmp = dir.join(format!(".docker.tmp-{}", std::process::id()));
        fs::write(&tmp, script).expect("write fake docker");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod fake docker");
        fs::rename(&tmp, dir.join("docker")).expect("install fake docker");
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory to put first on PATH.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes `docker inspect` know `c` (atomically replaced).
    pub fn add(&self, c: &FakeContainer) {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = self.dir.join("docker-containers");
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let text = serde_json::to_string_pretty(&inspect_object(c)).expect("container JSON");
        fs::write(&tmp, text).expect("write fake container");
        fs::rename(&tmp, dir.join(format!("{}.json", c.id))).expect("install fake container");
    }

    /// Makes `docker inspect` answer `No such object` for `id`.
    pub fn remove(&self, id: &str) {
        let _ = fs::remove_file(
            self.dir
                .join("docker-containers")
                .join(format!("{id}.json")),
        );
    }

    /// The argument lists of every call so far, one per call.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("docker-calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Like Docker: found containers as one JSON array on stdout (`[]` when none), each unknown
/// id as `Error: No such object: ID` on stderr, exit 1 when any was unknown.
const SCRIPT_BODY: &str = r#"
case "$1" in
  --version|-v) echo "@VERSION@"; exit 0 ;;
  inspect) shift ;;
  *) echo "docker stand-in (ugro-testkit): unsupported command: $1" >&2; exit 2 ;;
esac
if [ $# -eq 0 ]; then
  echo '"docker inspect" requires at least 1 argument.' >&2; exit 1
fi
rc=0; n=0
echo "["
for id in "$@"; do
  case "$id" in
    -*) echo "docker stand-in (ugro-testkit): unsupported option: $id" >&2; exit 2 ;;
  esac
  if [ -f "$D/$id.json" ]; then
    [ $n -gt 0 ] && echo ","
    cat "$D/$id.json"
    n=$((n + 1))
  else
    echo "Error: No such object: $id" >&2
    rc=1
  fi
done
echo "]"
exit $rc
"#;
