"""torch → ONNX fp32 with a dynamic batch dimension, checked against PyTorch on real images."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from edgetune.atomic import atomic_path
from edgetune.export.graph_parity import Parity, ParityError, compare

__all__ = ["Parity", "ParityError", "check_parity", "export_onnx", "export_qdq"]

INPUT, OUTPUT = "input", "logits"


def export_onnx(model: torch.nn.Module, size: tuple[int, int], path: str | Path, opset: int = 20,
                outputs: tuple[str, ...] = (OUTPUT,)) -> Path:
    """Write `model` (eval mode, CPU) as ONNX with input NCHW float32 and a dynamic batch;
    `outputs` names its outputs (a model returning a tuple has several)."""
    model = model.eval().cpu()
    example = torch.zeros(2, 3, *size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    path = Path(path)
    with atomic_path(path) as tmp, _quiet(), _out_of_place(model):
        program = torch.onnx.export(
            model, (example,), input_names=[INPUT], output_names=list(outputs),
            dynamic_shapes=({0: batch},), dynamo=True, opset_version=opset,
            optimize=True, verbose=False,
        )
        program.save(str(tmp), external_data=False)
    return path


QDQ_OPSET = 17  # per-channel Q/DQ needs 13; 17 is the newest TensorRT 8.6 (JetPack 6.0) documents


def export_qdq(model: torch.nn.Module, size: tuple[int, int], path: str | Path) -> Path:
    """A fake-quantized model (edgetune.train.qat) as a QDQ graph with a dynamic batch.

    The TorchScript exporter: it turns FakeQuantize into QuantizeLinear/DequantizeLinear,
    while torch.export (the dynamo exporter) refuses FakeQuantize's data-dependent branches
    (torch 2.14). onnxscript's optimizer then folds the exporter's Identity and Constant
    nodes, so zero-points are initializers, as the TensorRT lint and the runtimes read them;
    each weight's QuantizeLinear is then applied once, here (`_store_int8_weights`), and the
    graph written as ONNX Runtime's quantizer writes one (`export.qdq_tidy`: the same
    arithmetic, fused into the same int8 kernels)."""
    import onnx
    import onnxscript
    from torch.ao.quantization import disable_observer

    from edgetune.export.qdq_tidy import tidy

    model = model.eval().cpu()
    model.apply(disable_observer)
    path = Path(path)
    with atomic_path(path) as tmp, _quiet():
        torch.onnx.export(model, (torch.zeros(2, 3, *size),), str(tmp), input_names=[INPUT],
                          output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                          dynamo=False, opset_version=QDQ_OPSET)
        graph = _store_int8_weights(onnxscript.optimizer.optimize(onnx.load(str(tmp))))
        onnx.save(tidy(graph)[0], str(tmp))
    return path


def _store_int8_weights(model):
    """QuantizeLinear of a constant weight replaced by the int8 tensor it computes, as ONNX
    Runtime's quantizer writes weights: a quarter of the size, nothing to quantize at run
    time, and DequantizeLinear reading an initializer, which the TensorRT lint checks per
    channel. The same arithmetic as the operator: round half to even, saturate."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    used = {}
    for n in g.node:
        for i in n.input:
            used[i] = used.get(i, 0) + 1
    for q in [n for n in g.node if n.op_type == "QuantizeLinear"]:
        if not all(i in inits for i in q.input[:3]):
            continue
        x, scale, zp = (numpy_helper.to_array(inits[i]) for i in q.input[:3])
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        if scale.size > 1:
            shape = [1] * x.ndim
            shape[axis] = -1
            scale, zp_b = scale.reshape(shape), zp.reshape(shape).astype(np.int32)
        else:
            zp_b = zp.astype(np.int32)
        info = np.iinfo(zp.dtype)
        values = np.clip(np.rint(x / scale) + zp_b, info.min, info.max).astype(zp.dtype)
        g.initializer.append(numpy_helper.from_array(values, q.output[0]))
        g.node.remove(q)
        if used.get(q.input[0]) == 1:  # the float weight, read by nothing else now
            g.initializer.remove(inits[q.input[0]])
    return model


def check_parity(model: torch.nn.Module, onnx_path: str | Path, batch: np.ndarray,
                 tolerance: float = 1e-3) -> Parity:
    """Compare logits on real images; raise ParityError when the graphs disagree."""
    from edgetune.runtime.ort_backend import OrtSession

    with torch.no_grad():
        ref = model.eval().cpu()(torch.from_numpy(batch)).numpy()
    got = OrtSession(onnx_path, device="cpu").run(batch)
    return compare(ref, got, tolerance, f"ONNX export of {Path(onnx_path).name} disagrees with PyTorch")


@contextlib.contextmanager
def _out_of_place(model: torch.nn.Module):
    """The model's in-place activations (`ReLU6(inplace=True)`, `Hardswish(inplace=True)`, as
    timm and torchvision build them) run out of place while it is exported, and are put back.
    The exporter has direct translations for hardtanh, hardswish and hardsigmoid but not for
    their in-place forms, which it decomposes through torch._refs' clamp: 30-80 ms a call, 1.5-3 s
    of an EfficientNet-Lite0 or MobileNetV3 export of 4-6 s on the 2-core EPYC. The graph is the
    same either way (the optimizer folds the decomposition back to Clip and HardSwish)."""
    flipped = [m for m in model.modules() if getattr(m, "inplace", None) is True]
    for m in flipped:
        m.inplace = False
    try:
        yield
    finally:
        for m in flipped:
            m.inplace = True


@contextlib.contextmanager
def _quiet():
    # The exporter narrates every pass on stdout; our users want one line per stage.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
