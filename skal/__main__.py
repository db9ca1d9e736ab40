"""``python -m skal``: the skal command line."""

import sys

from .cli import main

sys.exit(main())
