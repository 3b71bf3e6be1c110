"""The cpu target: candidates in every installed CPU engine, timed side by side; the fastest
within the budget recommended, whatever its engine; and the few a device chooses from again.

ONNX Runtime always runs the fp32 graph and every INT8 candidate (calib.select). OpenVINO,
where it imports (or where `--targets openvino` requires it), runs the same graphs, its own
INT8 recipe (`int8-zp0`) and, on a CPU with native bf16, the fp32 graph in bf16: a precision
of its own, evaluated as it runs. On one Intel Xeon with AMX OpenVINO ran our INT8 graph
1.86x faster than ONNX Runtime; on an AMD EPYC without AMX the two tied: the engine is a
measurement like the graph. The bundle then ships a small set (`--ship-candidates`): the
recommendation, fp32, ONNX Runtime's best U8S8 INT8, the S8S8 INT8 graph ARM CPUs favour,
and OpenVINO's best INT8, so `edgetune bench --choose` on the device can decide again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgetune import ranking
from edgetune.atomic import atomic_path, sha256_file
from edgetune.bundle import Artifact, artifact_record
from edgetune.config import ExportConfig
from edgetune.evaluate import EvalSet, graph_logits, top1
from edgetune.files import (
    BF16_OPENVINO,
    CALIB,
    FP32,
    FP32_OPENVINO,
    INT8_CPU,
    INT8_OPENVINO,
    INT8_S8S8_CPU,
)
from edgetune.latency import measure_with_runoff
from edgetune.preprocess import Preprocess
from edgetune.runtime import backends, ov_backend
from edgetune.runtime.ort_backend import OrtSession

OPENVINO_RECIPE = "int8-zp0"  # the candidate quantized by OpenVINO's own recipe
OV = "openvino-"  # the prefix of a candidate run by OpenVINO


def cpu_engines(cfg: ExportConfig, log=None) -> list[str]:
    """The engines this export weighs for the cpu target (`--cpu-engines`, `--targets openvino`)."""
    if cfg.cpu_engines != ("auto",):
        return list(cfg.cpu_engines)
    ok, why = ov_backend.is_available()
    if not ok and "openvino" not in cfg.targets:
        if log is not None:
            log(f"cpu: weighing ONNX Runtime only ({why})")
        return ["onnxruntime"]
    return ["onnxruntime", "openvino"]


def require_engines(cfg: ExportConfig) -> None:
    """An engine the export was asked for is installed, checked before any training starts."""
    asked = "openvino" in cfg.targets or "openvino" in cfg.cpu_engines
    ok, why = ov_backend.is_available()
    if asked and not ok:
        from edgetune.errors import MissingDependencyError

        flag = "--targets openvino" if "openvino" in cfg.targets else "--cpu-engines openvino"
        raise MissingDependencyError(f"{flag}: {why}")


def build_cpu(out: Path, cal, val: EvalSet, calib_batch: np.ndarray, pre: Preprocess,
              cfg: ExportConfig, fp32: Artifact, log, measure: str = "top-1", qat=None
              ) -> tuple[list[Artifact], list[dict], dict]:
    """Every candidate in every engine, timed side by side; returns (the CPU artifacts the
    bundle ships, the candidate rows, the recommendation). `measure`: what `val` measures
    (top-1, or agreement with fp32 on unlabelled target images). `qat`: an
    edgetune.train.qat.QatJob, for the "int8-qat" candidate (None: none)."""
    from edgetune.calib.select import Candidate, int8_candidates
    from edgetune.qat_candidate import qat_candidate, wants_qat

    def evaluate(path: Path) -> float:
        return top1(OrtSession(path, device="cpu", threads=cfg.threads), val, desc=f"evaluate {path.stem}")

    engines = cpu_engines(cfg, log)
    floor = fp32.top1 - cfg.max_drop / 100.0
    work = out / CALIB / "candidates"
    log(f"quantize: INT8 candidates for cpu ({cal.method}, {cal.samples} images)")
    ort = [Candidate("fp32", out / FP32, "fp32", top1=fp32.top1)]
    ort += int8_candidates(cal, work, evaluate, floor, calib_batch, graph_logits, log, threads=cfg.threads,
                           measure=measure)
    ptq = [c for c in ort if c.precision == "int8"]
    ov_own = []  # graphs made for OpenVINO alone: its zero-point-0 recipe, PTQ and QAT
    if "openvino" in engines:
        ov_own.append(openvino_recipe_candidate(cal, work, calib_batch, graph_logits))
    if qat is not None and wants_qat(cfg, any(c.within(floor) for c in ptq)):
        ptq_best = max(c.top1 for c in ptq)
        ort.append(qat_candidate(qat, "cpu", work, evaluate, ptq_best, log))
        if "openvino" in engines:
            ov_own.append(qat_candidate(qat, "openvino", work, None, ptq_best, log))
    peers, sessions = [], {}
    if "openvino" in engines:
        peers, sessions = openvino_candidates(ort + ov_own, val, cfg, log)
    everyone = ort + peers
    # Timed in turns with spinning off: an idle session's spinning threads would steal the
    # cores from the one being timed. The options are recorded with the latency. OpenVINO's
    # sessions are the ones that evaluated them (compiling a model again costs seconds).
    sessions |= {c.name: OrtSession(c.path, device="cpu", threads=cfg.threads, spinning=False) for c in ort}
    groups = [everyone, [c for c in ort if _u8s8(c)], [c for c in peers if c.precision == "int8"]]
    latency = measure_with_runoff(sessions, (3, *pre.size), max(3, cfg.bench_runs // 10),
                                  [[c.name for c in g if c.within(floor)] for g in groups], log)
    for c in everyone:
        c.latency = {**latency[c.name], "threads": cfg.threads}
    options = {c.name: sessions[c.name].options for c in everyone}
    del sessions
    winner = ranking.choose(everyone, floor, cfg.max_drop, measure)
    shipped = ship(ort, peers, winner, floor, cfg.ship_candidates)
    files = {id(c): name for c, name in shipped}
    rows = [{**c.row(), "file": files.get(id(c))} for c in everyone]
    # ONNX Runtime's files are recorded first: where an OpenVINO artifact is the same graph, it
    # names their file, so model.onnx and model.int8.cpu.onnx are always real files in a bundle
    # that ships them. The manifest then lists fp32 first, as in every bundle, and the rest in
    # the order of need.
    need = {name: i for i, (_, name) in enumerate(sorted(shipped, key=lambda s: s[1] != FP32))}
    artifacts = []
    for c, name in sorted(shipped, key=lambda s: (s[1] != FP32, s[0].backend == "openvino")):
        artifacts.append(_record(out, fp32, c, name, options[c.name], cal, cfg, floor, log, artifacts))
    artifacts.sort(key=lambda a: need[a.file])
    shutil.rmtree(work, ignore_errors=True)
    log("cpu: the bundle ships " + ", ".join(f"{name} ({c.name})" for c, name in shipped)
        + " for `edgetune bench --choose` on the device")
    # The fallbacks, best first, for a device without the recommendation's engine.
    order = [files[id(winner)]] + [files[id(c)] for c in ranking.rank([c for c, _ in shipped if c is not winner],
                                                                      floor)]
    return artifacts, rows, {"cpu": {"file": order[0], "why": _why(winner, ort, floor), "order": order}}


def _u8s8(c) -> bool:
    """ONNX Runtime's INT8 graphs with unsigned activations: what its x86 kernels take."""
    from edgetune.calib.select import S8S8

    return c.backend == "onnxruntime" and c.precision == "int8" and c.name != S8S8


