"""``python -m warpcore.asgi MODULE:APP``: see ``warpcore.asgi``."""

import sys

from ._cli import main

sys.exit(main())
