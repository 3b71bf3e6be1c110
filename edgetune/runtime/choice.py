"""Pick the artifact of a bundle that this machine should run.

The bundle's `recommended` map says, per target, which artifact won on accuracy and
latency when it was built. Here we only find which targets this machine can serve
(TensorRT on a GPU, then ONNX Runtime on CUDA, then CPU) and take the first one the
bundle recommends; failing that, any ONNX Runtime fp32 graph, which runs everywhere.
An engine recorded as built for another TensorRT version or GPU is passed over with a
warning, so a copied bundle still loads (on its ONNX artifact) instead of failing.

For the CPU, a choice `edgetune bench --choose` made on this very host (runtime.devices)
goes before the export's recommendation; either is a ranked list, and where the first's
engine is not installed the next one whose engine is runs, with one warning line that
names the extra to install.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

from edgetune.bundle import Artifact, Manifest
from edgetune.errors import BundleError, ConfigError, EdgetuneWarning, MissingDependencyError, did_you_mean
from edgetune.runtime import backends, devices, ort_backend
from edgetune.runtime.engine_info import EngineHost, mismatch

BACKEND_CHOICES = ("auto", "onnxruntime", "tensorrt", "openvino")
CPU_BACKENDS = ("onnxruntime", "openvino")  # the engines a cpu artifact may name
# The engine each GPU target means. A bundle may recommend a TensorRT-recipe QDQ .onnx for
# the tensorrt target before any engine is built; run in ONNX Runtime it would be slow
# (s8 activations on CPU), so it only counts once it is an engine. "openvino" is a target
# of version 1 bundles only (since version 2 OpenVINO artifacts serve the cpu target).
_TARGET_BACKEND = {"tensorrt": "tensorrt", "gpu": "onnxruntime", "openvino": "openvino"}


def hardware_targets(backend: str = "auto", device: str = "auto") -> list[str]:
    """The targets this machine can serve, best first."""
    targets = []
    if device in ("auto", "cuda"):
        if backend in ("auto", "tensorrt") and backends.is_available("tensorrt")[0]:
            targets.append("tensorrt")
        if backend in ("auto", "onnxruntime") and _ort_has_cuda():
            targets.append("gpu")
    # A version 1 bundle recommends for the openvino target only where OpenVINO measured
    # faster than the best ONNX Runtime artifact, so where both are installed it goes first.
    if device in ("auto", "cpu") and backend in ("auto", "openvino") and backends.is_available("openvino")[0]:
        targets.append("openvino")
    if device in ("auto", "cpu") and backend in ("auto", *CPU_BACKENDS):
        targets.append("cpu")
    return targets


class Pick(NamedTuple):
    artifact: Artifact
    by: str  # why this one: named, this host's choice, the export's recommendation, a fallback


def choose_artifact(
    manifest: Manifest, backend: str = "auto", device: str = "auto", artifact: str | None = None,
    bundle: Path | None = None,
) -> Pick:
    """The artifact to load: the one named, else the recommendation for this hardware (for
    the CPU, this host's own choice among the `bundle`'s artifacts first, where it made one)."""
    check_backend(backend)
    backends.check_device(device)
    if artifact is not None:
        chosen = manifest.artifact(artifact)
        if backend != "auto" and chosen.backend != backend:
            raise ConfigError(
                f"artifact {artifact} is a {chosen.backend} artifact but backend {backend!r} "
                "was asked for; drop one of the two options"
            )
        ok, why = backends.is_available(chosen.backend)
        if not ok:
            raise MissingDependencyError(f"artifact {artifact} needs {chosen.backend}: {why}")
        return Pick(chosen, "named")
    targets = hardware_targets(backend, device)
    host = _engine_host() if "tensorrt" in targets else None
    found = pick_recommended(manifest, targets, host, fp32_fallback=backend in ("auto", "onnxruntime"),
                             backend=backend, bundle=bundle)
    if found is not None:
        return found
    held = ", ".join(f"{a.file} ({a.backend}, {a.target})" for a in manifest.artifacts) or "none"
    raise BundleError(
        f"no artifact in the bundle runs here with backend={backend}, device={device}; "
        f"it holds: {held}; pick one with --artifact or re-export for this target"
    )


def pick_recommended(manifest: Manifest, targets: list[str], host: EngineHost | None,
                     fp32_fallback: bool = True, backend: str = "auto", bundle: Path | None = None
                     ) -> Pick | None:
    """The first recommendation among `targets` (those this machine serves, best first) that
    can run here, else an ONNX Runtime fp32 graph. An engine whose record does not match
    `host` (another TensorRT version or GPU) is passed over with a warning that says so.
    For the cpu target, this host's choice in `bundle` goes first (runtime.devices)."""
    for target in targets:
        if target == "cpu":
            mine = devices.for_host(bundle, manifest) if bundle is not None else None
            found = cpu_artifact(manifest, mine, backend)
            if found is not None:
                ranked_first = (mine.order if mine else cpu_order(manifest))[0]
                by = (f"this host's choice ({devices.record_name(mine)})" if mine else "the export's recommendation")
                return Pick(found, by if found.file == ranked_first else f"the best after {ranked_first}, by {by}")
            continue
        file = recommended_file(manifest, target)
        if file is None:
            continue
        candidate = manifest.artifact(file)
        if candidate.backend != _TARGET_BACKEND[target]:
            continue
        if candidate.backend == "tensorrt" and host is not None:
            problem = mismatch(candidate.engine, host)
            if problem:
                warnings.warn(EdgetuneWarning(
                    f"skipping {candidate.file}: {problem}; falling back to an ONNX artifact"), stacklevel=3)
                continue
        return Pick(candidate, f"the export's recommendation for {target}")
    fp32 = next((a for a in manifest.artifacts if a.backend == "onnxruntime" and a.precision == "fp32"), None)
    return Pick(fp32, "the fp32 graph, which runs everywhere") if fp32_fallback and fp32 is not None else None


