"""Per-target artifacts after the fp32 graph: build, evaluate, time, and explain the choice.

cpu: INT8 candidates (calib.select) timed side by side with fp32 on this machine; the
fastest within the accuracy budget is recommended. openvino: the same graphs (and OpenVINO's
own INT8 recipe) run by OpenVINO and timed beside them; one joins the bundle only where it is
the fastest within the budget. tensorrt: the symmetric QDQ graph, linted here and evaluated
in ONNX Runtime; timed only on the device. gpu: an fp16 graph.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgetune.atomic import atomic_path
from edgetune.bundle import Artifact, artifact_record
from edgetune.config import ExportConfig
from edgetune.evaluate import EvalSet, top1
from edgetune.files import CALIB, FP16, FP32, INT8_CPU, INT8_TENSORRT, folded_name, openvino_artifact
from edgetune.latency import measure_interleaved
from edgetune.preprocess import Preprocess
from edgetune.runtime.ort_backend import OrtSession

OPENVINO_RECIPE = "int8-zp0"  # the candidate quantized by OpenVINO's own recipe


def build_cpu(out: Path, cal, val: EvalSet, calib_batch: np.ndarray, pre: Preprocess,
              cfg: ExportConfig, fp32: Artifact, log, measure: str = "top-1"
              ) -> tuple[list[Artifact], list[dict], dict]:
    """fp32 re-timed beside the INT8 candidates; returns (artifacts, candidate rows, recommendation).
    `measure`: what `val` measures (top-1, or agreement with fp32 on unlabelled target images)."""
    from edgetune.calib.select import Candidate, choose, int8_candidates

    def evaluate(path: Path) -> float:
        return top1(OrtSession(path, device="cpu", threads=cfg.threads), val, desc=f"evaluate {path.stem}")

    def run(path: Path, batch: np.ndarray) -> np.ndarray:
        return OrtSession(path, device="cpu").run(batch)

    floor = fp32.top1 - cfg.max_drop / 100.0
    work = out / CALIB / "candidates"
    log(f"quantize: INT8 candidates for cpu ({cal.method}, {cal.samples} images)")
    candidates = [Candidate("fp32", out / FP32, "fp32", top1=fp32.top1)]
    candidates += int8_candidates(cal, work, evaluate, floor, calib_batch, run, log, threads=cfg.threads,
                                  measure=measure)
    peers, ov_sessions = [], {}
    if "openvino" in cfg.targets:
        zp0 = openvino_recipe_candidate(cal, work, calib_batch, run)
        peers, ov_sessions = openvino_candidates(candidates + [zp0], val, cfg, log)
    # Timed in turns with spinning off: an idle session's spinning threads would steal the
    # cores from the one being timed. The options are recorded with the latency. OpenVINO's
    # sessions are the ones that evaluated them (compiling a model again costs seconds).
    sessions = {c.name: OrtSession(c.path, device="cpu", threads=cfg.threads, spinning=False)
                for c in candidates} | ov_sessions
    _time_candidates(candidates, peers, sessions, (3, *pre.size), max(3, cfg.bench_runs // 10), floor,
                     cfg.threads, log)
    options = sessions["fp32"].options
    ov_options = sessions[peers[0].name].options if peers else None
    del sessions, ov_sessions
    overall = choose(candidates + peers, floor, cfg.max_drop, measure) if peers else None
    verdicts = {c.name: c.verdict for c in peers}
    winner = choose(candidates, floor, cfg.max_drop, measure)  # the cpu target: ONNX Runtime artifacts
    for c in peers:
        c.verdict = verdicts[c.name]

    int8s = [c for c in candidates if c.precision == "int8"]
    within = [c for c in int8s if c.within(floor)]
    best_int8 = (min(within, key=lambda c: c.latency["p50"]) if within
                 else max(int8s, key=lambda c: c.top1))
    name = INT8_CPU
    with atomic_path(out / name) as tmp:
        shutil.copyfile(best_int8.path, tmp)
    rows = [c.row() for c in candidates + peers]
    extra, recommended = [], {}
    if overall is not None and overall.backend == "openvino":
        extra, recommended["openvino"] = _openvino_artifact(out, overall, ov_options, cal, log)
    elif peers:
        log("openvino: slower than the best ONNX Runtime artifact here; not added to the bundle")
    shutil.rmtree(work, ignore_errors=True)

    fp32.latency_ms = next(c for c in candidates if c.name == "fp32").latency
    fp32.session = options
    int8 = artifact_record(
        out, name, backend="onnxruntime", target="cpu", precision="int8", top1=best_int8.top1,
        latency_ms=best_int8.latency, session=options,
        calibration=_calibration_record(cal, best_int8, "cpu"),
        notes="" if best_int8.within(floor) else
        f"over the {cfg.max_drop:g}-point budget even with layers in float; fp32 is recommended",
    )
    chosen = FP32 if winner.precision == "fp32" else name
    why = winner.verdict
    if winner.precision == "fp32":
        why += "; INT8 does not pay on this machine" if within else "; no INT8 candidate within budget"
    why += f" ({winner.latency['p50']:.2f} ms p50 at batch 1)"
    return [fp32, int8, *extra], rows, {"cpu": {"file": chosen, "why": why}, **recommended}


RUNOFF_MARGIN = 0.10  # candidates this close to the fastest are timed again before one is chosen


def _time_candidates(candidates: list, peers: list, sessions: dict, shape, rounds: int, floor: float,
                     threads, log) -> None:
    """Every candidate timed in turns; then a runoff: the leaders within RUNOFF_MARGIN of the
    fastest (per engine group, since the cpu target only weighs ONNX Runtime) are timed again,
    twice as long, side by side. A few rounds on a shared machine cannot tell 5 % apart, and
    the export's choice is the one the bundle ships."""
    everyone = candidates + peers
    for name, lat in measure_interleaved(sessions, shape, rounds=rounds).items():
        next(c for c in everyone if c.name == name).latency = {**lat, "threads": threads}
    ahead = {id(c) for c in runoff_leaders(candidates, floor) + runoff_leaders(everyone, floor)}
    leaders = [c for c in everyone if id(c) in ahead]
    if len(leaders) < 2:
        return
    log(f"time: {', '.join(c.name for c in leaders)} within {RUNOFF_MARGIN:.0%} of the fastest; "
        "timing them again, side by side")
    again = measure_interleaved({c.name: sessions[c.name] for c in leaders}, shape, rounds=2 * rounds)
    for c in leaders:
        c.latency = {**again[c.name], "threads": threads, "runoff": True}


