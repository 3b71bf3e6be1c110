"""A graph written at an older ONNX opset, for a TensorRT whose parser documents no newer one.

JetPack 6.0's TensorRT 8.6 (what DeepStream 7.0 builds with there) documents opsets up to 17;
our graphs are exported at 20, which 8.6 only tries with a warning. `convert_opset` rewrites a
graph with onnx's version converter, repairs what the converter leaves behind, checks the
model, and `same_network` runs both graphs on the same inputs in ONNX Runtime: measured on
ResNet-18, fp32 and both INT8 QDQ recipes, the converted graphs' logits equal the originals'
exactly (max |Δ| 0.0). The newest opset a family documents comes from calib/trt_onnx_ops.json.
Needs `onnx`, not torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter

from edgetune.atomic import atomic_path
from edgetune.export.graph_parity import Parity, compare

# Reduce* ops took `noop_with_empty_axes` and axes as an input from opset 18 (ReduceSum from
# 13); the converter moves the axes back to an attribute but keeps the flag, which opset 17's
# schema refuses. Its default (0) is the older opsets' only behaviour, so it can go.
_AXES_AS_INPUT_SINCE = 18


def graph_opset(path_or_model) -> int:
    m = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model),
                                                                                    load_external_data=False)
    return next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


def convert_opset(src: str | Path, dst: str | Path, opset: int) -> Path:
    """`src` rewritten at `opset` (older than its own) as `dst`, checked by onnx's checker."""
    model = onnx.load(str(src))
    if graph_opset(model) <= opset:
        raise ValueError(f"{Path(src).name} is already at opset {graph_opset(model)} <= {opset}")
    converted = version_converter.convert_version(model, opset)
    if opset < _AXES_AS_INPUT_SINCE:
        for node in converted.graph.node:
            if node.op_type.startswith("Reduce") and node.op_type != "ReduceSum":
                flag = next((a for a in node.attribute if a.name == "noop_with_empty_axes"), None)
                if flag is not None:
                    if flag.i:
                        raise ValueError(f"{node.name}: noop_with_empty_axes=1 has no opset-{opset} form")
                    node.attribute.remove(flag)
    onnx.checker.check_model(converted, full_check=True)
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        onnx.save(converted, str(tmp))
    return dst


def same_network(reference: str | Path, converted: str | Path, batch: np.ndarray,
                 tolerance: float = 1e-5) -> Parity:
    """Both graphs on `batch` (what their one input takes) in ONNX Runtime; ParityError when
    the converted one is not the same network."""
    import onnxruntime as ort

    def run(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: batch})[0]

    return compare(run(reference), run(converted), tolerance,
                   f"{Path(converted).name} (opset {graph_opset(converted)}) is not the same network "
                   f"as {Path(reference).name}")
