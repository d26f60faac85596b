#!/usr/bin/env python3
"""The systemd watchdog of an idle daemon, by hand: starts ugro-monitor with NOTIFY_SOCKET on a
datagram socket of its own and WATCHDOG_USEC=4000000 (a ping due every 2 s), connects no client
at all, and counts the WATCHDOG=1 pings per minute for SECONDS after READY=1, with any STATUS=
line that says the watchdog is held.

    python3 benches/idle_watchdog.py target/release/ugro-monitor 300

Standard library only.
"""
import os, socket, subprocess, sys, time, tempfile
d = tempfile.mkdtemp(prefix="wd5-")
ns = os.path.join(d, "notify.sock")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(ns); s.settimeout(0.5)
cfg = os.path.join(d, "ugro.toml")
open(cfg, "w").write(f'[daemon]\nstate_dir = "{d}/state"\nsocket = "{d}/ugro.sock"\ncontrol_group = ""\n')
env = dict(os.environ, NOTIFY_SOCKET=ns, WATCHDOG_USEC="4000000", UGRO_LOG="info")
log = open(os.path.join(d, "daemon.log"), "wb")
p = subprocess.Popen([sys.argv[1], "--config", cfg], env=env, stdout=log, stderr=log)
secs = float(sys.argv[2]); t0 = None; pings = []; status = []
end = time.time() + secs + 30
while time.time() < end:
    try:
        m = s.recv(4096).decode()
    except socket.timeout:
        continue
    for l in m.splitlines():
        if l == "READY=1": t0 = time.time(); end = t0 + secs
        elif l == "WATCHDOG=1" and t0: pings.append(time.time() - t0)
        elif l.startswith("STATUS=") and t0: status.append((round(time.time() - t0, 1), l))
p.terminate(); p.wait(10)
gaps = [b - a for a, b in zip(pings, pings[1:])]
print(f"idle {secs:.0f} s after READY=1 with WATCHDOG_USEC=4000000, no client connected")
print(f"pings: {len(pings)}; largest gap {max(gaps):.2f} s; first {pings[0]:.1f} s, last {pings[-1]:.1f} s")
for m in range(int(secs // 60) + 1):
    print(f"  minute {m}: {sum(1 for x in pings if m*60 <= x < (m+1)*60)} pings")
print("STATUS lines after READY:", status or "none")
print("daemon exit:", p.returncode)
