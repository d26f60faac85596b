#!/usr/bin/env python3
"""Helper of benches/runs.sh: run-tracking benchmarks against target/release/ugro-monitor.

    python3 benches/runs_bench.py cold    ROOT --work DIR --out FILE [--rounds 3] [--bin-dir D]
    python3 benches/runs_bench.py latency ROOT --work DIR --out FILE [--n 50] [--bin-dir D]
    python3 benches/runs_bench.py cpu     ROOT --work DIR --out FILE --clk-tck N [--seconds 60]
                                          [--bin-dir D]
    python3 benches/runs_bench.py summary FILE...

--bin-dir names the directory holding the ugro-monitor and ugroctl to measure (default:
target/release of this checkout), e.g. an older build for a before/after comparison.
Every daemon gets a fresh state dir under --work; its pid is appended to WORK/pids so the
calling script's EXIT trap can kill it if this helper dies. Standard library only.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN_DIR = os.path.join(REPO, "target/release")
BASELINE = os.path.join(HERE, "scan_baseline.py")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- daemon


class Daemon:
    def __init__(self, root, work, watch, poll_interval="5s"):
        self.work = work
        self.dir = tempfile.mkdtemp(dir=work, prefix=f"d-{watch}-")
        self.sock = os.path.join(self.dir, "ugro.sock")
        self.cfg = os.path.join(self.dir, "ugro.toml")
        with open(self.cfg, "w") as f:
            f.write(f'[daemon]\nstate_dir = "{self.dir}/state"\nsocket = "{self.sock}"\n'
                    f'control_group = ""\n\n[[roots]]\npath = "{root}"\nwatch = "{watch}"\n'
                    f'poll_interval = "{poll_interval}"\n')
        self.p = None

    def start(self):
        env = dict(os.environ, UGRO_LOG="warn")
        err = open(os.path.join(self.dir, "daemon.log"), "wb")
        self.t0_wall = time.time()
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen([os.path.join(BIN_DIR, "ugro-monitor"), "--config", self.cfg],
                                  env=env,
                                  stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        err.close()
        with open(os.path.join(self.work, "pids"), "a") as f:
            f.write(f"{self.p.pid}\n")

    def ctl(self, *args, timeout="5s"):
        r = subprocess.run([os.path.join(BIN_DIR, "ugroctl"), "--socket", self.sock, "--json",
                            "--timeout", timeout, *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode == 2:  # unreachable (1 = some run failed: fine)
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def runs_doc(self, http):
        """`GET /v1/runs` (what `ugroctl --json runs` prints) over a kept-alive connection, or
        None while the daemon does not answer."""
        try:
            status, body = http.get("/v1/runs")
        except (OSError, ConnectionError, ValueError):
            return None
        return json.loads(body) if status == 200 else None

    def wait_listing(self, expect, interval=0.02, timeout=300.0, quiet=30.0):
        """Polls `GET /v1/runs` every `interval` until it lists `expect` runs. Returns (seconds,
        runs); seconds is None when the count never got there (gave up after `quiet` s without
        a change once reachable, or `timeout`). One kept-alive connection instead of an
        `ugroctl` process per poll: 50 process starts a second would take CPU from the daemon
        being timed on this 2-core machine."""
        last_n, last_change = -1, time.perf_counter()
        runs = []
        http = Http(self.sock)
        while True:
            if self.p.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.p.returncode}: "
                                   + open(os.path.join(self.dir, "daemon.log")).read()[-2000:])
            doc = self.runs_doc(http)
            now = time.perf_counter()
            if doc is not None:
                runs = doc.get("runs", [])
                if len(runs) == expect:
                    return now - self.t0, runs
                if len(runs) != last_n:
                    last_n, last_change = len(runs), now
                elif last_n > 0 and now - last_change > quiet:
                    return None, runs
            if now - self.t0 > timeout:
                return None, runs
            time.sleep(interval)

    def wait_scanned(self, res, timeout=120.0):
        """Waits for the root.scanned event: the daemon has stored its first scan and set up
        its watches (a change before that is found by its first look after the set-up, later
        than by a watch)."""
        until = time.perf_counter() + timeout
        while self.scanned_event_s() is None and time.perf_counter() < until:
            time.sleep(0.2)
        if self.scanned_event_s() is None:
            res["problems"].append(f"no root.scanned event within {timeout:g} s of the listing")

    def scanned_event_s(self):
        """Seconds from process start to the daemon's root.scanned event (its own clock)."""
        doc = self.ctl("events", "--kind", "root.scanned", "--since", "1h")
        if not doc or not doc.get("events"):
            return None
        t = doc["events"][-1]["time"]
        return iso_to_epoch(t) - self.t0_wall

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        keep = os.environ.get("UGRO_BENCH_LOGS")  # a folder to keep each daemon's log in
        if keep:
            os.makedirs(keep, exist_ok=True)
            log = os.path.join(self.dir, "daemon.log")
            if os.path.exists(log):
                shutil.copy(log, os.path.join(keep, f"{os.path.basename(self.dir)}.log"))
        shutil.rmtree(self.dir, ignore_errors=True)


