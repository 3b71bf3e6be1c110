"""Quantization-aware fine-tuning end to end: `edgetune export CHECKPOINT --qat always` on the
smallest trained run (three digit classes, 32 px), one QAT epoch for the TensorRT recipe."""

import json

import numpy as np
import onnx

from edgetune.calib.lint import lint_tensorrt_qdq
from edgetune.config import ExportConfig
from edgetune.pipeline import export_bundle
from edgetune.runtime.ort_backend import OrtSession


def test_export_qat_always_makes_a_linted_evaluated_listed_candidate(adapted_run, small_digits, tmp_path):
    # In process, as `edgetune export CHECKPOINT --qat always` runs it (the flags' parsing is
    # tests/cli/test_errors.py's): a subprocess would double the test's time importing torch.
    out = tmp_path / "bundle"
    log: list[str] = []
    export_bundle(adapted_run.out / "checkpoints" / "best.pt", out,
                  ExportConfig(targets=("tensorrt",), qat="always", qat_epochs=1, calib_samples=20, eval_max=20),
                  data=str(small_digits), log=log.append)
    manifest = json.loads((out / "manifest.json").read_text())
    rows = {r["candidate"]: r for r in manifest["candidates"]["tensorrt"]}
    assert set(rows) == {"int8", "int8-qat"}  # PTQ against QAT, both judged on the same val images
    qat = rows["int8-qat"]
    assert 0.0 <= qat["top1"] <= 1.0 and qat["qat"]["epochs"] == 1
    assert qat["qat"]["ptq_top1"] == rows["int8"]["top1"]
    assert qat["qat"]["trained"].startswith("all") and qat["qat"]["lr"] > 0
    chosen = [r for r in rows.values() if r["verdict"].startswith("chosen")]
    assert len(chosen) == 1
    art = next(a for a in manifest["artifacts"] if a["file"] == "model.int8.tensorrt.onnx")
    assert art["calibration"]["candidate"] == chosen[0]["candidate"] and art["top1"] == chosen[0]["top1"]
    assert ("qat" in art["calibration"]) == (chosen[0]["candidate"] == "int8-qat")
    assert all(v.startswith("passed") for v in art["preflight"].values())
    graph = onnx.load(out / "model.int8.tensorrt.onnx")
    assert lint_tensorrt_qdq(graph) == []
    assert OrtSession(out / "model.int8.tensorrt.onnx", device="cpu").run(
        np.zeros((2, 3, 32, 32), "float32")).shape == (2, 3)
    assert any(line.startswith("qat: tensorrt top-1") for line in log)
    assert not list((out / "calib").glob("int8-qat*"))  # the losing graph is not left behind
