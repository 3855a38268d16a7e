"""Request bodies that stream (issue #20): ``wsgi.input`` over a streamed
body, the native ``Request.stream()`` reader, ``python -m warpcore.wsgi
--max-body-size``, a 100 MiB Flask upload through the command line and a
1 GiB upload through the Python demo's ``POST /echo``, with their SHA-256.

Every body here is larger than the whole-body maximum, and each test checks
that it took the streaming path and that every byte arrived (a digest of what
was sent against one of what was read), so an empty or truncated stream fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import warpcore
from warpcore import NO_LIMIT, BodyWouldBlock, Deferred, Response, StreamResponse
from warpcore.wsgi import WSGIServer

from .conftest import ROOT, child_env, request, wait_for_line
from .supervise import children, wait_until

MiB = 1 << 20
# One random MiB per run; chunk i of a body is it with i in its first 8
# bytes, so chunks differ and a lost, repeated or reordered one changes the
# digest.
_BLOCK = os.urandom(MiB)


def body_chunks(total: int, size: int = MiB) -> Iterator[bytes]:
    i = sent = 0
    while sent < total:
        n = min(size, total - sent)
        chunk = (struct.pack(">Q", i) + _BLOCK[8:])[:n] if size == MiB else _BLOCK[:n]
        yield chunk
        sent += n
        i += 1


def body_bytes(total: int) -> bytes:
    return b"".join(body_chunks(total))


def lines_body(total: int) -> bytes:
    """``total`` bytes of numbered lines of varying length (the last one
    without its newline)."""
    out = []
    n = i = 0
    while n < total:
        line = b"%d:" % i + b"abcdefghij" * (i % 37) + b"\n"
        out.append(line)
        n += len(line)
        i += 1
    data = b"".join(out)[:total]
    return data.rstrip(b"\n") + b"x"


class Upload:
    """The answer to one upload: status, headers, body digest and size, and
    how long the exchange took."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: Dict[str, str] = {}
        self.sha256 = ""
        self.size = 0
        self.body = b""
        self.seconds = 0.0
        self.send_error: Optional[BaseException] = None
        self.sent_sha256 = ""
        self.sent = 0


def upload(
    port: int,
    path: str,
    chunks: Iterator[bytes],
    *,
    length: Optional[int],
    headers: Optional[Dict[str, str]] = None,
    timeout: float = 60.0,
    keep_body: bool = False,
) -> Upload:
    """POSTs ``chunks`` (with Content-Length ``length``, or chunked when
    None), sending on a thread while the answer is read here, so an echo
    flows both ways at once. The answer's body is hashed as it comes."""
    out = Upload()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"]
    for k, v in (headers or {}).items():
        head.append(f"{k}: {v}")
    head.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
    sent_hash = hashlib.sha256()

    def send() -> None:
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            for chunk in chunks:
                sent_hash.update(chunk)
                out.sent += len(chunk)
                if length is None:
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                else:
                    sock.sendall(chunk)
            if length is None:
                sock.sendall(b"0\r\n\r\n")
        except OSError as exc:  # the server answered early (413) and closed
            out.send_error = exc

    start = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        out.status = resp.status
        out.headers = {k.lower(): v for k, v in resp.getheaders()}
        h = hashlib.sha256()
        kept = []
        while True:
            data = resp.read(MiB)
            if not data:
                break
            h.update(data)
            out.size += len(data)
            if keep_body:
                kept.append(data)
        out.sha256 = h.hexdigest()
        out.body = b"".join(kept)
        sender.join(timeout)
        assert not sender.is_alive(), "the upload did not finish sending"
    finally:
        sock.close()
    out.seconds = time.monotonic() - start
    out.sent_sha256 = sent_hash.hexdigest()
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def spawned(args: List[str], cwd: Any, env: Optional[Dict[str, str]] = None) -> Iterator[Tuple[subprocess.Popen, int]]:
    """A server process started with ``args``: (process, port) once it
    prints ``listening on``; stopped with SIGTERM at the end."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or child_env(), cwd=cwd)
    try:
        line = wait_for_line(proc, "listening on ")
        yield proc, int(line.rsplit(":", 1)[1])
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# --- the Python demo: POST /echo streams any size back -------------------------------


@pytest.mark.timeout(150)
def test_demo_echoes_1_gib_as_it_arrives(tmp_path):
    """1 GiB up and the same GiB back at once (the demo answers as the body
    arrives: without that, the client's send would block and the test time
    out), its SHA-256 checked, the demo's memory bounded (not the body)."""
    total = 1 << 30
    with spawned([sys.executable, str(ROOT / "examples" / "python" / "demo.py"), "--port", "0"], tmp_path) as (proc, port):
        base = peak_rss(proc.pid)
        r = upload(port, "/echo", body_chunks(total), length=total, timeout=120)
        assert r.status == 200 and r.headers.get("transfer-encoding") == "chunked", r.headers
        assert r.size == total and r.sent == total
        assert r.sha256 == r.sent_sha256
        peak = peak_rss(proc.pid)
        # Chunked upload too (no length known in advance), smaller.
        c = upload(port, "/echo", body_chunks(32 * MiB), length=None, timeout=60)
        assert (c.status, c.size, c.sha256) == (200, 32 * MiB, c.sent_sha256)
        # A small body arrives whole and goes back the same.
        assert request(port, "POST", "/echo", body=b"small").body == b"small"
    print(f"\n1 GiB echo through demo.py: {r.seconds:.1f} s ({total / MiB / r.seconds:.0f} MiB/s each way), "
          f"demo peak RSS {peak / MiB:.0f} MiB (at start {base / MiB:.0f} MiB)")
    assert peak - base < 64 * MiB, f"the demo grew by {(peak - base) / MiB:.0f} MiB: the body was held"


