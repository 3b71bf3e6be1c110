"""INT8 that is measured, not assumed: candidate graphs for the CPU, an accuracy budget,
and the fastest candidate within it.

Candidates: every quantizable op in INT8 ("int8"); only the compute ops (Conv/Gemm/MatMul)
with elementwise ops left in float ("int8-compute", fewer Q/DQ: on depthwise-heavy nets the
extra Q/DQ around Add/Mul/pooling costs more than INT8 saves); and, when both lose more than
the budget, "int8-mixed": the most sensitive layers kept in float, added greedily until the
budget holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetune.calib.quantize import Calibration, quantize_cpu
from edgetune.calib.sensitivity import rank_layers

COMPUTE_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]


@dataclass
class Candidate:
    name: str
    path: Path
    precision: str
    top1: float | None = None
    latency: dict | None = None
    op_types: list[str] | None = None  # None: all that ONNX Runtime can quantize
    excluded: list[dict] = field(default_factory=list)  # nodes kept in float, with why
    verdict: str = ""

    def within(self, floor: float) -> bool:
        return self.top1 is not None and self.top1 >= floor - 1e-9

    def row(self) -> dict:
        return {"candidate": self.name, "precision": self.precision, "top1": self.top1,
                "p50_ms": self.latency["p50"] if self.latency else None,
                "size_bytes": self.path.stat().st_size if self.path.exists() else None,
                "float_nodes": len(self.excluded), "verdict": self.verdict}


def int8_candidates(cal: Calibration, work: Path, evaluate: Callable[[Path], float], floor: float,
                    calib_batch: np.ndarray, run: Callable[[Path, np.ndarray], np.ndarray],
                    log=print) -> list[Candidate]:
    """The CPU INT8 candidates, each with its top-1; `floor` is the lowest top-1 allowed."""
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for name, ops in (("int8", None), ("int8-compute", COMPUTE_OPS)):
        c = Candidate(name, quantize_cpu(cal, work / f"{name}.onnx", op_types=ops), "int8", op_types=ops)
        c.top1 = evaluate(c.path)
        out.append(c)
    if not any(c.within(floor) for c in out):
        log(f"quantize: INT8 top-1 {max(c.top1 for c in out):.2%} is below the budget floor "
            f"{floor:.2%}; ranking layers to keep in float")
        out.append(fit_budget(cal, work, evaluate, floor, calib_batch, run, log))
    return out


def fit_budget(cal: Calibration, work: Path, evaluate, floor: float, calib_batch, run, log) -> Candidate:
    """Keep the most sensitive layers in float, 1, 2, 4, … of them, until top-1 ≥ floor."""
    def build(path: Path, exclude: list[str]) -> Path:
        return quantize_cpu(cal, path, exclude=exclude)

    ranking = rank_layers(cal.model, build, calib_batch, run, log)
    k, best = 1, None
    while True:
        chosen = ranking[:k]
        path = build(work / "int8-mixed.onnx", [s.node for s in chosen])
        top1 = evaluate(path)
        log(f"  {k} layer(s) in float: top-1 {top1:.2%}")
        best = Candidate("int8-mixed", path, "int8", top1=top1, excluded=[
            {**s.to_dict(), "why": f"keeping it in float brings the logits {s.gain_db:.1f} dB closer to fp32"}
            for s in chosen])
        if top1 >= floor - 1e-9 or k >= len(ranking):
            return best
        k = min(2 * k, len(ranking))


def choose(candidates: list[Candidate], floor: float, max_drop: float) -> Candidate:
    """The fastest candidate within the budget (fp32 is always one); verdicts on all."""
    within = [c for c in candidates if c.within(floor) and c.latency]
    winner = min(within, key=lambda c: c.latency["p50"])
    for c in candidates:
        if c is winner:
            c.verdict = f"chosen: fastest within {max_drop:g} top-1 points of fp32"
        elif not c.within(floor):
            c.verdict = f"over budget: top-1 {c.top1:.2%} < {floor:.2%}"
        elif c.latency and winner.latency:
            c.verdict = f"slower: {c.latency['p50'] / winner.latency['p50']:.2f}x the winner's p50"
    return winner