def cpu_artifact(manifest: Manifest, device_choice: devices.DeviceChoice | None = None,
                 backend: str = "auto") -> Artifact | None:
    """The best CPU artifact whose engine is installed (of `backend`, unless auto): this
    host's own ranking where it made one, else the export's. Under auto, passing over the
    first for want of its engine is one warning line naming the extra that installs it."""
    ranked = [manifest.artifact(f) for f in (device_choice.order if device_choice else cpu_order(manifest))]
    ranked = [a for a in ranked if backend in ("auto", a.backend)]
    for a in ranked:
        if backends.is_available(a.backend)[0]:
            first = ranked[0]
            if a is not first and backend == "auto":
                warnings.warn(EdgetuneWarning(
                    f"{first.file} is recommended for this CPU but needs {first.backend}: pip install "
                    f"'edgetune[{first.extra or backends.extra(first.backend)}]'; running {a.file} ({a.backend}) "
                    "instead"), stacklevel=4)
            return a
    return None


def cpu_order(manifest: Manifest) -> list[str]:
    """The export's CPU artifacts within budget, best first (a version 1 bundle: its one
    recommendation)."""
    entry = manifest.recommended.get("cpu")
    if isinstance(entry, dict) and entry.get("order"):
        return list(entry["order"])
    file = recommended_file(manifest, "cpu")
    return [file] if file else []


def _engine_host() -> EngineHost | None:
    from edgetune.runtime import trt_backend

    try:
        return trt_backend.engine_host()
    except Exception as exc:  # the GPU query failed: let TensorRT itself judge the engine
        warnings.warn(EdgetuneWarning(f"cannot read this GPU's identity ({exc}); engines are not pre-checked"),
                      stacklevel=2)
        return None


def recommended_file(manifest: Manifest, target: str) -> str | None:
    """The file recommended for `target`; the manifest may hold {"file", "why"} or a bare name."""
    entry = manifest.recommended.get(target)
    if isinstance(entry, dict):
        return entry.get("file")
    return entry


def session_device(artifact: Artifact, device: str) -> str:
    """Under 'auto', an artifact built for the CPU target stays on the CPU: its INT8 recipe
    (u8 activations) is tuned for CPU kernels and should not land on CUDA just because
    CUDA is there. Other artifacts let the engine take the GPU when it has one."""
    if device == "auto" and artifact.target == "cpu":
        return "cpu"
    return device


def check_backend(backend: str) -> None:
    if backend not in BACKEND_CHOICES:
        raise ConfigError(
            f"backend {backend!r} is not one of {', '.join(BACKEND_CHOICES)}"
            + did_you_mean(backend, BACKEND_CHOICES)
        )


def _ort_has_cuda() -> bool:
    return backends.is_available("onnxruntime")[0] and ort_backend.has_cuda()