# --- Flask through the command line --------------------------------------------------

FLASK_APP = '''
import hashlib
from flask import Flask, jsonify, request

app = Flask(__name__)


def digest(stream):
    h = hashlib.sha256()
    n = 0
    while True:
        b = stream.read(1 << 20)
        if not b:
            return n, h.hexdigest()
        h.update(b)
        n += len(b)


@app.post("/upload")
def upload():
    f = request.files["file"]
    n, d = digest(f.stream)
    return jsonify(filename=f.filename, size=n, sha256=d, desc=request.form.get("desc"),
                   input=type(request.environ["wsgi.input"]).__name__)


@app.post("/raw")
def raw():
    n, d = digest(request.stream)
    return jsonify(size=n, sha256=d, input=type(request.environ["wsgi.input"]).__name__)
'''


def multipart(total: int, boundary: str) -> Tuple[int, Iterator[bytes], Callable[[], str]]:
    """(length, chunks, digest of the file part): a form with a text field
    and a ``total``-byte file."""
    pre = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"desc\"\r\n\r\nbig one\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    post = f"\r\n--{boundary}--\r\n".encode()
    h = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        yield pre
        for c in body_chunks(total):
            h.update(c)
            yield c
        yield post

    return len(pre) + total + len(post), chunks(), h.hexdigest


