#!/usr/bin/env bash
# The quick start in one command: builds ugro-monitor and ugroctl (release), writes the example
# runs under ./logs/example the first time, and runs the daemon in the foreground on
# config/quickstart.toml: this machine as the only node, ./logs as the experiment root, SQLite
# and the control socket under ./.ugro. No root needed; Ctrl-C stops it.
#
#   UGRO_BIN_DIR=DIR   use the binaries in DIR instead of building them (the tests do)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
if [ -n "${UGRO_BIN_DIR:-}" ]; then
  bin="$UGRO_BIN_DIR"
else
  cargo build --release --locked -p ugro-monitor -p ugroctl
  bin=target/release
fi
[ -d logs/example ] || scripts/example-runs.sh
echo "quickstart: in another terminal: $bin/ugroctl --socket .ugro/ugro.sock runs" >&2
exec "$bin/ugro-monitor" --config config/quickstart.toml
