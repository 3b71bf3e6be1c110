"""Which engines exist: backend name -> (is_available, open).

The names are the ones the manifest's `artifact.backend` and the CLI use. Every backend
module (onnxruntime, tensorrt, openvino) imports its engine lazily, so this registry is free
to import anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgetune.errors import ConfigError, MissingDependencyError, did_you_mean
from edgetune.runtime import ort_backend, ov_backend, trt_backend
from edgetune.runtime.session import Session

DEVICES = ("auto", "cpu", "cuda")

_REGISTRY: dict[str, tuple[Callable[[], tuple[bool, str]], Callable[..., Session]]] = {
    ort_backend.NAME: (ort_backend.is_available, ort_backend.OrtSession),
    trt_backend.NAME: (trt_backend.is_available, trt_backend.TrtSession),
    ov_backend.NAME: (ov_backend.is_available, ov_backend.OvSession),
}
_EXTRAS = {m.NAME: m.EXTRA for m in (ort_backend, trt_backend, ov_backend)}
# The engines that run a bundle's CPU artifacts, and their versions (a device's choice
# among them holds only for the versions that timed it).
CPU_ENGINES = {ort_backend.NAME: ort_backend.version, ov_backend.NAME: ov_backend.version}


def names() -> list[str]:
    return list(_REGISTRY)


def is_available(name: str) -> tuple[bool, str]:
    """(True, "") or (False, why), for a backend named in a manifest or on the command line."""
    if name not in _REGISTRY:
        return False, f"unknown backend {name!r}; this edgetune knows {', '.join(_REGISTRY)}"
    return _REGISTRY[name][0]()


def extra(name: str) -> str:
    """The pip extra that installs backend `name`: `pip install 'edgetune[EXTRA]'`."""
    return _EXTRAS[name]


def cpu_engine_versions() -> dict[str, str]:
    """The CPU engines installed here and their versions."""
    return {name: version() for name, version in CPU_ENGINES.items() if is_available(name)[0]}


def open_session(
    name: str, path: str | Path, device: str = "auto", threads: int | None = None,
    provider: str = "auto", precision: str | None = None, spinning: bool = True,
) -> Session:
    """A ready Session for the engine file at `path`, or a one-line error saying why not.
    `provider` picks ONNX Runtime's execution provider (ort_backend.PROVIDERS); `precision`
    is the artifact's, which OpenVINO is told to run it in (ov_backend.compile_options);
    `spinning` False for ONNX Runtime sessions timed in turns beside others (latency)."""
    check_device(device)
    if provider != "auto" and name != ort_backend.NAME:
        raise ConfigError(f"provider {provider!r} applies to onnxruntime artifacts, not to {name}; "
                          "drop --provider or pick an onnxruntime artifact")
    ok, why = is_available(name)
    if not ok:
        raise MissingDependencyError(f"cannot open {Path(path).name}: {why}")
    if name == ort_backend.NAME:
        return _REGISTRY[name][1](path, device=device, threads=threads, provider=provider, spinning=spinning)
    if name == ov_backend.NAME and precision is not None:
        return _REGISTRY[name][1](path, device=device, threads=threads, precision=precision)
    return _REGISTRY[name][1](path, device=device, threads=threads)


def check_device(device: str, flag: str = "device") -> str:
    """`device` when it is one of DEVICES; else a one-line error naming `flag` (the API's
    argument, or the CLI's --device)."""
    if device not in DEVICES:
        raise ConfigError(
            f"{flag} {device!r} is not one of {', '.join(DEVICES)}{did_you_mean(device, DEVICES)}"
        )
    return device
