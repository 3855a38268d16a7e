#!/usr/bin/env python3
"""Sends a fixed number of requests to a server, the way wrk does (each connection
waits for its answers before sending again), for instruction counts under callgrind.

    callgrind-load.py PORT REQUESTS [--conns N] [--pipeline D] [--path /]
"""
import argparse
import selectors
import socket

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("requests", type=int)
ap.add_argument("--conns", type=int, default=8)
ap.add_argument("--pipeline", type=int, default=1)
ap.add_argument("--path", default="/")
a = ap.parse_args()

req = f"GET {a.path} HTTP/1.1\r\nHost: 127.0.0.1:{a.port}\r\n\r\n".encode()
sel = selectors.DefaultSelector()
left = a.requests
conns = []
for _ in range(a.conns):
    s = socket.create_connection(("127.0.0.1", a.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conns.append(s)

def send(s, st):
    global left
    n = min(a.pipeline, left)
    if n == 0:
        return False
    left -= n
    st["pending"] = n
    s.sendall(req * n)
    return True

for s in conns:
    st = {"pending": 0, "buf": b""}
    if send(s, st):
        sel.register(s, selectors.EVENT_READ, st)
done = 0
while done < a.requests:
    for key, _ in sel.select():
        s, st = key.fileobj, key.data
        data = s.recv(65536)
        if not data:
            raise SystemExit("server closed")
        st["buf"] += data
        # Each answer ends with its 13-byte body; count heads to find them.
        while True:
            i = st["buf"].find(b"\r\n\r\n")
            if i < 0:
                break
            head = st["buf"][:i].lower()
            j = head.find(b"content-length: ")
            n = int(head[j + 16:].split(b"\r\n")[0])
            if len(st["buf"]) < i + 4 + n:
                break
            st["buf"] = st["buf"][i + 4 + n:]
            st["pending"] -= 1
            done += 1
        if st["pending"] == 0 and not send(s, st):
            sel.unregister(s)
for s in conns:
    s.close()
