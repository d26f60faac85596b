#!/usr/bin/env bash
# Stop with a full state disk (issue 13): the daemon's state dir on an 8 MiB tmpfs, filled with
# a filler file; 150 runs appear (unstorable); SIGTERM; how long the stop takes and whether a
# start right after works. Needs root (mount) and the sqlite3 shell.
#   benches/store_stop.sh [BIN_DIR]     (default target/release of this checkout)
set -uo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
B=$(readlink -f "${1:-target/release}")
command -v sqlite3 >/dev/null || { echo "needs the sqlite3 shell" >&2; exit 1; }
W=$(mktemp -d /tmp/ugro-store-stop.XXXX); mkdir -p $W/state $W/logs
trap 'kill $pid $pid2 2>/dev/null; umount -l $W/state 2>/dev/null; rm -rf $W' EXIT
pid=; pid2=
mount -t tmpfs -o size=8m,mode=0750 tmpfs $W/state || { echo "cannot mount a tmpfs (root?)" >&2; exit 1; }
printf '[daemon]\nstate_dir = "%s/state"\nsocket = "%s/s.sock"\ncontrol_group = ""\n[[roots]]\npath = "%s/logs"\nstall_after = "30m"\noutdated_after = "3000d"\n' $W $W $W > $W/c.toml
$B/ugro-monitor --config $W/c.toml > $W/log 2>&1 & pid=$!
for i in $(seq 50); do $B/ugroctl --socket $W/s.sock status >/dev/null 2>&1 && break; sleep 0.1; done
# The daemon's WAL emptied, so its next writes need new blocks; then the disk is filled.
sqlite3 $W/state/ugro.db "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
dd if=/dev/zero of=$W/state/filler bs=16k 2>/dev/null
for i in $(seq 150); do d=$W/logs/g$((i%4))/run$i; mkdir -p $d; echo '{"epochs": 12}' > $d/config.json; for e in $(seq 0 11); do mkdir -p $d/epoch_$e; echo x > $d/epoch_$e/training_losses.pt; echo '{}' > $d/epoch_$e/optimizer_buffer.json; echo '{"val":{"acc":0.5}}' > $d/epoch_$e/validation_scores.json; done; done
sleep 8
s=$(date +%s%N); kill -TERM $pid; while kill -0 $pid 2>/dev/null; do sleep 0.05; done; e=$(date +%s%N)
echo "stop took $(( (e - s) / 1000000 )) ms"
rm -f $W/state/filler
$B/ugro-monitor --config $W/c.toml > $W/log2 2>&1 & pid2=$!
sleep 2; if kill -0 $pid2 2>/dev/null; then echo "restart: running"; kill -TERM $pid2; wait $pid2; else echo "restart: exited: $(tail -2 $W/log2)"; fi
echo "\"database is locked\" in the first daemon's log: $(grep -c "database is locked" $W/log)"
