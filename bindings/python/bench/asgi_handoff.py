#!/usr/bin/env python3
"""Counts, not speed: what one request costs the ASGI server in hand-offs.

Serves a hello ASGI app with ``warpcore.asgi.ASGIServer`` in this process,
sends a fixed number of requests over C keep-alive connections from a
client process (one request in flight per connection), and prints per
request: loop wake-ups (worker -> event loop), calls handed over, and the
server threads' context switches (voluntary + involuntary, from
/proc/self/task/*/status), by thread name.

    python3 bindings/python/bench/asgi_handoff.py [--requests 20000] [--conns 1,16] [--loops 1,2] [--loop asyncio]
"""

import argparse
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from warpcore.asgi import ASGIServer  # noqa: E402

CLIENT = textwrap.dedent(
    """
    import selectors, socket, sys
    port, total, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    req = b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
    sel = selectors.DefaultSelector()
    left = total
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(req); left -= 1
        sel.register(s, selectors.EVENT_READ, bytearray())
    done = 0
    while done < total:
        for key, _ in sel.select():
            buf = key.data
            buf += key.fileobj.recv(65536)
            while b"Hello, World!" in buf:
                i = buf.index(b"Hello, World!") + 13
                del buf[:i]
                done += 1
                if left > 0:
                    key.fileobj.sendall(req); left -= 1
    """
)


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, World!"})


def switches() -> dict:
    import threading

    names = {str(t.native_id): t.name for t in threading.enumerate()}
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = names.get(tid) or open(f"/proc/self/task/{tid}/comm").read().strip()
            n = 0
            for line in open(f"/proc/self/task/{tid}/status"):
                if "ctxt_switches" in line:
                    n += int(line.split()[1])
        except OSError:
            continue
        out[tid] = (name, n)
    return out


def measure(requests: int, conns: int, loops: int, loop: str) -> None:
    server = ASGIServer(hello, port=0, loops=loops, loop=loop, access_log=False, lifespan="off").start()
    try:
        warm = subprocess.run([sys.executable, "-c", CLIENT, str(server.port), "500", str(conns)], timeout=120)
        assert warm.returncode == 0
        before_sw, before = switches(), server.stats()
        run = subprocess.run([sys.executable, "-c", CLIENT, str(server.port), str(requests), str(conns)], timeout=600)
        assert run.returncode == 0
        after_sw, after = server.stats(), switches()
    finally:
        server.shutdown(1.0)
    n = after_sw["requests"] - before["requests"]
    wake = (after_sw["loop_wakeups"] - before["loop_wakeups"]) / n
    posts = (after_sw["loop_posts"] - before["loop_posts"]) / n
    per_thread = {}
    for tid, (name, count) in after.items():
        base = before_sw.get(tid, (name, 0))[1]
        key = name.rstrip("0123456789-_").replace("ThreadPoolExecutor", "pool")
        per_thread[key] = per_thread.get(key, 0) + (count - base) / n
    threads = ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_thread.items()) if v >= 0.005)
    print(f"loops={loops} conns={conns} loop={loop}: {n} requests; per request: loop wake-ups {wake:.3f}, "
          f"calls handed over {posts:.2f}, context switches: {threads}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--conns", default="1,16")
    p.add_argument("--loops", default="1,2")
    p.add_argument("--loop", default="asyncio")
    a = p.parse_args()
    for loops in map(int, a.loops.split(",")):
        for conns in map(int, a.conns.split(",")):
            measure(a.requests, conns, loops, a.loop)


if __name__ == "__main__":
    main()
