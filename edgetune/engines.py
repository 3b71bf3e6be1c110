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
from edgetune.latency import measure_latency

SOURCES = ("model.int8.tensorrt.onnx", "model.fp16.onnx")


def add_engine(bundle: str | Path, source: str | None = None, max_batch: int = 8,
               workspace_gb: float = 2.0, log=print) -> str:
    from edgetune.errors import MissingDependencyError
    from edgetune.export.tensorrt import build_engine, is_available, trt_version
    from edgetune.runtime.trt_backend import TrtSession

    ok, why = is_available()
    if not ok:
        raise MissingDependencyError(why)
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    files = {a.file: a for a in manifest.artifacts}
    source = source or next((s for s in SOURCES if s in files), None)
    if source not in files:
        raise BundleError(
            f"no graph to build an engine from in {bundle} (have: {', '.join(files)}); "
            "export with --targets tensorrt (int8) or --targets gpu (fp16)"
        )
    src = files[source]
    verify_artifact(bundle, src)
    name = f"{Path(source).stem}.engine"
    log(f"tensorrt {trt_version()}: building {name} from {source} (batch 1..{max_batch})")
    pre = manifest.preprocess
    build_engine(bundle / source, bundle / name, pre.size, max_batch=max_batch, workspace_gb=workspace_gb)
    latency = measure_latency(TrtSession(bundle / name), (3, *pre.size), batch=1, desc=f"time {name}")
    engine = artifact_record(
        bundle, name, backend="tensorrt", target="tensorrt", precision=src.precision, top1=src.top1,
        latency_ms=latency, calibration=src.calibration,
        notes=f"built from {source} with TensorRT {trt_version()} on {host.short()}; "
              "engines only run on the GPU and TensorRT version that built them",
    )
    manifest.artifacts = [a for a in manifest.artifacts if a.file != name] + [engine]
    manifest.recommended["tensorrt"] = {
        "file": name, "why": f"engine built on this device ({latency['p50']:.2f} ms p50 at batch 1)"}
    write_manifest(bundle, manifest)
    return name
