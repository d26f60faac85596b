#!/usr/bin/env bash
# /metrics with 2,000 runs: answer time and size of GET /metrics over the [http] TCP listener,
# as Prometheus scrapes it (OpenMetrics) and as curl/promtool get it (text format).
# The daemon tracks the benches/gen_runs.py tree (2,000 runs, seed 1; ~500 running) with the
# default cap (http.metrics_max_runs = 500) and one local node; timed after the first scan is
# listed and the first sweep is done: 5 warm-up requests, then 50 sequential ones per format.
# Measured: curl's time_total (connect + request + render + transfer on loopback) and the body.
# Usage: benches/metrics_scrape.sh [ROOT]   (default /tmp/runs-bench, generated if missing)
#        BIN_DIR=target/debug benches/metrics_scrape.sh   to time another build
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
root=$(readlink -f "${1:-/tmp/runs-bench}")
bin=${BIN_DIR:-target/release}

if [ ! -d "$root" ] || [ -z "$(ls -A "$root" 2>/dev/null)" ]; then
    python3 benches/gen_runs.py "$root" --runs 2000 --max-epochs 50 --seed 1 --force
fi
if [ -z "${BIN_DIR:-}" ]; then
    cargo build --release --locked -p ugro-monitor -p ugroctl >/dev/null
fi

work=$(mktemp -d /tmp/ugro-metrics-bench.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; sleep 0.3; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/ugro.toml" <<TOML
[daemon]
state_dir = "$work/state"
socket = "$work/ugro.sock"
control_group = ""

[http]
listen = "127.0.0.1:$port"

[[roots]]
path = "$root"
watch = "poll"
TOML
UGRO_LOG=warn "$bin/ugro-monitor" --config "$work/ugro.toml" >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    # `ugroctl runs` exits 1 when runs failed: only its JSON matters here.
    n=$({ "$bin/ugroctl" --socket "$work/ugro.sock" --json runs 2>/dev/null || true; } |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))' 2>/dev/null || echo 0)
    [ "$n" -ge 2000 ] && curl -sf -o "$work/first.txt" "http://127.0.0.1:$port/metrics" &&
        grep -q '^ugro_check_passed{' "$work/first.txt" && break
    sleep 0.5
done
echo "runs listed: $n; load: $(cut -d' ' -f1-3 /proc/loadavg); build: $bin ($(git rev-parse --short HEAD))"

for fmt in text openmetrics; do
    accept=()
    [ "$fmt" = openmetrics ] && accept=(-H 'Accept: application/openmetrics-text;version=1.0.0')
    for _ in 1 2 3 4 5; do curl -sf "${accept[@]}" -o /dev/null "http://127.0.0.1:$port/metrics"; done
    for _ in $(seq 1 50); do
        curl -sf "${accept[@]}" -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$port/metrics"
    done | python3 -c '
import sys
rows = [tuple(map(float, l.split())) for l in sys.stdin]
t = sorted(r[0] * 1000 for r in rows)
size = rows[-1][1]
print(f"'"$fmt"': {len(t)} requests, median {t[len(t)//2]:.2f} ms, p90 {t[int(len(t)*0.9)]:.2f} ms, max {t[-1]:.2f} ms, body {size/1024:.1f} KiB")'
done
curl -sf "http://127.0.0.1:$port/metrics" | awk '!/^#/ && NF {n++} END {print "samples:", n}'
curl -sf "http://127.0.0.1:$port/metrics" | grep -E '^ugro_run_series_dropped|^ugro_runs\{.*status="(running|stuck)"'
