"""``python -m async_etl``."""

import sys

from async_etl.cli import main

sys.exit(main())