def runoff_leaders(candidates: list, floor: float) -> list:
    within = [c for c in candidates if c.within(floor) and c.latency]
    if not within:
        return []
    fastest = min(c.latency["p50"] for c in within)
    return [c for c in within if c.latency["p50"] <= fastest * (1 + RUNOFF_MARGIN)]


def _calibration_record(cal, c, recipe: str) -> dict:
    """How an INT8 artifact's graph was made: ranges, recipe, candidate, what stayed in float."""
    return {**cal.to_dict(), "recipe": recipe, "candidate": c.name.removeprefix("openvino-"),
            "op_types": c.op_types or "all", "float_nodes": c.excluded, "bias_correction": c.bias_correction}


def require_engines(cfg: ExportConfig) -> None:
    """An engine a target needs is installed, checked before any training starts."""
    if "openvino" in cfg.targets:
        from edgetune.errors import MissingDependencyError
        from edgetune.runtime.ov_backend import is_available

        ok, why = is_available()
        if not ok:
            raise MissingDependencyError(f"--targets openvino: {why}")


def openvino_recipe_candidate(cal, work: Path, calib_batch: np.ndarray, run):
    """The INT8 graph made for OpenVINO (calib.quantize.quantize_openvino: zero-points 0, as
    NNCF makes them), with the same bias-correction check as the CPU candidates; only ever
    run by OpenVINO."""
    from edgetune.calib.quantize import quantize_openvino
    from edgetune.calib.select import Candidate, correct_candidate

    c = Candidate(OPENVINO_RECIPE, quantize_openvino(cal, work / f"{OPENVINO_RECIPE}.onnx"), "int8")
    correct_candidate(c, cal.model, calib_batch, run, work)
    return c