def ship(ort: list, peers: list, winner, floor: float, n: int) -> list[tuple]:
    """(candidate, file) pairs the bundle holds, at most `n`, in this order of need: the
    recommendation; fp32, which runs everywhere; ONNX Runtime's best U8S8 INT8 (x86),
    shipped even over budget as before, with a note; the S8S8 INT8 graph (ARM); OpenVINO's
    best INT8 graph (Intel). "Best": the same rule as the recommendation (`ranking.rank`)."""
    from edgetune.calib.select import S8S8

    def first(group: list):
        if any(c is winner for c in group):
            return winner
        ranked = ranking.rank(group, floor)
        return ranked[0] if ranked else None

    u8s8 = [c for c in ort if _u8s8(c)]
    picks = [(winner, _file(winner)), (ort[0], FP32),
             (first(u8s8) or max(u8s8, key=lambda c: c.top1), INT8_CPU),
             (first([c for c in ort if c.name == S8S8]), INT8_S8S8_CPU),
             (first([c for c in peers if c.precision == "int8"]), INT8_OPENVINO)]
    out = []
    for c, name in picks:
        if c is not None and name not in {f for _, f in out} and len(out) < n:
            out.append((c, name))
    return out


def _file(c) -> str:
    """The bundle file a candidate ships as."""
    from edgetune.calib.select import S8S8

    if c.backend == "openvino":
        return {"fp32": FP32_OPENVINO, "bf16": BF16_OPENVINO}.get(c.precision, INT8_OPENVINO)
    if c.precision == "fp32":
        return FP32
    return INT8_S8S8_CPU if c.name == S8S8 else INT8_CPU


