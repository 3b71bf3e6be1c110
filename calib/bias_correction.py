"""Fast bias correction after quantization, as NNCF does it.

INT8 weights and activations shift the mean of a conv's output per channel; the next
layers amplify the shift. For each INT8 conv/Gemm, the same op is run beside it in float
(float weights, on the float tensor before its input quantizer) and the per-channel mean
of (float − INT8) over the calibration batch is folded into the INT8 bias. One pass over
the batch measures every layer at once; each layer's shift is its own quantization error,
since both branches read the same input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgetune.atomic import atomic_path

_DQ = "_DequantizeLinear_Output"


@dataclass(frozen=True)
class _Site:
    node: onnx.NodeProto
    x_float: str  # the float tensor the input quantizer reads
    weight: str  # the float weight's name in the fp32 graph
    bias_dq: onnx.NodeProto | None  # DequantizeLinear of the int32 bias, when there is one
    w_scale: np.ndarray
    x_scale: float
    x_range: tuple[float, float]  # what the input quantizer can represent


def _sites(q: onnx.ModelProto, fp32_weights: set[str]) -> list[_Site]:
    producer = {o: n for n in q.graph.node for o in n.output}
    inits = {t.name: t for t in q.graph.initializer}
    out = []
    for n in q.graph.node:
        if n.op_type not in ("Conv", "Gemm") or len(n.input) < 2:
            continue
        x_dq, w_dq = producer.get(n.input[0]), producer.get(n.input[1])
        if not (x_dq and w_dq and x_dq.op_type == w_dq.op_type == "DequantizeLinear"):
            continue
        x_q = producer.get(x_dq.input[0])
        weight = n.input[1][: -len(_DQ)] if n.input[1].endswith(_DQ) else None
        if x_q is None or x_q.op_type != "QuantizeLinear" or weight not in fp32_weights:
            continue
        if n.op_type == "Gemm" and any(a.name == "transB" and a.i == 0 for a in n.attribute):
            continue  # bias correction on the output axis only where it is axis 1 of W^T
        bias_dq = producer.get(n.input[2]) if len(n.input) > 2 else None
        if bias_dq is not None and bias_dq.op_type != "DequantizeLinear":
            continue
        if len(n.input) > 2 and bias_dq is None and n.input[2] not in inits:
            continue  # a bias computed at run time: nothing to fold into
        scale = lambda name: numpy_helper.to_array(inits[name]).astype(np.float64)  # noqa: E731
        x_scale = float(scale(x_q.input[1]))
        zp = numpy_helper.to_array(inits[x_q.input[2]])
        info = np.iinfo(zp.dtype)
        x_range = ((info.min - int(zp)) * x_scale, (info.max - int(zp)) * x_scale)
        out.append(_Site(n, x_q.input[0], weight, bias_dq, scale(w_dq.input[1]), x_scale, x_range))
    return out


def measure_shifts(qdq: Path, fp32: Path, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Per INT8 conv/Gemm: the per-channel mean of float minus INT8 output on `batch`."""
    import onnxruntime as ort

    q, ref = onnx.load(str(qdq)), onnx.load(str(fp32))
    weights = {t.name: t for t in ref.graph.initializer}
    sites = _sites(q, set(weights))
    probe = onnx.ModelProto()
    probe.CopyFrom(q)
    opset = next(o.version for o in q.opset_import if o.domain in ("", "ai.onnx"))
    names = []
    for i, s in enumerate(sites):
        w = onnx.TensorProto()
        w.CopyFrom(weights[s.weight])
        w.name = f"bc_w{i}"
        # The quantizer clips: ORT's recipe drops a ReLU before it and lets the range do the
        # work, so the float reference reads the float tensor clipped the same way.
        lo, hi = (numpy_helper.from_array(np.float32(v), f"bc_{k}{i}") for k, v in zip("lh", s.x_range))
        probe.graph.initializer.extend([w, lo, hi])
        probe.graph.node.append(helper.make_node("Clip", [s.x_float, lo.name, hi.name], [f"bc_x{i}"], name=f"bc_x{i}"))
        inputs = [f"bc_x{i}", w.name]
        bias = s.node.input[2] if len(s.node.input) > 2 else None
        if bias in weights:  # the float bias: a corrected INT8 bias must not move the reference
            b = onnx.TensorProto()
            b.CopyFrom(weights[bias])
            b.name = f"bc_b{i}"
            probe.graph.initializer.append(b)
            inputs.append(b.name)
        ref_out = f"bc_ref{i}"
        probe.graph.node.append(helper.make_node(s.node.op_type, inputs, [ref_out], name=f"bc_ref{i}",
                                                 **{a.name: helper.get_attribute_value(a) for a in s.node.attribute}))
        ref_out, q_out = _as_seen_downstream(probe, s.node.output[0], ref_out, i)
        # Reduced inside the graph: a per-channel mean leaves the session, not every
        # activation of every layer (gigabytes for a ResNet-50 at 224 px).
        rank = 2 if s.node.op_type == "Gemm" else 4
        axes = [0, *range(2, rank)]
        if opset >= 18:  # axes became an input in opset 18
            probe.graph.initializer.append(numpy_helper.from_array(np.array(axes, np.int64), f"bc_axes{i}"))
            mean = helper.make_node("ReduceMean", [f"bc_d{i}", f"bc_axes{i}"], [f"bc_m{i}"], name=f"bc_m{i}",
                                    keepdims=0)
        else:
            mean = helper.make_node("ReduceMean", [f"bc_d{i}"], [f"bc_m{i}"], name=f"bc_m{i}", keepdims=0, axes=axes)
        probe.graph.node.extend([helper.make_node("Sub", [ref_out, q_out], [f"bc_d{i}"], name=f"bc_d{i}"), mean])
        probe.graph.output.append(helper.make_tensor_value_info(f"bc_m{i}", TensorProto.FLOAT, None))
        names.append((s.node.name, f"bc_m{i}"))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Basic level: no Q/DQ fusion, so the INT8 branch is exactly the graph's arithmetic.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    got = session.run([m for _, m in names], {session.get_inputs()[0].name: batch})
    return {node: g.astype(np.float64) for (node, _), g in zip(names, got)}


