"""Shared helpers: servers on 127.0.0.1 port 0, bounded HTTP clients."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

import warpcore

ROOT = Path(__file__).resolve().parents[3]
PACKAGE_DIR = ROOT / "bindings" / "python"
TIMEOUT = 10.0


class Reply:
    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.header_list = headers
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body[:60]!r}>"


def request(
    port: int,
    method: str = "GET",
    path: str = "/",
    body: Optional[bytes] = None,
    headers: Optional[Dict[str, str]] = None,
    timeout: float = TIMEOUT,
) -> Reply:
    """One request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def keeping_handler(kept: list):
    """A handler that answers ``ok`` and keeps (appends to ``kept``) every
    request for ``/keep``, beyond the handler's return."""

    def handler(req: warpcore.Request) -> warpcore.Response:
        if req.path == "/keep":
            kept.append(req)
        return warpcore.Response(200, [("Content-Type", "text/plain")], b"ok")

    return handler


def raw_exchange(port: int, data: bytes, timeout: float = TIMEOUT, until_close: bool = True) -> bytes:
    """Sends raw bytes, reads until the server closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if not until_close:
            return s.recv(65536)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 30.0) -> str:
    """Reads the process's stdout until a line starting with ``prefix``."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    while time.monotonic() < deadline:
        try:
            chunk = proc.stdout.read()
        except BlockingIOError:
            chunk = None
        if chunk:
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
        if proc.poll() is not None and not chunk:
            break
        time.sleep(0.05)
    raise AssertionError(f"no {prefix!r} line from {proc.args}; got {buf!r}")


def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_hang_probe(tmp_path: Path, name: str, source: str, args: List[str], hang: str) -> List[str]:
    """Runs `source` as a child Python script with `args` (bounded: 60 s) and
    returns its stdout lines; a timeout fails the test with `hang` (a hang
    there holds the GIL that a timeout in this process would need)."""
    script = tmp_path / name
    script.write_text(source)
    try:
        out = subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, env=child_env(), timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail(hang)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.fixture
def serve():
    """serve(handler, **kw) -> a started warpcore.Server on 127.0.0.1:0, shut
    down at the end of the test."""
    servers: List[warpcore.Server] = []

    def start(handler, **kw) -> warpcore.Server:
        kw.setdefault("port", 0)
        s = warpcore.Server(handler, **kw).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.shutdown(1.0)


@pytest.fixture
def python() -> str:
    return sys.executable
