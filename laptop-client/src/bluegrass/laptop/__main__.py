"""`python -m bluegrass.laptop`: the same as the `bluegrass` command (used by the service files)."""

import sys

from bluegrass.laptop.cli import main

sys.exit(main())
