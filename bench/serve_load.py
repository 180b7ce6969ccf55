#!/usr/bin/env python3
"""wrec serve against wasmtime serve: the server's CPU time per request.

Each round starts every configuration in turn (rotating the order), on a
free loopback port, with the same component: `wasmtime serve`, and `wrec
serve` at each interval asked (`10s` is sampling effectively off). It sends
the same load (CLIENTS keep-alive connections, REQUESTS requests in all,
each checked for status 200 and a body), then stops the server with SIGINT.
A server's cost is the CPU time of all its threads during the load (summed
from /proc/PID/task/*/schedstat, in ns), so start-up and compilation are
left out; the ratio is per round, against the same round's `wasmtime
serve`. Also printed: requests a second (the Python clients limit this on
a small machine; the CPU ratio does not depend on it).

With `--idle SECONDS`, each configuration instead serves a few requests
(so every worker has run one) and then waits: printed is the server's CPU
time per second of that wait.

    python3 bench/serve_load.py --wasmtime PATH/wasmtime --wrec target/dist/wrec
    python3 bench/serve_load.py --wasmtime PATH/wasmtime --wrec target/dist/wrec --idle 10
"""

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def task_cpu_ns(pid):
    """CPU time of every live thread of `pid`, in ns."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def start(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        m = re.search(r"Serving HTTP on http://([\d.]+):(\d+)/", line)
        if m:
            # Keep draining stderr so the server never blocks on it.
            threading.Thread(target=p.stderr.read, daemon=True).start()
            return p, int(m.group(2))
    p.kill()
    raise SystemExit(f"serve_load: {cmd[0]} did not start serving: {line!r}")


def load(port, clients, requests, path):
    errors = []

    def client(n):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for _ in range(n):
                c.request("GET", path)
                r = c.getresponse()
                body = r.read()
                if r.status != 200 or not body:
                    errors.append(f"status {r.status}, {len(body)} bytes")
                    return
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    per = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    ts = [threading.Thread(target=client, args=(n,)) for n in per]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit(f"serve_load: {len(errors)} clients failed, first: {errors[0]}")
    return time.monotonic() - t0


def run_one(cmd, args):
    p, port = start(cmd)
    try:
        # One warm-up request (the first instantiation), not counted.
        load(port, 1, 1, args.path)
        cpu0 = task_cpu_ns(p.pid)
        wall = load(port, args.clients, args.requests, args.path)
        cpu = task_cpu_ns(p.pid) - cpu0
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return cpu, wall


def run_idle(cmd, args):
    p, port = start(cmd)
    try:
        load(port, args.clients, 10 * args.clients, args.path)
        cpu0 = task_cpu_ns(p.pid)
        time.sleep(args.idle)
        return (task_cpu_ns(p.pid) - cpu0) / args.idle
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wasmtime", required=True, help="the wasmtime CLI")
    ap.add_argument("--wrec", required=True, help="the wrec binary")
    ap.add_argument("--component", default="fixtures/http-handler.component.wasm")
    ap.add_argument("--path", default="/bench?n=5", help="the request path (n: units of work)")
    ap.add_argument("--intervals", default="10s,10ms,1ms", help="wrec's intervals, comma-separated")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=400, help="requests a run")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--idle", type=float, help="measure an idle server for this many seconds instead")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="serve-load-")
    configs = [("wasmtime serve", [args.wasmtime, "serve", "--addr", "127.0.0.1:0", args.component])]
    for iv in args.intervals.split(","):
        trace = os.path.join(tmp, f"t-{iv}.wrec")
        configs.append(
            (f"wrec serve --interval {iv}",
             [args.wrec, "serve", "--quiet", "--force", "--interval", iv, "--addr", "127.0.0.1:0", "-o", trace, args.component])
        )
    if args.idle:
        print(f"{args.component}, idle for {args.idle} s after {10 * args.clients} requests")
        for name, cmd in configs:
            print(f"{name:<28} {run_idle(cmd, args) / 1e6:8.2f} ms of CPU a second")
        return

    cpu = {name: [] for name, _ in configs}
    rps = {name: [] for name, _ in configs}
    for r in range(args.rounds):
        order = configs[r % len(configs):] + configs[: r % len(configs)]
        for name, cmd in order:
            c, w = run_one(cmd, args)
            cpu[name].append(c / args.requests)
            rps[name].append(args.requests / w)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    base = configs[0][0]
    print(f"{args.component} {args.path}, {args.clients} clients, {args.requests} requests a run, {args.rounds} rounds")
    print(f"{'server':<28} {'CPU us/request':>15} {'ratio to wasmtime (min-max)':>30} {'requests/s':>11}")
    for name, _ in configs:
        ratios = [a / b for a, b in zip(cpu[name], cpu[base])]
        print(
            f"{name:<28} {statistics.median(cpu[name]) / 1e3:>15.1f} "
            f"{statistics.median(ratios):>12.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
            f" {statistics.median(rps[name]):>11.0f}"
        )


if __name__ == "__main__":
    main()
