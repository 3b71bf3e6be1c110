"""Quantization that is measured: candidates, the accuracy budget, and the choice."""

import numpy as np
import onnx
from onnx import numpy_helper

from edgetune.bundle import read_manifest
from edgetune.calib.quantize import Calibration
from edgetune.calib.select import Candidate, int8_candidates
from edgetune.data.scan import scan
from edgetune.evaluate import EvalSet, top1
from edgetune.ranking import choose
from edgetune.runtime.ort_backend import OrtSession


def test_manifest_explains_the_cpu_choice(trained_run):
    out, _ = trained_run
    m = read_manifest(out)
    rows = {r["candidate"]: r for r in m.candidates["cpu"]}
    assert set(rows) >= {"fp32", "int8", "int8-compute", "int8-s8s8"}
    assert all(r["p50_ms"] > 0 and r["size_bytes"] > 0 and r["verdict"] for r in rows.values())
    chosen = [r for r in rows.values() if r["verdict"].startswith("chosen")]
    assert len(chosen) == 1  # one table, one choice, whatever the engines
    # The recommendation is the chosen candidate: the fastest within budget, or one tied
    # with it within the noise and more accurate, or as accurate and smaller.
    floor = rows["fp32"]["top1"] - m.evaluation["max_drop"] / 100
    fastest = min((r for r in rows.values() if r["top1"] >= floor), key=lambda r: r["p50_ms"])
    assert chosen[0] is fastest or chosen[0]["verdict"].startswith("chosen: tied with")
    assert m.recommended["cpu"]["file"] == chosen[0]["file"] == m.recommended["cpu"]["order"][0]
    assert m.artifact(chosen[0]["file"]).backend == chosen[0]["backend"]
    assert m.recommended["gpu"]["file"] == "model.fp16.onnx"


def test_fp16_graph_keeps_float32_io(trained_run):
    out, m = trained_run
    g = onnx.load(out / "model.fp16.onnx").graph
    assert g.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in g.initializer)
    assert abs(m.artifact("model.fp16.onnx").top1 - m.artifact("model.onnx").top1) <= 0.01


def test_budget_keeps_sensitive_layers_in_float(trained_run, digits_dir, tmp_path):
    """With a budget no INT8 graph can meet, the mixed candidate keeps layers in float,
    most sensitive first, and records each with its reason."""
    out, m = trained_run
    cache = next((out / "calib").glob("ranges-*.json"))
    cal = Calibration(out / "calib" / "model.prep.onnx", cache, "minmax", 100)
    splits = scan(digits_dir)
    val = EvalSet(splits.val[::4], m.preprocess)
    batch = val.x[:16]

    def evaluate(path):
        return top1(OrtSession(path, device="cpu"), val)

    def run(path, x):
        return OrtSession(path, device="cpu").run(x)

    logs = []
    cands = int8_candidates(cal, tmp_path, evaluate, 1.01, batch, run, logs.append)
    mixed = next(c for c in cands if c.name == "int8-mixed")
    assert mixed.excluded and all(e["why"] and "node" in e for e in mixed.excluded)
    gains = [e["gain_db"] for e in mixed.excluded]
    assert gains == sorted(gains, reverse=True)
    g = onnx.load(mixed.path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    by_name = {n.name: n for n in g.node}
    for e in mixed.excluded:  # a float node reads its float weight, not a DequantizeLinear
        weight = by_name[e["node"]].input[1]
        assert weight in inits and inits[weight].dtype == np.float32
    assert any("below the budget" in line for line in logs)


def test_choose_prefers_fp32_when_int8_is_slower(tmp_path):
    def cand(name, precision, top1, p50):
        return Candidate(name, tmp_path / name, precision, top1=top1, latency={"p50": p50})

    fp32, int8 = cand("fp32", "fp32", 0.90, 2.0), cand("int8", "int8", 0.90, 3.0)
    assert choose([fp32, int8], floor=0.89, max_drop=1) is fp32
    assert int8.verdict.startswith("slower")
    fast_bad = cand("int8", "int8", 0.80, 1.0)
    assert choose([fp32, fast_bad], floor=0.89, max_drop=1) is fp32
    assert fast_bad.verdict.startswith("over budget")