def iso_to_epoch(s):
    # 2026-11-22T10:00:00.123456789Z -> float, without dateutil
    from datetime import datetime, timezone
    s = s.rstrip("Z")
    frac = 0.0
    if "." in s:
        s, f = s.split(".", 1)
        frac = float("0." + "".join(c for c in f if c.isdigit()) or "0")
    if "+" in s:
        s = s.split("+")[0]
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp() + frac


# --------------------------------------------------------------------------- 2. cold start


def timed(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def compare(base_runs, daemon_runs):
    """Per-run differences between the baseline scan and the daemon's listing."""
    b = {r["id"]: r for r in base_runs}
    d = {r["id"]: r for r in daemon_runs}
    out = {"only_baseline": sorted(set(b) - set(d))[:10], "only_daemon": sorted(set(d) - set(b))[:10],
           "n_only_baseline": len(set(b) - set(d)), "n_only_daemon": len(set(d) - set(b))}
    diffs = {}
    for i in sorted(set(b) & set(d)):
        x, y = b[i], d[i]
        yp = y.get("progress", {})
        for field, bv, dv in (("runner", x.get("runner"), y.get("runner")),
                              ("status", x.get("status"), y.get("status")),
                              ("completed_epochs", x.get("completed_epochs"), yp.get("completed_epochs"))):
            if x.get("runner") != "trainer" and field == "completed_epochs":
                continue
            if bv != dv:
                e = diffs.setdefault(field, {"n": 0, "examples": []})
                e["n"] += 1
                if len(e["examples"]) < 5:
                    e["examples"].append(f"{i}: baseline {bv} daemon {dv}")
    out["diffs"] = diffs
    return out


def counts(runs, key):
    c = {}
    for r in runs:
        c[r[key]] = c.get(r[key], 0) + 1
    return dict(sorted(c.items()))


def cmd_cold(a):
    py = [sys.executable, BASELINE, a.root, "--summary"]
    find = ["find", a.root, "-printf", "%s %T@\\n"]
    # Per-run baseline (untimed) for the comparison; then one untimed warm-up of each.
    full = subprocess.run([sys.executable, BASELINE, a.root], stdout=subprocess.PIPE, check=True)
    base_runs = [json.loads(line) for line in full.stdout.splitlines() if line.strip()]
    log("warm-up: python baseline")
    summ = json.loads(subprocess.run(py, stdout=subprocess.PIPE, check=True).stdout)
    expect = summ["runs"]
    log(f"warm-up: find (baseline counts {expect} runs)")
    timed(find)
    log("warm-up: daemon (poll)")
    d = Daemon(a.root, a.work, "poll")
    try:
        d.start()
        _, warm_runs = d.wait_listing(expect)
    finally:
        d.stop()
    res = {"expect": expect, "baseline_status": summ["status"], "baseline_runner": summ["runner"],
           "python": [], "find": [], "daemon_poll": [], "daemon_poll_event": [],
           "daemon_inotify": None, "daemon_inotify_event": None, "problems": []}
    first_listing = None
    for i in range(a.rounds):
        res["python"].append(timed(py))
        res["find"].append(timed(find))
        d = Daemon(a.root, a.work, "poll")
        try:
            d.start()
            s, runs = d.wait_listing(expect)
            d.wait_scanned(res)
            ev = d.scanned_event_s()
        finally:
            d.stop()
        if s is None:
            res["problems"].append(f"poll round {i + 1}: daemon listed {len(runs)} runs, "
                                   f"baseline {expect}")
        res["daemon_poll"].append(s)
        res["daemon_poll_event"].append(ev)
        if first_listing is None:
            first_listing = runs
        log(f"round {i + 1}: python {res['python'][-1]:.3f} s  find {res['find'][-1]:.3f} s  "
            f"daemon {s if s is None else round(s, 3)} s (root.scanned event at "
            f"{ev if ev is None else round(ev, 3)} s)")
    d = Daemon(a.root, a.work, "inotify")
    try:
        d.start()
        s, runs = d.wait_listing(expect)
        d.wait_scanned(res)
        res["daemon_inotify"], res["daemon_inotify_event"] = s, d.scanned_event_s()
    finally:
        d.stop()
    if s is None:
        res["problems"].append(f"inotify round: daemon listed {len(runs)} runs, baseline {expect}")
    log(f"inotify round: daemon {s} s")
    # The per-run comparison uses the first timed listing; the baseline was taken seconds earlier.
    res["daemon_status"] = counts(first_listing, "status")
    res["daemon_runner"] = counts(first_listing, "runner")
    res["compare"] = compare(base_runs, first_listing)
    res["warmup_count"] = len(warm_runs)
    json.dump(res, open(a.out, "w"), indent=1)


# --------------------------------------------------------------------------- 3. latency


class Http:
    """Minimal keep-alive HTTP/1.1 GET over a Unix socket."""

    def __init__(self, path):
        self.path = path
        self.s = None
        self.buf = b""

    def connect(self):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(self.path)
        self.buf = b""

    def _read_until(self, sep):
        while sep not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        i = self.buf.index(sep)
        head, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return head

    def _read_n(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def get(self, url):
        for attempt in (0, 1):
            try:
                if self.s is None:
                    self.connect()
                self.s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
                status = int(head[0].split()[1])
                hdr = {k.strip().lower(): v.strip() for k, v in
                       (h.split(":", 1) for h in head[1:] if ":" in h)}
                if "content-length" in hdr:
                    body = self._read_n(int(hdr["content-length"]))
                else:  # chunked
                    body = b""
                    while True:
                        n = int(self._read_until(b"\r\n").split(b";")[0], 16)
                        if n == 0:
                            self._read_until(b"\r\n")
                            break
                        body += self._read_n(n)
                        self._read_n(2)
                if hdr.get("connection", "").lower() == "close":
                    self.s.close()
                    self.s = None
                return status, body
            except (OSError, ConnectionError, ValueError):
                if self.s:
                    self.s.close()
                self.s = None
                if attempt:
                    raise


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def cmd_latency(a):
    summ = json.loads(subprocess.run([sys.executable, BASELINE, a.root, "--summary"],
                                     stdout=subprocess.PIPE, check=True).stdout)
    expect = summ["runs"]
    d = Daemon(a.root, a.work, "inotify")
    written = []  # (run dir, epoch dir, run dir stat) to undo
    res = {"n": a.n, "lat_ms": [], "timeouts": [], "overshoot": [], "problems": []}
    try:
        d.start()
        s, runs = d.wait_listing(expect)
        if s is None:
            res["problems"].append(f"inotify daemon listed {len(runs)} runs, baseline {expect}")
        cands = []
        for r in runs:
            p = r["progress"]
            tot = p.get("total_epochs")
            if r["runner"] != "trainer" or tot is None or p["completed_epochs"] >= tot:
                continue
            ed = os.path.join(r["work_dir"], f"epoch_{p['completed_epochs']}")
            if os.path.exists(ed):  # gap or corrupt epoch: its next epoch is not a clean write
                continue
            cands.append(r)
        cands.sort(key=lambda r: r["id"])
        pick = random.Random(1).sample(cands, min(a.n, len(cands)))
        res["candidates"] = len(cands)
        d.wait_scanned(res)
        time.sleep(1.0)  # let the daemon settle
        http = Http(d.sock)
        for r in pick:
            rid, wd = r["id"], r["work_dir"]
            url = "/v1/runs/" + rid
            st, body = http.get(url)
            if st != 200:
                res["problems"].append(f"{rid}: GET {url} -> {st} {body[:200]!r}")
                continue
            c = json.loads(body)["progress"]["completed_epochs"]
            ed = os.path.join(wd, f"epoch_{c}")
            rst = os.stat(wd)
            os.mkdir(ed)
            written.append((wd, ed, rst))
            for name, data in (("training_losses.pt", b"\x80\x02K\x01."),
                               ("optimizer_buffer.json", b"{}"),
                               ("validation_scores.json", b'{"val": {"loss": 1.0}}')):
                with open(os.path.join(ed, name), "wb") as f:
                    f.write(data)
            t0 = time.perf_counter()  # after the last file's close
            while True:
                st, body = http.get(url)
                now = time.perf_counter()
                got = json.loads(body)["progress"]["completed_epochs"] if st == 200 else None
                if got is not None and got >= c + 1:
                    res["lat_ms"].append((now - t0) * 1000)
                    if got != c + 1:
                        res["overshoot"].append(f"{rid}: {c} -> {got}")
                    break
                if now - t0 > a.timeout:
                    res["timeouts"].append(f"{rid}: still {got} after {a.timeout} s (wrote epoch_{c})")
                    break
                time.sleep(0.002)
            time.sleep(0.05)
    finally:
        d.stop()
        for wd, ed, rst in reversed(written):  # leave the tree as it was
            shutil.rmtree(ed, ignore_errors=True)
            os.utime(wd, ns=(rst.st_atime_ns, rst.st_mtime_ns))
    lat = res["lat_ms"]
    if lat:
        res.update(p50=pct(lat, 50), p99=pct(lat, 99), max=max(lat), min=min(lat))
    log(f"latency: {len(lat)} measured, {len(res['timeouts'])} timeouts, "
        f"p50 {res.get('p50')} p99 {res.get('p99')} max {res.get('max')} ms")
    json.dump(res, open(a.out, "w"), indent=1)


# --------------------------------------------------------------------------- 4+5. CPU, RSS


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()  # fields from #3 (state) on
    return [int(x) for x in fields[11:15]]  # utime stime cutime cstime (#14-#17)


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def cmd_cpu(a):
    summ = json.loads(subprocess.run([sys.executable, BASELINE, a.root, "--summary"],
                                     stdout=subprocess.PIPE, check=True).stdout)
    expect = summ["runs"]
    d = Daemon(a.root, a.work, "poll", f"{a.interval:g}s")
    res = {"seconds": a.seconds, "interval": a.interval, "problems": []}
    try:
        d.start()
        s, runs = d.wait_listing(expect)
        if s is None:
            res["problems"].append(f"poll daemon listed {len(runs)} runs, baseline {expect}")
        pid = d.p.pid
        # The window starts once the first scan is done and stored (the daemon's root.scanned
        # event), so it holds poll cycles only; the start-up CPU is reported on its own.
        d.wait_scanned(res)
        c0, t0 = proc_cpu(pid), time.perf_counter()
        res["startup_cpu_s"] = (c0[0] + c0[1]) / a.clk_tck
        res["startup_wall_s"] = t0 - d.t0
        time.sleep(a.seconds)
        c1, t1 = proc_cpu(pid), time.perf_counter()
        st = proc_status(pid)
    finally:
        d.stop()
    tck = a.clk_tck
    cpu = ((c1[0] - c0[0]) + (c1[1] - c0[1])) / tck
    child = ((c1[2] - c0[2]) + (c1[3] - c0[3])) / tck
    cycles = (t1 - t0) / a.interval
    res.update(wall=t1 - t0, cpu_s=cpu, child_cpu_s=child, cycles=cycles,
               cpu_per_cycle_s=cpu / cycles, core_share_pct=100 * cpu / (t1 - t0),
               vmrss_kib=st.get("VmRSS"), vmhwm_kib=st.get("VmHWM"), threads=st.get("Threads"))
    log(f"cpu: {cpu:.3f} s over {t1 - t0:.1f} s; RSS {st}")
    json.dump(res, open(a.out, "w"), indent=1)


# --------------------------------------------------------------------------- summary


def fmt(x, unit="", nd=3):
    return "n/a" if x is None else f"{x:.{nd}f}{unit}"


def verdict(ok):
    return "PASS" if ok else "FAIL"


def cmd_summary(a):
    cold, lat, cpu = (json.load(open(p)) if os.path.exists(p) else None for p in a.files)
    L = []
    if cold:
        py, fd = statistics.median(cold["python"]), statistics.median(cold["find"])
        dp = [x for x in cold["daemon_poll"] if x is not None]
        dm = statistics.median(dp) if len(dp) == len(cold["daemon_poll"]) else None
        ev = [x for x in cold["daemon_poll_event"] if x is not None]
        L.append(f"2. cold start, {cold['expect']} runs (baseline count), medians of "
                 f"{len(cold['python'])} rounds, page cache warm")
        L.append(f"   python scan_baseline  {fmt(py, ' s')}   rounds "
                 + " ".join(fmt(x) for x in cold["python"]))
        L.append(f"   find -printf          {fmt(fd, ' s')}   rounds "
                 + " ".join(fmt(x) for x in cold["find"]))
        L.append(f"   daemon (poll)         {fmt(dm, ' s')}   rounds "
                 + " ".join(fmt(x) for x in cold["daemon_poll"])
                 + "   (start -> ugroctl lists all, 20 ms polling)")
        L.append(f"   daemon root.scanned event (first scan stored, its own clock, poll) median "
                 f"{fmt(statistics.median(ev) if ev else None, ' s')}")
        L.append(f"   daemon (inotify, 1 round) {fmt(cold['daemon_inotify'], ' s')}   "
                 f"root.scanned event {fmt(cold['daemon_inotify_event'], ' s')}")
        if dm is not None:
            L.append(f"   daemon/python = {dm / py:.2f} (goal <= 0.5: {verdict(dm / py <= 0.5)})   "
                     f"daemon/find = {dm / fd:.2f} (goal <= 1.5: {verdict(dm / fd <= 1.5)})")
        L.append(f"   status counts  baseline {cold['baseline_status']}")
        L.append(f"                  daemon   {cold['daemon_status']}")
        c = cold["compare"]
        if c["n_only_baseline"] or c["n_only_daemon"] or c["diffs"]:
            L.append(f"   per-run differences vs baseline: only baseline {c['n_only_baseline']} "
                     f"{c['only_baseline']}, only daemon {c['n_only_daemon']} {c['only_daemon']}")
            for k, v in c["diffs"].items():
                L.append(f"     {k}: {v['n']} run(s), e.g. " + "; ".join(v["examples"][:3]))
        else:
            L.append("   per-run runner/status/completed_epochs: identical to the baseline")
        for p in cold["problems"]:
            L.append(f"   PROBLEM: {p}")
    if lat:
        n = len(lat["lat_ms"])
        L.append(f"3. file written -> visible in /v1/runs/<id>, inotify, {n} of {lat['n']} runs "
                 f"measured ({lat.get('candidates')} candidates), 2 ms polling")
        if n:
            ok = lat["p99"] <= 100 and not lat["timeouts"]
            L.append(f"   p50 {fmt(lat['p50'], ' ms', 1)}  p99 {fmt(lat['p99'], ' ms', 1)}  "
                     f"max {fmt(lat['max'], ' ms', 1)}  min {fmt(lat['min'], ' ms', 1)}  "
                     f"(goal p99 <= 100 ms: {verdict(ok)})")
        for t in lat["timeouts"][:10]:
            L.append(f"   TIMEOUT: {t}")
        if lat["overshoot"]:
            L.append(f"   completed_epochs jumped by more than 1: {lat['overshoot'][:5]}")
        for p in lat["problems"]:
            L.append(f"   PROBLEM: {p}")
    if cpu:
        L.append(f"4. poll mode (interval {cpu['interval']} s), daemon CPU over "
                 f"{cpu['wall']:.1f} s after the first scan was stored (root.scanned event)")
        if cpu.get("startup_cpu_s") is not None:
            L.append(f"   start-up (process start -> root.scanned, {cpu['startup_wall_s']:.2f} s "
                     f"wall, incl. storing every epoch): {cpu['startup_cpu_s']:.3f} s CPU")
        L.append(f"   utime+stime {cpu['cpu_s']:.3f} s = {cpu['cpu_per_cycle_s'] * 1000:.1f} ms per "
                 f"poll cycle ({cpu['cycles']:.0f} cycles) = {cpu['core_share_pct']:.3f} % of one "
                 f"core (goal <= 1 %: {verdict(cpu['core_share_pct'] <= 1)}); children "
                 f"{cpu['child_cpu_s']:.3f} s")
        rss, hwm = cpu["vmrss_kib"] / 1024, cpu["vmhwm_kib"] / 1024
        L.append(f"5. RSS with {cold['expect'] if cold else '?'} runs: VmRSS {rss:.1f} MiB, "
                 f"VmHWM {hwm:.1f} MiB (goal <= 50 MiB: {verdict(max(rss, hwm) <= 50)}), "
                 f"{cpu['threads']} threads")
        for p in cpu["problems"]:
            L.append(f"   PROBLEM: {p}")
    print("\n".join(L))


def main():
    global BIN_DIR
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("cold", "latency", "cpu"):
        p = sub.add_parser(name)
        p.add_argument("root")
        p.add_argument("--work", required=True)
        p.add_argument("--out", required=True)
        if name == "cold":
            p.add_argument("--rounds", type=int, default=3)
        if name == "latency":
            p.add_argument("--n", type=int, default=50)
            p.add_argument("--timeout", type=float, default=10.0)
        if name == "cpu":
            p.add_argument("--seconds", type=float, default=60)
            p.add_argument("--interval", type=float, default=5)
            p.add_argument("--clk-tck", type=int, required=True)
        p.add_argument("--bin-dir", default=None, help="where ugro-monitor and ugroctl are")
    p = sub.add_parser("summary")
    p.add_argument("files", nargs=3)
    a = ap.parse_args()
    if a.cmd != "summary":
        a.root = os.path.abspath(a.root)
        if a.bin_dir:
            BIN_DIR = os.path.abspath(a.bin_dir)
    {"cold": cmd_cold, "latency": cmd_latency, "cpu": cmd_cpu, "summary": cmd_summary}[a.cmd](a)


if __name__ == "__main__":
    main()
