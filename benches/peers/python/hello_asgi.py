"""ASGI hello apps shared by the ASGI servers (warpcore.asgi, uvicorn, granian):
GET / -> "Hello, World!" (text/plain), GET /json -> {"message":"Hello, World!"}.
The JSON is encoded per request, as an application would."""

import json

PLAIN = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
JSON = [(b"content-type", b"application/json")]
NOT_FOUND = [(b"content-type", b"text/plain"), (b"content-length", b"0")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return  # lifespan: unsupported, the servers go on without it
    path = scope["path"]
    if path == "/":
        await send({"type": "http.response.start", "status": 200, "headers": PLAIN})
        await send({"type": "http.response.body", "body": b"Hello, World!"})
    elif path == "/json":
        body = json.dumps({"message": "Hello, World!"}, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": 200, "headers": JSON + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": NOT_FOUND})
        await send({"type": "http.response.body", "body": b""})
