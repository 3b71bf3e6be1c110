"""Quantization-aware fine-tuning as one more INT8 candidate per target.

`--qat` (edgetune.train.qat does the fine-tuning) adds "int8-qat" where no post-training
candidate met the accuracy budget, or always when asked: made with the target's recipe, judged
on the same val images and, on the CPU, timed beside the rest. It ships under the target's
usual file name only where the usual rule picks it (edgetune.cpu_target, edgetune.targets).
"""

from __future__ import annotations

from pathlib import Path

from edgetune.config import ExportConfig

QAT = "int8-qat"  # the candidate quantization-aware fine-tuning made
QAT_ZP0 = "int8-qat-zp0"  # the same for OpenVINO, zero-points 0 (its PTQ peer: cpu_target.OPENVINO_RECIPE)


def wants_qat(cfg: ExportConfig, ptq_within: bool) -> bool:
    """--qat auto runs where no PTQ candidate met the budget; always and off say it all."""
    return cfg.qat == "always" or (cfg.qat == "auto" and not ptq_within)


def qat_candidate(qat, recipe: str, work: Path, evaluate, ptq_top1: float, log):
    """The "int8-qat" candidate for `recipe` ("int8-qat-zp0" for openvino), evaluated by
    `evaluate(path)`; `qat` is an edgetune.train.qat.QatJob. OpenVINO's graph is judged with
    OpenVINO's other candidates (cpu_target.openvino_candidates), so `evaluate` is None there."""
    from edgetune.calib.select import Candidate
    from edgetune.export.onnx import export_qdq

    name = QAT_ZP0 if recipe == "openvino" else QAT
    result = qat.run(recipe, log)
    path = export_qdq(result.model, qat.size, work / f"{name}.{recipe}.onnx")
    c = Candidate(name, path, "int8", qat={**result.record, "ptq_top1": ptq_top1})
    seconds = f"{result.record['seconds']:.0f} s"
    if evaluate is None:
        log(f"qat: {recipe} graph made ({seconds}); judged in OpenVINO with its other candidates")
        return c
    c.top1 = evaluate(c.path)
    log(f"qat: {recipe} top-1 {c.top1:.2%} against the best PTQ {ptq_top1:.2%} ({seconds})")
    return c
