"""`python -m netopt.cli …`, as `netopt …`."""

import sys

from netopt.cli import main

sys.exit(main())
