"""`python -m clear_core ...` runs the command line (see cli.py)."""

import sys

from clear_core.cli import run

sys.exit(run())
