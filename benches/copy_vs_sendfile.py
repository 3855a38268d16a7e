#!/usr/bin/env python3
"""Small static files: copying into the write buffer (pread) versus sendfile.

Runs demo binaries built with different COPY_MAX values (src/file/respond.rs)
in layout (a) of ../shared/bench: the server pinned to CPU 1 with one worker,
wrk pinned to CPU 0 (-t1 -c64), rounds interleaved, a fresh server per run.
Reports requests/s and requests per server CPU-second (the server's
utime+stime from /proc over the measured run).

    python3 benches/copy_vs_sendfile.py NAME=DEMO [NAME=DEMO ...] [--sizes 1024,4096] [--rounds 3] [--pipeline 16]

Each DEMO is a build/demo linked against a library built with the COPY_MAX
to compare, e.g. for 0 (always sendfile) and 65536 (copy up to 64 KiB):

    sed -i 's/^pub(crate) const COPY_MAX: u64 = .*;/pub(crate) const COPY_MAX: u64 = 0;/' src/file/respond.rs
    CARGO_TARGET_DIR=/tmp/wc-0 cargo build --release --lib
    cc -O2 -Iinclude examples/c/demo.c -o /tmp/wc-0/demo -L/tmp/wc-0/release -lwarpcore \\
       -Wl,-rpath,/tmp/wc-0/release -lpthread
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HZ = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


PIPELINE_LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench", "lua", "pipeline.lua")


def wrk(port, path, seconds, depth=1):
    cmd = ["taskset", "-c", "0", "wrk", "-t1", "-c64", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"]
    if depth > 1:
        cmd[5:5] = ["-s", PIPELINE_LUA]
        cmd += ["--", str(depth)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"wrk saw errors:\n{out}")
    return rps


def run(demo, www, path, seconds, depth):
    proc = subprocess.Popen(
        ["taskset", "-c", "1", demo, "--host", "127.0.0.1", "--port", "0", "--workers", "1", "--static", f"/={www}"],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        port = int(line.strip().rsplit(":", 1)[1])
        wrk(port, path, 2, depth)  # warm-up
        before, t0 = cpu_ticks(proc.pid), time.monotonic()
        rps = wrk(port, path, seconds, depth)
        used = (cpu_ticks(proc.pid) - before) / HZ
        wall = time.monotonic() - t0
        return rps, rps * wall / used if used else float("nan"), 100 * used / wall
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demos", nargs="+", help="NAME=PATH_TO_DEMO")
    ap.add_argument("--sizes", default="1024,4096,16384,65536")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--pipeline", type=int, default=1, help="requests per write (wrk pipeline.lua of ../shared/bench)")
    args = ap.parse_args()
    demos = [d.split("=", 1) for d in args.demos]
    sizes = [int(s) for s in args.sizes.split(",")]
    www = tempfile.mkdtemp(prefix="warpcore-copy-vs-sendfile-")
    try:
        for size in sizes:
            with open(os.path.join(www, f"{size}.bin"), "wb") as f:
                f.write(bytes(i % 251 for i in range(size)))
        results = {}
        for r in range(args.rounds):
            for size in sizes:
                for name, demo in demos:
                    rps, per_cpu, cpu = run(demo, www, f"/{size}.bin", args.seconds, args.pipeline)
                    results.setdefault((size, name), []).append((rps, per_cpu, cpu))
                    print(f"round {r + 1} {size:>6} B {name:>10}: {rps:9.0f} req/s  {per_cpu:9.0f} req/srv-CPU-s  srv CPU {cpu:5.1f}%",
                          flush=True)
        print("\nmedians")
        print(f"{'size':>8} {'build':>10} {'req/s':>9} {'req/CPU-s':>10} {'srv CPU%':>8}")
        for size in sizes:
            for name, _ in demos:
                rows = results[(size, name)]
                med = [statistics.median(x[i] for x in rows) for i in range(3)]
                print(f"{size:>8} {name:>10} {med[0]:9.0f} {med[1]:10.0f} {med[2]:8.1f}")
    finally:
        shutil.rmtree(www)


if __name__ == "__main__":
    main()
