"""The GPU targets' artifacts after the fp32 graph: build, check, evaluate, and explain.

tensorrt: the symmetric QDQ graph, linted and pre-flighted here and evaluated in ONNX
Runtime; timed only on the device, so where PTQ misses the budget, the QAT graph (`--qat`,
edgetune.qat_candidate) and then one with the most sensitive layers in float (`int8-mixed`)
are made, and the more accurate ships. gpu: an fp16 graph. The cpu target, which is timed
here, is `edgetune.cpu_target`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetune.bundle import Artifact, artifact_path, artifact_record
from edgetune.config import ExportConfig
from edgetune.evaluate import EvalSet, graph_logits, top1
from edgetune.files import CALIB, FP16, FP32, INT8_TENSORRT, folded_name
from edgetune.preprocess import Preprocess
from edgetune.runtime import backends
from edgetune.runtime.ort_backend import OrtSession


def build_tensorrt(out: Path, cal, val: EvalSet, cfg: ExportConfig, log, floor: float, qat=None,
                   calib_batch: np.ndarray | None = None) -> tuple[Artifact, list[dict]]:
    """The symmetric QDQ graph, linted and evaluated in ONNX Runtime; with `qat` (a QatJob) and
    --qat's say, the "int8-qat" candidate beside it; where neither is within the budget and
    `calib_batch` ranks the layers, "int8-mixed": the most sensitive layers left without Q/DQ
    (TensorRT runs them in float), as many as the budget needs. Returns the artifact and the
    candidate rows."""
    from edgetune.calib.quantize import quantize_tensorrt
    from edgetune.calib.select import Candidate, fit_budget
    from edgetune.qat_candidate import qat_candidate, wants_qat

    name = INT8_TENSORRT
    log(f"quantize: INT8 QDQ for tensorrt (symmetric) → {out / name}")
    quantize_tensorrt(cal, out / name)
    _lint(out / name)

    def evaluate(path: Path) -> float:
        return top1(OrtSession(path, device="cpu", threads=cfg.threads), val, desc=f"evaluate {path.name}")

    ptq = Candidate("int8", out / name, "int8", top1=evaluate(out / name))
    rows, chosen = [ptq], ptq
    if qat is not None and wants_qat(cfg, ptq.within(floor)):
        c = qat_candidate(qat, "tensorrt", out / CALIB, evaluate, ptq.top1, log)
        _lint(c.path)
        rows.append(c)
        # Both are INT8 TensorRT graphs (not timed here): QAT ships only where it brings back
        # the budget PTQ missed, or comes closer to it.
        if not ptq.within(floor) and c.top1 > ptq.top1:
            chosen = c
    if calib_batch is not None and not chosen.within(floor):
        log(f"quantize: tensorrt INT8 top-1 {chosen.top1:.2%} is below the budget floor {floor:.2%}; "
            "ranking layers to leave in float")
        mixed = fit_budget(cal, out / CALIB / "tensorrt", evaluate, floor, calib_batch, graph_logits, log,
                           quantize=quantize_tensorrt)
        _lint(mixed.path)
        rows.append(mixed)
        # The fewest layers in float that meet the budget; a fully INT8 graph (PTQ or QAT) that
        # meets it too would have been chosen above.
        if mixed.top1 > chosen.top1:
            chosen = mixed
    for c in rows:
        c.verdict = ("chosen" if c is chosen else "not chosen") + (
            f": {c.top1:.2%} within the budget" if c.within(floor) else f": {c.top1:.2%} < {floor:.2%}")
    table = [{k: v for k, v in c.row().items() if k != "p50_ms"} | {"p50_ms": None} for c in rows]
    for c in rows[1:]:  # one graph ships under the usual name
        c.path.replace(out / name) if c is chosen else c.path.unlink()
    opset = plan_opset(out / name, cfg.tensorrt_version, val.head(cfg.parity_images), log)
    checked = preflight_tensorrt(out / name, log)
    calibration = {**cal.to_dict(), "recipe": "tensorrt", "lint": "passed", "candidate": chosen.name}
    if chosen.qat:
        calibration["qat"] = chosen.qat
    if chosen.excluded:
        calibration["float_nodes"] = chosen.excluded  # the cpu artifacts' key: the report lists them
    art = artifact_record(
        out, name, backend="onnxruntime", target="tensorrt", precision="int8", preflight=checked, opset=opset,
        extra=backends.extra("onnxruntime"), top1=chosen.top1, calibration=calibration,
        notes="QDQ graph for a strongly typed TensorRT build; top-1 measured in ONNX Runtime; "
              "time it on the device with edgetune bench",
    )
    return art, table


def _lint(graph: Path) -> None:
    from edgetune.calib.lint import lint_tensorrt_qdq

    issues = lint_tensorrt_qdq(graph)
    if issues:  # our recipe produced a graph TensorRT would reject: a bug, not a user error
        raise RuntimeError(f"{graph.name} fails the TensorRT QDQ lint: " + "; ".join(map(str, issues[:5])))


def build_gpu_fp16(out: Path, val: EvalSet, cfg: ExportConfig, log) -> Artifact:
    from edgetune.export.fp16 import convert_fp16

    name = FP16
    log(f"export: fp16 graph for gpu → {out / name}")
    convert_fp16(out / FP32, out / name)
    opset = plan_opset(out / name, cfg.tensorrt_version, val.head(cfg.parity_images), log)
    checked = preflight_tensorrt(out / name, log)  # `build-engine` also builds from this graph
    session = OrtSession(out / name, device="cpu", threads=cfg.threads)
    return artifact_record(
        out, name, backend="onnxruntime", target="gpu", precision="fp16", extra=backends.extra("onnxruntime"),
        top1=top1(session, val, desc=f"evaluate {name}"), preflight=checked, opset=opset,
        notes="fp16 with float32 inputs/outputs; top-1 measured in ONNX Runtime on CPU; time it on the GPU",
    )


def plan_opset(graph: Path, family: str | None, batch: np.ndarray, log) -> dict | None:
    """With --tensorrt-version, a graph newer than the newest opset that TensorRT family documents
    is rewritten at that opset in place, after ONNX Runtime shows it is the same network on
    real images (export/opset.py). Returns the manifest's record, or None when nothing changed."""
    if family is None:
        return None
    from edgetune.calib.preflight import support_table
    from edgetune.export.opset import convert_opset, graph_opset, same_network

    newest, current = support_table()[family]["opset"]["max"], graph_opset(graph)
    if current <= newest:
        return None
    original = graph.with_name(graph.stem + f".opset{current}.onnx")
    graph.replace(original)
    try:
        convert_opset(original, graph, newest)
        parity = same_network(original, graph, batch)
    finally:
        original.unlink(missing_ok=True)
    log(f"export: {graph.name} at opset {newest} for TensorRT {family} (was {current}; same logits, "
        f"max |Δ| {parity.max_abs_diff:g} on {parity.images} images)")
    return {"opset": newest, "from": current, "for": f"TensorRT {family}", "parity": parity.to_dict()}


