"""export.qdq_tidy: each rewrite leaves the graph's outputs bit for bit as they were, and it
leaves alone what it cannot prove changes nothing."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgetune.export.qdq_tidy import tidy


def _graph(relu6_scale: float) -> onnx.ModelProto:
    """x → Q/DQ → Conv → Clip(0, 6) → Q/DQ → Pad(0) → Q/DQ (the same grid) → Conv → Relu →
    Q/DQ (u8, zero-point 0) → y, with scales and zero-points as torch writes them ([1])."""
    rng = np.random.default_rng(0)

    def init(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    inits = [
        init("s_in", np.array([0.05], np.float32)), init("z_in", np.array([128], np.uint8)),
        init("s6", np.array([relu6_scale], np.float32)), init("z0", np.array([0], np.uint8)),
        init("s_out", np.array([0.1], np.float32)),
        init("w1", rng.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8)),
        init("w2", rng.integers(-127, 128, (4, 4, 3, 3), dtype=np.int8)),
        init("ws", np.full(4, 0.01, np.float32)), init("wz", np.zeros(4, np.int8)),
        init("lo", np.array(0.0, np.float32)), init("hi", np.array(6.0, np.float32)),
        init("pads", np.array([0, 0, 0, 1, 0, 0, 1, 1], np.int64)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w1", "ws", "wz"], ["w1d"], axis=0),
        helper.make_node("Conv", ["xd", "w1d"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["a1"]),
        helper.make_node("QuantizeLinear", ["a1", "s6", "z0"], ["a1q"]),
        helper.make_node("DequantizeLinear", ["a1q", "s6", "z0"], ["a1d"]),
        helper.make_node("Pad", ["a1d", "pads"], ["p"]),
        helper.make_node("QuantizeLinear", ["p", "s6", "z0"], ["pq"]),
        helper.make_node("DequantizeLinear", ["pq", "s6", "z0"], ["pd"]),
        helper.make_node("DequantizeLinear", ["w2", "ws", "wz"], ["w2d"], axis=0),
        helper.make_node("Conv", ["pd", "w2d"], ["c2"]),
        helper.make_node("Relu", ["c2"], ["a2"]),
        helper.make_node("QuantizeLinear", ["a2", "s_out", "z0"], ["a2q"]),
        helper.make_node("DequantizeLinear", ["a2q", "s_out", "z0"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 7, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_tidy_keeps_every_output_and_drops_what_changes_nothing():
    x = np.random.default_rng(1).normal(0, 4, (2, 3, 8, 8)).astype(np.float32)  # values past 6 and below 0
    before = _graph(6 / 255)
    want = _run(before, x)
    after, made = tidy(onnx.load_from_string(before.SerializeToString()))
    assert made == {"scalar_qparams": 5, "activations_dropped": 2, "requantizations_dropped": 1}
    assert [n.op_type for n in after.graph.node].count("QuantizeLinear") == 3
    assert not {"Clip", "Relu"} & {n.op_type for n in after.graph.node}
    onnx.checker.check_model(after)
    assert np.array_equal(_run(after, x), want)


def test_tidy_keeps_a_clip_the_quantizer_does_not_cover():
    """Q's range reaches 10 while the Clip stops at 6: the Clip changes what Q outputs, so it
    stays (the Relu before a zero-point-0 Q still goes)."""
    x = np.random.default_rng(1).normal(0, 4, (2, 3, 8, 8)).astype(np.float32)
    before = _graph(10 / 255)
    want = _run(before, x)
    after, made = tidy(onnx.load_from_string(before.SerializeToString()))
    assert made["activations_dropped"] == 1 and "Clip" in {n.op_type for n in after.graph.node}
    assert np.array_equal(_run(after, x), want)
