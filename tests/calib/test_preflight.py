"""The CPU pre-flight of TensorRT-target graphs: the pipeline's own graphs pass it, and
deliberately broken ones fail it with a message naming the node and the fix."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgetune.calib.preflight import FAMILIES, preflight, preflight_all, support_table


def _qdq_conv(zero_point: int = 0, op: str = "Relu", spatial=(8, 8), opset: int = 17) -> onnx.ModelProto:
    """A real, runnable QDQ graph: Q/DQ on the input, per-channel int8 weights, Conv, `op`."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 127, size=(4, 3, 3, 3)).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(zero_point, np.int8), "x_zp"),
        numpy_helper.from_array(w, "w_q"),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["wd"], name="dq_w", axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(op, ["c"], ["y"], name="act"),
    ]
    h, w_ = spatial
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, h, w_])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, h, w_])
    graph = helper.make_graph(nodes, "tiny", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_the_op_lists_name_their_source():
    table = support_table()
    assert set(table) == set(FAMILIES)
    for entry in table.values():
        assert entry["source"].startswith("https://github.com/onnx/onnx-tensorrt/blob/")
        assert entry["source"].endswith("docs/operators.md")
        assert {"Conv", "QuantizeLinear", "DequantizeLinear", "Gemm", "Relu"} <= set(entry["ops"])
    # 10.x documents ops 8.6 lacks (Gelu, CastLike), which is why the lists are per family.
    assert "Gelu" in table["10"]["ops"] and "Gelu" not in table["8.6"]["ops"]
    assert (table["8.6"]["opset"]["max"], table["10"]["opset"]["max"]) == (17, 20)


def test_a_good_qdq_graph_passes_every_family():
    import onnxruntime as ort

    onnx.checker.check_model(_qdq_conv(), full_check=True)
    run = ort.InferenceSession(_qdq_conv().SerializeToString(), providers=["CPUExecutionProvider"])
    assert run.run(None, {"x": np.ones((2, 3, 8, 8), np.float32)})[0].shape == (2, 4, 8, 8)
    for family, result in preflight_all(_qdq_conv()).items():
        assert result.ok, (family, result.summary())
        assert result.summary() == "passed"


def test_asymmetric_zero_point_fails_naming_the_node():
    result = preflight(_qdq_conv(zero_point=3), "10")
    assert not result.ok
    assert "q_in: zero-point [3] is not 0: TensorRT needs symmetric quantization" in result.summary()


def test_an_op_outside_the_list_fails_for_that_family_only():
    # Gelu (opset 20) is in 10.x's list and not in 8.6's.
    model = _qdq_conv(op="Gelu", opset=20)
    assert preflight(model, "10").ok
    result = preflight(model, "8.6")
    assert "act: op Gelu is not in the TensorRT 8.6 ONNX parser's support list" in result.summary()
    # An op no TensorRT parses, in no family.
    model = _qdq_conv(op="Celu")
    model.graph.node[-1].op_type = "StringNormalizer"
    for family in FAMILIES:
        assert "op StringNormalizer is not in" in preflight(model, family).summary()


def test_a_custom_domain_op_is_outside_the_list():
    model = _qdq_conv()
    model.graph.node[-1].domain = "com.microsoft"
    assert "op com.microsoft::Relu is not in" in preflight(model, "10").summary()


def test_a_dynamic_spatial_dimension_fails():
    result = preflight(_qdq_conv(spatial=("H", 8)), "10")
    assert not result.ok
    assert "x: dimension 2 is dynamic (H); only the batch dimension (0) may be" in result.summary()
    assert preflight(_qdq_conv(spatial=(8, 8)), "10").ok  # the dynamic batch N alone is fine


def test_opset_above_the_documented_range_warns_below_it_fails():
    result = preflight(_qdq_conv(opset=20), "8.6")
    assert result.ok and "opset 20 is above 17" in result.summary()
    old = _qdq_conv(opset=17)
    old.opset_import[0].version = 8
    assert "opset 8 is below 9" in preflight(old, "10").summary()


def test_the_pipeline_graphs_pass_and_the_manifest_says_so(trained_run):
    """CI runs the pre-flight on every tensorrt-target graph at export; it is recorded."""
    out, _ = trained_run
    manifest = json.loads((out / "manifest.json").read_text())
    by_file = {a["file"]: a for a in manifest["artifacts"]}
    for name in ("model.int8.tensorrt.onnx", "model.fp16.onnx"):
        recorded = by_file[name]["preflight"]
        assert set(recorded) == set(FAMILIES)
        assert all(line.startswith("passed") for line in recorded.values()), recorded
        for family in FAMILIES:
            assert preflight(out / name, family).ok
    assert by_file["model.onnx"]["preflight"] is None


@pytest.mark.parametrize("family", FAMILIES)
def test_breaking_the_pipeline_graph_is_caught(trained_run, family):
    out, _ = trained_run
    model = onnx.load(out / "model.int8.tensorrt.onnx")
    x = model.graph.input[0].type.tensor_type.shape.dim
    x[3].dim_param = "W"
    zp = next(i for i in model.graph.initializer if i.data_type == TensorProto.INT8 and not i.dims)
    zp.CopyFrom(numpy_helper.from_array(np.array(5, np.int8), zp.name))
    summary = preflight(model, family).summary(limit=50)
    assert "dimension 3 is dynamic (W)" in summary
    assert "zero-point [5] is not 0" in summary
