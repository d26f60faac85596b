#!/usr/bin/env python3
"""Baseline for the daemon's cold-start run listing: a straightforward sequential Python scan.

    python3 benches/scan_baseline.py ROOT [--epochs 100] [--stall-after 1800]
                                          [--outdated-after 2592000] [--now EPOCH] [--summary]

Walks ROOT with os.walk (one thread, no caching), applies the rules of DESIGN.md "Semantics"
to every run dir and prints one JSON line per run ({"id", "runner", "status",
"completed_epochs", "total_epochs", ...}), or with --summary only the counts by runner and
status. Standard library only.

Rules, as implemented here:
* Run dir: a dir holding epoch_0/, evaluation_scores.json, progress.json, config.json, or a
  train_val*.log / eval_*.log. epoch_* dirs are never runs and are not walked into (they are
  listed when their run is read); other subdirs of a run are walked (nested runs are found).
* Runner, in order: evaluator if evaluation_scores.json exists; trainer if epoch_0/ holds one of
  training_losses.pt, optimizer_buffer.json, validation_scores.json, or config.json has an
  integer "epochs"; generic if progress.json exists and there is no epoch_<n>/ dir; else unknown.
* Trainer: epochs counted from epoch_0 while all three expected files exist, are non-empty and
  the .json ones parse as JSON; the first gap stops the count. Total = config.json "epochs"
  (positive integer) else --epochs. A progress.json with "early_stopped": true makes the run
  complete once completed_epochs >= "early_stopped_at_epoch" (read as an epoch count).
  best/latest scores: numeric leaves of validation_scores.json of every complete epoch,
  flattened to dotted keys; best = min for keys containing "loss" or "error", max otherwise;
  latest = the last complete epoch's. Epoch time = newest file mtime in the epoch dir; the
  median of consecutive differences gives rate_per_hour and eta_seconds (needs >= 2 epochs).
* Evaluator: complete iff evaluation_scores.json is non-empty valid JSON (scores = its leaves).
* Generic: progress from progress.json (mission_current / mission_total, progress_percent,
  eta_seconds); complete if status is completed/finished/done/success, or current >= total > 0,
  or progress_percent >= 100.
* Status: unknown runners -> "unknown". Else running if the newest log of the run's pattern
  (trainer: train_val*.log; evaluator: eval_*.log; generic: either, or progress.json) changed
  within max(--stall-after, 3 x median epoch time); else finished if complete ("outdated"
  instead when the newest artifact — any file of the run dir or its epoch dirs — is older than
  --outdated-after); else failed.
  NOTE: the baseline never looks at processes, so it never reports "stuck" (the daemon reports
  stuck for a not-active, not-complete run with a live process); such runs show as "failed".
"""

import argparse
import fnmatch
import json
import os
import statistics
import sys
import time

EXPECTED = ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json")
RUN_MARKERS = ("evaluation_scores.json", "progress.json", "config.json")
TRAIN_LOG = "train_val*.log"
EVAL_LOG = "eval_*.log"
DONE_WORDS = ("completed", "complete", "finished", "done", "success", "succeeded")


