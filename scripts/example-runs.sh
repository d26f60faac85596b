#!/usr/bin/env bash
# Writes a small example experiment tree, one run of each kind the daemon understands, so that
# `ugroctl runs` has something to show on a fresh checkout:
#
#   DIR/example/trainer_finished   trainer, 3/3 epochs, log quiet for 2 h     → finished
#   DIR/example/trainer_running    trainer, 4/10 epochs, log written now     → running (ETA ~1 h)
#   DIR/example/trainer_failed     trainer, 2/10 epochs, CUDA OOM traceback  → failed
#   DIR/example/evaluator          evaluation_scores.json, eval_*.log        → finished
#   DIR/example/generic            progress.json (missions), written now     → running
#
# Usage: scripts/example-runs.sh [DIR]      (DIR defaults to ./logs, the quick start's root)
#
# The layouts are described in docs/run-layouts.md. Times are set with `touch -d` so the
# statuses come out as listed with the default stall window (30 min). The runs started now go
# stale like real ones: 30 minutes later the "running" ones read as failed (no process). Run the
# script again to refresh them; it only ever writes under DIR/example.
set -euo pipefail

dir=${1:-./logs}
base="$dir/example"
mkdir -p "$base"

# file PATH CONTENT AGE   — write PATH and set its mtime AGE ago ("now", "20 minutes ago", …)
file() {
    mkdir -p "$(dirname "$1")"
    printf '%s\n' "$2" >"$1"
    touch -d "$3" "$1"
}

# epoch RUN N AGE ACCURACY LOSS   — one complete trainer epoch: the three files it must hold
epoch() {
    local e="$1/epoch_$2"
    file "$e/training_losses.pt" "example tensor bytes (any non-empty file)" "$3"
    file "$e/optimizer_buffer.json" '{"lr": 0.001, "step": '"$(($2 + 1))"'00}' "$3"
    file "$e/validation_scores.json" '{"accuracy": '"$4"', "loss": '"$5"'}' "$3"
}

# A finished trainer: config.json says 3 epochs, all three are complete.
r="$base/trainer_finished"
rm -rf "$r"
file "$r/config.json" '{"epochs": 3, "model": "resnet18", "lr": 0.001}' "3 hours ago"
epoch "$r" 0 "160 minutes ago" 0.61 1.12
epoch "$r" 1 "140 minutes ago" 0.72 0.84
epoch "$r" 2 "120 minutes ago" 0.78 0.66
file "$r/train_val_0.log" "epoch 2: accuracy 0.78 loss 0.66
training done" "120 minutes ago"

# A running trainer: 4 of 10 epochs done, one every 10 minutes; epoch_4 is being written and
# the log was written just now.
r="$base/trainer_running"
rm -rf "$r"
file "$r/config.json" '{"epochs": 10, "model": "resnet50", "lr": 0.0005}' "45 minutes ago"
epoch "$r" 0 "40 minutes ago" 0.41 1.90
epoch "$r" 1 "30 minutes ago" 0.55 1.41
epoch "$r" 2 "20 minutes ago" 0.63 1.18
epoch "$r" 3 "10 minutes ago" 0.68 1.02
file "$r/epoch_4/training_losses.pt" "partial" "now"
file "$r/train_val_0.log" "epoch 4: step 120/500 loss 0.98" "now"

# A failed trainer: its log ends in a traceback, nothing has been written for hours and no
# process belongs to it.
r="$base/trainer_failed"
rm -rf "$r"
file "$r/config.json" '{"epochs": 10, "model": "vit_large", "batch_size": 512}' "4 hours ago"
epoch "$r" 0 "220 minutes ago" 0.30 2.10
epoch "$r" 1 "200 minutes ago" 0.38 1.85
file "$r/train_val_0.log" "epoch 2: step 10/500 loss 1.80
Traceback (most recent call last):
  File \"train.py\", line 88, in <module>
    loss.backward()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)" "195 minutes ago"

# An evaluator: evaluation_scores.json makes the kind, and being valid JSON makes it complete.
r="$base/evaluator"
rm -rf "$r"
file "$r/eval_0.log" "evaluating checkpoint epoch_2
done" "90 minutes ago"
file "$r/evaluation_scores.json" '{"test": {"accuracy": 0.77, "f1": 0.74}}' "90 minutes ago"

# A generic run: it reports its own progress in progress.json (written just now).
r="$base/generic"
rm -rf "$r"
file "$r/progress.json" '{"mission_current": 40, "mission_total": 100, "status": "running", "rate_per_hour": 120}' "now"
file "$r/worker.log" "mission 40/100 done" "now"

echo "example runs written under $base:"
for r in trainer_finished trainer_running trainer_failed evaluator generic; do
    echo "  $base/$r"
done
