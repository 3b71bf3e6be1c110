"""Pre-flight lint of a TensorRT-target QDQ graph, on the CPU, before any GPU sees it.

TensorRT's explicit quantization accepts only symmetric int8 (zero-point 0), weights
quantized per output channel, and Q/DQ that come in pairs. A graph that breaks these fails
at engine build time on the device, far from the cause; here it fails in CI, naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

# Weight-consuming ops and the axis of their output channels.
_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1, "Gemm": 0}


@dataclass(frozen=True)
class LintIssue:
    node: str
    problem: str

    def __str__(self) -> str:
        return f"{self.node}: {self.problem}"


def lint_tensorrt_qdq(model: str | Path | onnx.ModelProto) -> list[LintIssue]:
    """Every problem found; an empty list means the graph is fit for a strongly typed build."""
    m = onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else model
    g = m.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].t.dims is not None}
    inits.update(consts)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producers: dict[str, onnx.NodeProto] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
        for o in n.output:
            producers[o] = n
    graph_outputs = {o.name for o in g.output}
    issues: list[LintIssue] = []
    qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        return [LintIssue("<graph>", "no QuantizeLinear/DequantizeLinear nodes: not an INT8 QDQ graph")]
    for n in qdq:
        name = n.name or f"{n.op_type}({n.input[0]})"
        zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is None:
            issues.append(LintIssue(name, "zero-point missing: TensorRT needs an explicit int8 zero-point of 0"))
        elif zp.dtype != np.int8:
            issues.append(LintIssue(name, f"zero-point is {zp.dtype}, TensorRT needs int8"))
        elif zp.any():
            issues.append(LintIssue(name, f"zero-point {zp.ravel()[:4].tolist()} is not 0: TensorRT needs "
                                          "symmetric quantization"))
        if n.op_type == "QuantizeLinear":
            users = consumers.get(n.output[0], [])
            if not users or any(u.op_type != "DequantizeLinear" for u in users):
                issues.append(LintIssue(name, "QuantizeLinear not followed by DequantizeLinear (dangling Q)"))
        else:
            source = n.input[0]
            if source not in inits and (source not in producers or producers[source].op_type != "QuantizeLinear"):
                issues.append(LintIssue(name, "DequantizeLinear input is neither a weight nor a QuantizeLinear "
                                              "output (dangling DQ)"))
            if not consumers.get(n.output[0]) and n.output[0] not in graph_outputs:
                issues.append(LintIssue(name, "DequantizeLinear output is unused (dangling DQ)"))
            issues += _check_weight_axis(n, name, inits, consumers)
    return issues


def _check_weight_axis(dq, name, inits, consumers) -> list[LintIssue]:
    weight = inits.get(dq.input[0])
    if weight is None or weight.ndim < 2:
        return []
    out = []
    for user in consumers.get(dq.output[0], []):
        if user.op_type not in _WEIGHT_AXIS or user.input[1] != dq.output[0]:
            continue
        axis = _WEIGHT_AXIS[user.op_type]
        if user.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in user.attribute):
            axis = 1
        scale = inits.get(dq.input[1])
        got = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        if scale is None or scale.size != weight.shape[axis] or (scale.size > 1 and got != axis):
            out.append(LintIssue(name, f"weight scale of {user.op_type} {user.name!r} is not per output "
                                       f"channel (axis {axis}, {weight.shape[axis]} channels)"))
    return out
