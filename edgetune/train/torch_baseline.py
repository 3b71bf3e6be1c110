"""PyTorch eager fp32 behind the Session interface, for `edgetune bench --compare-torch`.

Training side (imports torch): deployment code never imports this module; bench loads it
only when asked to compare, after checking that torch is installed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from edgetune.bundle import read_manifest, verify_checkpoint
from edgetune.errors import BundleError, ConfigError
from edgetune.runtime.session import InputSpec
from edgetune.train.model import build_from_checkpoint

BACKEND = "pytorch eager"


class TorchSession:
    """The bundle's checkpoint as an eval-mode model: `run(float32 NCHW) -> logits`."""

    backend = BACKEND
    device = "cpu"

    def __init__(self, bundle: str | Path):
        bundle = Path(bundle)
        if not bundle.is_dir():
            raise ConfigError(f"--compare-torch needs a bundle folder with a checkpoint, not {bundle.name}")
        manifest = read_manifest(bundle)
        if not manifest.checkpoint:
            raise BundleError(f"{bundle} records no checkpoint, so there is no PyTorch model to compare")
        file = verify_checkpoint(bundle, manifest)
        self.name = manifest.checkpoint
        self._model = build_from_checkpoint(torch.load(file, map_location="cpu", weights_only=True))
        self.input = InputSpec("input", (None, 3, *manifest.preprocess.size), "float32")

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._model(torch.from_numpy(batch)).numpy()

    @contextlib.contextmanager
    def threads(self, n: int | None):
        """PyTorch's intra-op thread count for the block, restored after."""
        previous = torch.get_num_threads()
        if n:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(previous)