@pytest.mark.timeout(150)
def test_flask_upload_of_100_mib_through_the_command_line(tmp_path):
    (tmp_path / "bigapp.py").write_text(FLASK_APP)
    total = 100 * MiB
    args = [sys.executable, "-m", "warpcore.wsgi", "bigapp:app", "--bind", "127.0.0.1:0", "--threads", "4"]
    with spawned(args, tmp_path) as (proc, port):  # no --max-body-size: no limit
        # The worker process serves (the command's master only supervises).
        (worker,) = wait_until("the worker", lambda: children(proc.pid))
        base = peak_rss(worker)
        boundary = "----warpcore" + os.urandom(8).hex()
        length, chunks, file_digest = multipart(total, boundary)
        r = upload(port, "/upload", chunks, length=length, timeout=120, keep_body=True,
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status == 200, r.body[:300]
        got = json.loads(r.body)
        assert got == {"filename": "big.bin", "size": total, "sha256": file_digest(), "desc": "big one",
                       "input": "BufferedReader"}
        peak = peak_rss(worker)
        # The same body raw (request.stream), chunked: no Content-Length.
        raw = upload(port, "/raw", body_chunks(20 * MiB), length=None, timeout=60, keep_body=True)
        assert raw.status == 200
        assert json.loads(raw.body) == {"size": 20 * MiB, "sha256": raw.sent_sha256, "input": "BufferedReader"}
    print(f"\n100 MiB Flask multipart upload through python -m warpcore.wsgi: {r.seconds:.1f} s "
          f"({total / MiB / r.seconds:.0f} MiB/s), server peak RSS {peak / MiB:.0f} MiB (at start {base / MiB:.0f} MiB)")
    # Werkzeug spools the file to disk; the server must not hold the body either.
    assert peak - base < 64 * MiB, f"the server grew by {(peak - base) / MiB:.0f} MiB: the body was held"


def test_command_line_body_limit(tmp_path):
    (tmp_path / "bigapp.py").write_text(FLASK_APP)
    args = [sys.executable, "-m", "warpcore.wsgi", "bigapp:app", "--bind", "127.0.0.1:0", "--threads", "2",
            "--max-body-size", "3M"]
    with spawned(args, tmp_path) as (proc, port):
        # Under the limit, over the whole-body maximum: streams, arrives whole.
        ok = upload(port, "/raw", body_chunks(2 * MiB + 5), length=2 * MiB + 5, keep_body=True)
        assert ok.status == 200
        assert json.loads(ok.body) == {"size": 2 * MiB + 5, "sha256": ok.sent_sha256, "input": "BufferedReader"}
        # Exactly at the limit is accepted.
        at = upload(port, "/raw", body_chunks(3 * MiB), length=None, keep_body=True)
        assert at.status == 200 and json.loads(at.body)["size"] == 3 * MiB
        # Over it by its Content-Length: 413 before the body is read.
        big = upload(port, "/raw", body_chunks(3 * MiB + 1), length=3 * MiB + 1)
        assert big.status == 413
        # Over it while streaming (chunked: no length to judge by): 413 too.
        chunked = upload(port, "/raw", body_chunks(4 * MiB, size=64 * 1024), length=None)
        assert chunked.status == 413
        # The server goes on.
        after = upload(port, "/raw", body_chunks(1500 * 1024), length=None, keep_body=True)
        assert after.status == 200 and json.loads(after.body)["sha256"] == after.sent_sha256
    bad = subprocess.run([sys.executable, "-m", "warpcore.wsgi", "bigapp:app", "--max-body-size", "lots"],
                         capture_output=True, env=child_env(), cwd=tmp_path, timeout=60)
    assert bad.returncode == 2 and b"--max-body-size" in bad.stderr


# --- wsgi.input over a streamed body -------------------------------------------------


def input_app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
    """Reads wsgi.input as PATH_INFO says; answers with what it read, as JSON."""
    inp = environ["wsgi.input"]
    how = environ["PATH_INFO"]
    h = hashlib.sha256()
    info: Dict[str, Any] = {"input": type(inp).__name__, "content_length": environ.get("CONTENT_LENGTH")}
    if how == "/read_n":
        sizes = set()
        n = 10007
        while True:
            b = inp.read(n)
            if not b:
                break
            sizes.add(len(b))
            h.update(b)
            if len(b) < n:  # only the last read may be short
                assert inp.read(n) == b"", "a short read before the end"
                break
        info["full_reads"] = n in sizes
    elif how == "/read_all":
        head = inp.read(1)
        h.update(head + inp.read())
    elif how == "/readline":
        count = 0
        while True:
            line = inp.readline()
            if not line:
                break
            count += 1
            assert line.endswith(b"\n") or inp.readline() == b"", "a line cut short"
            h.update(line)
        info["lines"] = count
    elif how == "/readline_limit":
        longest = 0
        while True:
            line = inp.readline(100)
            if not line:
                break
            longest = max(longest, len(line))
            h.update(line)
        info["longest"] = longest
    elif how == "/iterate":
        count = 0
        for line in inp:
            count += 1
            h.update(line)
        info["lines"] = count
    elif how == "/readlines":
        lines = inp.readlines()
        info["lines"] = len(lines)
        h.update(b"".join(lines))
    info["sha256"] = h.hexdigest()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(info).encode()]


@pytest.fixture(params=[4, 0], ids=["pool", "inline"])
def input_server(request):
    s = WSGIServer(input_app, port=0, threads=request.param).start()
    yield s
    s.shutdown(2.0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["read_n", "read_all", "readline", "readline_limit", "iterate", "readlines"])
@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_wsgi_input_reads_a_streamed_body(input_server, how, chunked):
    data = lines_body(3 * MiB + 333)
    # Sent in pieces, so the body is still arriving when the application runs.
    pieces = (data[i : i + 200_000] for i in range(0, len(data), 200_000))
    r = upload(input_server.port, "/" + how, pieces, length=None if chunked else len(data), keep_body=True)
    assert r.status == 200, r.body
    got = json.loads(r.body)
    assert got["input"] == "BufferedReader"  # streamed, not a BytesIO of the whole body
    assert got["content_length"] == (None if chunked else str(len(data)))
    assert got["sha256"] == sha(data)
    if how in ("readline", "iterate", "readlines"):
        assert got["lines"] == data.count(b"\n") + 1
    if how == "read_n":
        assert got["full_reads"]
    if how == "readline_limit":
        assert got["longest"] == 100


