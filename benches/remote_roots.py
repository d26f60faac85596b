#!/usr/bin/env python3
"""Remote-root benchmarks (issue 9), loopback sshd, the same tree three ways, in one run:

  1. cold listing: ugro-monitor (release, fresh state dir) from process start until
     GET /v1/runs lists every run, the tree as a local root vs as a remote root
     (`[[roots]] node = "box"`, node = this machine through a private sshd on 127.0.0.1);
     the remote time includes the health loop's SSH login. Median of --rounds, alternated.
  2. a paramiko SFTP walk of the same tree doing the same stats (listdir_attr of every
     directory below the root, lstat of every entry; no file contents), median of --rounds.
  3. the remote root's poll cycle with nothing changed: daemon CPU (utime+stime from
     /proc/PID/stat) over --seconds at poll_interval 5 s, per cycle, with the node's health
     sweeps set to once a day (health.interval/min_interval/max_interval = 1d) so no health
     probe falls in the window (the root's own work only: its 2 s root checks, poll cycles,
     re-judging, process listings); and the execs per cycle from the daemon's own
     `poll cycle` debug lines (every exec is one channel = one round trip), with how many
     cycles the node answered "same listing" to.

    python3 benches/remote_roots.py [ROOT] [--rounds 3] [--sftp-rounds N] [--seconds 60]

--sftp-rounds (default: --rounds) walks the tree over SFTP only in the first N rounds (a
walk takes minutes).

ROOT defaults to /tmp/runs-bench (python3 benches/gen_runs.py /tmp/runs-bench --runs 2000
--max-epochs 50 --seed 1). Needs target/release/{ugro-monitor,ugroctl}, /usr/sbin/sshd and
paramiko (pip install paramiko; a bench-only tool).
"""

import argparse
import json
import os
import re
import socket
import stat as st
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import runs_bench  # noqa: E402  (Daemon, Http, proc_cpu)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Sshd:
    """A private sshd on 127.0.0.1 (as the testkit's: key login of the current user)."""

    def __init__(self, work):
        self.dir = tempfile.mkdtemp(dir=work, prefix="sshd-")
        d = self.dir
        for k in ("host", "client"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/{k}"],
                           check=True)
        os.rename(f"{d}/client.pub", f"{d}/authorized_keys")
        self.port = free_port()
        with open(f"{d}/sshd_config", "w") as f:
            f.write(f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {d}/host\n"
                    f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n"
                    "StrictModes no\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nUsePAM no\n"
                    "PermitRootLogin prohibit-password\nUseDNS no\nMaxSessions 64\n"
                    "Subsystem sftp internal-sftp\n")
        host_pub = open(f"{d}/host.pub").read().split()[:2]
        with open(f"{d}/known_hosts", "w") as f:
            f.write(f"[127.0.0.1]:{self.port} {' '.join(host_pub)}\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.p = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", f"{d}/sshd_config"],
                                  stdout=subprocess.DEVNULL, stderr=open(f"{d}/log", "wb"))
        until = time.time() + 10
        while time.time() < until:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start: " + open(f"{d}/log").read())

    def node_toml(self, name):
        user = os.environ.get("USER") or subprocess.run(
            ["id", "-un"], stdout=subprocess.PIPE, text=True).stdout.strip()
        return (f'[[nodes]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {self.port}\n'
                f'user = "{user}"\nidentity_file = "{self.dir}/client"\n'
                f'known_hosts = "{self.dir}/known_hosts"\n')

    def stop(self):
        self.p.kill()
        self.p.wait()


class RemoteDaemon(runs_bench.Daemon):
    """The daemon with the tree as a root on node "box" (this machine over `sshd`)."""

    def __init__(self, root, work, sshd, poll_interval="5s", log_filter="warn",
                 health="interval = \"30s\""):
        super().__init__(root, work, "poll", poll_interval)
        self.log_filter = log_filter
        with open(self.cfg, "w") as f:
            f.write(f'[daemon]\nstate_dir = "{self.dir}/state"\nsocket = "{self.sock}"\n'
                    f'control_group = ""\n\n[health]\n{health}\n\n'
                    f'{sshd.node_toml("box")}\n[[roots]]\npath = "{root}"\nnode = "box"\n'
                    f'poll_interval = "{poll_interval}"\n')

    def start(self):
        env = dict(os.environ, UGRO_LOG=self.log_filter)
        err = open(os.path.join(self.dir, "daemon.log"), "wb")
        self.t0_wall = time.time()
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen([os.path.join(os.environ.get("BIN", runs_bench.BIN_DIR), "ugro-monitor"), "--config",
                                   self.cfg], env=env, stdin=subprocess.DEVNULL, stdout=err,
                                  stderr=err)
        err.close()
        with open(os.path.join(self.work, "pids"), "a") as f:
            f.write(f"{self.p.pid}\n")