def fold_artifacts(out: Path, artifacts: list[Artifact], recommended: dict, pre: Preprocess, layout: str,
                   pixels_nhwc: np.ndarray, log) -> dict:
    """--fold-preprocessing: the fp32 graph and every recommended ONNX graph again, taking uint8
    pixels in `layout` (export/fold.py), each checked against its source on real images.
    Returns the manifest's `folded` records."""
    from edgetune.export.fold import check_fold, fold_preprocessing

    layout = layout.upper()
    wanted = {FP32} | {r["file"] for r in recommended.values() if r and r.get("file", "").endswith(".onnx")}
    records = {}
    for a in artifacts:
        if a.file not in wanted:
            continue
        name = folded_name(a.file, layout)
        source = artifact_path(out, a)
        fold_preprocessing(source, out / name, pre, layout)
        parity = check_fold(source, out / name, pre, pixels_nhwc, layout, a.precision)
        record = artifact_record(out, name, backend=a.backend, target=a.target, precision=a.precision)
        records[name] = {"source": a.file, "layout": layout, "pixels": "uint8", "precision": a.precision,
                         "sha256": record.sha256, "size_bytes": record.size_bytes, "parity": parity.to_dict()}
        log(f"export: {name}: {a.file} taking uint8 {layout} pixels (max |Δ| {parity.max_abs_diff:g} "
            f"on {parity.images} images)")
    return records


def preflight_tensorrt(graph: Path, log) -> dict[str, str]:
    """The CPU pre-flight for every TensorRT family, one line each, kept in the manifest.
    A family the graph fails is reported, not fatal: the others may still build it."""
    from edgetune.calib.preflight import preflight_all

    results = {family: r.summary() for family, r in preflight_all(graph).items()}
    for family, line in results.items():
        if not line.startswith("passed"):
            log(f"pre-flight: {graph.name} would fail on TensorRT {family}: {line}")
    return results


def recommend_untimed(artifacts: list[Artifact], target: str, floor: float, measure: str = "top-1") -> dict | None:
    """The one graph made for a GPU target. It cannot be timed here, so there is nothing to
    weigh yet: `edgetune build-engine` / `bench` on the device measure it."""
    a = next((a for a in artifacts if a.target == target), None)
    if a is None:
        return None
    budget = "within" if a.top1 >= floor - 1e-9 else "OVER"
    return {"file": a.file, "why": f"the {target} graph, {measure} {a.top1:.2%} ({budget} the accuracy budget); "
                                   "not timed here: time it on the device with edgetune bench"}
