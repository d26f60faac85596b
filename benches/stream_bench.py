#!/usr/bin/env python3
"""200 clients of the change stream (`GET /v1/stream`) at once, one of which never reads: how
long a run's change takes to reach every reading client, and what the clients cost the daemon.

    python3 benches/stream_bench.py [--clients 200] [--rounds 30] [--extra-root DIR]
                                    [--bin-dir target/release]

Starts ugro-monitor on a fresh state dir with a root of its own holding one trainer run (and,
with --extra-root, a second root such as a 20,000-run tree from benches/gen_runs.py, so every
change is found by diffing the whole run list), waits until the run is listed, notes VmRSS,
then opens CLIENTS stream connections (`?kinds=run`) over the Unix socket: one sends its
request and never reads a byte, the others read in one asyncio loop in this process. Each round
writes the run's next epoch (three files, the last one's write ends the change) and takes the
time when each reading client has the `run` message with the new `completed_epochs`. Reports
p50/p99/max of those latencies over every (client, round), VmRSS before the clients and after
the rounds, VmHWM, and the daemon's own time to diff the run list (its trace lines).

What a latency includes: the daemon's inotify wake-up and debounce, re-reading the run, the
status judgement, the stream task's diff of the whole run list, the SSE write to 200 sockets,
and this script's event loop reading and parsing 199 streams (it shares the 2 cores with the
daemon). Standard library only.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def write_epoch(run, i):
    d = os.path.join(run, f"epoch_{i}")
    os.makedirs(d, exist_ok=True)
    for name, text in (("training_losses.pt", "\x01\x02"),
                       ("optimizer_buffer.json", '{"step": 1}'),
                       ("validation_scores.json", f'{{"val": {{"acc": 0.{i}, "loss": 1.0}}}}')):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)


async def http_get_json(sock, path):
    r, w = await asyncio.open_unix_connection(sock, limit=1 << 26)
    w.write(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
    await w.drain()
    data = await r.read()
    w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            n, _, rest = rest.partition(b"\r\n")
            n = int(n, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return json.loads(body)


class Client:
    def __init__(self, i):
        self.i = i
        self.got = {}  # completed_epochs -> perf_counter when first seen

    async def run(self, sock, ready):
        r, w = await asyncio.open_unix_connection(sock, limit=1 << 22)
        w.write(b"GET /v1/stream?kinds=run HTTP/1.1\r\nhost: x\r\n\r\n")
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"client {self.i}: {head!r}")
        ready.set_result(True) if not ready.done() else None
        event = None
        # Chunked transfer: chunk-size lines interleave with the SSE lines; an SSE line never
        # is a bare hex number, so they are told apart by that.
        while True:
            line = await r.readline()
            if not line:
                return
            line = line.rstrip(b"\r\n")
            if line.startswith(b"event: "):
                event = line[7:]
            elif line.startswith(b"data: ") and event == b"run":
                now = time.perf_counter()
                d = json.loads(line[6:])
                if d.get("id") == "bench/run":
                    n = d["progress"]["completed_epochs"]
                    self.got.setdefault(n, now)
            elif not line:
                event = None


async def main_async(a, d):
    sock = d["sock"]
    # The stuck client: sends its request, never reads.
    stuck_r, stuck_w = await asyncio.open_unix_connection(sock)
    stuck_w.write(b"GET /v1/stream?kinds=run HTTP/1.1\r\nhost: x\r\n\r\n")
    await stuck_w.drain()
    clients = [Client(i) for i in range(a.clients - 1)]
    loop = asyncio.get_running_loop()
    readies = [loop.create_future() for _ in clients]
    tasks = [asyncio.create_task(c.run(sock, f)) for c, f in zip(clients, readies)]
    await asyncio.wait_for(asyncio.gather(*readies), 60)
    await asyncio.sleep(1)
    rss_connected = proc_status(d["pid"])["VmRSS"]
    rounds = []
    for k in range(a.rounds):
        i = d["next_epoch"] + k
        t0 = time.perf_counter()
        write_epoch(d["run"], i)
        t0 = time.perf_counter()  # the change is complete once the last file is written
        want = i + 1
        deadline = t0 + 10
        while time.perf_counter() < deadline and any(want not in c.got for c in clients):
            await asyncio.sleep(0.005)
        lat = [c.got[want] - t0 for c in clients if want in c.got]
        rounds.append((want, lat, len(clients) - len(lat)))
        await asyncio.sleep(a.pause)
    for t in tasks:
        t.cancel()
    stuck_w.close()
    return rss_connected, rounds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--pause", type=float, default=1.0, help="seconds between rounds")
    p.add_argument("--extra-root", help="a second root (e.g. 20,000 runs from gen_runs.py)")
    p.add_argument("--bin-dir", default="target/release")
    a = p.parse_args()

    work = tempfile.mkdtemp(prefix="stream-bench-")
    root = os.path.join(work, "root")
    run = os.path.join(root, "bench", "run")
    os.makedirs(run)
    with open(os.path.join(run, "config.json"), "w") as f:
        f.write('{"epochs": 1000}')
    with open(os.path.join(run, "train_val_0.log"), "w") as f:
        f.write("epoch 0\n")
    write_epoch(run, 0)
    sock = os.path.join(work, "ugro.sock")
    cfg = os.path.join(work, "ugro.toml")
    roots = f'[[roots]]\npath = "{root}"\nwatch = "inotify"\n'
    if a.extra_root:
        roots += f'\n[[roots]]\npath = "{os.path.abspath(a.extra_root)}"\n'
    with open(cfg, "w") as f:
        f.write(f'[daemon]\nstate_dir = "{work}/state"\nsocket = "{sock}"\ncontrol_group = ""\n\n'
                + roots)
    logf = open(os.path.join(work, "daemon.log"), "wb")
    env = dict(os.environ, UGRO_LOG="warn,ugro_monitor::stream=trace")
    proc = subprocess.Popen([os.path.join(a.bin_dir, "ugro-monitor"), "--config", cfg],
                            env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    try:
        t0 = time.perf_counter()
        n_runs, same = 0, 0
        while True:
            if proc.poll() is not None:
                raise RuntimeError("daemon exited: " + open(logf.name).read()[-2000:])
            try:
                doc = asyncio.run(http_get_json(sock, "/v1/runs"))
                ids = {r["id"] for r in doc["runs"]}
                # With an extra root: until its first scan is listed (the count stays put for
                # three looks two seconds apart).
                same = same + 1 if len(ids) == n_runs else 0
                n_runs = len(ids)
                if "bench/run" in ids and (not a.extra_root or (n_runs > 1 and same >= 3)):
                    break
            except (OSError, ValueError):
                pass
            if time.perf_counter() - t0 > 900:
                raise RuntimeError("runs never listed")
            time.sleep(2 if a.extra_root else 0.1)
        time.sleep(5)  # let the first scan's writes settle
        before = proc_status(proc.pid)
        d = {"sock": sock, "pid": proc.pid, "run": run, "next_epoch": 1}
        rss_connected, rounds = asyncio.run(main_async(a, d))
        time.sleep(1)
        after = proc_status(proc.pid)
        lat = [x for _, l, _ in rounds for x in l]
        missed = sum(m for _, _, m in rounds)
        diffs = [int(m) / 1000 for m in re.findall(
            r"elapsed_us=(\d+)", open(logf.name, errors="replace").read())]
        res = {
            "clients": a.clients,
            "reading": a.clients - 1,
            "rounds": a.rounds,
            "runs_listed": len(ids),
            "samples": len(lat),
            "missed": missed,
            "p50_ms": round(pct(lat, 50) * 1000, 1),
            "p99_ms": round(pct(lat, 99) * 1000, 1),
            "max_ms": round(max(lat) * 1000, 1) if lat else None,
            "rss_before_mib": round(before["VmRSS"] / 1024, 1),
            "rss_clients_connected_mib": round(rss_connected / 1024, 1),
            "rss_after_mib": round(after["VmRSS"] / 1024, 1),
            "rss_growth_mib": round((after["VmRSS"] - before["VmRSS"]) / 1024, 1),
            "vmhwm_mib": round(after["VmHWM"] / 1024, 1),
            "diff_ms_p50": round(pct(diffs, 50), 1) if diffs else None,
            "diff_ms_max": round(max(diffs), 1) if diffs else None,
        }
        print(json.dumps(res, indent=2))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
