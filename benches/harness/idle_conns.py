#!/usr/bin/env python3
"""Resident memory per idle keep-alive connection.

Opens N connections to 127.0.0.1:PORT, completes one keep-alive `GET PATH` on
each (with --websocket: a WebSocket opening handshake to PATH, answered 101), leaves them all idle, and compares the resident memory of the server's
session (every process whose session id is --pid: nginx's master and workers,
forked Python workers…) before and with them.

The connections are opened without blocking, a bounded number in flight at
once, so that 10,000 of them take a second or two: well inside the 15 s idle
timeout of the demos, so none is closed by the server before the reading.

Prints one line `IDLEJSON {...}` (KiB values) and exits 0; exits 1 with a
message when the server refused, closed or garbled connections. Bounded by
--deadline; every socket is closed before exiting.

    idle_conns.py --port 8080 --pid 12345 [-n 10000] [--path /] [--websocket]
"""
import argparse
import errno
import json
import os
import resource
import select
import socket
import sys
import time


def session_pids(sid):
    """PIDs whose session id is `sid` (the server started with setsid)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(")") + 2:].split()  # state ppid pgrp session …
        if int(rest[3]) == sid:
            pids.append(int(d))
    return sorted(pids)


def mem_kib(pids):
    """Sum of VmRSS and RssAnon (KiB) over `pids`."""
    rss = anon = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("RssAnon:"):
                        anon += int(line.split()[1])
        except OSError:
            pass
    return rss, anon


def response_complete(buf):
    """None while `buf` does not hold one whole response; else (status, keep_alive).
    Raises ValueError for what is not an HTTP/1.1 response this probe understands."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP response: {lines[0]!r}")
    status = int(parts[1])
    if status == 101:
        return status, True  # switched protocols: nothing follows the head
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    body = buf[end + 4:]
    if "content-length" in fields:
        if len(body) < int(fields["content-length"]):
            return None
    elif fields.get("transfer-encoding", "").lower() == "chunked":
        if not body.endswith(b"0\r\n\r\n"):
            return None
    else:
        raise ValueError("response without Content-Length or chunking")
    keep_alive = fields.get("connection", "").lower() != "close"
    return status, keep_alive


def open_idle(host, port, n, path, in_flight, deadline, websocket=False):
    """Open `n` connections, one completed request each (or a WebSocket handshake);
    returns (sockets, failures, last error)."""
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
    if websocket:
        req += (b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    req += b"\r\n"
    want = 101 if websocket else 200
    ep = select.epoll()
    pending = {}  # fd -> [socket, received bytes, request sent]
    done, failed, last_error = [], 0, None
    started = 0
    try:
        while (started < n or pending) and time.monotonic() < deadline:
            while started < n and len(pending) < in_flight:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                rc = s.connect_ex((host, port))
                if rc not in (0, errno.EINPROGRESS):
                    s.close()
                    failed += 1
                    last_error = os.strerror(rc)
                    started += 1
                    continue
                pending[s.fileno()] = [s, b"", False]
                ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLIN)
                started += 1
            for fd, ev in ep.poll(0.5):
                s, buf, sent = pending[fd]
                try:
                    if not sent and ev & select.EPOLLOUT:
                        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            raise OSError(err, os.strerror(err))
                        s.send(req)  # a few dozen bytes into an empty socket buffer
                        pending[fd][2] = True
                        ep.modify(fd, select.EPOLLIN)
                        continue
                    if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                        chunk = s.recv(65536)
                        if not chunk:
                            raise ConnectionError("closed before a whole response")
                        buf += chunk
                        pending[fd][1] = buf
                        got = response_complete(buf)
                        if got is None:
                            continue
                        status, keep_alive = got
                        if status != want:
                            raise ValueError(f"status {status}")
                        if not keep_alive:
                            raise ConnectionError("answered Connection: close")
                        ep.unregister(fd)
                        del pending[fd]
                        done.append(s)
                except (OSError, ValueError) as ex:
                    ep.unregister(fd)
                    del pending[fd]
                    s.close()
                    failed += 1
                    last_error = repr(ex)
    finally:
        for s, _, _ in pending.values():
            s.close()
        failed += len(pending)
        ep.close()
    return done, failed, last_error


def still_open(socks):
    """How many of `socks` the server has not closed (no EOF, no error pending)."""
    poller = select.poll()
    for s in socks:
        poller.register(s.fileno(), select.POLLIN)
    readable = {fd for fd, _ in poller.poll(0)}
    alive = 0
    for s in socks:
        if s.fileno() not in readable:
            alive += 1
    return alive


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the server's session leader")
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--path", default="/")
    ap.add_argument("--websocket", action="store_true", help="open WebSockets (101) instead of keep-alive GETs")
    ap.add_argument("--in-flight", type=int, default=256, help="connections being opened at once")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds idle before each reading")
    ap.add_argument("--deadline", type=float, default=60.0)
    a = ap.parse_args()
    host = "127.0.0.1"

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.n + 64:
        if hard < a.n + 64:
            sys.exit(f"idle_conns: RLIMIT_NOFILE hard limit {hard} is below n={a.n} + 64")
        resource.setrlimit(resource.RLIMIT_NOFILE, (a.n + 64, hard))
    deadline = time.monotonic() + a.deadline

    # First-request allocations and caches happen before the first reading.
    warm, failed, err = open_idle(host, a.port, 8, a.path, 8, deadline, a.websocket)
    for s in warm:
        s.close()
    if failed:
        sys.exit(f"idle_conns: warm-up failed: {err}")
    time.sleep(a.settle)
    rss0, anon0 = mem_kib(session_pids(a.pid))

    t0 = time.monotonic()
    socks, failed, err = open_idle(host, a.port, a.n, a.path, a.in_flight, deadline, a.websocket)
    t_open = time.monotonic() - t0
    try:
        time.sleep(a.settle)
        pids = session_pids(a.pid)
        rss1, anon1 = mem_kib(pids)
        alive = still_open(socks)
    finally:
        for s in socks:
            s.close()
    time.sleep(a.settle)
    rss2, _ = mem_kib(session_pids(a.pid))
    n = len(socks)
    res = {
        "n_requested": a.n, "n_open": n, "n_alive": alive, "failed": failed, "last_error": err,
        "server_pids": pids, "open_seconds": round(t_open, 2),
        "rss_before_kib": rss0, "rss_idle_kib": rss1, "rss_after_close_kib": rss2,
        "anon_before_kib": anon0, "anon_idle_kib": anon1,
        "rss_kib_per_conn": round((rss1 - rss0) / n, 3) if n else None,
        "anon_kib_per_conn": round((anon1 - anon0) / n, 3) if n else None,
    }
    print("IDLEJSON " + json.dumps(res), flush=True)
    if failed or alive != n:
        print(f"idle_conns: {failed} failed ({err}), {alive} of {n} still open", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