def test_wsgi_input_of_a_small_body_stays_whole(input_server):
    r = request(input_server.port, "POST", "/read_all", body=b"tiny body")
    got = json.loads(r.body)
    assert got["input"] == "BytesIO" and got["sha256"] == sha(b"tiny body") and got["content_length"] == "9"


# --- the native reader -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_native_reader_from_a_thread_of_its_own(serve):
    """The handler takes the reader, tries it on the worker (no waiting:
    what has arrived, or BodyWouldBlock), hands it to a thread that reads the
    rest with read(n), and answers once that thread is done. Nothing read on
    the worker is lost."""
    seen: Dict[str, Any] = {}
    done = threading.Event()

    def handler(req):
        if req.path != "/thread":
            return Response(404)
        reader = req.stream()
        seen["follows"], seen["same"] = req.body_follows, reader is req.stream()
        try:
            seen["body"] = req.body
        except RuntimeError as exc:
            seen["body"] = "stream()" in str(exc)
        first = b""
        try:
            first = reader.read1(1000)  # what came with the head, if anything
        except BodyWouldBlock:
            pass
        try:
            reader.read()  # the rest cannot have arrived: it would have to wait
            seen["read_all_on_worker"] = "returned"
        except BodyWouldBlock as exc:
            seen["read_all_on_worker"] = exc.name
        result: Dict[str, Any] = {}

        def read_rest() -> None:
            try:
                h = hashlib.sha256(first)
                n = len(first)
                short = 0
                while True:
                    b = reader.read(65_537)
                    if not b:
                        break
                    short += len(b) < 65_537
                    h.update(b)
                    n += len(b)
                result.update(size=n, sha256=h.hexdigest(), short=short, thread=threading.current_thread().name)
            except BaseException as exc:  # reported to the client
                result["error"] = repr(exc)
            finally:
                reader.close()
                done.set()

        threading.Thread(target=read_rest, name="reader-thread", daemon=True).start()

        def answer() -> Response:
            done.wait(30)
            return Response(200, [("Content-Type", "application/json")], json.dumps(result))

        return Deferred(answer)

    s = serve(handler, max_body_size=NO_LIMIT, whole_body_max=MiB)
    total = 8 * MiB + 3
    r = upload(s.port, "/thread", body_chunks(total), length=total, keep_body=True)
    assert r.status == 200
    got = json.loads(r.body)
    assert got == {"size": total, "sha256": r.sent_sha256, "short": 1, "thread": "reader-thread"}, got
    assert seen == {"follows": True, "body": True, "same": True, "read_all_on_worker": "WOULD_BLOCK"}


@pytest.mark.timeout(60)
def test_native_reader_iterates_lines_and_chunks_on_a_stream_thread(serve):
    def handler(req):
        reader = req.stream()
        if req.path == "/lines":
            def lines() -> Iterator[bytes]:
                with reader:
                    yield b"%d\n" % len(reader.readline())
                    yield b"%d\n" % len(reader.readlines())
            return StreamResponse(lines())
        # /chunks: iteration gives the chunks as they arrive, at most 64 KiB each.
        def chunks() -> Iterator[bytes]:
            sizes = []
            for chunk in reader:
                sizes.append(len(chunk))
                yield chunk
            assert max(sizes) <= 64 * 1024
        return StreamResponse(chunks())

    s = serve(handler, max_body_size=NO_LIMIT, whole_body_max=MiB)
    data = lines_body(3 * MiB)
    r = upload(s.port, "/lines", iter([data]), length=len(data), keep_body=True)
    first = data.index(b"\n") + 1
    assert r.body == b"%d\n%d\n" % (first, data.count(b"\n"))
    e = upload(s.port, "/chunks", body_chunks(5 * MiB), length=None)
    assert (e.status, e.size, e.sha256) == (200, 5 * MiB, e.sent_sha256)