def _record(out: Path, fp32: Artifact, c, name: str, options: dict, cal, cfg: ExportConfig, floor: float,
            log, held: list[Artifact]) -> Artifact:
    """The manifest's record of a shipped candidate; fp32's own record gains its timing. A graph
    whose bytes an artifact in `held` already ships (OpenVINO's bf16 run of model.onnx, an INT8
    graph both engines run) names that file instead of copying it."""
    extra = backends.extra(c.backend)
    if name == FP32:
        fp32.latency_ms, fp32.session, fp32.extra, fp32.candidate = c.latency, options, extra, c.name
        return fp32
    digest = sha256_file(c.path)
    same = next((a.graph or a.file for a in held if a.sha256 == digest), None)
    if same is None:
        with atomic_path(out / name) as tmp:
            shutil.copyfile(c.path, tmp)
    else:
        (out / name).unlink(missing_ok=True)  # an earlier export's copy
        log(f"cpu: {name} ({c.name}) is the same graph as {same}: the bundle holds it once")
    notes = "" if c.within(floor) else \
        f"over the {cfg.max_drop:g}-point budget even with layers in float; fp32 is recommended"
    if c.backend == "openvino":
        log(f"openvino: {c.name} → {name}")
        notes = (f"the ONNX graph run by OpenVINO's CPU runtime in {options['INFERENCE_PRECISION_HINT']}; "
                 "Intel validates OpenVINO on Intel CPUs only")
    recipe = "openvino" if c.name == f"{OV}{OPENVINO_RECIPE}" else "cpu-s8s8" if name == INT8_S8S8_CPU else "cpu"
    return artifact_record(
        out, name, graph=same, sha256=digest, backend=c.backend, target="cpu", precision=c.precision, top1=c.top1,
        latency_ms=c.latency, session=options,
        calibration=_calibration_record(cal, c, recipe) if c.precision == "int8" else None, notes=notes,
        extra=extra, candidate=c.name)


def _why(winner, ort: list, floor: float) -> str:
    """The recommendation's reason: its verdict, and where fp32 wins, why INT8 did not."""
    why = winner.verdict
    if winner.precision == "fp32" and winner.backend == "onnxruntime":
        int8_within = any(c.precision == "int8" and c.within(floor) for c in ort)
        why += "; INT8 does not pay on this machine" if int8_within else "; no INT8 candidate within budget"
    return why + f" ({winner.latency['p50']:.2f} ms p50 at batch 1, {winner.backend})"


def _calibration_record(cal, c, recipe: str) -> dict:
    """How an INT8 artifact's graph was made: ranges, recipe, candidate, what stayed in float,
    and for the QAT candidate what was fine-tuned and the PTQ top-1 it replaced."""
    return {**cal.to_dict(), "recipe": recipe, "candidate": c.name.removeprefix(OV),
            "op_types": c.op_types or "all", "float_nodes": c.excluded, "bias_correction": c.bias_correction,
            **({"qat": c.qat} if c.qat else {})}


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
    top-1 of each is measured in OpenVINO, not assumed from ONNX Runtime's. Where the CPU
    runs bf16 natively, the fp32 graph in bf16 too, named so. Returns the candidates and
    their compiled sessions, kept for timing."""
    from edgetune.calib.select import Candidate
    from edgetune.runtime.ov_backend import OvSession

    log("openvino: timing the same fp32 and INT8 graphs in OpenVINO (Intel does not validate AMD CPUs)")
    runs = [(c, c.precision) for c in candidates]
    if ov_backend.bf16_supported():
        runs.insert(1, (candidates[0], "bf16"))  # candidates[0] is the fp32 graph
    out, sessions = [], {}
    for c, precision in runs:
        name = f"{OV}{'bf16' if precision == 'bf16' else c.name}"
        sessions[name] = OvSession(c.path, device="cpu", threads=cfg.threads, precision=precision)
        out.append(Candidate(name, c.path, precision, backend="openvino", op_types=c.op_types,
                             excluded=c.excluded, bias_correction=c.bias_correction, qat=c.qat,
                             top1=top1(sessions[name], val, desc=f"evaluate {name}")))
    return out, sessions
