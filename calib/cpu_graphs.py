"""Which nodes of an fp32 graph pay in INT8 on a CPU, read from the graph's structure.

Two rules from ONNX Runtime's x86 kernels (its MLAS sources):
- the fast INT8 depthwise kernel needs symmetric int8 weights (zero-point 0, which the CPU
  recipe already uses) and a channel count that is a multiple of 16; other depthwise convs
  fall back to a generic path slower than the fp32 NCHWc kernel;
- there is no integer fusion for HardSwish, HardSigmoid, Sigmoid or SiLU (x·sigmoid(x)):
  each runs as dequantize → float op → quantize, so a conv that reads from or writes into
  one of them pays two Q/DQ passes over its whole tensor for its INT8 speed-up.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import numpy_helper

# Activations ONNX Runtime cannot fuse into an integer conv. HardSwish is exported as
# HardSigmoid·Mul, SiLU as Sigmoid·Mul and squeeze-excitation scales with HardSigmoid·Mul.
UNFUSABLE = ("HardSwish", "HardSigmoid", "Sigmoid")
DEPTHWISE_MULTIPLE = 16  # x86; ARM's kernel has its own conditions


def _load(model: Path | onnx.ModelProto) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def depthwise_convs(model) -> dict[str, int]:
    """Depthwise convs (one input channel per group, group == channels): name -> channels."""
    m = _load(model)
    shapes = {t.name: tuple(t.dims) for t in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in shapes:
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        w = shapes[n.input[1]]
        if group > 1 and w[1] == 1 and w[0] == group:
            out[n.name] = group
    return out


def fast_depthwise(model) -> list[str]:
    """Depthwise convs whose channel count suits ONNX Runtime's fast INT8 kernel on x86."""
    return [name for name, c in depthwise_convs(model).items() if c % DEPTHWISE_MULTIPLE == 0]


def unfusable_tensors(model) -> set[str]:
    """Tensors read or written by an activation the CPU cannot fuse (including the Mul that
    completes HardSwish, SiLU or a squeeze-excitation scale)."""
    m = _load(model)
    act_out = {o for n in m.graph.node if n.op_type in UNFUSABLE for o in n.output}
    tensors = set()
    for n in m.graph.node:
        if n.op_type in UNFUSABLE:
            tensors.update(n.input)
            tensors.update(n.output)
        elif n.op_type == "Mul" and act_out & set(n.input):
            tensors.update(n.input)
            tensors.update(n.output)
    return tensors


def unfusable_region(model, op_types=("Conv", "Gemm", "MatMul")) -> list[str]:
    """Compute nodes whose data input or output touches an unfusable activation: kept in
    float, they spare the Q/DQ passes around it."""
    m = _load(model)
    touched = unfusable_tensors(m)
    return [n.name for n in m.graph.node
            if n.op_type in op_types and n.name and (n.input[0] in touched or n.output[0] in touched)]


def compute_nodes(model, op_types=("Conv", "Gemm", "MatMul")) -> list[str]:
    return [n.name for n in _load(model).graph.node if n.op_type in op_types and n.name]


def quantized_nodes(qdq: Path | onnx.ModelProto, op_types=("Conv", "Gemm", "MatMul")) -> list[str]:
    """Compute nodes of a QDQ graph that take a dequantized weight: the ones in INT8."""
    m = _load(qdq)
    dq_out = {n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in m.graph.node
            if n.op_type in op_types and len(n.input) > 1 and n.input[1] in dq_out]


def weight_array(model: onnx.ModelProto, name: str):
    init = next((t for t in model.graph.initializer if t.name == name), None)
    return None if init is None else numpy_helper.to_array(init)
