"""INT8 that is measured, not assumed: candidate graphs for the CPU, an accuracy budget,
and the fastest candidate within it.

Candidates: every quantizable op in INT8 ("int8"); only the compute ops (Conv/Gemm/MatMul)
with elementwise ops left in float ("int8-compute", fewer Q/DQ: on depthwise-heavy nets the
extra Q/DQ around Add/Mul/pooling costs more than INT8 saves); every op with signed
activations ("int8-s8s8": ONNX Runtime's first choice on ARM, slow on x86, calib.quantize);
and, when all lose more than the budget, "int8-mixed": the most sensitive layers kept in
float, added greedily until the budget holds.

CPU-kernel-aware candidates (calib.cpu_graphs, calib.node_profile), built where they differ
from the above: "int8-depthwise", only the depthwise convs ONNX Runtime's fast INT8 kernel
takes; "int8-fusable", compute ops except those touching an activation the CPU cannot fuse
(HardSwish, HardSigmoid, SiLU, Sigmoid·Mul); "int8-profiled", compute ops except those ORT's
profiler timed slower in INT8 than in fp32. Every INT8 candidate then gets fast bias
correction (calib.bias_correction), kept where it brings the logits closer to fp32 on
calibration images it was not measured on. Each is kept only if it is the fastest within
the budget: `edgetune.ranking.choose` weighs them all, timed side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgetune.calib import cpu_graphs
from edgetune.calib.quantize import Calibration, quantize_cpu, quantize_cpu_s8s8
from edgetune.calib.sensitivity import rank_layers, snr_db

COMPUTE_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]
S8S8 = "int8-s8s8"  # every op, signed activations: ONNX Runtime's first choice on ARM


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
    bias_correction: dict | None = None  # {"layers", "snr_db_before", "snr_db_after", "kept"}
    backend: str = "onnxruntime"  # the engine that runs it ("openvino" for --targets openvino)
    qat: dict | None = None  # quantization-aware fine-tuning's record, for the "int8-qat" candidate

    def within(self, floor: float) -> bool:
        return self.top1 is not None and self.top1 >= floor - 1e-9

    @property
    def size_bytes(self) -> int:
        """What shipping it costs: ties on latency and accuracy go to the smaller file."""
        return self.path.stat().st_size if self.path.exists() else 0

    def row(self) -> dict:
        return {"candidate": self.name, "backend": self.backend, "precision": self.precision, "top1": self.top1,
                "p50_ms": self.latency["p50"] if self.latency else None,
                "size_bytes": self.size_bytes or None,
                "float_nodes": len(self.excluded), "bias_correction": self.bias_correction,
                **({"qat": self.qat} if self.qat else {}), "verdict": self.verdict}


def int8_candidates(cal: Calibration, work: Path, evaluate: Callable[[Path], float], floor: float,
                    calib_batch: np.ndarray, run: Callable[[Path, np.ndarray], np.ndarray],
                    log=print, threads: int | None = None, kernel_aware: bool = True,
                    measure: str = "top-1") -> list[Candidate]:
    """The CPU INT8 candidates, each with its top-1; `floor` is the lowest top-1 allowed.
    `measure`: what `evaluate` measures, as the log names it (top-1 on labelled images, or
    agreement with fp32 where the run is judged on unlabelled target images)."""
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for name, ops in (("int8", None), ("int8-compute", COMPUTE_OPS)):
        out.append(Candidate(name, quantize_cpu(cal, work / f"{name}.onnx", op_types=ops), "int8", op_types=ops))
    if kernel_aware:
        out += kernel_aware_candidates(cal, work, out[1].path, calib_batch, threads, log)
    out.append(Candidate(S8S8, quantize_cpu_s8s8(cal, work / f"{S8S8}.onnx"), "int8"))
    for c in out:
        correct_candidate(c, cal.model, calib_batch, run, work)
        c.top1 = evaluate(c.path)
    if not any(c.within(floor) for c in out):
        log(f"quantize: INT8 {measure} {max(c.top1 for c in out):.2%} is below the budget floor "
            f"{floor:.2%}; ranking layers to keep in float")
        out.append(fit_budget(cal, work, evaluate, floor, calib_batch, run, log, measure))
    return out


def kernel_aware_candidates(cal: Calibration, work: Path, compute: Path, calib_batch: np.ndarray,
                            threads, log) -> list[Candidate]:
    """The candidates that follow ONNX Runtime's CPU kernels (module docstring); one is
    skipped where it would be a graph already built (no such node in this model)."""
    from edgetune.calib.node_profile import slower_in_int8

    fp32 = cal.model
    computes = cpu_graphs.compute_nodes(fp32, COMPUTE_OPS)
    out = []
    fast = set(cpu_graphs.fast_depthwise(fp32))
    if fast:
        why = "not a depthwise conv with a multiple of 16 channels (ORT's fast INT8 depthwise kernel)"
        out.append(_candidate(cal, work, "int8-depthwise", ["Conv"],
                              [{"node": n, "why": why} for n in computes if n not in fast]))
    region = cpu_graphs.unfusable_region(fp32, COMPUTE_OPS)
    if region:
        why = "reads or writes an activation the CPU cannot fuse into an INT8 conv"
        out.append(_candidate(cal, work, "int8-fusable", COMPUTE_OPS, [{"node": n, "why": why} for n in region]))
    slower = slower_in_int8(fp32, compute, calib_batch[:1], threads=threads)
    if slower and len(slower) < len(computes):
        out.append(_candidate(cal, work, "int8-profiled", COMPUTE_OPS, [s.to_dict() for s in slower]))
    log(f"quantize: kernel-aware candidates {', '.join(c.name for c in out) or 'none'} "
        f"({len(fast)} fast depthwise, {len(region)} in unfusable regions, {len(slower)} profiled slower)")
    return out


def _candidate(cal: Calibration, work: Path, name: str, ops, excluded: list[dict]) -> Candidate:
    path = quantize_cpu(cal, work / f"{name}.onnx", exclude=[e["node"] for e in excluded], op_types=ops)
    return Candidate(name, path, "int8", op_types=ops, excluded=excluded)


def correct_candidate(c: Candidate, fp32: Path, calib_batch: np.ndarray, run, work: Path) -> None:
    """Fast bias correction measured on half the calibration batch, kept only where it brings
    the logits closer to fp32 on the other half."""
    from edgetune.calib.bias_correction import correct_bias

    fit, check = calib_batch[0::2], calib_batch[1::2]
    corrected, layers = correct_bias(c.path, fp32, fit, work / f"{c.name}.bc.onnx")
    ref = run(fp32, check)
    before, after = snr_db(ref, run(c.path, check)), snr_db(ref, run(corrected, check))
    kept = layers > 0 and after > before
    c.bias_correction = {"layers": layers, "snr_db_before": round(before, 2), "snr_db_after": round(after, 2),
                         "kept": kept}
    if kept:
        corrected.replace(c.path)
    else:
        corrected.unlink(missing_ok=True)


def fit_budget(cal: Calibration, work: Path, evaluate, floor: float, calib_batch, run, log,
               measure: str = "top-1", quantize: Callable = quantize_cpu) -> Candidate:
    """Keep the most sensitive layers in float, 1, 2, 4, … of them, until top-1 ≥ floor;
    `quantize` is the target's recipe (the CPU's by default; `quantize_tensorrt` for TensorRT)."""
    def build(path: Path, exclude: list[str]) -> Path:
        return quantize(cal, path, exclude=exclude)

    ranking = rank_layers(cal.model, build, calib_batch, run, log)
    k, best = 1, None
    while True:
        chosen = ranking[:k]
        path = build(work / "int8-mixed.onnx", [s.node for s in chosen])
        top1 = evaluate(path)
        log(f"  {k} layer(s) in float: {measure} {top1:.2%}")
        best = Candidate("int8-mixed", path, "int8", top1=top1, excluded=[
            {**s.to_dict(), "why": f"keeping it in float brings the logits {s.gain_db:.1f} dB closer to fp32"}
            for s in chosen])
        if top1 >= floor - 1e-9 or k >= len(ranking):
            return best
        k = min(2 * k, len(ranking))
