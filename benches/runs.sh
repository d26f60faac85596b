#!/usr/bin/env bash
# Run-tracking benchmarks (2000 runs, ~196k entries):
#   2. cold start: daemon (fresh state dir) until `ugroctl --json runs` lists every run, vs the
#      sequential Python scan (benches/scan_baseline.py) and `find -printf`; 3 rounds each after
#      one untimed warm-up of each (page cache warm); poll mode, plus one inotify round
#   3. file written -> visible in /v1/runs/<id> with inotify: p50/p99/max over 50 runs
#   4. poll mode (5 s) CPU over 60 s after the first listing, per cycle and share of one core
#   5. VmRSS / VmHWM of that daemon
# Usage: benches/runs.sh [ROOT]   (default /tmp/runs-bench, generated with gen_runs.py if missing)
#   BEFORE=DIR benches/runs.sh      also measures the ugro-monitor/ugroctl in DIR (e.g. the
#                                   target/release of an older commit) in the same run, first
# The measurements live in benches/runs_bench.py; the tree is left as found (section 3 removes
# the epoch dirs it writes).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
root=$(readlink -f "${1:-/tmp/runs-bench}")

if [ ! -d "$root" ] || [ -z "$(ls -A "$root" 2>/dev/null)" ]; then
    echo "== generating $root"
    python3 benches/gen_runs.py "$root" --runs 2000 --max-epochs 50 --seed 1 --force
fi

echo "== building release binaries"
cargo build --release --locked -p ugro-monitor -p ugroctl >/dev/null 2>&1 ||
    { echo "cargo build failed:" >&2; cargo build --release --locked -p ugro-monitor -p ugroctl; exit 1; }

work=$(mktemp -d /tmp/ugro-runs-bench.XXXXXX)
cleanup() {
    if [ -f "$work/pids" ]; then
        while read -r p; do kill "$p" 2>/dev/null || true; done <"$work/pids"
        sleep 0.5
        while read -r p; do kill -9 "$p" 2>/dev/null || true; done <"$work/pids"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
: >"$work/pids"

# Wait for a quiet machine: 1-minute load below 1.5, checked every 10 s, at most 5 minutes.
load_note="1-min load below 1.5 before timing"
for i in $(seq 0 30); do
    l1=$(cut -d' ' -f1 /proc/loadavg)
    if python3 -c "import sys; sys.exit(0 if float('$l1') < 1.5 else 1)"; then break; fi
    if [ "$i" -eq 30 ]; then load_note="load never dropped below 1.5 in 5 min (was $l1): timed anyway"; break; fi
    echo "   load $l1 >= 1.5, waiting (${i}0 s so far)"
    sleep 10
done
echo "== $load_note"
cores=$(nproc)
load_start=$(uptime | sed 's/.*load average: //')
rev=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates 2>/dev/null || echo "+dirty")

measure() { # LABEL [--bin-dir DIR]
    local label=$1; shift
    echo "== [$label] 2. cold start"
    python3 benches/runs_bench.py cold "$root" --work "$work" --out "$work/cold-$label.json" --rounds 3 "$@"
    echo "== [$label] 3. inotify latency"
    python3 benches/runs_bench.py latency "$root" --work "$work" --out "$work/lat-$label.json" --n 50 "$@"
    echo "== [$label] 4/5. poll CPU and RSS (60 s)"
    python3 benches/runs_bench.py cpu "$root" --work "$work" --out "$work/cpu-$label.json" \
        --clk-tck "$(getconf CLK_TCK)" --seconds 60 --interval 5 "$@"
}
if [ -n "${BEFORE:-}" ]; then
    measure before --bin-dir "$BEFORE"
fi
measure this
load_end=$(uptime | sed 's/.*load average: //')

echo
echo "================ runs benchmark summary ================"
echo "root $root ($(find "$root" | wc -l) entries), commit $rev, $(uname -r)"
echo "nproc $cores; load average (1, 5, 15 min) at start: $load_start; at end: $load_end"
echo "$load_note"
if [ -n "${BEFORE:-}" ]; then
    echo "---- before: $BEFORE"
    python3 benches/runs_bench.py summary "$work/cold-before.json" "$work/lat-before.json" "$work/cpu-before.json"
    echo "---- this checkout: target/release"
fi
python3 benches/runs_bench.py summary "$work/cold-this.json" "$work/lat-this.json" "$work/cpu-this.json"
echo "========================================================"
