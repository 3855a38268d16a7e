#!/usr/bin/env python3
"""The demo server of DESIGN.md in Python: GET / -> "Hello, World!",
POST /echo -> the request body as it arrives (any size: a body over 64 KiB
streams, read and echoed by a stream thread), GET /ws -> a WebSocket echo
(text as text, binary as binary, served from the library's events, without a
thread per connection), PREFIX/... -> files under DIR.

    python3 examples/python/demo.py --host 127.0.0.1 --port 8080 --workers 1 --static /files=./www

Prints "listening on HOST:PORT" once it accepts connections; stops gracefully
on SIGTERM or SIGINT with exit status 0. Runs from a checkout right after
`make` (it uses the checkout's bindings/python and target/release).
"""

import argparse
import os
import sys

_CHECKOUT_PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bindings", "python")
if os.path.isdir(os.path.join(_CHECKOUT_PACKAGE, "warpcore")):
    sys.path.insert(0, os.path.abspath(_CHECKOUT_PACKAGE))

import warpcore  # noqa: E402
from warpcore import (  # noqa: E402
    NO_LIMIT,
    HandshakeError,
    Request,
    Response,
    StreamResponse,
    WebSocket,
    WebSocketClosed,
    WebSocketEvent,
    WouldBlock,
)

TEXT_PLAIN = [("Content-Type", "text/plain")]
OCTETS = [("Content-Type", "application/octet-stream")]
HELLO = Response(200, TEXT_PLAIN, b"Hello, World!")
NOT_FOUND = Response(404, TEXT_PLAIN, b"Not Found\n")
NOT_ALLOWED_ROOT = Response(405, TEXT_PLAIN + [("Allow", "GET, HEAD")], b"Method Not Allowed\n")
NOT_ALLOWED_ECHO = Response(405, TEXT_PLAIN + [("Allow", "POST")], b"Method Not Allowed\n")
NOT_ALLOWED_WS = Response(405, TEXT_PLAIN + [("Allow", "GET")], b"Method Not Allowed\n")
GET_HEAD = ("GET", "HEAD")
#: Bodies up to this size arrive whole and go straight back; larger ones stream.
WHOLE_BODY_MAX = 64 * 1024


def echo(request: Request):
    """POST /echo: a body that arrived whole goes straight back; one that
    streams goes back chunk by chunk as it arrives, chunked, from a stream
    thread (where reads wait for the client and writes for it to read)."""
    if not request.body_follows:
        return Response(200, OCTETS, request.body)
    # Taken here, in the handler call; iterated (and closed) by the stream.
    return StreamResponse(request.stream(), 200, OCTETS)


class WebSocketEcho:
    """GET /ws: each message goes back as it came, from the WebSocket's
    events on the worker's thread (where nothing waits). A peer that does not
    read makes a send refuse its message: it is held here and no more are
    taken (so the library stops reading and TCP slows the peer) until
    WRITABLE. The library keeps the WebSocket alive until CLOSED."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = None  # a message a full queue refused

    def __call__(self, ws: WebSocket, events: WebSocketEvent) -> None:
        if events & WebSocketEvent.CLOSED:
            ws.release()
            return
        if events & WebSocketEvent.DRAINING:
            ws.close(1001, "server shutting down")
        try:
            if self.held is not None:
                ws.send_nowait(self.held)
                self.held = None
            while True:
                message = ws.receive_nowait()
                try:
                    ws.send_nowait(message)
                except WouldBlock:
                    self.held = message
                    return
        except (WouldBlock, WebSocketClosed):
            return


def websocket(request: Request):
    try:
        return request.accept_websocket(on_event=WebSocketEcho())
    except HandshakeError as exc:
        # Not a handshake: 400, or 426 for another WebSocket version.
        return exc.response


def handle(request: Request):
    path = request.path
    if path == "/":
        return HELLO if request.method in GET_HEAD else NOT_ALLOWED_ROOT
    if path == "/echo":
        if request.method == "POST":
            return echo(request)
        return NOT_ALLOWED_ECHO
    if path == "/ws":
        return websocket(request) if request.method == "GET" else NOT_ALLOWED_WS
    return NOT_FOUND


def mount(spec: str):
    prefix, sep, directory = spec.partition("=")
    if not sep or not prefix.startswith("/") or not directory:
        raise argparse.ArgumentTypeError(f"--static wants PREFIX=DIR with PREFIX starting with '/', not {spec!r}")
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"--static: {directory!r} is not a directory")
    return prefix, directory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1, help="event loops, each on its own Python thread (0: one per core)")
    parser.add_argument("--static", type=mount, action="append", default=[], metavar="PREFIX=DIR")
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate chain (PEM; with --tls-key)")
    parser.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")

    try:
        server = warpcore.Server(
            handle,
            host=args.host,
            port=args.port,
            workers=args.workers,
            static=dict(args.static),
            max_body_size=NO_LIMIT,
            whole_body_max=WHOLE_BODY_MAX,
            tls=(args.tls_cert, args.tls_key) if args.tls_cert else None,
        )
        server.start()
    except (warpcore.WarpcoreError, ValueError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(f"listening on {server.address}", flush=True)
    server.serve_forever(grace=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