def sftp_walk(sshd, root):
    """Every directory below `root` listed with its entries' attributes over one SFTP session
    (what a listing of the tree needs); returns (seconds, entries)."""
    import paramiko
    user = os.environ.get("USER") or "root"
    c = paramiko.SSHClient()
    c.load_host_keys(f"{sshd.dir}/known_hosts")
    c.connect("127.0.0.1", port=sshd.port, username=user, key_filename=f"{sshd.dir}/client",
              look_for_keys=False, allow_agent=False)
    t0 = time.perf_counter()
    sftp = c.open_sftp()
    n = 0
    stack = [root]
    while stack:
        d = stack.pop()
        for a in sftp.listdir_attr(d):
            n += 1
            if st.S_ISDIR(a.st_mode):
                stack.append(f"{d}/{a.filename}")
    dt = time.perf_counter() - t0
    c.close()
    return dt, n


def machine_busy():
    """Seconds of CPU the whole machine has spent busy (all but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / ticks()


def ticks():
    return os.sysconf(os.sysconf_names["SC_CLK_TCK"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root", nargs="?", default="/tmp/runs-bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--sftp-rounds", type=int, default=None)
    ap.add_argument("--cold-only", action="store_true",
                    help="only the cold listings, local vs remote (no SFTP walk, no poll cycles)")
    a = ap.parse_args()
    sftp_rounds = a.rounds if a.sftp_rounds is None else a.sftp_rounds
    if a.cold_only:
        sftp_rounds = 0
    root = os.path.realpath(a.root)
    work = tempfile.mkdtemp(prefix="ugro-remote-bench-")
    open(os.path.join(work, "pids"), "w").close()
    sshd = Sshd(work)
    res = {"root": root, "rounds": a.rounds, "local_s": [], "remote_s": [], "sftp_s": []}
    try:
        # The run count from a local listing (untimed, warms the page cache).
        d = runs_bench.Daemon(root, work, "poll")
        d.start()
        _, runs = d.wait_listing(expect=-1, quiet=15.0)
        d.stop()
        n = len(runs)
        res["runs"] = n
        log(f"== {n} runs under {root}")
        for k in ("local_cpu_s", "remote_cpu_s", "local_machine_cpu_s", "remote_machine_cpu_s"):
            res[k] = []
        for r in range(a.rounds):
            for kind in ("local", "remote"):
                if kind == "local":
                    d = runs_bench.Daemon(root, work, "poll")
                else:
                    d = RemoteDaemon(root, work, sshd,
                                     log_filter=os.environ.get("UGRO_LOG", "warn"))
                m0 = machine_busy()
                d.start()
                t, _ = d.wait_listing(expect=n)
                res[f"{kind}_machine_cpu_s"].append(round(machine_busy() - m0, 3))
                res[f"{kind}_cpu_s"].append(sum(runs_bench.proc_cpu(d.p.pid)[:2]) / ticks())
                d.stop()
                res[f"{kind}_s"].append(t)
            t, t2 = res["local_s"][-1], res["remote_s"][-1]
            if r < sftp_rounds:
                t3, entries = sftp_walk(sshd, root)
                res["sftp_s"].append(t3)
                res["sftp_entries"] = entries
                log(f"   round {r + 1}: local {t} s, remote {t2} s, paramiko SFTP walk "
                    f"{t3:.3f} s ({entries} entries)")
            else:
                log(f"   round {r + 1}: local {t} s, remote {t2} s")
        if a.cold_only:
            raise StopIteration
        # Poll cycles with nothing changed.
        d = RemoteDaemon(root, work, sshd, "5s", "warn,ugro_monitor::runs::remote=debug",
                         'interval = "1d"\nmin_interval = "1d"\nmax_interval = "1d"')
        d.start()
        d.wait_listing(expect=n)
        time.sleep(12)  # first scan stored, a couple of cycles behind us
        log_path = os.path.join(d.dir, "daemon.log")
        before_log = os.path.getsize(log_path)
        c0 = sum(runs_bench.proc_cpu(d.p.pid)[:2])
        time.sleep(a.seconds)
        c1 = sum(runs_bench.proc_cpu(d.p.pid)[:2])
        text = open(log_path, errors="replace").read()[before_log:]
        d.stop()
        cycles = [int(m.group(1)) for line in text.splitlines() if "poll cycle" in line
                  for m in [re.search(r"execs=(\d+)", line)] if m]
        res["poll_cycles"] = len(cycles)
        res["poll_same"] = sum(1 for line in text.splitlines()
                               if "poll cycle" in line and "same=true" in line)
        res["poll_execs_per_cycle"] = cycles
        res["poll_cpu_s"] = (c1 - c0) / ticks()
        res["poll_cpu_ms_per_cycle"] = 1000 * res["poll_cpu_s"] / max(1, len(cycles))
    except StopIteration:
        pass
    finally:
        sshd.stop()
    med = {k: statistics.median(res[k]) for k in ("local_s", "remote_s", "sftp_s", "local_cpu_s",
                                                   "remote_cpu_s", "local_machine_cpu_s",
                                                   "remote_machine_cpu_s") if res.get(k)}
    res["median"] = med
    res["remote_vs_local"] = med["remote_s"] / med["local_s"]
    if "sftp_s" in med:
        res["remote_vs_sftp"] = med["remote_s"] / med["sftp_s"]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
