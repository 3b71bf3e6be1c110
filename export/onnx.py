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

__all__ = ["Parity", "ParityError", "check_parity", "disagreement", "export_for_timing", "export_onnx", "export_qdq",
           "export_traced"]

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


def export_traced(model: torch.nn.Module, size: tuple[int, int], path: str | Path, opset: int = 20,
                  outputs: tuple[str, ...] = (OUTPUT,)) -> Path:
    """`export_onnx`'s graph for a graph that is only timed and read here (`choose`'s, `tune`'s
    latency graphs), from the TorchScript exporter at this input size: about a second a network
    against 3-8 s of torch.export on the 2-core EPYC (tools/bench_export_paths.py). The same Conv, Clip
    and Add nodes as `export_onnx` writes (timm's "SAME" padding made constant at `size` and
    folded into the Convs, `export.same_padding`); the pool is GlobalAveragePool where
    torch.export writes ReduceMean. Valid at `size` (and where no layer's padding depends on
    it, at others): the caller checks parity where it uses another. The bundle's graph stays
    `export_onnx`'s, which calibration and the TensorRT lint were built on."""
    import onnx
    import onnx_ir as ir
    from onnxscript import optimizer

    from edgetune.export.same_padding import static_same_padding

    model = model.eval().cpu()
    path = Path(path)
    with atomic_path(path) as tmp, _quiet(), _out_of_place(model), static_same_padding(model, size):
        _torchscript(model, size, tmp, outputs, opset)
        graph = ir.from_proto(onnx.load(str(tmp)))
        # F.pad's pads come out of the exporter as ConstantOfShape arithmetic, which onnxscript
        # keeps unless told (a ConstantOfShape can be large; these hold eight numbers); folded,
        # the optimizer merges each Pad into its Conv.
        optimizer.fold_constants(graph, should_fold=lambda node: True if node.op_type == "ConstantOfShape" else None)
        optimizer.optimize(graph)
        onnx.save(ir.to_proto(graph), str(tmp))
    return path


def export_for_timing(model: torch.nn.Module, size: tuple[int, int], path: str | Path,
                      outputs: tuple[str, ...] = (OUTPUT,)) -> str:
    """A graph that is timed and read here, not shipped: `export_traced`'s where it agrees with
    the model at `size`, else `export_onnx`'s (a model the tracer refuses or gets wrong: control
    flow on values). Returns why torch.export made it, or "" where tracing did."""
    path = Path(path)
    try:
        export_traced(model, size, path, outputs=outputs)
        why = disagreement(path, model, size, f"{path.name}, traced")
    except Exception as error:  # noqa: BLE001 - whatever the tracer refuses, torch.export may take
        why = f"the TorchScript exporter failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    if why is None:
        return ""
    path.unlink(missing_ok=True)  # a graph that disagrees is never left to be reused
    export_onnx(model, size, path, outputs=outputs)
    return f"exported by torch.export ({why[:160]})"


def disagreement(graph: str | Path | bytes, model: torch.nn.Module, size: tuple[int, int], what: str) -> str | None:
    """Why the graph's first output differs from the model's at `size` (two seeded random
    images, the export's tolerance; a graph ONNX Runtime cannot run at that size says so), or
    None where they agree."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph, RuntimeException

    from edgetune.runtime.ort_backend import providers_for

    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model.eval()(x)
    want = (want[0] if isinstance(want, tuple) else want).numpy()
    try:
        source = graph if isinstance(graph, bytes) else str(graph)
        session = ort.InferenceSession(source, providers=providers_for("cpu"))
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        compare(want, got, 1e-3, what)
    except (ParityError, Fail, InvalidArgument, InvalidGraph, RuntimeException) as error:
        return str(error).splitlines()[0]
    return None


def _torchscript(model: torch.nn.Module, size: tuple[int, int], path: Path, outputs: tuple[str, ...],
                 opset: int) -> None:
    """The TorchScript exporter's graph of `model` with a dynamic batch, written to `path`."""
    torch.onnx.export(model, (torch.zeros(2, 3, *size),), str(path), input_names=[INPUT],
                      output_names=list(outputs), dynamic_axes={name: {0: "batch"} for name in (INPUT, *outputs)},
                      dynamo=False, opset_version=opset)


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
        _torchscript(model, size, tmp, (OUTPUT,), QDQ_OPSET)
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
