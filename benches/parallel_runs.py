#!/usr/bin/env python3
"""200 readers of the full run list at once, as a dashboard wall or a cron of scripts would be:
the daemon's peak memory while it answers them.

    python3 benches/parallel_runs.py ROOT [--clients 200] [--rounds 3] [--bin-dir DIR ...]

For each --bin-dir (default target/release), in the order given: starts ugro-monitor on a fresh
state dir with ROOT as its only root (poll mode), waits until `GET /v1/runs` lists every run
of ROOT and the first scan is stored, notes VmRSS, then opens CLIENTS connections and sends
`GET /v1/runs` on all of them at once (each reads its whole answer), ROUNDS times. Reports
VmRSS before, VmHWM (the process's peak resident set since it started, from /proc) after, the
answer size and the wall time of each round, and the WAL size after discovery. What it
includes: the daemon building and sending the answers; the clients run in this Python process
(threads), so they cost CPU beside the daemon on a 2-core machine, not memory inside it.
Standard library only; generate ROOT with benches/gen_runs.py (20,000 runs: --runs 20000
--max-epochs 3).
"""

import argparse
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runs_bench  # noqa: E402
from runs_bench import Daemon, Http, proc_status, log  # noqa: E402


def count_runs(root):
    """Runs the daemon will list: the number of run dirs gen_runs.py made (dirs holding a
    config.json, a *.log, progress.json or evaluation_scores.json)."""
    n = 0
    for d, dirs, files in os.walk(root):
        fs = set(files)
        if ("config.json" in fs or "progress.json" in fs or "evaluation_scores.json" in fs
                or any(f.endswith(".log") for f in fs)):
            n += 1
            dirs[:] = [x for x in dirs if not x.startswith("epoch_")]
    return n


def one(sock, out, i, barrier):
    h = Http(sock)
    h.connect()
    barrier.wait()
    t = time.perf_counter()
    status, body = h.get("/v1/runs")
    out[i] = (status, len(body), time.perf_counter() - t)
    if h.s is not None:
        h.s.close()


def measure(bin_dir, root, expect, clients, rounds, work):
    runs_bench.BIN_DIR = bin_dir
    d = Daemon(root, work, "poll", poll_interval="60s")
    d.start()
    try:
        took, runs = d.wait_listing(expect, interval=0.5, timeout=900, quiet=120)
        if took is None and not runs:
            raise RuntimeError(f"{bin_dir}: listed no runs of {expect}")
        if took is None:  # the daemon's idea of a run dir differs from count_runs: take its own
            log(f"{bin_dir}: listing settled at {len(runs)} runs (counted {expect} dirs)")
        res = {"bin_dir": bin_dir, "runs": len(runs), "listed_after_s": round(took, 2) if took else None}
        d.wait_scanned(res, timeout=600)
        time.sleep(5)  # let the writer settle
        st = proc_status(d.p.pid)
        res["rss_before_mib"] = round(st["VmRSS"] / 1024, 1)
        wal = os.path.join(d.dir, "state", "ugro.db-wal")
        res["wal_mib"] = round(os.path.getsize(wal) / 2**20, 1) if os.path.exists(wal) else 0.0
        res["rounds"] = []
        for _ in range(rounds):
            out = [None] * clients
            barrier = threading.Barrier(clients)
            ts = [threading.Thread(target=one, args=(d.sock, out, i, barrier))
                  for i in range(clients)]
            t0 = time.perf_counter()
            for t in ts:
                t.start()
            for t in ts:
                t.join(300)
            wall = time.perf_counter() - t0
            ok = [o for o in out if o and o[0] == 200]
            res["rounds"].append({"ok": len(ok), "of": clients, "wall_s": round(wall, 2),
                                  "answer_mib": round(ok[0][1] / 2**20, 2) if ok else None})
        st = proc_status(d.p.pid)
        res["rss_after_mib"] = round(st["VmRSS"] / 1024, 1)
        res["hwm_mib"] = round(st["VmHWM"] / 1024, 1)
        return res
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin-dir", action="append", default=None)
    ap.add_argument("--work", default="/tmp")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    expect = count_runs(root)
    log(f"{root}: {expect} runs")
    bins = a.bin_dir or [os.path.join(runs_bench.REPO, "target/release")]
    for b in bins:
        res = measure(os.path.abspath(b), root, expect, a.clients, a.rounds, a.work)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
