"""``python -m netmetrix``."""

import sys

from netmetrix.cli import main

sys.exit(main())
