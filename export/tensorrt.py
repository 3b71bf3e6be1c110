"""TensorRT engines from the bundle's QDQ (int8) or fp16 graphs, built strongly typed.

Precision lives in the graph (DESIGN.md, principle 1): TensorRT 11 removed the INT8/FP16
builder flags and calibrators, and Jetson still runs 8.6/10.x; a strongly typed network
from a QDQ or fp16 ONNX graph builds the same way on all of them. Thin on purpose: parse,
one optimisation profile over the batch dimension, build, write atomically. Engines are
specific to the GPU and the TensorRT version, so this runs on the target device; it needs
no PyTorch. Typed against the documented TensorRT 10 Python API; CI here has no TensorRT,
so the graph is linted on the CPU instead (edgetune.calib.lint) and GPU tests skip.
"""

from __future__ import annotations

from pathlib import Path

from edgetune.atomic import atomic_path
from edgetune.errors import BundleError, MissingDependencyError


def is_available() -> tuple[bool, str]:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, ("building engines needs TensorRT on the target device: pip install "
                       "'edgetune[tensorrt]' (on Jetson it comes with JetPack)")
    return True, ""


def build_engine(onnx_path: str | Path, engine_path: str | Path, size: tuple[int, int],
                 max_batch: int = 8, opt_batch: int = 1, workspace_gb: float = 2.0) -> Path:
    """Serialize a strongly typed engine for inputs (1…max_batch, 3, H, W)."""
    ok, why = is_available()
    if not ok:
        raise MissingDependencyError(why)
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Strongly typed: the graph's Q/DQ and fp16 tensors decide every layer's precision.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"TensorRT cannot parse {Path(onnx_path).name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    h, w = size
    profile.set_shape(name, (1, 3, h, w), (opt_batch, 3, h, w), (max_batch, 3, h, w))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}; see its log above")
    engine_path = Path(engine_path)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    return engine_path


def trt_version() -> str:
    import tensorrt as trt

    return trt.__version__
