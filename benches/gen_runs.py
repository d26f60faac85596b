#!/usr/bin/env python3
"""Generate a realistic tree of ML runs for the run-tracking benchmarks.

    python3 benches/gen_runs.py ROOT [--runs 2000] [--max-epochs 50] [--seed 1] [--now EPOCH] [--force]

Creates ROOT/<group>/<run> (about a third of the groups hold sweeps one level deeper:
ROOT/<group>/<sweep>/<run>) mixing, by intended kind:

* trainer (~75 %): config.json {"epochs": N, "lr": ..}, train_val_<date>.log (a few KB), and
  epoch_0/ .. epoch_{k-1}/ each with training_losses.pt (1-4 KB random bytes),
  optimizer_buffer.json and validation_scores.json ({"val": {"accuracy", "loss", ..}}).
  k is N for finished runs, below N otherwise; some runs have a gap (one epoch missing a
  file), some an empty or corrupt JSON, a few early-stopped ones carry a progress.json.
* evaluator (~15 %): eval_<date>.log and, for most, evaluation_scores.json (a few empty/corrupt).
* generic (~5 %): progress.json in the mission format (mission_current, mission_total,
  progress_percent, status, eta_seconds, ...), no epoch dirs.
* unknown (~5 %): notes.txt and a config.json without "epochs".

Mtimes are set with os.utime: the epochs of a run are spaced by its epoch duration
(10 min - 3 h), its log is touched at its last epoch time, or at "now" for running runs; about a
quarter of the stopped runs are older than 30 days. File names and contents are deterministic
for a seed; mtimes are relative to "now" (pin it with --now to reproduce them exactly).
Standard library only.
"""

import argparse
import json
import os
import random
import shutil
import sys
import time

DAY = 86400.0
EXPECTED = ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json")
O_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
UTIME_FD = os.utime in os.supports_fd


class Gen:
    def __init__(self, root, rng, now):
        self.root = root
        self.rng = rng
        self.now = now
        self.files = 0
        self.dirs = 0
        self.bytes = 0
        self.kinds = {}
        self.states = {}
        self.dir_times = {}  # dir -> newest child mtime, applied at the end (children first)

    def count(self, kind, state):
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        key = f"{kind}/{state}"
        self.states[key] = self.states.get(key, 0) + 1

    def mkdir(self, path):
        os.mkdir(path)
        self.dirs += 1
        self.dir_times.setdefault(path, 0.0)

    def write(self, path, data, mtime):
        if isinstance(data, str):
            data = data.encode()
        fd = os.open(path, O_FLAGS, 0o644)
        try:
            if data:
                os.write(fd, data)
            if UTIME_FD:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        if not UTIME_FD:
            os.utime(path, (mtime, mtime))
        self.files += 1
        self.bytes += len(data)
        self.touch_dir(os.path.dirname(path), mtime)

    def touch_dir(self, d, mtime):
        if self.dir_times.get(d, 0.0) < mtime:
            self.dir_times[d] = mtime

    def finish_dirs(self):
        # Deepest first, so a parent's time includes its children's.
        for d in sorted(self.dir_times, key=lambda p: p.count(os.sep), reverse=True):
            t = self.dir_times[d]
            if t == 0.0:  # nothing written below it
                continue
            os.utime(d, (t, t))
            parent = os.path.dirname(d)
            if d != self.root and parent.startswith(self.root):
                self.touch_dir(parent, t)


