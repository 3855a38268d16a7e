"""The FastAPI hello shared by the ASGI servers: GET / -> "Hello, World!"
(text/plain), GET /json -> {"message":"Hello, World!"} (FastAPI's own JSON
encoding of a returned dict)."""

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def hello() -> str:
    return "Hello, World!"


@app.get("/json")
async def hello_json() -> dict:
    return {"message": "Hello, World!"}
