"""WSGI "Hello, World!" app shared by the Python peers (granian, gunicorn)."""

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
NOT_FOUND = [("Content-Type", "text/plain"), ("Content-Length", "0")]


def app(environ, start_response):
    if environ.get("PATH_INFO", "/") == "/":
        start_response("200 OK", HEADERS)
        return [BODY]
    start_response("404 Not Found", NOT_FOUND)
    return [b""]
