#!/usr/bin/env python3
"""Upload load: N clients each POST large bodies to 127.0.0.1:PORT, back to back.

Each client opens one keep-alive connection and uploads bodies of --size bytes
(framed by Content-Length, or chunked with --chunked) until --duration seconds
have passed, then finishes the upload in flight — every body counted was sent
whole and answered. Each upload must be answered 200; an answer that is a
decimal number (the C demo's POST /upload) must equal the body's size. Then
each client sends `GET /` on the same connection and must get its 200 answer:
the server can only parse that request once it has read past the end of the
last body, so the answer proves that every byte was received by the server
(nginx, for one, answers `return 200` before it has discarded the body).
The clock stops when the last client has that answer.

Prints one line `UPLOADJSON {...}` and exits 0; exits 1 with a message when
the server refused, closed or answered wrongly. Bounded by --deadline.

    upload_load.py --port 8080 [-c 8] [--size 67108864] [--duration 10] [--chunked]
"""
import argparse
import json
import os
import socket
import sys
import threading
import time

PIECE = 1 << 20           # bytes of body per sendall
CHUNK = 64 * 1024         # bytes per chunk of a chunked body


class Failed(Exception):
    pass


def read_response(sock, buf):
    """One Content-Length framed response: (status, body, leftover bytes)."""
    while b"\r\n\r\n" not in buf:
        more = sock.recv(65536)
        if not more:
            raise Failed("connection closed before an answer")
        buf += more
    end = buf.index(b"\r\n\r\n")
    lines = buf[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    if length is None:
        raise Failed(f"answer without Content-Length: {lines[0]!r}")
    buf = buf[end + 4:]
    while len(buf) < length:
        more = sock.recv(65536)
        if not more:
            raise Failed("connection closed inside an answer")
        buf += more
    return status, buf[:length], buf[length:]


def client(i, a, start, clock, out):
    payload = os.urandom(PIECE)
    if a.chunked:
        framed = b"".join(b"%x\r\n" % CHUNK + payload[o:o + CHUNK] + b"\r\n" for o in range(0, PIECE, CHUNK))
        head = (f"POST {a.path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
                f"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    else:
        head = (f"POST {a.path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {a.size}\r\n\r\n").encode()
    whole, rest = divmod(a.size, PIECE)
    uploads, buf = 0, b""
    try:
        with socket.create_connection(("127.0.0.1", a.port), timeout=a.deadline) as s:
            start.wait()
            while True:
                s.sendall(head)
                if a.chunked:
                    for _ in range(whole):
                        s.sendall(framed)
                    if rest:
                        s.sendall(b"%x\r\n" % rest + payload[:rest] + b"\r\n")
                    s.sendall(b"0\r\n\r\n")
                else:
                    view = memoryview(payload)
                    for _ in range(whole):
                        s.sendall(view)
                    if rest:
                        s.sendall(view[:rest])
                status, body, buf = read_response(s, buf)
                if status != 200:
                    raise Failed(f"upload {uploads + 1} answered {status}: {body[:100]!r}")
                if body.strip().isdigit() and int(body) != a.size:
                    raise Failed(f"upload {uploads + 1}: the server counted {int(body)} of {a.size} bytes")
                uploads += 1
                if time.monotonic() >= clock["stop_at"]:
                    break
            s.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n\r\n".encode())
            status, body, buf = read_response(s, buf)
            if status != 200 or body != b"Hello, World!":
                raise Failed(f"GET / after the uploads answered {status}: {body[:100]!r}")
            out[i] = dict(uploads=uploads, end=time.monotonic())
    except (OSError, Failed, ValueError, threading.BrokenBarrierError) as ex:
        out[i] = dict(uploads=uploads, error=f"client {i}: {ex or repr(ex)}")
        start.abort()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/upload")
    ap.add_argument("-c", "--clients", type=int, default=8)
    ap.add_argument("--size", type=int, default=64 << 20, help="bytes per body")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds before the last uploads begin")
    ap.add_argument("--chunked", action="store_true", help="Transfer-Encoding: chunked (64 KiB chunks)")
    ap.add_argument("--deadline", type=float, default=120.0, help="socket timeout, seconds")
    a = ap.parse_args()

    out = [None] * a.clients
    clock = {}

    def begin():  # run by one thread as the barrier opens: the clock starts
        clock["t0"] = time.monotonic()
        clock["stop_at"] = clock["t0"] + a.duration

    start = threading.Barrier(a.clients + 1, action=begin)
    threads = [threading.Thread(target=client, args=(i, a, start, clock, out), daemon=True)
               for i in range(a.clients)]
    for t in threads:
        t.start()
    try:
        start.wait(timeout=a.deadline)
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join(a.deadline + a.duration)
    t0 = clock.get("t0", time.monotonic())
    wall = max((o["end"] for o in out if o and "end" in o), default=time.monotonic()) - t0
    errors = [o["error"] if o else "a client did not finish" for o in out if not o or "error" in o]
    if errors:
        print("upload_load: " + "; ".join(errors[:3]), file=sys.stderr)
        sys.exit(1)
    uploads = sum(o["uploads"] for o in out)
    body_bytes = uploads * a.size
    print("UPLOADJSON " + json.dumps(dict(clients=a.clients, size=a.size, chunked=a.chunked, uploads=uploads,
                                          body_bytes=body_bytes, wall_s=round(wall, 4),
                                          bytes_per_s=body_bytes / wall)), flush=True)


if __name__ == "__main__":
    main()
