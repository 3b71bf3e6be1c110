"""The one seam between deployment code and inference engines.

A backend is `open(path, device, threads) -> Session`; a Session runs one float32 NCHW
batch and returns logits. onnxruntime, tensorrt and openvino implement it (registered in
`backends`); bench, evaluation and predict use only this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgetune.errors import InputError


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


def check_batch(batch: np.ndarray, spec: InputSpec) -> None:
    """Refuse arrays the engine would reject with an opaque message."""
    if not isinstance(batch, np.ndarray):
        raise InputError(f"run() takes a numpy array, got {type(batch).__name__}")
    if batch.dtype != np.float32:
        raise InputError(
            f"input batch has dtype {batch.dtype}; expected float32 NCHW (use .astype(np.float32))"
        )
    expected = spec.shape
    if batch.ndim != len(expected) or any(
        isinstance(e, int) and e != b for e, b in zip(expected, batch.shape)
    ):
        raise InputError(f"input batch has shape {batch.shape}; expected {shape_text(expected)} (NCHW)")


def shape_text(shape: tuple) -> str:
    """(None, 3, 224, 224) -> 'Nx3x224x224': dynamic dims shown as N."""
    return "x".join(str(d) if isinstance(d, int) else "N" for d in shape)
