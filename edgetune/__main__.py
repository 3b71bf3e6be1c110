"""`python -m edgetune …`, the form torchrun launches: `torchrun --nproc-per-node 2 -m edgetune train …`."""

import sys

from edgetune.cli import main

sys.exit(main())
