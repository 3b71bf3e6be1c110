"""Add a TensorRT engine to a bundle, on the device that will run it. Torch-free.

The engine is built from the bundle's TensorRT-recipe QDQ graph (or its fp16 graph), timed
here, and recorded in the manifest as the `tensorrt` recommendation. Its top-1 is that of
the graph it was built from, measured in ONNX Runtime at export time.
"""

from __future__ import annotations

from pathlib import Path

from edgetune import host
from edgetune.bundle import artifact_record, read_manifest, verify_artifact, write_manifest
from edgetune.errors import BundleError
from edgetune.files import ENGINE_SOURCES, engine_name
from edgetune.latency import measure_latency


def add_engine(bundle: str | Path, source: str | None = None, max_batch: int = 8,
               workspace_gb: float = 2.0, log=print, opt_batch: int = 1, device: str = "gpu",
               builder: str = "auto") -> str:
    from edgetune.errors import ConfigError, MissingDependencyError
    from edgetune.export.tensorrt import build_engine, is_available, trt_version
    from edgetune.export.trt_plan import Profile, build_mode, parse_device
    from edgetune.runtime import trt_backend

    parse_device(device)  # flags are checked before any file is read
    Profile("input", (1, 1), opt_batch, max_batch)
    if builder not in ("auto", "python", "trtexec"):
        raise ConfigError(f"--builder {builder!r} is not one of auto, python, trtexec")
    ok, why = is_available()
    if not ok:
        raise MissingDependencyError(why)
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    files = {a.file: a for a in manifest.artifacts}
    source = source or next((s for s in ENGINE_SOURCES if s in files), None)
    if source not in files:
        raise BundleError(
            f"no graph to build an engine from in {bundle} (have: {', '.join(files)}); "
            "export with --targets tensorrt (int8) or --targets gpu (fp16)"
        )
    src = files[source]
    graph = verify_artifact(bundle, src)
    version = trt_version()
    build_mode(version, src.precision, device)  # refuses a version/device/graph that cannot build
    _preflight(graph, version, log)
    name = engine_name(source, device)
    log(f"tensorrt {version}: building {name} from {source} on {device} (batch 1..{max_batch}, opt {opt_batch})")
    pre = manifest.preprocess
    built = build_engine(graph, bundle / name, pre.size, src.precision, max_batch=max_batch,
                         opt_batch=opt_batch, workspace_gb=workspace_gb, device=device, builder=builder,
                         log=log)
    info = built.info
    # A trtexec-only host (no Python bindings) builds but cannot time through our Session.
    timed, why_not = trt_backend.is_available()
    latency = (measure_latency(trt_backend.TrtSession(bundle / name), (3, *pre.size), batch=1,
                               desc=f"time {name}")
               if timed else None)
    engine = artifact_record(
        bundle, name, backend="tensorrt", target="tensorrt", precision=src.precision, top1=src.top1,
        latency_ms=latency, calibration=src.calibration, engine=info, extra=trt_backend.EXTRA,
        notes=f"built from {source} with TensorRT {version} ({info['typing']}) on {info['gpu']} "
              f"(sm {info['compute_capability']}, {host.short()}) in {info['build_seconds']:.0f} s; "
              "engines only run on the TensorRT version and GPU architecture that built them",
    )
    manifest.artifacts = [a for a in manifest.artifacts if a.file != name] + [engine]
    timing = f"{latency['p50']:.2f} ms p50 at batch 1" if latency else f"not timed here: {why_not}"
    manifest.recommended["tensorrt"] = {"file": name, "why": f"engine built on this device ({timing})"}
    write_manifest(bundle, manifest)
    return name


def _preflight(graph: Path, version: str, log) -> None:
    """The CPU pre-flight for the installed version, when `onnx` is here (it is optional on
    a device): a clear list of what the parser would refuse, before minutes of building."""
    try:
        from edgetune.calib.preflight import preflight
    except ImportError:
        log("pre-flight skipped: onnx is not installed here (CI ran it at export time)")
        return
    from edgetune.export.trt_plan import parse_version

    result = preflight(graph, parse_version(version).family)
    for w in result.warnings:
        log(f"pre-flight: {w}")
    if not result.ok:
        raise BundleError(f"{graph.name} would fail on TensorRT {version}: {result.summary()}")
