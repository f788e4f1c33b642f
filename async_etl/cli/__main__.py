"""``python -m async_etl.cli``."""

import sys

from async_etl.cli import main

sys.exit(main())
