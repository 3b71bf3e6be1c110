"""`python -m edgetune …`, the form torchrun launches: `torchrun --nproc-per-node 2 -m edgetune train …`."""

import sys

from edgetune.cli.main import console

sys.exit(console())
