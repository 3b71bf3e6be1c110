"""`python -m edgetune.cli …`: the command line without the installed script."""

import sys

from edgetune.cli.main import console

sys.exit(console())
