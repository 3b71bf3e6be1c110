"""What many tests share: running the CLI and Python in subprocesses (cli), and a small real
bundle built without the training pipeline (tiny_bundle)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