def test_native_reader_must_be_taken_in_the_handler_call(serve):
    """A streamed body's reader taken after the handler returned: a clear
    RuntimeError, not an empty body. A whole body's reader works anywhere."""

    def handler(req):
        if not req.body_follows:
            reader = req.stream()
            return Response(200, None, b"whole:" + reader.read(3) + b"|" + reader.read())

        def late() -> Iterator[bytes]:
            try:
                req.stream()
                yield b"no error"
            except RuntimeError as exc:
                yield str(exc).encode()

        return StreamResponse(late())

    s = serve(handler, max_body_size=NO_LIMIT, whole_body_max=64 * 1024)
    assert request(s.port, "POST", "/", body=b"abcdef").body == b"whole:abc|def"
    # Small enough for the library to drain what nobody read.
    r = upload(s.port, "/", body_chunks(200_000, size=50_000), length=200_000, keep_body=True)
    assert b"inside the handler call" in r.body, r.body


def test_native_body_limit_while_streaming(serve):
    """max_body_size applies to a streamed body read before answering
    (Deferred): 413, and the reader says why."""
    errors: List[str] = []

    def handler(req):
        reader = req.stream()

        def drain() -> Response:
            with reader:
                try:
                    h = hashlib.sha256()
                    while True:
                        b = reader.read(65536)
                        if not b:
                            return Response(200, None, h.hexdigest())
                        h.update(b)
                except warpcore.ClientClosedError as exc:
                    errors.append(exc.message)
                    raise

        return Deferred(drain)

    s = serve(handler, max_body_size=2 * MiB, whole_body_max=64 * 1024)
    assert upload(s.port, "/", body_chunks(3 * MiB, size=64 * 1024), length=None).status == 413
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert errors and "max_body_size" in errors[0]
    ok = upload(s.port, "/", body_chunks(MiB), length=None, keep_body=True)
    assert (ok.status, ok.body) == (200, ok.sent_sha256.encode())


@pytest.mark.timeout(60)
def test_native_reader_closed_while_another_thread_waits_in_a_read(serve):
    """close() from one thread while another waits in a read: the read
    returns when bytes come, and only then is the library's reader freed
    (the C rule: no free during another call); later reads say closed."""
    state: Dict[str, Any] = {}
    reading = threading.Event()
    finished = threading.Event()

    def handler(req):
        reader = req.stream()

        def read() -> None:
            try:
                reading.set()
                state["got"] = len(reader.read(100 * MiB))  # waits: the client holds the rest back
            except BaseException as exc:
                state["error"] = type(exc).__name__
            finally:
                finished.set()

        threading.Thread(target=read, daemon=True).start()

        def close_it() -> Response:
            reading.wait(10)
            raw = state["raw"] = reader._raw
            deadline = time.monotonic() + 10
            while not raw._busy and time.monotonic() < deadline:
                time.sleep(0.001)  # until the read is inside the library
            state["busy_at_close"] = raw._busy
            reader.close()
            state["freed_at_close"] = raw._ptr is None and raw._orphan is None
            return Response(200, None, b"closed")

        return Deferred(close_it)

    s = serve(handler, max_body_size=NO_LIMIT, whole_body_max=64 * 1024)
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=20)
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (1 * MiB) + b"a" * 100_000)
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200 "), reply
        assert state["busy_at_close"] == 1 and state["freed_at_close"] is False  # kept for the read under way
        with contextlib.suppress(OSError):
            sock.sendall(b"b" * (MiB - 100_000))  # the read returns (or the connection closes)
        assert finished.wait(20)
    finally:
        sock.close()
    # The read under way returned its bytes to the loop in read(), whose next
    # library read found the reader closed; the last read freed it.
    assert state.get("error") == "ValueError", state
    assert state["raw"]._ptr is None and state["raw"]._orphan is None and state["raw"]._busy == 0


@pytest.mark.timeout(60)
def test_wsgi_input_asks_for_the_body_on_first_read(input_server):
    """Expect: 100-continue: the client sends nothing until the application
    reads wsgi.input, which sends the 100; then the body streams in."""
    data = body_bytes(2 * MiB)
    with socket.create_connection(("127.0.0.1", input_server.port), timeout=20) as sock:
        sock.sendall(b"POST /read_all HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(data))
        f = sock.makefile("rb")
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert f.readline() == b"\r\n"
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock)
        resp.fp = f  # the bytes already buffered by the first reads
        resp.begin()
        got = json.loads(resp.read())
    assert got["sha256"] == sha(data) and got["input"] == "BufferedReader"
