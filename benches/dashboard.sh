#!/usr/bin/env bash
# The dashboard with 2,000 runs and 50 nodes: server time and weight of the overview page, and
# the run page and its chart for a run of 200 epochs, over the [http] TCP listener.
# The daemon tracks the benches/gen_runs.py tree (2,000 runs, seed 1) plus one trainer run of
# 200 completed epochs (bench/run_200), with 50 [[nodes]]: this machine (host = "local", real
# checks) and 49 remote nodes whose SSH port refuses (unreachable, each with its failing checks
# and alerts on the page); timed after the runs are listed and every node swept:
# 5 warm-up requests, then 200 sequential ones per page.
# Measured: curl's time_starttransfer (request sent → first byte: routing, reading the state,
# rendering, gzip of the first block, on loopback) and time_total; the body size as sent
# without and with `Accept-Encoding: gzip`.
# Usage: benches/dashboard.sh [ROOT]   (default /tmp/runs-bench, generated if missing)
#        BIN_DIR=target/debug benches/dashboard.sh   to time another build
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
root=$(readlink -f "${1:-/tmp/runs-bench}")
bin=${BIN_DIR:-target/release}
n_requests=${N:-200}

if [ ! -d "$root" ] || [ -z "$(ls -A "$root" 2>/dev/null)" ]; then
    python3 benches/gen_runs.py "$root" --runs 2000 --max-epochs 50 --seed 1 --force
fi
if [ -z "${BIN_DIR:-}" ]; then
    cargo build --release -p ugro-monitor -p ugroctl >/dev/null
fi

work=$(mktemp -d /tmp/ugro-dashboard-bench.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# One run of 200 epochs, in its own root, for the run page.
run="$work/long/bench/run_200"
mkdir -p "$run"
echo '{"epochs": 200}' >"$run/config.json"
for i in $(seq 0 199); do
    mkdir -p "$run/epoch_$i"
    printf '\1\2' >"$run/epoch_$i/training_losses.pt"
    echo '{"step": 1}' >"$run/epoch_$i/optimizer_buffer.json"
    echo "{\"val\": {\"acc\": 0.$i, \"loss\": 1.0}}" >"$run/epoch_$i/validation_scores.json"
    touch -d "@$(( $(date +%s) - (200 - i) * 600 ))" "$run/epoch_$i"/*
done
echo "epoch 199" >"$run/train_val_0.log"
: >"$work/id"
{
    cat <<TOML
[daemon]
state_dir = "$work/state"
socket = "$work/ugro.sock"
control_group = ""

[http]
listen = "127.0.0.1:$port"

[[roots]]
path = "$root"
watch = "poll"

[[roots]]
path = "$work/long"
TOML
    printf '\n[[nodes]]\nname = "gpu-01"\nhost = "local"\n'
    for i in $(seq -w 2 50); do
        printf '\n[[nodes]]\nname = "gpu-%s"\nhost = "127.0.0.1"\nport = 1\nidentity_file = "%s"\n' "$i" "$work/id"
    done
} >"$work/ugro.toml"
UGRO_LOG=warn "$bin/ugro-monitor" --config "$work/ugro.toml" >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    n=$({ "$bin/ugroctl" --socket "$work/ugro.sock" --json runs 2>/dev/null || true; } |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))' 2>/dev/null || echo 0)
    swept=$({ "$bin/ugroctl" --socket "$work/ugro.sock" --json health 2>/dev/null || true; } |
        python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin)["nodes"] if n["last_check"]))' 2>/dev/null || echo 0)
    [ "$n" -ge 2001 ] && [ "$swept" -ge 50 ] && break
    sleep 0.5
done
echo "runs listed: $n; nodes swept: $swept; load: $(cut -d' ' -f1-3 /proc/loadavg); build: $bin ($(git rev-parse --short HEAD))"

for page in / /runs/bench/run_200 /chart/runs/bench/run_200; do
    url="http://127.0.0.1:$port$page"
    plain=$(curl -sf -o /dev/null -w '%{size_download}' "$url")
    gz=$(curl -sf -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "$url")
    for _ in 1 2 3 4 5; do curl -sf -o /dev/null -H 'Accept-Encoding: gzip' "$url"; done
    for _ in $(seq 1 "$n_requests"); do
        curl -sf -H 'Accept-Encoding: gzip' -o /dev/null -w '%{time_starttransfer} %{time_total}\n' "$url"
    done | PAGE="$page" PLAIN="$plain" GZ="$gz" python3 -c '
import os, sys
rows = [tuple(map(float, l.split())) for l in sys.stdin]
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
ttfb = [r[0] * 1000 for r in rows]; tot = [r[1] * 1000 for r in rows]
page, plain, gz = os.environ["PAGE"], int(os.environ["PLAIN"]), int(os.environ["GZ"])
print(f"{page}: {len(rows)} requests; first byte p50 {pct(ttfb,50):.1f} ms, p99 {pct(ttfb,99):.1f} ms; "
      f"total p50 {pct(tot,50):.1f} ms, p99 {pct(tot,99):.1f} ms; body {plain/1000:.0f} KB, gzip {gz/1000:.0f} KB")
'
done
