#!/usr/bin/env bash
# Foundation benchmarks (issue: daemon, store, control socket, ugroctl):
#   1. median wall time of a whole `ugroctl status` process against a running daemon
#   2. the daemon's idle RSS
#   3. the daemon's idle CPU over a minute
# Usage: benches/foundation.sh [idle-seconds]   (needs hyperfine: apt-get install -y hyperfine)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
idle=${1:-60}
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install -y hyperfine)" >&2; exit 1; }

cargo build --release --locked -p ugro-monitor -p ugroctl >/dev/null 2>&1
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/logs"
cat > "$work/ugro.toml" <<TOML
[daemon]
state_dir = "$work/state"
socket = "$work/ugro.sock"
control_group = ""
[[roots]]
path = "$work/logs"
TOML
UGRO_LOG=warn target/release/ugro-monitor --config "$work/ugro.toml" 2>"$work/daemon.log" &
pid=$!
for _ in $(seq 100); do [ -S "$work/ugro.sock" ] && break; sleep 0.05; done
export UGRO_SOCKET="$work/ugro.sock"
target/release/ugroctl status >/dev/null

echo "== machine: $(nproc) cores, $(uname -r), $(git rev-parse --short HEAD)"
echo "== 1. whole 'ugroctl status' process (hyperfine, 20 warm-up, 300 runs)"
hyperfine -N --warmup 20 --runs 300 --export-json "$work/h.json" "target/release/ugroctl status" >/dev/null
python3 - "$work/h.json" <<'PY'
import json, sys, statistics
r = json.load(open(sys.argv[1]))["results"][0]
t = sorted(x * 1000 for x in r["times"])
print(f"median {r['median']*1000:.2f} ms, mean {r['mean']*1000:.2f} ms, p95 {t[int(len(t)*0.95)]:.2f} ms, min {r['min']*1000:.2f} ms")
PY
echo "   same, --json:"
hyperfine -N --warmup 20 --runs 300 --export-json "$work/h2.json" "target/release/ugroctl --json status" >/dev/null
python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(f\"median {r['median']*1000:.2f} ms\")" "$work/h2.json"

echo "== 2. idle RSS after those $((2*320)) requests"
grep -E 'VmRSS|VmHWM' /proc/$pid/status

echo "== 3. idle CPU over ${idle}s"
tck=$(getconf CLK_TCK)
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
sleep "$idle"
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
python3 -c "
ticks=($u1-$u0)+($s1-$s0); secs=ticks/$tck
print(f'{ticks} ticks = {secs*1000:.0f} ms CPU in ${idle} s = {100*secs/$idle:.3f} % of one core')"
grep -E 'VmRSS' /proc/$pid/status
