#!/usr/bin/env python3
"""The WAL after a big discovery (issue 13): a daemon with a fresh state dir discovers ROOT
(e.g. 20,000 runs from gen_runs.py); the size of ugro.db-wal is sampled every 100 ms.

    python3 benches/wal_bench.py ROOT [--bin-dir D] [--settle 15] [--label L] [--readers N]

Prints one JSON object: peak WAL size during the discovery, the WAL when the first scan is
stored (`root.scanned`), after --settle more seconds, and after a stop; the database size and
how long `PRAGMA quick_check` takes on it;
the slowest runs batch (from the daemon's debug log, where it writes one) and how often the
log says "database is locked" or "could not store". --bin-dir names the directory with the
ugro-monitor and ugroctl to measure (default: target/release of this checkout). The state dir
is a temp dir under /var/tmp (a disk, not a tmpfs). --readers N keeps N clients reading the
database through the API meanwhile (`GET /v1/events?limit=500` in a loop, each on its own
kept-alive connection): overlapping reads that keep checkpoints from starting the WAL over.
Standard library only.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs_bench import Http  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def size(p):
    try:
        return os.path.getsize(p)
    except OSError:
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("--bin-dir", default=os.path.join(REPO, "target/release"))
    ap.add_argument("--settle", type=float, default=15.0)
    ap.add_argument("--label", default="this")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--readers", type=int, default=0)
    a = ap.parse_args()

    work = tempfile.mkdtemp(dir="/var/tmp", prefix="ugro-wal-bench.")
    sock = os.path.join(work, "ugro.sock")
    state = os.path.join(work, "state")
    db = os.path.join(state, "ugro.db")
    wal = db + "-wal"
    cfg = os.path.join(work, "ugro.toml")
    with open(cfg, "w") as f:
        f.write(f'[daemon]\nstate_dir = "{state}"\nsocket = "{sock}"\ncontrol_group = ""\n\n'
                f'[[roots]]\npath = "{os.path.abspath(a.root)}"\nwatch = "poll"\n'
                f'poll_interval = "30s"\n')
    logp = os.path.join(work, "daemon.log")
    env = dict(os.environ, UGRO_LOG="warn,ugro_monitor::runs=debug,sqlx=warn")
    with open(logp, "wb") as err:
        p = subprocess.Popen([os.path.join(a.bin_dir, "ugro-monitor"), "--config", cfg],
                             env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err)

    def scanned():
        r = subprocess.run([os.path.join(a.bin_dir, "ugroctl"), "--socket", sock, "--json",
                            "events", "--kind", "root.scanned", "--since", "1h"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            return bool(json.loads(r.stdout).get("events"))
        except ValueError:
            return False

    res = {"label": a.label, "bin_dir": a.bin_dir, "root": os.path.abspath(a.root),
           "readers": a.readers}
    stop = threading.Event()
    reads = [0]

    def reader():
        http = Http(sock)
        while not stop.is_set():
            try:
                http.get("/v1/events?limit=500")
                reads[0] += 1
            except (OSError, ConnectionError, ValueError):
                time.sleep(0.05)

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(a.readers)]
    try:
        while a.readers and not os.path.exists(sock):
            time.sleep(0.05)
        for t in threads:
            t.start()
        t0 = time.monotonic()
        peak, last_check = 0, 0.0
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"daemon exited with {p.returncode}: "
                                   + open(logp).read()[-2000:])
            peak = max(peak, size(wal))
            now = time.monotonic()
            if now - t0 > a.timeout:
                raise RuntimeError(f"no root.scanned within {a.timeout:g} s")
            if now - last_check > 1.0:
                last_check = now
                if scanned():
                    break
            time.sleep(0.1)
        res["scanned_after_s"] = round(time.monotonic() - t0, 1)
        res["wal_at_scanned"] = size(wal)
        until = time.monotonic() + a.settle
        while time.monotonic() < until:
            peak = max(peak, size(wal))
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(10)
        res["reads"] = reads[0]
        res["wal_peak"] = peak
        res["wal_settled"] = size(wal)
        res["db"] = size(db)
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        res["stop_s"] = round(time.monotonic() - t, 2)
        res["wal_after_stop"] = size(wal)
        # What the daemon's start-up integrity check costs on this database (page cache warm).
        import sqlite3
        c = sqlite3.connect(db)
        t = time.monotonic()
        res["quick_check"] = c.execute("PRAGMA quick_check").fetchone()[0]
        res["quick_check_s"] = round(time.monotonic() - t, 2)
        c.close()
        text = re.sub(r"\x1b\[[0-9;]*m", "", open(logp, errors="replace").read())
        ms = [int(m) for m in re.findall(r"stored runs.*?ms=(\d+)", text)]
        if ms:
            res["batches"] = len(ms)
            res["slowest_batch_ms"] = max(ms)
        res["log_database_locked"] = text.count("database is locked")
        res["locked_lines"] = [ln[-240:] for ln in text.splitlines()
                               if "database is locked" in ln][:3]
        res["log_could_not_store"] = text.count("could not store")
    finally:
        stop.set()
        if p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)
    mib = {k: round(v / 2**20, 1) for k, v in res.items()
           if k.startswith(("wal", "db")) and isinstance(v, int)}
    res["MiB"] = mib
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    sys.exit(main())
