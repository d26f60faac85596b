//! Measuring helpers shared by the bench binaries: process CPU time from /proc, medians, and a
//! fleet of SSH "nodes" (delay-free proxies in front of one real sshd) with their config.

use std::time::Duration;

use crate::proxy::DelayProxy;
use crate::sshd::Sshd;

/// user + system CPU time of process `pid`, in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Clock ticks per second (`CLK_TCK`).
pub fn ticks_per_sec() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
}

/// The middle value (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `n` remote nodes for a daemon: each a loopback proxy in front of `sshd`, all in one
/// known_hosts file. Keep it alive as long as the daemon runs.
#[derive(Debug)]
pub struct SshFleet {
    pub proxies: Vec<DelayProxy>,
    pub known_hosts: tempfile::NamedTempFile,
}

impl SshFleet {
    pub fn start(sshd: &Sshd, n: usize) -> Self {
        let target = format!("127.0.0.1:{}", sshd.port()).parse().unwrap();
        let proxies: Vec<DelayProxy> = (0..n)
            .map(|_| DelayProxy::start(target, Duration::ZERO))
            .collect();
        let known_hosts = tempfile::NamedTempFile::new().unwrap();
        let entries: Vec<String> = proxies
            .iter()
            .map(|p| sshd.known_hosts_entry(p.port()))
            .collect();
        std::fs::write(known_hosts.path(), entries.join("\n") + "\n").unwrap();
        Self {
            proxies,
            known_hosts,
        }
    }

    /// `[[nodes]]` sections `gpu00`, `gpu01`, … with 8 GPUs each, one per proxy.
    pub fn nodes_toml(&self, sshd: &Sshd) -> String {
        let mut out = String::new();
        for (i, p) in self.proxies.iter().enumerate() {
            out.push_str(&format!(
                "[[nodes]]\nname = \"gpu{i:02}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\ngpus = 8\n\n",
                p.port(),
                sshd.user(),
                sshd.client_key().display(),
                self.known_hosts.path().display()
            ));
        }
        out
    }
}
