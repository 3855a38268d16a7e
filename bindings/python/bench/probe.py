#!/usr/bin/env python3
"""Per-request costs of one server under wrk, layout (a): the server pinned to
CPU 1, ``wrk -t1 -c64`` to CPU 0, GET /. For each thread of the server: user
and system CPU microseconds, voluntary and involuntary context switches and
minor page faults per request (from /proc/PID/task/*/stat and status), plus
the requests answered per second.

    python3 bindings/python/bench/probe.py [--duration 5] [--perf] NAME=COMMAND ...

COMMAND may use {PORT}. ``--perf`` also records ``perf record -g`` of the
server during the measured run (into /tmp/probe-NAME.perf). Wrap in
``flock /tmp/warpcore-bench.lock`` on a shared machine.
"""

import argparse
import json
import os
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time

from _proc import free_port, stop_group

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
LUA = os.path.join(ROOT, "benches", "harness", "lua", "report.lua")
HZ = os.sysconf("SC_CLK_TCK")



def wait_port(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not answer")


def threads(pid):
    """tid -> (comm, utime ticks, stime ticks, minflt, voluntary, involuntary)"""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        minflt, utime, stime = int(fields[7]), int(fields[11]), int(fields[12])
        vol = int(re.search(r"voluntary_ctxt_switches:\s+(\d+)", status).group(1))
        invol = int(re.search(r"nonvoluntary_ctxt_switches:\s+(\d+)", status).group(1))
        out[tid] = (comm, utime, stime, minflt, vol, invol)
    return out


def cpu_ticks():
    """Busy ticks of CPU 0 and CPU 1 (everything but idle and iowait)."""
    out = []
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(("cpu0 ", "cpu1 ")):
                v = list(map(int, line.split()[1:]))
                out.append(sum(v) - v[3] - v[4])
    return out


def interrupts():
    """Rescheduling and function-call interrupts (IPIs) taken by CPU 0 and CPU 1."""
    out = {}
    with open("/proc/interrupts") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in ("RES:", "CAL:"):
                out[parts[0][:3]] = (int(parts[1]), int(parts[2]))
    return out


def wrk(port, seconds):
    argv = ["taskset", "-c", "0", "wrk", "-t1", "-c64", f"-d{seconds}s", "-s", LUA, f"http://127.0.0.1:{port}/"]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    i0, c0, t0 = interrupts(), cpu_ticks(), time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - t0
    c1, i1 = cpu_ticks(), interrupts()
    wrk.ipi = {k: (i1[k][0] - i0[k][0], i1[k][1] - i0[k][1]) for k in i0}
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk.cpu = 100 * (ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime) / wall
    wrk.busy = [100 * (b - a) / HZ / wall for a, b in zip(c0, c1)]
    m = re.search(r"^WRKJSON (\{.*\})$", p.stdout, re.M)
    if not m:
        raise SystemExit(f"wrk: {p.stdout} {p.stderr}")
    r = json.loads(m.group(1))
    return r["requests"], r["requests"] / (r["duration_us"] / 1e6)


def probe(name, command, duration, perf):
    port = free_port()
    argv = ["taskset", "-c", "1"] + shlex.split(command.replace("{PORT}", str(port)))
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port, proc)
        pid = proc.pid
        # run.sh and the like exec the server: the pid is the server's.
        wrk(port, 1)
        rec = None
        if perf:
            rec = subprocess.Popen(["perf", "record", "-F", "2999", "-g", "-p", str(pid), "-o", f"/tmp/probe-{name}.perf"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
        t0 = threads(pid)
        n, rps = wrk(port, duration)
        t1 = threads(pid)
        if rec:
            rec.send_signal(signal.SIGINT)
            rec.wait()
        rows = []
        tot = [0, 0, 0, 0, 0]
        for tid, b in t1.items():
            a = t0.get(tid, (b[0], 0, 0, 0, 0, 0))
            d = [b[i] - a[i] for i in range(1, 6)]
            if not any(d):
                continue
            tot = [x + y for x, y in zip(tot, d)]
            rows.append((tid, b[0], d))
        per = lambda v: v / n  # noqa: E731
        us = 1e6 / HZ
        print(f"{name}: {rps:,.0f} req/s, {n} requests; per request: user {per(tot[0]) * us:.2f} us, "
              f"sys {per(tot[1]) * us:.2f} us, minflt {per(tot[2]):.4f}, vol cs {per(tot[3]):.4f}, "
              f"invol cs {per(tot[4]):.4f}; req per srv CPU-s {n / max(1e-9, (tot[0] + tot[1]) / HZ):,.0f}; "
              f"wrk CPU {wrk.cpu:.0f}%, CPU0 busy {wrk.busy[0]:.0f}%, CPU1 busy {wrk.busy[1]:.0f}%; per request "
              + ", ".join(f"{k} CPU0 {v[0] / n:.3f} CPU1 {v[1] / n:.3f}" for k, v in wrk.ipi.items()))
        for tid, comm, d in rows:
            print(f"    {tid:>7} {comm:<16} user {d[0] / HZ:.2f}s sys {d[1] / HZ:.2f}s minflt {d[2]} vol {d[3]} invol {d[4]}")
        sys.stdout.flush()
    finally:
        stop_group(proc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--perf", action="store_true")
    ap.add_argument("servers", nargs="+", metavar="NAME=COMMAND")
    a = ap.parse_args()
    for r in range(a.rounds):
        for spec in a.servers:
            name, _, command = spec.partition("=")
            probe(name, command, a.duration, a.perf)


if __name__ == "__main__":
    main()