def stamp(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f",{int(t * 1000) % 1000:03d}"


def date_tag(t):
    return time.strftime("%Y%m%d_%H%M%S", time.gmtime(t))


def corrupt_json(rng, text):
    """An empty file or a truncated document (a writer killed mid-write)."""
    if rng.random() < 0.5:
        return ""
    return text[: max(1, rng.randrange(len(text)))]


def end_time(rng, now, state, epoch_s):
    """When the run's last epoch finished, and when its log was last written."""
    if state == "running":
        last = now - rng.uniform(0, epoch_s * 0.9)
        return last, now - rng.uniform(0, 90)
    if rng.random() < 0.25:  # old: outdated when finished
        last = now - rng.uniform(31 * DAY, 180 * DAY)
    else:
        last = now - rng.uniform(max(4 * 3600.0, 4 * epoch_s), 29 * DAY)
    return last, last + rng.uniform(1, 120)


def gen_trainer(g, rng, d, max_epochs, run_no):
    n = max_epochs if rng.random() < 0.5 else rng.randint(max(1, max_epochs // 2), max_epochs)
    r = rng.random()
    if r < 0.40:
        state, k = "finished", n
    elif r < 0.70:
        state, k = "running", rng.randint(min(n - 1, n // 4), n - 1)
    else:
        state, k = "stopped", rng.randint(0, n - 1)
    defect = None
    if k >= 2:
        r = rng.random()
        if r < 0.08:
            defect = "gap"
        elif r < 0.14:
            defect = "corrupt"
        elif r < 0.17 and state == "stopped":
            defect = "early_stopped"
    bad_epoch = rng.randrange(k) if defect in ("gap", "corrupt") else -1
    epoch_s = rng.uniform(600, 3 * 3600)
    last, log_t = end_time(rng, g.now, state, epoch_s)
    start = last - k * epoch_s - rng.uniform(30, 600)
    lr = rng.choice((1e-3, 5e-4, 3e-4, 1e-4, 5e-5))
    batch = rng.choice((16, 32, 64, 128, 256))
    model = rng.choice(("resnet50", "vit_b16", "bert-base", "gpt2-small", "unet", "convnext_t"))

    g.mkdir(d)
    cfg = {"epochs": n, "lr": lr, "batch_size": batch, "model": model,
           "optimizer": rng.choice(("adamw", "sgd", "lamb")), "seed": run_no,
           "weight_decay": rng.choice((0.0, 0.01, 0.05)), "warmup_epochs": min(5, n // 10)}
    g.write(os.path.join(d, "config.json"), json.dumps(cfg, indent=2), start)

    # Epochs: loss decays, accuracy rises, with noise; each epoch's files land within a minute
    # of its end time, validation last.
    log = [f"{stamp(start)} INFO  starting {model} epochs={n} lr={lr:g} batch={batch} "
           f"devices=cuda:0-{rng.choice((0, 1, 3, 7))}"]
    base_loss = rng.uniform(1.5, 4.0)
    ceiling = rng.uniform(0.6, 0.98)
    steps = rng.choice((500, 1000, 2000, 3128))
    for e in range(k):
        t = start + (e + 1) * epoch_s + rng.uniform(-0.05, 0.05) * epoch_s
        frac = (e + 1) / n
        tl = base_loss * (0.15 + 0.85 * (1 - frac) ** 2) + rng.uniform(-0.03, 0.03)
        vl = tl * rng.uniform(1.0, 1.25)
        acc = min(0.999, ceiling * (1 - (1 - frac) ** 3) + rng.uniform(-0.02, 0.02))
        ed = os.path.join(d, f"epoch_{e}")
        g.mkdir(ed)
        files = {
            "training_losses.pt": rng.randbytes(rng.randint(1024, 4096)),
            "optimizer_buffer.json": json.dumps({
                "step": (e + 1) * steps, "lr": lr * (0.5 ** (e // 10)),
                "betas": [0.9, 0.999], "exp_avg_norm": round(rng.uniform(0.01, 2.0), 6),
                "exp_avg_sq_norm": round(rng.uniform(1e-5, 1e-2), 8)}),
            "validation_scores.json": json.dumps({
                "val": {"accuracy": round(acc, 5), "loss": round(vl, 5),
                        "top5_accuracy": round(min(1.0, acc + rng.uniform(0.05, 0.2)), 5)},
                "train": {"loss": round(tl, 5)}}),
        }
        if e == bad_epoch:
            victim = rng.choice(EXPECTED)
            if defect == "gap":
                del files[victim]
            else:
                victim = rng.choice(EXPECTED[1:])
                files[victim] = corrupt_json(rng, files[victim])
        for i, (name, data) in enumerate(files.items()):
            g.write(os.path.join(ed, name), data, t - 40 + 20 * i)
        if e >= k - 12:  # keep the log to a few KB: the tail of the run
            for s in (steps // 3, 2 * steps // 3, steps):
                log.append(f"{stamp(t - epoch_s * (1 - s / steps))} INFO  epoch {e + 1}/{n} "
                           f"step {s}/{steps} loss={tl * rng.uniform(0.95, 1.1):.4f} "
                           f"lr={lr:.2e} grad_norm={rng.uniform(0.2, 3):.3f} "
                           f"{rng.uniform(80, 400):.1f} samples/s")
            log.append(f"{stamp(t)} INFO  validation epoch {e + 1}/{n}: loss={vl:.4f} "
                       f"accuracy={acc:.4f} saved epoch_{e}/")
    if defect == "early_stopped":
        g.write(os.path.join(d, "progress.json"), json.dumps({
            "early_stopped": True, "early_stopped_at_epoch": k, "status": "completed",
            "reason": "val.loss did not improve for 5 epochs"}), last + 5)
        log.append(f"{stamp(last + 5)} INFO  early stopping at epoch {k}")
    elif state == "finished":
        log.append(f"{stamp(last + 5)} INFO  training finished: {k} epochs")
    elif state == "stopped":
        log.append(f"{stamp(log_t)} ERROR RuntimeError: CUDA out of memory. Tried to allocate "
                   f"{rng.uniform(0.5, 8):.2f} GiB")
    if state == "running":  # mid-epoch progress
        log.append(f"{stamp(log_t)} INFO  epoch {k + 1}/{n} step {steps // 2}/{steps} "
                   f"loss={base_loss * 0.5:.4f}")
    g.write(os.path.join(d, f"train_val_{date_tag(start)}.log"), "\n".join(log) + "\n", log_t)
    g.count("trainer", defect or state)


def gen_evaluator(g, rng, d, run_no):
    r = rng.random()
    state = "running" if r < 0.12 else ("corrupt" if r < 0.17 else "finished")
    dur = rng.uniform(120, 3600)
    last, log_t = end_time(rng, g.now, state, dur)
    start = last - dur
    g.mkdir(d)
    ckpt = f"../run_{rng.randrange(10000):04d}/epoch_{rng.randrange(50)}"
    g.write(os.path.join(d, "config.json"), json.dumps(
        {"checkpoint": ckpt, "dataset": rng.choice(("imagenet-val", "glue-mnli", "coco-val")),
         "batch_size": 64, "seed": run_no}), start)
    lines = [f"{stamp(start)} INFO  evaluating {ckpt}"]
    for i in range(1, 21):
        lines.append(f"{stamp(start + dur * i / 20)} INFO  batch {i * 50}/1000 "
                     f"running_acc={rng.uniform(0.5, 0.95):.4f}")
    g.write(os.path.join(d, f"eval_{date_tag(start)}.log"), "\n".join(lines) + "\n",
            log_t if state == "running" else last)
    if state != "running":
        scores = json.dumps({"accuracy": round(rng.uniform(0.5, 0.95), 5),
                             "loss": round(rng.uniform(0.1, 2.0), 5),
                             "f1": {"macro": round(rng.uniform(0.4, 0.9), 5),
                                    "micro": round(rng.uniform(0.5, 0.95), 5)},
                             "samples": 50000})
        if state == "corrupt":
            scores = corrupt_json(rng, scores)
        g.write(os.path.join(d, "evaluation_scores.json"), scores, last)
    g.count("evaluator", state)


def gen_generic(g, rng, d):
    r = rng.random()
    state = "running" if r < 0.4 else ("finished" if r < 0.8 else "stopped")
    step_s = rng.uniform(60, 1800)
    total = rng.randint(5, 200)
    cur = total if state == "finished" else rng.randint(0, total - 1)
    last, log_t = end_time(rng, g.now, state, step_s)
    g.mkdir(d)
    prog = {"mission_id": f"m-{rng.randrange(1 << 32):08x}",
            "mission_current": cur, "mission_total": total,
            "progress_percent": round(100.0 * cur / total, 2),
            "status": {"running": "running", "finished": "completed", "stopped": "running"}[state],
            "eta_seconds": 0 if state == "finished" else int((total - cur) * step_s),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last - cur * step_s)),
            "message": f"step {cur}/{total}"}
    g.write(os.path.join(d, "progress.json"), json.dumps(prog, indent=2),
            log_t if state == "running" else last)
    if rng.random() < 0.5:
        g.write(os.path.join(d, "stdout.txt"),
                "".join(f"mission step {i}/{total} ok\n" for i in range(cur)), last)
    g.count("generic", state)


def gen_unknown(g, rng, d):
    t = g.now - rng.uniform(3600, 90 * DAY)
    g.mkdir(d)
    g.write(os.path.join(d, "notes.txt"),
            "TODO: rerun with the fixed tokenizer\nsee the lab notebook, p. "
            f"{rng.randint(1, 200)}\n", t)
    g.write(os.path.join(d, "config.json"),
            json.dumps({"model": rng.choice(("resnet18", "t5-small")), "lr": 1e-4}), t)
    g.count("unknown", "notes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--max-epochs", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--now", type=float, default=None, help="reference time (default: now)")
    ap.add_argument("--force", action="store_true", help="delete ROOT first if it exists")
    a = ap.parse_args()
    if a.runs < 1 or a.max_epochs < 1:
        ap.error("--runs and --max-epochs must be >= 1")
    root = os.path.abspath(a.root)
    if os.path.exists(root) and os.listdir(root):
        if not a.force:
            sys.exit(f"{root} exists and is not empty (use --force to replace it)")
        shutil.rmtree(root)
    t0 = time.monotonic()
    rng = random.Random(a.seed)
    g = Gen(root, rng, a.now if a.now is not None else time.time())
    os.makedirs(root, exist_ok=True)
    g.dir_times[root] = 0.0

    # Groups of ~10-60 runs; a third of them split into sweeps (one more level).
    parents = []
    left, gi = a.runs, 0
    while left > 0:
        size = min(left, rng.randint(10, 60))
        gdir = os.path.join(root, f"exp_{gi:03d}")
        g.mkdir(gdir)
        if rng.random() < 0.33:
            sweeps = rng.randint(2, 4)
            for s in range(sweeps):
                sdir = os.path.join(gdir, f"sweep_{s}")
                g.mkdir(sdir)
                parents += [sdir] * (size // sweeps + (s < size % sweeps))
        else:
            parents += [gdir] * size
        left -= size
        gi += 1

    for i, parent in enumerate(parents):
        d = os.path.join(parent, f"run_{i:04d}")
        r = rng.random()
        if r < 0.75:
            gen_trainer(g, rng, d, a.max_epochs, i)
        elif r < 0.90:
            gen_evaluator(g, rng, d, i)
        elif r < 0.95:
            gen_generic(g, rng, d)
        else:
            gen_unknown(g, rng, d)
    g.finish_dirs()

    print(f"root: {root}  seed: {a.seed}  now: {g.now:.0f}  groups: {gi}")
    print("runs:", ", ".join(f"{k} {g.kinds.get(k, 0)}"
                             for k in ("trainer", "evaluator", "generic", "unknown")),
          f"(total {sum(g.kinds.values())})")
    print("states:", ", ".join(f"{k} {v}" for k, v in sorted(g.states.items())))
    print(f"files: {g.files}  dirs: {g.dirs}  entries: {g.files + g.dirs}  "
          f"bytes: {g.bytes} ({g.bytes / 2**20:.1f} MiB)  time: {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    main()
