"""torch → ONNX fp32 with a dynamic batch dimension, checked against PyTorch on real images."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from edgetune.atomic import atomic_path
from edgetune.export.graph_parity import Parity, ParityError, compare

__all__ = ["Parity", "ParityError", "check_parity", "export_onnx"]

INPUT, OUTPUT = "input", "logits"


def export_onnx(model: torch.nn.Module, size: tuple[int, int], path: str | Path, opset: int = 20) -> Path:
    """Write `model` (eval mode, CPU) as ONNX with input NCHW float32 and a dynamic batch."""
    model = model.eval().cpu()
    example = torch.zeros(2, 3, *size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    path = Path(path)
    with atomic_path(path) as tmp, _quiet():
        program = torch.onnx.export(
            model, (example,), input_names=[INPUT], output_names=[OUTPUT],
            dynamic_shapes=({0: batch},), dynamo=True, opset_version=opset,
            optimize=True, verbose=False,
        )
        program.save(str(tmp), external_data=False)
    return path


def check_parity(model: torch.nn.Module, onnx_path: str | Path, batch: np.ndarray,
                 tolerance: float = 1e-3) -> Parity:
    """Compare logits on real images; raise ParityError when the graphs disagree."""
    from edgetune.runtime.ort_backend import OrtSession

    with torch.no_grad():
        ref = model.eval().cpu()(torch.from_numpy(batch)).numpy()
    got = OrtSession(onnx_path, device="cpu").run(batch)
    return compare(ref, got, tolerance, f"ONNX export of {Path(onnx_path).name} disagrees with PyTorch")


@contextlib.contextmanager
def _quiet():
    # The exporter narrates every pass on stdout; our users want one line per stage.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
