"""The `edgetune` command line (`edgetune.cli.main`). Torch-free until a command needs it."""

from edgetune.cli.main import main

__all__ = ["main"]