def _as_seen_downstream(probe: onnx.ModelProto, q_out: str, ref_out: str, i: int) -> tuple[str, str]:
    """Compare the two branches where the next layer reads them: after the output's Q/DQ.
    ORT's QDQ recipe drops a ReLU after a conv and lets the output quantizer clip instead, so
    the raw conv output still holds the negative half that no one reads; its error would
    steer the correction. The reference goes through the same quantizer."""
    q = next((n for n in probe.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == q_out), None)
    dq = q and next((n for n in probe.graph.node
                     if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0]), None)
    if dq is None:
        return ref_out, q_out
    probe.graph.node.extend([
        helper.make_node("QuantizeLinear", [ref_out, *q.input[1:]], [f"bc_rq{i}"], name=f"bc_rq{i}",
                         **{a.name: helper.get_attribute_value(a) for a in q.attribute}),
        helper.make_node("DequantizeLinear", [f"bc_rq{i}", *dq.input[1:]], [f"bc_rdq{i}"], name=f"bc_rdq{i}",
                         **{a.name: helper.get_attribute_value(a) for a in dq.attribute}),
    ])
    return f"bc_rdq{i}", dq.output[0]


def correct_bias(qdq: Path, fp32: Path, batch: np.ndarray, out: Path) -> tuple[Path, int]:
    """Write `qdq` with every INT8 conv/Gemm bias shifted by its measured error; returns
    (path, number of layers corrected)."""
    shifts = measure_shifts(qdq, fp32, batch)
    q = onnx.load(str(qdq))
    inits = {t.name: t for t in q.graph.initializer}
    done = 0
    for s in _sites(q, {s for s in _fp32_names(fp32)}):
        shift = shifts.get(s.node.name)
        if shift is None:
            continue
        scale = s.w_scale * s.x_scale  # the int32 bias step, per output channel
        step = np.broadcast_to(scale, shift.shape)
        if len(s.node.input) > 2 and s.bias_dq is None:  # a float bias (ORT left it unquantized)
            t = inits[s.node.input[2]]
            t.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(t) + shift).astype(np.float32), t.name))
        elif s.bias_dq is not None:
            t = inits[s.bias_dq.input[0]]
            b = numpy_helper.to_array(t).astype(np.int64) + np.round(shift / step).astype(np.int64)
            t.CopyFrom(numpy_helper.from_array(np.clip(b, -2**31, 2**31 - 1).astype(np.int32), t.name))
        else:
            _add_bias(q, s.node, np.round(shift / step).astype(np.int32), step.astype(np.float32))
        done += 1
    with atomic_path(out) as tmp:
        onnx.save(q, str(tmp))
    return out, done


def _add_bias(q: onnx.ModelProto, node: onnx.NodeProto, values: np.ndarray, scale: np.ndarray) -> None:
    """A conv exported without bias (a zero one was dropped) gets an int32 one, in the
    DequantizeLinear form ONNX Runtime fuses into QLinearConv."""
    base = f"{node.name}_bc_bias"
    q.graph.initializer.extend([
        numpy_helper.from_array(values, f"{base}_quantized"),
        numpy_helper.from_array(scale, f"{base}_scale"),
        numpy_helper.from_array(np.zeros_like(values), f"{base}_zero_point"),
    ])
    q.graph.node.insert(0, helper.make_node(
        "DequantizeLinear", [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"], [base],
        name=f"{base}_DequantizeLinear", axis=0))
    node.input.append(base)


def _fp32_names(fp32: Path) -> list[str]:
    return [t.name for t in onnx.load(str(fp32)).graph.initializer]