def openvino_candidates(candidates: list, val: EvalSet, cfg: ExportConfig, log) -> tuple[list, dict]:
    """The fp32 graph and every INT8 QDQ graph run by OpenVINO (which turns Q/DQ into its own
    INT8 kernels): the same files, another engine, each judged like the rest. Every INT8
    candidate, not only the all-ops one: which graph an engine runs fastest is the engine's
    business (on ResNet-18 OpenVINO runs the all-ops graph as fast as NNCF's own), and the
    top-1 of each is measured in OpenVINO, not assumed from ONNX Runtime's. Returns the
    candidates and their compiled sessions, kept for timing."""
    from edgetune.calib.select import Candidate
    from edgetune.runtime.ov_backend import OvSession

    log("openvino: timing the same fp32 and INT8 graphs in OpenVINO (Intel does not validate AMD CPUs)")
    out, sessions = [], {}
    for c in candidates:
        name = f"openvino-{c.name}"
        sessions[name] = OvSession(c.path, device="cpu", threads=cfg.threads)
        out.append(Candidate(name, c.path, c.precision, backend="openvino", op_types=c.op_types,
                             excluded=c.excluded, bias_correction=c.bias_correction,
                             top1=top1(sessions[name], val, desc=f"evaluate {name}")))
    return out, sessions


def _openvino_artifact(out: Path, c, options: dict, cal, log) -> tuple[list[Artifact], dict]:
    name = openvino_artifact(c.precision)
    with atomic_path(out / name) as tmp:
        shutil.copyfile(c.path, tmp)
    log(f"openvino: {c.name} is the fastest within budget → {name}")
    recipe = "openvino" if c.name == f"openvino-{OPENVINO_RECIPE}" else "cpu"
    calibration = _calibration_record(cal, c, recipe) if c.precision == "int8" else None
    art = artifact_record(out, name, backend="openvino", target="openvino", precision=c.precision,
                          top1=c.top1, latency_ms=c.latency, session=options, calibration=calibration,
                          notes="the same ONNX graph run by OpenVINO's CPU runtime; Intel validates "
                                "OpenVINO on Intel CPUs only")
    return [art], {"file": name, "why": f"{c.name}, {c.verdict} ({c.latency['p50']:.2f} ms p50 at batch 1, OpenVINO)"}


def build_tensorrt(out: Path, cal, val: EvalSet, cfg: ExportConfig, log) -> Artifact:
    from edgetune.calib.lint import lint_tensorrt_qdq
    from edgetune.calib.quantize import quantize_tensorrt

    name = INT8_TENSORRT
    log(f"quantize: INT8 QDQ for tensorrt (symmetric) → {out / name}")
    quantize_tensorrt(cal, out / name)
    issues = lint_tensorrt_qdq(out / name)
    if issues:  # our recipe produced a graph TensorRT would reject: a bug, not a user error
        raise RuntimeError(f"{name} fails the TensorRT QDQ lint: " + "; ".join(map(str, issues[:5])))
    opset = plan_opset(out / name, cfg.tensorrt_version, val.head(cfg.parity_images), log)
    checked = preflight_tensorrt(out / name, log)
    session = OrtSession(out / name, device="cpu", threads=cfg.threads)
    return artifact_record(
        out, name, backend="onnxruntime", target="tensorrt", precision="int8", preflight=checked, opset=opset,
        top1=top1(session, val, desc=f"evaluate {name}"),
        calibration={**cal.to_dict(), "recipe": "tensorrt", "lint": "passed"},
        notes="QDQ graph for a strongly typed TensorRT build; top-1 measured in ONNX Runtime; "
              "time it on the device with edgetune bench",
    )


def build_gpu_fp16(out: Path, val: EvalSet, cfg: ExportConfig, log) -> Artifact:
    from edgetune.export.fp16 import convert_fp16

    name = FP16
    log(f"export: fp16 graph for gpu → {out / name}")
    convert_fp16(out / FP32, out / name)
    opset = plan_opset(out / name, cfg.tensorrt_version, val.head(cfg.parity_images), log)
    checked = preflight_tensorrt(out / name, log)  # `build-engine` also builds from this graph
    session = OrtSession(out / name, device="cpu", threads=cfg.threads)
    return artifact_record(
        out, name, backend="onnxruntime", target="gpu", precision="fp16",
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
        fold_preprocessing(out / a.file, out / name, pre, layout)
        parity = check_fold(out / a.file, out / name, pre, pixels_nhwc, layout, a.precision)
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
