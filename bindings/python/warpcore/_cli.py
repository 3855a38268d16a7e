"""The ``warpcore`` command (also ``python -m warpcore`` and ``python -m
warpcore.wsgi``): gunicorn's flags where they mean the same thing, a master
process supervising worker processes (:mod:`warpcore._arbiter`).

    warpcore myproject.wsgi:application -w 4 --threads 8 -b unix:/run/app.sock
    warpcore -c warpcore.conf.py myproject.asgi:app --interface asgi

``--workers``/``-w`` counts processes (``--processes`` is the same flag);
the engine's event loops per process are ``--loops``. ``warpcore --help``
lists every flag.
"""

from __future__ import annotations

import sys
from typing import Any, List, Optional, Sequence

from . import _config, _logs, _worker
from ._arbiter import Arbiter
from ._config import Config, ConfigError

__all__ = ["main"]


def _load(cfg: Config) -> Any:
    """In a worker: the application named by the configuration."""
    return _worker.load_app(cfg.wsgi_app)


def main(argv: Optional[Sequence[str]] = None, prog: str = "warpcore") -> int:
    """Runs the command line ``argv`` (default ``sys.argv[1:]``) until the
    master stops; returns the exit status (2 for a bad command line or
    configuration, 1 when serving could not start)."""
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = _config.load(args, prog)
        # An interface this installation lacks fails here, not in each worker.
        _worker.server_factory(cfg.interface)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        _logs.configure(cfg.errorlog, cfg.loglevel)
    except OSError as exc:
        print(f"{prog}: cannot open the error log: {exc}", file=sys.stderr)
        return 1
    return Arbiter(cfg, _load, reload_config=lambda: _config.load(args, prog)).run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
