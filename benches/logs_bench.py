#!/usr/bin/env python3
"""Log benchmarks by hand (results in docs/benchmarks.md), against a built ugro-monitor and
ugroctl (default target/release; --bin-dir to pick another build):

    python3 benches/logs_bench.py [--bin-dir D] [--n 30]

1. `ugroctl logs RUN -n 5` on a 2 GiB sparse log (real lines at the end): wall time per call
   (the whole ugroctl process: start, connect, request, print) and the daemon's read bytes
   per call (/proc/PID/io rchar delta).
2. Local follow latency: `ugroctl logs RUN -f -n 0` running; a line carrying its write time
   (CLOCK_REALTIME ns) is appended; the time until ugroctl prints it is measured here when the
   line is read from its stdout pipe. Appends are spaced 200 ms apart.

Standard library only. A daemon with a fresh state dir in a temp dir; killed at the end.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def rchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default=os.path.join(REPO, "target/release"))
    ap.add_argument("--n", type=int, default=30)
    a = ap.parse_args()
    ctl_bin = os.path.join(a.bin_dir, "ugroctl")
    with tempfile.TemporaryDirectory(prefix="ugro-logs-bench") as tmp:
        root = os.path.join(tmp, "root")
        run = os.path.join(root, "exp", "big")
        os.makedirs(os.path.join(run, "epoch_0"))
        with open(os.path.join(run, "config.json"), "w") as f:
            f.write('{"epochs": 10}')
        log = os.path.join(run, "train_val.log")
        with open(log, "wb") as f:
            f.truncate(2 << 30)
        with open(log, "a") as f:
            for i in range(100):
                f.write(f"epoch {i}: loss 0.{i}\n")
        sock = os.path.join(tmp, "ugro.sock")
        cfg = os.path.join(tmp, "ugro.toml")
        with open(cfg, "w") as f:
            f.write(f'[daemon]\nstate_dir = "{tmp}/state"\nsocket = "{sock}"\ncontrol_group = ""\n\n'
                    f'[[roots]]\npath = "{root}"\n')
        err = open(os.path.join(tmp, "daemon.log"), "w")
        d = subprocess.Popen([os.path.join(a.bin_dir, "ugro-monitor"), "--config", cfg],
                             stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        try:
            ctl = [ctl_bin, "--socket", sock]
            deadline = time.time() + 30
            while time.time() < deadline:
                r = subprocess.run(ctl + ["logs", "exp/big", "-n", "1"], capture_output=True)
                if r.returncode == 0:
                    break
                time.sleep(0.1)
            else:
                sys.exit("daemon did not list exp/big within 30 s")

            # 1. -n 5 on 2 GiB.
            walls, reads = [], []
            for _ in range(a.n):
                before = rchar(d.pid)
                t0 = time.perf_counter()
                r = subprocess.run(ctl + ["logs", "exp/big", "-n", "5"], capture_output=True,
                                   check=True)
                walls.append(time.perf_counter() - t0)
                reads.append(rchar(d.pid) - before)
                assert r.stdout.decode().splitlines()[-1] == "epoch 99: loss 0.99", r.stdout
            print(f"-n 5 on a 2 GiB log, {a.n} calls: wall median {statistics.median(walls)*1000:.1f} ms,"
                  f" p95 {pct(walls, 95)*1000:.1f} ms; daemon rchar per call median"
                  f" {statistics.median(reads)/1024:.1f} KiB, max {max(reads)/1024:.1f} KiB")

            # 2. Local follow latency.
            f = subprocess.Popen(ctl + ["logs", "exp/big", "-n", "0", "-f"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            lat = []
            for i in range(a.n):
                with open(log, "a") as lf:
                    lf.write(f"bench {i} {time.time_ns()}\n")
                while True:
                    line = f.stdout.readline().decode()
                    if not line:
                        sys.exit("ugroctl -f ended")
                    if line.startswith(f"bench {i} "):
                        lat.append((time.time_ns() - int(line.split()[2])) / 1e6)
                        break
                time.sleep(0.2)
            f.kill()
            print(f"local follow, {a.n} appends: append -> printed median {statistics.median(lat):.1f} ms,"
                  f" p95 {pct(lat, 95):.1f} ms, max {max(lat):.1f} ms")
        finally:
            d.terminate()
            try:
                d.wait(10)
            except subprocess.TimeoutExpired:
                d.kill()


if __name__ == "__main__":
    main()
