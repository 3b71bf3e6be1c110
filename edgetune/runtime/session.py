"""The one seam between deployment code and inference engines.

A backend is `open(path, device, threads) -> Session`; a Session runs one float32 NCHW
batch and returns logits. onnxruntime and tensorrt implement it; bench, evaluation and
predict use only this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple  # (N, C, H, W); dynamic dims are strings or None
    dtype: str  # numpy dtype name, e.g. "float32"


class Session(Protocol):
    backend: str
    device: str
    input: InputSpec

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW batch -> float32 (N, num_classes) logits."""
        ...
