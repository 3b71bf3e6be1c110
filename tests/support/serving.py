"""The serving environment that `make` builds (.venv-serve: edgetune[runtime,serve], no PyTorch;
EDGETUNE_SERVE_PYTHON names another), where the tests start `edgetune serve` from
(edgetune.serve.child)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import REPO


def serve_python() -> Path:
    """The serving environment's Python; a clear failure (not a skip) when it was never built."""
    import pytest

    path = Path(os.environ.get("EDGETUNE_SERVE_PYTHON") or REPO / ".venv-serve" / "bin" / "python")
    if not path.is_file():
        pytest.fail(f"no serving environment at {path}: run `make serve-env` (make test builds it), or set "
                    "EDGETUNE_SERVE_PYTHON to a Python with edgetune[runtime,serve] installed")
    return path
