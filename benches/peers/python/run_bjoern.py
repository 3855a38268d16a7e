"""bjoern (a single-threaded libev WSGI server) serving hello_wsgi.app.

Usage: run_bjoern.py PORT [WORKERS]
With WORKERS > 1 the socket is bound with SO_REUSEPORT and the process forks
WORKERS-1 children (the pattern of bjoern's README); SIGTERM stops them all.
bjoern cannot pipeline: it is measured in the plain suite only.
"""
import os
import signal
import sys

import bjoern

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hello_wsgi import app  # noqa: E402

port = int(sys.argv[1])
workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
bjoern.listen(app, "127.0.0.1", port, reuse_port=workers > 1)
children = []
for _ in range(workers - 1):
    pid = os.fork()
    if pid == 0:
        children = []
        break
    children.append(pid)


def _stop(signum, frame):
    for c in children:
        try:
            os.kill(c, signal.SIGTERM)
        except ProcessLookupError:
            pass
    os._exit(0)


signal.signal(signal.SIGTERM, _stop)
bjoern.run()
