"""TensorRT engines from the bundle's QDQ (int8) or fp16 graph, on TensorRT 8.6, 10.x and 11.x.

Precision lives in the graph (docs/ARCHITECTURE.md, principle 1). How the builder is told differs per
version; `trt_plan.build_mode` decides it (tested on the CPU), this module only applies it:
parse, one optimisation profile over the batch dimension, a workspace limit, a timing cache
beside the engine (reused by the next build), build, write a plain plan atomically, and a
sidecar record of what it was built for. Without the Python bindings (Jetson images often
lack them) the same build runs through `trtexec`. Needs no PyTorch. Typed against the
documented Python API (Builder, OnnxParser, IBuilderConfig, ITimingCache, IHostMemory);
CI here has no TensorRT, so the graph is pre-flighted on the CPU (edgetune.calib.preflight).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgetune.atomic import atomic_path
from edgetune.errors import BundleError, ConfigError, MissingDependencyError
from edgetune.export.trt_plan import BuildMode, Profile, TrtVersion, build_mode, parse_version, trtexec_argv
from edgetune.files import timing_cache
from edgetune.runtime.engine_info import EngineHost, mismatch, read_sidecar, write_sidecar

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"


@dataclass(frozen=True)
class EngineBuild:
    engine: Path
    info: dict  # also written to <engine>.json and to the manifest


def has_python_bindings() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def find_trtexec() -> str | None:
    """trtexec on PATH, else where JetPack installs it."""
    found = shutil.which("trtexec")
    if found:
        return found
    return JETPACK_TRTEXEC if os.access(JETPACK_TRTEXEC, os.X_OK) else None


def is_available() -> tuple[bool, str]:
    if has_python_bindings() or find_trtexec():
        return True, ""
    return False, ("building engines needs TensorRT on the target device: pip install "
                   "'edgetune[tensorrt]', or trtexec on PATH (JetPack ships it in "
                   f"{Path(JETPACK_TRTEXEC).parent})")


def trt_version() -> str:
    """The installed TensorRT version, from the bindings or else from trtexec's banner."""
    if has_python_bindings():
        import tensorrt as trt

        return trt.__version__
    trtexec = find_trtexec()
    if trtexec is None:
        raise MissingDependencyError(is_available()[1])
    out = subprocess.run([trtexec, "--help"], capture_output=True, text=True, timeout=60)
    return version_from_banner(out.stdout + out.stderr)


def version_from_banner(text: str) -> str:
    """'[TensorRT v8601]' -> '8.6.1'; '[TensorRT v100300]' -> '10.3.0'. trtexec prints its
    build's NV_TENSORRT_VERSION: MAJOR*1000+MINOR*100+PATCH up to 8.x, MAJOR*10000+... from 10."""
    m = re.search(r"TensorRT v(\d+)", text)
    if not m:
        raise BundleError("cannot tell the TensorRT version from `trtexec --help` (no '[TensorRT vNNNN]' "
                          "banner); install the TensorRT Python bindings instead")
    n = int(m[1])
    if n < 10000:
        return f"{n // 1000}.{n // 100 % 10}.{n % 100}"
    return f"{n // 10000}.{n // 100 % 100}.{n % 100}"


def timing_cache_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(timing_cache(engine))


def build_engine(onnx_path: str | Path, engine_path: str | Path, size: tuple[int, int], precision: str,
                 max_batch: int = 8, opt_batch: int = 1, workspace_gb: float = 2.0, device: str = "gpu",
                 gpu: tuple[str, str] | None = None, builder: str = "auto", log=print) -> EngineBuild:
    """Serialize an engine for inputs (1…max_batch, 3, H, W) and record what it was built for.

    `gpu` is (name, compute capability); measured with cuda-python when not given.
    `builder`: auto (the Python bindings when present, else trtexec), python or trtexec.
    """
    ok, why = is_available()
    if not ok:
        raise MissingDependencyError(why)
    if builder not in ("auto", "python", "trtexec"):
        raise ConfigError(f"builder {builder!r} is not one of auto, python, trtexec")
    use_python = has_python_bindings() if builder == "auto" else builder == "python"
    if use_python and not has_python_bindings():
        raise MissingDependencyError("builder 'python' asked for, but the TensorRT Python bindings are not "
                                     "installed: pip install 'edgetune[tensorrt]' or use --builder trtexec")
    if builder == "trtexec" and find_trtexec() is None:
        raise MissingDependencyError("builder 'trtexec' asked for, but trtexec is neither on PATH nor in "
                                     f"{Path(JETPACK_TRTEXEC).parent}")
    if workspace_gb <= 0:
        raise ConfigError(f"--workspace-gb {workspace_gb} must be positive")
    version = trt_version()
    mode = build_mode(version, precision, device)
    engine_path = Path(engine_path)
    name, cc = gpu or _gpu_identity()
    previous = read_sidecar(engine_path)
    if previous and mismatch(previous, EngineHost(version, cc, name)):
        # A timing cache only holds for the TensorRT build and GPU that wrote it.
        timing_cache_path(engine_path).unlink(missing_ok=True)
    start = time.perf_counter()
    if use_python:
        input_name = _build_python(Path(onnx_path), engine_path, mode, size, max_batch, opt_batch, workspace_gb)
    else:
        input_name = _onnx_input_name(onnx_path)
        _build_trtexec(Path(onnx_path), engine_path, mode, Profile(input_name, size, opt_batch, max_batch),
                       workspace_gb, log)
    seconds = time.perf_counter() - start
    info = {"tensorrt": version, "gpu": name, "compute_capability": cc, "device": device,
            "precision": precision, "typing": mode.typing, "builder_flags": list(mode.builder_flags),
            "profile": Profile(input_name, size, opt_batch, max_batch).to_dict(),
            "workspace_gb": workspace_gb, "build_seconds": round(seconds, 2),
            "builder": "python" if use_python else "trtexec",
            "timing_cache": timing_cache_path(engine_path).name}
    write_sidecar(engine_path, info)
    return EngineBuild(engine_path, info)


