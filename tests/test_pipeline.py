"""The spine end to end on real data: the manifest, export parity, and the QDQ graphs."""

import json

import numpy as np
import onnx
from onnx import numpy_helper

from edgetune.atomic import sha256_file
from edgetune.bundle import artifact_path, read_manifest
from edgetune.runtime.ort_backend import OrtSession


def test_manifest_lists_measured_artifacts(trained_run):
    out, _ = trained_run
    raw = json.loads((out / "manifest.json").read_text())
    assert raw["format"] == "edgetune-bundle" and raw["version"] == 3
    m = read_manifest(out)
    assert m.classes == [str(i) for i in range(10)]
    assert m.input["size"] == [32, 32] and m.input["name"] == "input"
    by_file = {a.file: a for a in m.artifacts}
    # fp32 first; the cpu target's few for the device to choose from (--ship-candidates 4)
    assert m.artifacts[0].file == "model.onnx"
    assert {"model.onnx", "model.int8.cpu.onnx", "model.int8.tensorrt.onnx", "model.fp16.onnx"} <= set(by_file)
    assert len([a for a in m.artifacts if a.target == "cpu"]) <= 4
    for a in m.artifacts:
        assert a.sha256 == sha256_file(artifact_path(out, a))  # its own file, or the one it shares
        assert 0.5 < a.top1 <= 1.0  # two epochs on digits: well above chance (0.1)
        assert a.extra in ("runtime", "openvino")  # what `pip install 'edgetune[EXTRA]'` runs it
    fp32, int8 = by_file["model.onnx"], by_file["model.int8.cpu.onnx"]
    assert fp32.latency_ms["p50"] > 0 and int8.latency_ms["p99"] >= int8.latency_ms["p50"]
    assert abs(fp32.top1 - int8.top1) <= 0.02
    assert int8.calibration["samples"] == 100 and int8.calibration["method"] == "minmax"
    assert m.recommended["cpu"]["file"] in by_file and m.recommended["cpu"]["why"]
    assert m.versions["onnxruntime"] and (out / m.checkpoint).is_file()


def test_export_parity_recorded_and_batch_is_dynamic(trained_run):
    out, m = trained_run
    parity = m.artifact("model.onnx").parity
    assert parity["top1_agreement"] >= 0.99 and parity["max_abs_diff"] < 1e-2
    session = OrtSession(out / "model.onnx", device="cpu")
    for n in (1, 5):
        assert session.run(np.zeros((n, 3, 32, 32), np.float32)).shape == (n, 10)


def _qdq(path):
    g = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    q = [n for n in g.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in g.node if n.op_type == "DequantizeLinear"]
    return g, inits, q, dq


def test_cpu_graph_uint8_activations_int8_per_channel_weights(trained_run):
    out, _ = trained_run
    g, inits, q, dq = _qdq(out / "model.int8.cpu.onnx")
    assert len(q) >= 10 and len(dq) >= len(q)
    for node in q:  # activations are quantized at run time: unsigned
        assert inits[node.input[2]].dtype == np.uint8
    weight_dq = [n for n in dq if n.input[0] in inits and inits[n.input[0]].ndim == 4]
    # resnet18 has 20 convolutions; the chosen candidate (picked by measured speed) may keep
    # some in float, with float weights straight from an initializer.
    float_convs = [n for n in g.node if n.op_type == "Conv" and n.input[1] in inits
                   and inits[n.input[1]].dtype == np.float32]
    assert len(weight_dq) + len(float_convs) == 20 and len(weight_dq) >= 10
    for node in weight_dq:
        assert inits[node.input[0]].dtype == np.int8
        scale = inits[node.input[1]]
        assert scale.ndim == 1 and scale.shape[0] == inits[node.input[0]].shape[0]  # per channel
        assert not inits[node.input[2]].any()  # symmetric weights


def test_tensorrt_graph_is_symmetric_int8(trained_run):
    out, _ = trained_run
    g, inits, q, dq = _qdq(out / "model.int8.tensorrt.onnx")
    assert q and dq
    for node in q + dq:
        zp = inits[node.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), node.name
    # Biases stay float: no int32 initializers feed a DequantizeLinear.
    assert not [n for n in dq if inits.get(n.input[0], np.zeros(1, np.int8)).dtype == np.int32]


def test_calibration_ranges_are_cached(trained_run):
    out, _ = trained_run
    caches = list((out / "calib").glob("ranges-minmax-*.json"))
    assert len(caches) == 1
    assert json.loads(caches[0].read_text())


def test_tensorrt_lint_passes_and_names_a_broken_node(trained_run):
    from onnx import numpy_helper as nh

    from edgetune.calib.lint import lint_tensorrt_qdq

    out, _ = trained_run
    model = onnx.load(out / "model.int8.tensorrt.onnx")
    assert lint_tensorrt_qdq(model) == []
    # Break one zero-point: the lint names the node that uses it.
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    init = next(i for i in model.graph.initializer if i.name == q.input[2])
    init.CopyFrom(nh.from_array(np.array(3, np.int8), init.name))
    issues = lint_tensorrt_qdq(model)
    assert issues and any("not 0" in i.problem for i in issues)
    assert any(i.node == q.name for i in issues)
    # The cpu graph (uint8 activations) is not fit for TensorRT.
    assert any("uint8" in i.problem for i in lint_tensorrt_qdq(out / "model.int8.cpu.onnx"))


def test_tensorrt_lint_finds_dangling_q(trained_run):
    from edgetune.calib.lint import lint_tensorrt_qdq

    out, _ = trained_run
    model = onnx.load(out / "model.int8.tensorrt.onnx")
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    users = [n for n in model.graph.node if q.output[0] in n.input]
    for u in users:
        model.graph.node.remove(u)
    issues = lint_tensorrt_qdq(model)
    assert any(i.node == q.name and "dangling Q" in i.problem for i in issues)


def test_tampered_checkpoint_is_refused(trained_run, tmp_path):
    import shutil

    import pytest

    from edgetune.bundle import verify_checkpoint
    from edgetune.errors import BundleError

    out, _ = trained_run
    copy = tmp_path / "bundle"
    shutil.copytree(out, copy)
    m = read_manifest(copy)
    assert verify_checkpoint(copy, m) == (copy / "model.pt").resolve()
    with open(copy / "model.pt", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="integrity"):
        verify_checkpoint(copy, m)


def test_reexport_reuses_the_calibration(reexported_run):
    assert any("reusing ranges" in line for line in reexported_run.log), reexported_run.log
    assert len(list((reexported_run.out / "calib").glob("ranges-*.json"))) == 1


def test_in_place_activations_export_as_their_own_ops_and_stay_in_place(tmp_path):
    """The exporter runs in-place activations out of place (their in-place forms would be
    decomposed, slowly) and puts them back: the graph has Clip and HardSwish, the model is as it was."""
    import onnx
    import torch
    from torch import nn

    from edgetune.export.onnx import check_parity, export_onnx

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(inplace=True), nn.Conv2d(4, 4, 1),
                          nn.Hardswish(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    path = export_onnx(model, (16, 16), tmp_path / "m.onnx")
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Clip", "HardSwish"} <= ops, ops
    assert model[1].inplace and model[3].inplace
    check_parity(model, path, torch.rand(2, 3, 16, 16).numpy())
