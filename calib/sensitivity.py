"""Which layers suffer most from INT8, measured where it matters: at the logits.

Leave-one-out: for every quantizable node, build the INT8 graph with only that node kept in
float (calibration ranges come from the cache, so each build is cheap) and measure how
much closer the logits get to the fp32 graph's on a batch of calibration images. Local
activation-error metrics are cheaper, but they mis-rank layers whose error later layers
amplify or wash out; the logits do not.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgetune import progress

QUANTIZABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class Sensitivity:
    node: str
    op_type: str
    gain_db: float  # logits SNR gained by keeping this node in float

    def to_dict(self) -> dict:
        return {"node": self.node, "op_type": self.op_type, "gain_db": round(self.gain_db, 2)}


def quantizable_nodes(fp32: Path) -> list[tuple[str, str]]:
    model = onnx.load(str(fp32))
    return [(n.name, n.op_type) for n in model.graph.node if n.op_type in QUANTIZABLE and n.name]


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.mean((ref.astype(np.float64) - got) ** 2))
    signal = float(np.mean(ref.astype(np.float64) ** 2))
    return 99.0 if noise == 0 else 10.0 * float(np.log10(max(signal, 1e-30) / noise))


def rank_layers(fp32: Path, build: Callable[[Path, list[str]], Path], batch: np.ndarray,
                run: Callable[[Path, np.ndarray], np.ndarray], log=print) -> list[Sensitivity]:
    """Nodes of `fp32`, most sensitive first. `build(out, exclude)` writes an INT8 graph with
    `exclude` kept in float; `run(path, batch)` returns logits."""
    ref = run(fp32, batch)
    nodes = quantizable_nodes(fp32)
    ranked = []
    with tempfile.TemporaryDirectory(prefix="edgetune-sens-") as tmp:
        base = snr_db(ref, run(build(Path(tmp) / "all.onnx", []), batch))
        for i, (name, op) in enumerate(progress.track(nodes, "sensitivity", unit="layers"), 1):
            path = build(Path(tmp) / f"loo{i}.onnx", [name])
            ranked.append(Sensitivity(name, op, snr_db(ref, run(path, batch)) - base))
            path.unlink()
    return sorted(ranked, key=lambda s: s.gain_db, reverse=True)
