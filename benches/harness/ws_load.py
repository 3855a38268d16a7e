#!/usr/bin/env python3
"""WebSocket echo load: C connections to ws://127.0.0.1:PORT/ws, each
pipelining D messages of S bytes per write and reading their echoes.

Every connection does the opening handshake (101 and the right
Sec-WebSocket-Accept required), then loops: write a batch of D masked binary
messages in one write, read until the D echoes are back, write the next batch.
Echoes are counted by their bytes (each is an unmasked frame of known size, as
wrk counts responses); the first batch of every connection is parsed frame by
frame and must echo what was sent, and so must the last batch, read once the
time is up. The clock runs from the first batch to --duration seconds later;
batches in flight then are finished and not counted.

One thread, epoll: the load generator costs little per message (one write and
a read or two per batch), so with D = 16 one client core keeps a server core
busy. Prints one line `WSJSON {...}` and exits 0; exits 1 with a message when
the server refused, closed or echoed wrongly. Bounded by --deadline.

    ws_load.py --port 8080 [-c 64] [-d 16] [--size 64] [--duration 10] [--path /ws]
"""
import argparse
import base64
import errno
import hashlib
import json
import os
import select
import socket
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Failed(Exception):
    pass


def masked_frame(opcode, payload, mask):
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def server_frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n <= 0xFFFF:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


def handshake(port, path, timeout):
    key = base64.b64encode(os.urandom(16))
    want = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
              f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key.decode()}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        more = s.recv(4096)
        if not more:
            raise Failed("closed during the handshake")
        buf += more
    end = buf.index(b"\r\n\r\n")
    lines = buf[:end].decode("latin-1").split("\r\n")
    if lines[0].split(" ")[1] != "101":
        raise Failed(f"handshake answered {lines[0]!r}")
    accept = [v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.strip().lower() == "sec-websocket-accept"]
    if accept != [want]:
        raise Failed(f"Sec-WebSocket-Accept {accept} for key {key.decode()}, expected {want}")
    if buf[end + 4:]:
        raise Failed("bytes after the 101 before any message was sent")
    return s


def send_batch(s, batch):
    # Every echo of the previous batch was read: the socket's buffer is empty.
    if s.send(batch) != len(batch):
        raise Failed("a batch did not fit an empty socket buffer")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/ws")
    ap.add_argument("-c", "--connections", type=int, default=64)
    ap.add_argument("-d", "--depth", type=int, default=16, help="messages per write")
    ap.add_argument("--size", type=int, default=64, help="payload bytes per message")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--deadline", type=float, default=60.0, help="seconds before giving up on a stuck server")
    a = ap.parse_args()

    payload = bytes((i * 7 + 3) & 0xFF for i in range(a.size))
    batch = masked_frame(0x2, payload, os.urandom(4)) * a.depth
    echo = server_frame(0x2, payload)
    batch_echo = len(echo) * a.depth

    socks = [handshake(a.port, a.path, a.deadline) for _ in range(a.connections)]
    ep = select.epoll()
    got = {}       # fd -> echo bytes of the batch in flight received so far
    first = {}     # fd -> bytes of the first batch (checked frame by frame)
    by_fd = {}
    for s in socks:
        s.setblocking(False)
        fd = s.fileno()
        by_fd[fd] = s
        got[fd] = 0
        first[fd] = b""
        ep.register(fd, select.EPOLLIN)

    t0 = time.monotonic()
    stop_at = t0 + a.duration
    hard_stop = t0 + a.duration + a.deadline
    batches = 0
    last_batch = {}  # fd -> bytes of the batch read after the clock stopped
    open_fds = set(by_fd)
    try:
        for s in socks:
            send_batch(s, batch)
        last_progress = time.monotonic()
        while open_fds:
            now = time.monotonic()
            if now > hard_stop or now - last_progress > 10:
                raise Failed(f"no echo for {now - last_progress:.0f} s ({len(open_fds)} connections waiting)")
            for fd, ev in ep.poll(1.0):
                s = by_fd[fd]
                try:
                    chunk = s.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise Failed("the server closed a connection")
                last_progress = time.monotonic()
                if first[fd] is not None:
                    first[fd] += chunk
                if fd in last_batch:
                    last_batch[fd] += chunk
                got[fd] += len(chunk)
                if got[fd] > batch_echo:
                    raise Failed(f"{got[fd]} bytes back for a batch of {batch_echo}")
                if got[fd] < batch_echo:
                    continue
                got[fd] = 0
                if first[fd] is not None:
                    if first[fd] != echo * a.depth:
                        raise Failed(f"the first batch came back as {first[fd][:40]!r}…, not {a.depth} echoes")
                    first[fd] = None
                if fd in last_batch:
                    if last_batch[fd] != echo * a.depth:
                        raise Failed("the last batch did not come back as its echoes")
                    open_fds.discard(fd)
                    continue
                if last_progress < stop_at:
                    batches += 1
                else:
                    last_batch[fd] = b""
                send_batch(s, batch)
    except (OSError, Failed) as ex:
        print(f"ws_load: {ex or repr(ex)}", file=sys.stderr)
        sys.exit(1)
    finally:
        for s in socks:
            s.close()
        ep.close()
    messages = batches * a.depth
    print("WSJSON " + json.dumps(dict(connections=a.connections, depth=a.depth, size=a.size, messages=messages,
                                      wall_s=round(a.duration, 4), msgs_per_s=messages / a.duration)), flush=True)


if __name__ == "__main__":
    main()
