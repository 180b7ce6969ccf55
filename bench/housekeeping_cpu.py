#!/usr/bin/env python3
"""CPU time of each of wrec's threads while it runs, from /proc (issue 16:
what the background thread costs when nothing happens).

Usage (from the repository root, after `cargo build --workspace --release`):
  python3 bench/housekeeping_cpu.py --max-size 64MiB --interval 50ms \
      --dir /tmp/hk::. fixtures/hostcalls.wasm 150 .

Runs target/release/wrec with the arguments given (in /tmp/hk), reads every
thread's /proc/PID/task/TID/schedstat (ns on the CPU) and voluntary context
switches every 50 ms, and prints what each thread used between the first
and the last reading.
"""
import glob
import os
import subprocess
import sys
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
wrec = os.path.join(root, "target/release/wrec")
os.makedirs("/tmp/hk", exist_ok=True)
args = [wrec] + [os.path.abspath(a) if a.endswith(".wasm") else a for a in sys.argv[1:]]
p = subprocess.Popen(args, cwd="/tmp/hk", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
t0 = time.time()
first, last = {}, {}
while p.poll() is None:
    for d in glob.glob(f"/proc/{p.pid}/task/*"):
        try:
            comm = open(d + "/comm").read().strip()
            ns = int(open(d + "/schedstat").read().split()[0])
            sw = int([l for l in open(d + "/status") if l.startswith("voluntary_ctxt")][0].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        key = (d.rsplit("/", 1)[-1], comm)
        first.setdefault(key, (time.time(), ns, sw))
        last[key] = (time.time(), ns, sw)
    time.sleep(0.05)
print("wall %.2f s; %s" % (time.time() - t0, p.stderr.read().decode().strip().splitlines()[-1]))
for k, (t, ns, sw) in sorted(last.items()):
    t1, ns1, sw1 = first[k]
    if t - t1 < 0.5:
        continue
    print(
        f"{k[1]:16s} cpu {(ns - ns1) / 1e6:8.2f} ms over {t - t1:5.2f} s = {(ns - ns1) / 1e7 / (t - t1):.4f}% of a core;"
        f" {sw - sw1} wake-ups ({(ns - ns1) / 1e3 / max(sw - sw1, 1):.1f} us each)"
    )
