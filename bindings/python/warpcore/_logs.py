"""The command line's logs: the error log (Python's logging, to standard
error or a file) and the access log's destination, both reopened on SIGUSR1
so that logrotate can move the files away."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Optional, Union

__all__ = ["configure", "reopen", "access_log_target"]

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"

_handler: Optional[logging.Handler] = None


class _ReopenableFileHandler(logging.FileHandler):
    """A file handler that can reopen its file (same path, new file)."""

    def reopen(self) -> None:
        """Raises OSError (the old file stays in use) when it cannot."""
        self.acquire()
        try:
            new = self._open()
            old, self.stream = self.stream, new
            if old is not None:
                old.close()
        finally:
            self.release()


def configure(errorlog: Optional[str], level: str) -> None:
    """Sends the root logger to ``errorlog`` (``-`` or None: standard error)
    at ``level``, replacing what an earlier call set up."""
    global _handler
    root = logging.getLogger()
    # Opened first: a file that cannot be opened (OSError) changes nothing.
    if errorlog in (None, "-"):
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        handler = _ReopenableFileHandler(errorlog, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    _handler = handler


def reopen() -> None:
    """Reopens the error log's file (after it was moved away); a file that
    cannot be opened is reported in the old one, which stays in use."""
    if isinstance(_handler, _ReopenableFileHandler):
        try:
            _handler.reopen()
        except OSError as exc:
            logging.getLogger("warpcore").error("cannot reopen the error log: %s", exc)


def _write_stdout(data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(1, view)
        view = view[n:]


def access_log_target(accesslog: Optional[str]) -> Union[None, str, Callable[[bytes], Any]]:
    """The server's ``access_log`` for the ``--access-logfile`` setting: a
    path (the engine writes and reopens it), standard output for ``-``."""
    if accesslog is None:
        return None
    if accesslog == "-":
        return _write_stdout
    return os.path.abspath(accesslog)
