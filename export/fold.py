"""Preprocessing folded into the graph: a variant that takes pixels, not normalised floats.

For clients that cannot normalise: DeepStream's nvinfer normalises with one scalar
(`net-scale-factor`) and per-channel offsets, so ImageNet's per-channel std cannot be expressed
there; a C++ or browser client would rather send bytes. The folded graph takes RGB pixels at the
model's input size (uint8, or float32 values 0..255 as nvinfer hands them over), NHWC or NCHW,
and does `Preprocess.normalize` inside: Cast, Transpose, Div 255, Sub mean, Div std, in the
order and float32 precision numpy does them, so on the same pixels it feeds the original graph
the same tensor. Resize and crop stay outside: they depend on each source image's size.

Works on any of our graphs, fp32, INT8 QDQ or fp16 (whose inputs stay float32): the new nodes
come before the first QuantizeLinear, in float. `softmax=True` adds a Softmax on the output,
for readers that take probabilities (nvinfer's classifier parser). Needs `onnx`, not torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgetune.atomic import atomic_path
from edgetune.export.graph_parity import Parity, compare
from edgetune.preprocess import Preprocess

Layout = Literal["NHWC", "NCHW"]
Pixels = Literal["uint8", "float32"]
LAYOUTS = ("NHWC", "NCHW")
IMAGE, PROBABILITIES = "image", "probabilities"  # the folded graph's input, and the softmax output
_DTYPE = {"uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT}
# Same float32 ops as numpy on the same pixels; a different kernel order may still round the
# last bit differently, and INT8 may then flip one quantized value at a rounding boundary.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}


def fold_preprocessing(src: str | Path, dst: str | Path, pre: Preprocess, layout: Layout = "NHWC",
                       pixels: Pixels = "uint8", softmax: bool = False) -> Path:
    """Write `src` with `pre`'s normalisation folded in as `dst`; input `image`, pixels in `layout`."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not one of {LAYOUTS}")
    model = onnx.load(str(src))
    graph = model.graph
    weights = {w.name for w in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ValueError(f"{Path(src).name} has {len(inputs)} inputs; folding needs exactly one image input")
    original = inputs[0]
    first = original.type.tensor_type.shape.dim[0]
    batch, (h, w) = first.dim_param or first.dim_value, pre.size  # the batch stays as dynamic as it was
    dims = [batch, h, w, 3] if layout == "NHWC" else [batch, 3, h, w]
    image = helper.make_tensor_value_info(IMAGE, _DTYPE[pixels], dims)

    def const(name: str, values) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(values, np.float32), f"fold_{name}"))
        return f"fold_{name}"

    channel = (1, 3, 1, 1)
    x = IMAGE
    nodes = []
    if pixels == "uint8":
        nodes.append(helper.make_node("Cast", [x], ["fold_float"], to=TensorProto.FLOAT, name="fold_cast"))
        x = "fold_float"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["fold_nchw"], perm=[0, 3, 1, 2], name="fold_nchw"))
        x = "fold_nchw"
    nodes += [
        helper.make_node("Div", [x, const("255", 255.0)], ["fold_unit"], name="fold_unit"),
        helper.make_node("Sub", ["fold_unit", const("mean", np.reshape(pre.mean, channel))], ["fold_centred"],
                         name="fold_centred"),
        helper.make_node("Div", ["fold_centred", const("std", np.reshape(pre.std, channel))], [original.name],
                         name="fold_normalised"),
    ]
    graph.input.remove(original)
    graph.input.insert(0, image)
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    if softmax:
        logits = graph.output[0]
        graph.node.append(helper.make_node("Softmax", [logits.name], [PROBABILITIES], axis=1, name="fold_softmax"))
        probs = helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, None)
        probs.type.tensor_type.shape.CopyFrom(logits.type.tensor_type.shape)
        graph.output.remove(logits)
        graph.output.insert(0, probs)
    onnx.checker.check_model(model)
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return dst


def as_layout(pixels_nhwc: np.ndarray, layout: Layout, pixels: Pixels = "uint8") -> np.ndarray:
    """(N, H, W, 3) uint8 pixels as a folded graph of `layout` and `pixels` takes them."""
    x = pixels_nhwc if layout == "NHWC" else pixels_nhwc.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x.astype(np.float32) if pixels == "float32" else x)


def check_fold(src: str | Path, folded: str | Path, pre: Preprocess, pixels_nhwc: np.ndarray,
               layout: Layout, precision: str, pixels: Pixels = "uint8", softmax: bool = False) -> Parity:
    """The folded graph on pixels against the source graph on `pre.normalize` of the same pixels,
    in ONNX Runtime; ParityError beyond the precision's tolerance (a bug of ours)."""
    import onnxruntime as ort

    def run(path, x):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    ref = run(src, np.stack([pre.normalize(p) for p in pixels_nhwc]))
    if softmax:
        ref = np.exp(ref - ref.max(1, keepdims=True))
        ref /= ref.sum(1, keepdims=True)
    got = run(folded, as_layout(pixels_nhwc, layout, pixels))
    return compare(ref, got, TOLERANCE.get(precision, TOLERANCE["int8"]),
                   f"{Path(folded).name} (preprocessing folded in) disagrees with {Path(src).name}")
