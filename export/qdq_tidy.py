"""A QDQ graph from torch's exporter written as ONNX Runtime's quantizer writes one, so that its
kernels fuse it the same way: every change here leaves the graph's arithmetic exactly as it was.

Measured on EfficientNet-Lite0's QAT graph (CPU recipe), ONNX Runtime's optimised session: as
exported, 33 Clip and 9 Add ran in float between Q/DQ pairs; tidied, 49 QLinearConv and 9
QLinearAdd, the same kernels as the PTQ graph (BENCHMARKS.md, "Quantization-aware fine-tuning").
Torch-free: onnx and numpy.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

# Ops that only move values or pad them with zeros: a value on a quantization grid stays on it.
_MOVES = ("Pad", "Reshape", "Flatten", "Transpose", "MaxPool", "Squeeze", "Unsqueeze")


def tidy(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """The three rewrites, in order; returns how many of each were made."""
    made = {"scalar_qparams": scalar_qparams(model),
            "activations_dropped": drop_covered_activations(model),
            "requantizations_dropped": drop_requantization_after_moves(model)}
    return model, made


def scalar_qparams(model: onnx.ModelProto) -> int:
    """Per-tensor scales and zero-points as scalars, not one-element vectors: torch writes [1],
    and ONNX Runtime fuses a binary op (QLinearAdd) only where they are scalars."""
    g = model.graph
    names = {i for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") for i in n.input[1:3]}
    changed = 0
    for init in g.initializer:
        if init.name in names and list(init.dims) == [1]:
            del init.dims[:]
            changed += 1
    return changed


def drop_covered_activations(model: onnx.ModelProto) -> int:
    """A Relu or Clip whose only reader is a QuantizeLinear that saturates at its bounds: the
    activation changes nothing Q outputs (Q is monotone and clamps), so it goes, as ONNX
    Runtime's quantizer drops it. What is left, DQ → Conv → Q, is one QLinearConv; with the
    Clip between them the conv ran in float."""
    g = model.graph
    values = _constants(g)
    readers = _readers(g)
    outputs = {o.name for o in g.output}
    dropped = 0
    for act in [n for n in g.node if n.op_type in ("Relu", "Clip")]:
        after = readers.get(act.output[0], [])
        if len(after) != 1 or after[0].op_type != "QuantizeLinear" or act.output[0] in outputs:
            continue
        q = after[0]
        grid = _grid(q, values)
        bounds = _bounds(act, values)
        if grid is None or bounds is None:
            continue
        scale, zero, low, high = grid
        quantized = [np.clip(np.rint(np.float32(b) / scale) + zero, low, high) for b in bounds]
        if quantized == [low, high]:
            q.input[0] = act.input[0]
            g.node.remove(act)
            dropped += 1
    return dropped


def drop_requantization_after_moves(model: onnx.ModelProto) -> int:
    """DQ → Pad (or another op of _MOVES) → Q → DQ, Q with the DQ's own scale and zero-point:
    the moved values are already on that grid (zero-padding adds the zero-point's value, 0), so
    Q then DQ returns them unchanged. The pair goes; ONNX Runtime then folds the Pad into the
    next Conv (torch puts a Q/DQ pair after each op that shares its input's observer)."""
    g = model.graph
    values = _constants(g)
    producers = {o: n for n in g.node for o in n.output}
    readers = _readers(g)
    outputs = {o.name for o in g.output}
    dropped = 0
    for q in [n for n in g.node if n.op_type == "QuantizeLinear"]:
        move = producers.get(q.input[0])
        if move is None or move.op_type not in _MOVES or not _zero_padding(move, values):
            continue
        dq_in = producers.get(move.input[0])
        after = readers.get(q.output[0], [])
        if (dq_in is None or dq_in.op_type != "DequantizeLinear" or not after
                or any(d.op_type != "DequantizeLinear" or d.output[0] in outputs for d in after)
                or len(readers.get(move.output[0], [])) != 1):
            continue
        if not (_same_grid(dq_in, q, values) and all(_same_grid(q, d, values) for d in after)):
            continue
        for d in after:
            for reader in readers.get(d.output[0], []):
                reader.input[:] = [move.output[0] if i == d.output[0] else i for i in reader.input]
            g.node.remove(d)
        g.node.remove(q)
        dropped += 1
    return dropped


def _constants(g: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def _readers(g: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    return readers


def _grid(node: onnx.NodeProto, values: dict) -> tuple[float, int, int, int] | None:
    """A per-tensor Q or DQ's (scale, zero-point, lowest, highest code), or None."""
    if len(node.input) < 3 or node.input[1] not in values or node.input[2] not in values:
        return None
    scale, zero = values[node.input[1]], values[node.input[2]]
    if scale.size != 1 or zero.size != 1:
        return None
    info = np.iinfo(zero.dtype)
    return float(scale.reshape(())), int(zero.reshape(())), info.min, info.max


def _same_grid(a: onnx.NodeProto, b: onnx.NodeProto, values: dict) -> bool:
    ga, gb = _grid(a, values), _grid(b, values)
    return ga is not None and ga == gb


def _bounds(act: onnx.NodeProto, values: dict) -> tuple[float, float] | None:
    """A Relu's or Clip's (low, high); None where a bound is not a constant."""
    if act.op_type == "Relu":
        return 0.0, float("inf")
    bounds = []
    for k, default in ((1, -np.inf), (2, np.inf)):
        name = act.input[k] if len(act.input) > k else ""
        if name and name not in values:
            return None
        bounds.append(float(values[name].reshape(())) if name else default)
    return bounds[0], bounds[1]


def _zero_padding(move: onnx.NodeProto, values: dict) -> bool:
    """True unless `move` is a Pad that is not constant-mode padding with 0."""
    if move.op_type != "Pad":
        return True
    mode = next((a.s.decode() for a in move.attribute if a.name == "mode"), "constant")
    if mode != "constant":
        return False
    if len(move.input) > 2 and move.input[2]:
        return move.input[2] in values and float(values[move.input[2]].reshape(())) == 0.0
    return True
