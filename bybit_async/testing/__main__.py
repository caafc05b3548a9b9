"""``python -m bybit_async.testing``: see `bybit_async.testing.cli.main`."""

import sys

from .cli import main

sys.exit(main())
