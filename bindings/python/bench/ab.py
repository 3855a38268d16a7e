#!/usr/bin/env python3
"""Interleaved same-run comparison in layout (a), for when the shared harness
(../shared/bench/run-peers.sh) cannot be used (its fixed ports taken by another
run). Server `taskset -c 1`, `taskset -c 0 wrk -t1 -c64`, GET /, a free port
per start, fresh start per run, rounds interleaved A B C A B C; prints per-round
req/s, the server session's CPU share and req per server CPU-second, and the
median ratio of each server to the first.

    python3 bindings/python/bench/ab.py --rounds 3 -- \\
        granian='{BENCH}/peers/python/run.sh granian {PORT} 1' \\
        native='python3 examples/python/demo.py --port {PORT} --workers 1'

Everything stays on 127.0.0.1; servers are stopped by their session id.
"""

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

from _proc import free_port, stop_group
import urllib.request

BENCH = os.environ.get("BENCH_DIR", "/work/shared/bench")
TICK = os.sysconf("SC_CLK_TCK")



def session_ticks(sid: int) -> int:
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 (session), counted after ")"
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def busy_ticks() -> int:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    return sum(parts) - parts[3] - parts[4]  # minus idle and iowait


def wrk(port: int, seconds: int) -> float:
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", "-c64", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


def run_one(cmd: str, seconds: int, warmup: int) -> dict:
    port = free_port()
    argv = shlex.split(cmd.replace("{PORT}", str(port)).replace("{BENCH}", BENCH))
    proc = subprocess.Popen(
        ["taskset", "-c", "1"] + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read() == b"Hello, World!":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"server did not answer: {cmd}")
            time.sleep(0.1)
        wrk(port, warmup)
        t0, b0, w0 = session_ticks(proc.pid), busy_ticks(), time.monotonic()
        rps = wrk(port, seconds)
        t1, b1, w1 = session_ticks(proc.pid), busy_ticks(), time.monotonic()
        cpu = (t1 - t0) / TICK / (w1 - w0)
        machine = (b1 - b0) / TICK / (w1 - w0)
        return {"rps": rps, "cpu": cpu, "eff": rps / cpu if cpu else 0.0, "machine": machine}
    finally:
        stop_group(proc)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("servers", nargs="+", metavar="NAME=COMMAND")
    args = ap.parse_args()
    servers = [s.split("=", 1) for s in args.servers]
    results = {name: [] for name, _ in servers}
    for r in range(args.rounds):
        for name, cmd in servers:
            res = run_one(cmd, args.duration, args.warmup)
            results[name].append(res)
            print(
                f"round {r + 1} {name:22s} {res['rps']:9.0f} req/s  srv CPU {res['cpu'] * 100:5.1f}%  "
                f"{res['eff']:9.0f} req/srv-CPU-s  machine busy {res['machine'] * 100:5.0f}%",
                flush=True,
            )
    ref = servers[0][0]
    print(f"\nmedians ({args.rounds} rounds; ratios are medians of per-round ratios to {ref})")
    print(f"{'server':22s} {'req/s':>9s} {'x ' + ref:>12s} {'srv CPU':>8s} {'req/CPU-s':>10s} {'x ' + ref + ' eff':>14s}")
    for name, _ in servers:
        rs = results[name]
        ratio = statistics.median(a["rps"] / b["rps"] for a, b in zip(rs, results[ref]))
        eratio = statistics.median(a["eff"] / b["eff"] for a, b in zip(rs, results[ref]) if b["eff"])
        print(
            f"{name:22s} {statistics.median(x['rps'] for x in rs):9.0f} {ratio:12.2f} "
            f"{statistics.median(x['cpu'] for x in rs) * 100:7.0f}% {statistics.median(x['eff'] for x in rs):10.0f} {eratio:14.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
