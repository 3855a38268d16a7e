"""``python -m warpcore`` runs a WSGI application, like ``python -m warpcore.wsgi``."""

import sys

from .wsgi import main

sys.exit(main())
