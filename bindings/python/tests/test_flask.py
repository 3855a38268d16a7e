"""A real Flask application (from PyPI) served through warpcore.wsgi: routing,
JSON, form posts, file uploads, streamed responses, send_file, errors."""

from __future__ import annotations

import io
import json
import logging
import os
import uuid

import pytest
from flask import Flask, Response, abort, jsonify, redirect, request as freq, send_file, stream_with_context, url_for

from warpcore.wsgi import WSGIServer

from .conftest import raw_exchange, request


def make_app(tmp_path):
    app = Flask("warpcore_test_app")
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024

    @app.get("/")
    def index():
        return "Hello from Flask"

    @app.get("/users/<int:uid>")
    def user(uid):
        return jsonify(id=uid, name=f"user{uid}", q=freq.args.get("q"))

    @app.post("/json")
    def echo_json():
        data = freq.get_json()
        return jsonify(received=data, n=len(data["items"])), 201

    @app.post("/form")
    def form():
        return f"{freq.form['name']}|{','.join(freq.form.getlist('tag'))}"

    @app.post("/upload")
    def upload():
        f = freq.files["file"]
        data = f.read()
        return jsonify(filename=f.filename, size=len(data), mimetype=f.mimetype, desc=freq.form.get("desc"))

    @app.get("/stream")
    def stream():
        n = int(freq.args.get("n", 5))

        @stream_with_context
        def gen():
            for i in range(n):
                yield f"row {i} of {freq.args.get('n')}\n"

        return Response(gen(), mimetype="text/plain")

    @app.get("/file")
    def file():
        return send_file(tmp_path / "data.bin", mimetype="application/octet-stream")

    @app.get("/redirect")
    def go():
        return redirect(url_for("index"))

    @app.get("/forbidden")
    def forbidden():
        abort(403)

    @app.get("/crash")
    def crash():
        raise RuntimeError("view crashed")

    @app.errorhandler(404)
    def not_found(e):
        return jsonify(error="not found", path=freq.path), 404

    @app.get("/cookie")
    def cookie():
        resp = Response(f"seen={freq.cookies.get('k', '-')}")
        resp.set_cookie("k", "v1")
        return resp

    return app


@pytest.fixture(params=[4, 0], ids=["pool", "inline"])
def flask_server(request, tmp_path):
    (tmp_path / "data.bin").write_bytes(os.urandom(300_000))
    s = WSGIServer(make_app(tmp_path), port=0, threads=request.param, max_body_size=8 << 20).start()
    s.data = (tmp_path / "data.bin").read_bytes()
    yield s
    s.shutdown(2.0)


def test_routing_and_json(flask_server):
    p = flask_server.port
    r = request(p)
    assert (r.status, r.body) == (200, b"Hello from Flask")
    r = request(p, path="/users/42?q=x%20y")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    assert json.loads(r.body) == {"id": 42, "name": "user42", "q": "x y"}
    r = request(p, path="/users/abc")
    assert r.status == 404 and json.loads(r.body) == {"error": "not found", "path": "/users/abc"}


def test_json_post(flask_server):
    body = json.dumps({"items": [1, 2, 3], "ü": "ß"}).encode()
    r = request(flask_server.port, "POST", "/json", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 201
    assert json.loads(r.body) == {"received": {"items": [1, 2, 3], "ü": "ß"}, "n": 3}


def test_form_post(flask_server):
    r = request(
        flask_server.port,
        "POST",
        "/form",
        body=b"name=J%C3%BCrgen&tag=a&tag=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (r.status, r.body.decode()) == (200, "Jürgen|a,b")


def test_file_upload(flask_server):
    content = os.urandom(1_500_000)
    boundary = uuid.uuid4().hex
    parts = [
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"desc\"\r\n\r\nmy file\r\n".encode(),
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob.bin\"\r\n"
        "Content-Type: application/x-blob\r\n\r\n".encode()
        + content
        + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    body = b"".join(parts)
    r = request(
        flask_server.port,
        "POST",
        "/upload",
        body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status == 200, r.body
    assert json.loads(r.body) == {"filename": "blob.bin", "size": len(content), "mimetype": "application/x-blob", "desc": "my file"}


def test_streamed_response(flask_server):
    r = request(flask_server.port, path="/stream?n=200")
    assert r.status == 200 and r.headers.get("transfer-encoding") == "chunked"
    assert r.body.decode().splitlines() == [f"row {i} of 200" for i in range(200)]


def test_send_file(flask_server):
    r = request(flask_server.port, path="/file")
    assert r.status == 200 and r.body == flask_server.data
    assert r.headers["content-length"] == str(len(flask_server.data))


def test_errors_redirects_cookies(flask_server, caplog):
    p = flask_server.port
    r = request(p, path="/redirect")
    assert r.status == 302 and r.headers["location"] in ("/", f"http://127.0.0.1:{p}/")
    assert request(p, path="/forbidden").status == 403
    with caplog.at_level(logging.ERROR):
        r = request(p, path="/crash")
    assert r.status == 500  # Flask's own error page: the app handled it
    assert any("view crashed" in repr(rec.exc_info) for rec in caplog.records)
    assert request(p, "POST", "/").status == 405
    r = request(p, path="/cookie", headers={"Cookie": "k=v0"})
    assert r.body == b"seen=v0" and r.headers["set-cookie"].startswith("k=v1")
    # Too large for MAX_CONTENT_LENGTH: Flask answers 413 by the Content-Length
    # alone. The body (over the whole-body maximum) streams, so the answer
    # comes before it is sent; the library then closes the connection rather
    # than read a body nobody wants, so a client that sends it all before
    # reading (http.client) may see the close instead: read the head's answer.
    head = (
        f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {5 * 1024 * 1024}\r\n\r\n"
    ).encode()
    assert raw_exchange(p, head).startswith(b"HTTP/1.1 413 ")
