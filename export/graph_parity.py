"""Two graphs, one network: logits compared on the same images, within a tolerance.

The one home of parity: the export's check against PyTorch (export/onnx.py), a graph with the
preprocessing folded in (export/fold.py) and a graph converted to an older opset
(export/opset.py) all judge agreement here. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ParityError(RuntimeError):
    """A graph disagrees with its reference beyond tolerance: an exporter bug, not user error."""


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    top1_agreement: float
    images: int
    tolerance: float

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "top1_agreement": self.top1_agreement,
                "images": self.images, "tolerance": self.tolerance}


def compare(ref: np.ndarray, got: np.ndarray, tolerance: float, what: str) -> Parity:
    """Parity of `got` against `ref` (N, classes); ParityError when they disagree. The
    tolerance is relative to the reference's scale: fp32 reassociation grows with magnitude."""
    diff = float(np.abs(ref.astype(np.float64) - got).max())
    agree = float((ref.argmax(1) == got.argmax(1)).mean())
    allowed = tolerance * max(1.0, float(np.abs(ref).max()))
    parity = Parity(round(diff, 7), round(agree, 4), len(ref), tolerance)
    if diff > allowed or agree < 0.99:
        raise ParityError(f"{what}: max |Δ| {diff:.3g} (allowed {allowed:.3g}), top-1 agreement "
                          f"{agree:.2%} on {len(ref)} images")
    return parity
