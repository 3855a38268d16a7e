"""``python -m warpcore``: the ``warpcore`` command (WSGI, or ASGI with
``--interface asgi``); see :mod:`warpcore._cli`."""

import sys

from ._cli import main

sys.exit(main(prog="python -m warpcore"))