def load_json(path):
    """(ok, value): ok iff the file is non-empty and parses."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return (True, json.loads(data)) if data else (False, None)
    except (OSError, ValueError):  # ValueError covers JSONDecodeError and UnicodeDecodeError
        return False, None


def flatten(value, prefix, out):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        out[prefix] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            flatten(v, f"{prefix}.{i}" if prefix else str(i), out)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def list_files(path):
    """{name: (size, mtime)} of the regular files directly in path."""
    out = {}
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    if e.is_file():
                        st = e.stat()
                        out[e.name] = (st.st_size, st.st_mtime)
                except OSError:
                    pass
    except OSError:
        pass
    return out


def epoch_index(name):
    if name.startswith("epoch_") and name[6:].isdigit():
        return int(name[6:])
    return None


def scan_run(root, path, dirnames, a, now):
    files = list_files(path)
    epochs = {}  # index -> {name: (size, mtime)}
    for d in dirnames:
        i = epoch_index(d)
        if i is not None:
            epochs[i] = list_files(os.path.join(path, d))
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    newest_artifact = max([m for _, m in files.values()] +
                          [m for ef in epochs.values() for _, m in ef.values()], default=None)

    cfg_ok, cfg = load_json(os.path.join(path, "config.json")) if "config.json" in files else (False, None)
    cfg_epochs = cfg.get("epochs") if cfg_ok and isinstance(cfg, dict) else None
    prog_ok, prog = load_json(os.path.join(path, "progress.json")) if "progress.json" in files else (False, None)
    if not isinstance(prog, dict):
        prog = {}

    if "evaluation_scores.json" in files:
        runner = "evaluator"
    elif any(n in epochs.get(0, {}) for n in EXPECTED) or is_int(cfg_epochs):
        runner = "trainer"
    elif "progress.json" in files and not epochs:
        runner = "generic"
    else:
        runner = "unknown"

    rec = {"id": rel, "runner": runner, "status": "unknown", "completed_epochs": None,
           "total_epochs": None, "percentage": None, "early_stopped": False,
           "early_stopped_at_epoch": None, "best_score": None, "latest_score": None,
           "rate_per_hour": None, "eta_seconds": None}
    complete = False
    median = None
    if runner == "trainer":
        total = cfg_epochs if is_int(cfg_epochs) and cfg_epochs > 0 else a.epochs
        done, times, best, latest = 0, [], {}, None
        while True:
            ef = epochs.get(done)
            if ef is None or any(n not in ef or ef[n][0] == 0 for n in EXPECTED):
                break
            ok_opt, _ = load_json(os.path.join(path, f"epoch_{done}", "optimizer_buffer.json"))
            ok_val, val = load_json(os.path.join(path, f"epoch_{done}", "validation_scores.json"))
            if not (ok_opt and ok_val):
                break
            latest = {}
            flatten(val, "", latest)
            for k, v in latest.items():
                lower = "loss" in k.lower() or "error" in k.lower()
                if k not in best or (v < best[k] if lower else v > best[k]):
                    best[k] = v
            times.append(max(m for _, m in ef.values()))
            done += 1
        if len(times) >= 2:
            median = statistics.median(b - t for t, b in zip(times, times[1:]))
        complete = done >= total
        if prog.get("early_stopped") is True and is_int(prog.get("early_stopped_at_epoch")):
            rec["early_stopped"] = True
            rec["early_stopped_at_epoch"] = prog["early_stopped_at_epoch"]
            complete = complete or done >= prog["early_stopped_at_epoch"]
        rec.update(completed_epochs=done, total_epochs=total,
                   percentage=100.0 if complete else round(100.0 * done / total, 2),
                   best_score=best or None, latest_score=latest)
        if median and median > 0:
            rec["rate_per_hour"] = round(3600.0 / median, 4)
            rec["eta_seconds"] = 0 if complete else round((total - done) * median)
        patterns = (TRAIN_LOG,)
    elif runner == "evaluator":
        ok, scores = load_json(os.path.join(path, "evaluation_scores.json"))
        complete = ok
        if ok:
            flat = {}
            flatten(scores, "", flat)
            rec["best_score"] = rec["latest_score"] = flat or None
        rec["percentage"] = 100.0 if complete else None
        patterns = (EVAL_LOG,)
    elif runner == "generic":
        cur, tot, pct = prog.get("mission_current"), prog.get("mission_total"), prog.get("progress_percent")
        if is_num(cur):
            rec["completed_epochs"] = cur
        if is_num(tot):
            rec["total_epochs"] = tot
        if is_num(pct):
            rec["percentage"] = pct
        elif is_num(cur) and is_num(tot) and tot > 0:
            rec["percentage"] = round(100.0 * cur / tot, 2)
        if is_num(prog.get("eta_seconds")):
            rec["eta_seconds"] = prog["eta_seconds"]
        status = prog.get("status")
        complete = ((isinstance(status, str) and status.lower() in DONE_WORDS)
                    or (is_num(cur) and is_num(tot) and tot > 0 and cur >= tot)
                    or (is_num(pct) and pct >= 100))
        patterns = (TRAIN_LOG, EVAL_LOG, "progress.json")
    else:
        patterns = ()
        rec["diagnostic"] = (f"found: {', '.join(sorted(files)) or '(no files)'}"
                             f"{'; epoch dirs: ' + str(len(epochs)) if epochs else ''}; expected "
                             "evaluation_scores.json, epoch_0/{" + ",".join(EXPECTED) +
                             "}, config.json with epochs, or progress.json without epoch dirs")

    last_log = max((m for n, (_, m) in files.items()
                    if any(fnmatch.fnmatchcase(n, p) for p in patterns)), default=None)
    rec["last_log_update"] = last_log
    rec["last_artifact_update"] = newest_artifact
    if runner != "unknown":
        window = max(a.stall_after, 3 * median if median else 0)
        if last_log is not None and now - last_log <= window:
            rec["status"] = "running"
        elif complete:
            old = newest_artifact is not None and now - newest_artifact > a.outdated_after
            rec["status"] = "outdated" if old else "finished"
        else:
            rec["status"] = "failed"
    return rec


def is_run_dir(dirnames, filenames):
    if "epoch_0" in dirnames:
        return True
    for n in filenames:
        if n in RUN_MARKERS or fnmatch.fnmatchcase(n, TRAIN_LOG) or fnmatch.fnmatchcase(n, EVAL_LOG):
            return True
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("--epochs", type=int, default=100, help="total when config.json has none")
    ap.add_argument("--stall-after", type=float, default=1800.0, help="seconds")
    ap.add_argument("--outdated-after", type=float, default=30 * 86400.0, help="seconds")
    ap.add_argument("--now", type=float, default=None, help="reference time (default: now)")
    ap.add_argument("--summary", action="store_true", help="print only counts")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    if not os.path.isdir(root):
        sys.exit(f"{root}: not a directory")
    now = a.now if a.now is not None else time.time()

    by_runner, by_status, pairs, n = {}, {}, {}, 0
    out = sys.stdout
    for path, dirnames, filenames in os.walk(root):
        run = is_run_dir(dirnames, filenames)
        if run:
            rec = scan_run(root, path, dirnames, a, now)
            n += 1
            if a.summary:
                r, s = rec["runner"], rec["status"]
                by_runner[r] = by_runner.get(r, 0) + 1
                by_status[s] = by_status.get(s, 0) + 1
                pairs[f"{r}/{s}"] = pairs.get(f"{r}/{s}", 0) + 1
            else:
                out.write(json.dumps(rec) + "\n")
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("epoch_"))
    if a.summary:
        print(json.dumps({"runs": n, "runner": dict(sorted(by_runner.items())),
                          "status": dict(sorted(by_status.items())),
                          "runner_status": dict(sorted(pairs.items()))}))


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # e.g. piped into head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
