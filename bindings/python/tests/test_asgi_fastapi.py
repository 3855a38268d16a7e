"""A FastAPI application on warpcore.asgi, driven by httpx and websockets:
path and query parameters, JSON bodies, a multipart upload, a streaming
response, a WebSocket endpoint, a long poll on ``request.is_disconnected()``,
startup and shutdown events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
from typing import List, Optional

import httpx
import pytest
from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from websockets.sync.client import connect

from warpcore.asgi import ASGIServer

TIMEOUT = 10.0


class Item(BaseModel):
    name: str
    price: float
    tags: List[str] = []


def make_app(events: List[str]) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        events.append("startup")  # the startup event
        yield
        events.append("shutdown")  # the shutdown event

    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def root() -> dict:
        return {"message": "Hello, World!"}

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: Optional[str] = None, limit: int = 10) -> dict:
        return {"item_id": item_id, "q": q, "limit": limit}

    @app.post("/items", status_code=201)
    async def create_item(item: Item) -> dict:
        return {"name": item.name, "total": item.price * 2, "tags": item.tags}

    @app.post("/upload")
    async def upload(file: UploadFile = File(...), note: str = Form("")) -> dict:
        data = await file.read()
        return {"filename": file.filename, "size": len(data), "head": data[:4].hex(), "note": note}

    @app.get("/stream")
    async def stream(n: int = 5) -> StreamingResponse:
        async def lines():
            for i in range(n):
                yield f"line {i}\n"
                await asyncio.sleep(0)

        return StreamingResponse(lines(), media_type="text/plain")

    @app.get("/poll")
    async def poll(request: Request) -> dict:
        # A long poll with nothing to send, as sse-starlette and the like
        # write it: Starlette's is_disconnected() between pieces of work.
        events.append("poll waits")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                events.append("poll: the client left")
                return {}
            await asyncio.sleep(0.01)
        events.append("poll: timed out")
        return {"timed_out": True}

    @app.websocket("/ws/{name}")
    async def ws(websocket: WebSocket, name: str) -> None:
        await websocket.accept()
        try:
            while True:
                data = await websocket.receive_json()
                await websocket.send_json({"hello": name, "got": data})
        except WebSocketDisconnect as exc:
            events.append(f"ws closed {exc.code}")

    return app


@pytest.fixture(params=["asyncio", "uvloop"])
def served(request):
    events: List[str] = []
    server = ASGIServer(make_app(events), port=0, loop=request.param, access_log=False).start()
    try:
        yield server, events
    finally:
        server.shutdown(5.0)
    assert events[-1] == "shutdown"


def test_fastapi_http(served):
    server, events = served
    assert events == ["startup"]
    base = f"http://127.0.0.1:{server.port}"
    with httpx.Client(base_url=base, timeout=TIMEOUT) as client:
        assert client.get("/").json() == {"message": "Hello, World!"}
        assert client.get("/items/42", params={"q": "a b", "limit": 3}).json() == {"item_id": 42, "q": "a b", "limit": 3}
        assert client.get("/items/nope").status_code == 422
        r = client.post("/items", json={"name": "pen", "price": 1.25, "tags": ["x", "y"]})
        assert (r.status_code, r.json()) == (201, {"name": "pen", "total": 2.5, "tags": ["x", "y"]})
        assert client.post("/items", json={"name": "pen"}).status_code == 422
        data = os.urandom(3 << 20)  # larger than whole_body_max: the body streams
        r = client.post("/upload", files={"file": ("blob.bin", data, "application/octet-stream")}, data={"note": "hi"})
        assert r.json() == {"filename": "blob.bin", "size": len(data), "head": data[:4].hex(), "note": "hi"}
        with client.stream("GET", "/stream", params={"n": 4}) as r:
            assert r.headers["content-type"].startswith("text/plain")
            assert list(r.iter_lines()) == [f"line {i}" for i in range(4)]
        assert client.get("/missing").status_code == 404


def test_fastapi_async_client(served):
    server, _ = served

    async def many() -> List[int]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=TIMEOUT) as client:
            rs = await asyncio.gather(*(client.get(f"/items/{i}") for i in range(50)))
            return [r.json()["item_id"] for r in rs]

    assert asyncio.run(many()) == list(range(50))


def test_fastapi_websocket(served):
    server, events = served
    with connect(f"ws://127.0.0.1:{server.port}/ws/bob", open_timeout=TIMEOUT) as ws:
        ws.send('{"n": 1}')
        assert ws.recv(TIMEOUT) == '{"hello":"bob","got":{"n":1}}'
        ws.send('{"n": 2}')
        assert ws.recv(TIMEOUT) == '{"hello":"bob","got":{"n":2}}'
    end = time.monotonic() + TIMEOUT
    while "ws closed 1000" not in events and time.monotonic() < end:
        time.sleep(0.01)
    assert "ws closed 1000" in events


def test_fastapi_long_poll_sees_its_client_leave(served, caplog):
    """``await request.is_disconnected()`` (a receive() in a scope cancelled
    at once) turns True soon after the client resets, as under uvicorn; the
    answer the endpoint then returns for nobody is not an error."""
    server, events = served
    caplog.set_level(logging.DEBUG, logger="warpcore")
    c = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    c.sendall(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
    end = time.monotonic() + TIMEOUT
    while "poll waits" not in events and time.monotonic() < end:
        time.sleep(0.005)
    assert "poll waits" in events
    time.sleep(0.05)  # a few polls in vain
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    t0 = time.monotonic()
    while not any(e.startswith("poll:") for e in events) and time.monotonic() < end:
        time.sleep(0.005)
    took = time.monotonic() - t0
    assert [e for e in events if e.startswith("poll:")] == ["poll: the client left"], events
    assert took < 2.0, f"is_disconnected() turned True {took:.2f} s after the reset"
    while server._cycles and time.monotonic() < end:
        time.sleep(0.005)
    assert not server._cycles
    errors = [r.getMessage() for r in caplog.records if r.name.startswith("warpcore") and r.levelno >= logging.WARNING]
    assert not errors, errors