def _build_python(onnx_path: Path, engine_path: Path, mode: BuildMode, size, max_batch, opt_batch,
                  workspace_gb) -> str:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if mode.strongly_typed_flag else 0
    if mode.version.major == 8:  # 8.6 still needs explicit batch asked for; 10 made it the default
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise BundleError(parser_error(onnx_path.name, [parser.get_error(i) for i in range(parser.num_errors)]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    for flag in mode.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if mode.dla_core is not None:
        if mode.dla_core >= builder.num_DLA_cores:
            raise ConfigError(f"--device dla:{mode.dla_core}: this device has {builder.num_DLA_cores} DLA "
                              "core(s); use dla:0 or --device gpu")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = mode.dla_core
    cache_file = timing_cache_path(engine_path)
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    low, opt, high = Profile(name, size, opt_batch, max_batch).shapes()
    profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT {mode.version} failed to build an engine from {onnx_path}; see its log above")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))  # a plain plan: no header, so trtexec and C++ load it
    with atomic_path(cache_file) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return name


def _build_trtexec(onnx_path: Path, engine_path: Path, mode: BuildMode, profile: Profile, workspace_gb, log):
    trtexec = find_trtexec()
    cache_file = timing_cache_path(engine_path)
    with atomic_path(engine_path) as tmp:
        argv = trtexec_argv(trtexec, mode, str(onnx_path), str(tmp), profile,
                            workspace_mb=int(workspace_gb * 1024), timing_cache=str(cache_file))
        log("trtexec: " + " ".join(argv[1:]))
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0 or not tmp.is_file():
            raise BundleError(trtexec_error(onnx_path.name, done.stdout + done.stderr))


def parser_error(file: str, errors) -> str:
    """The ONNX parser's first error as one line naming the node and op (8.6 lacks the node
    accessors of 10.x, so they are read when present)."""
    if not errors:
        return f"TensorRT cannot parse {file} (the parser gave no reason)"
    e = errors[0]
    node = _call(e, "node_name") or _call(e, "node")
    node = "?" if node in (None, -1, "") else node
    op = _call(e, "node_operator") or "?"
    desc = _call(e, "desc") or str(e)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"TensorRT cannot parse {file}: node {node} (op {op}): {desc.strip()}{more}; "
            "run the CPU pre-flight (edgetune.calib.preflight) to see every unsupported op")


def trtexec_error(file: str, output: str) -> str:
    """trtexec's first error line, one line."""
    lines = [ln.strip() for ln in output.splitlines() if "[E]" in ln or "ERROR" in ln]
    first = lines[0] if lines else (output.strip().splitlines() or ["no output"])[-1]
    return f"trtexec could not build an engine from {file}: {first[:300]}"


def _call(obj, name):
    attr = getattr(obj, name, None)
    try:
        return attr() if callable(attr) else attr
    except Exception:  # an accessor this TensorRT version lacks or cannot answer
        return None


def _onnx_input_name(onnx_path) -> str:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return next(i.name for i in graph.input if i.name not in weights)


def _gpu_identity() -> tuple[str, str]:
    from edgetune.runtime.trt_backend import gpu_identity

    try:
        return gpu_identity()
    except MissingDependencyError:
        pass
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                         capture_output=True, text=True) if shutil.which("nvidia-smi") else None
    if out is None or out.returncode != 0 or "," not in out.stdout:
        raise MissingDependencyError("cannot tell this GPU's compute capability: pip install cuda-python")
    name, cc = out.stdout.splitlines()[0].rsplit(",", 1)
    return name.strip(), cc.strip()


__all__ = ["EngineBuild", "TrtVersion", "build_engine", "find_trtexec", "is_available", "parse_version",
           "trt_version", "version_from_banner"]
