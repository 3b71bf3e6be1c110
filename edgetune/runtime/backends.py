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


def names() -> list[str]:
    return list(_REGISTRY)


def is_available(name: str) -> tuple[bool, str]:
    """(True, "") or (False, why), for a backend named in a manifest or on the command line."""
    if name not in _REGISTRY:
        return False, f"unknown backend {name!r}; this edgetune knows {', '.join(_REGISTRY)}"
    return _REGISTRY[name][0]()


def open_session(
    name: str, path: str | Path, device: str = "auto", threads: int | None = None,
    provider: str = "auto",
) -> Session:
    """A ready Session for the engine file at `path`, or a one-line error saying why not.
    `provider` picks ONNX Runtime's execution provider (ort_backend.PROVIDERS)."""
    check_device(device)
    if provider != "auto" and name != ort_backend.NAME:
        raise ConfigError(f"provider {provider!r} applies to onnxruntime artifacts, not to {name}; "
                          "drop --provider or pick an onnxruntime artifact")
    ok, why = is_available(name)
    if not ok:
        raise MissingDependencyError(f"cannot open {Path(path).name}: {why}")
    if name == ort_backend.NAME and provider != "auto":
        return _REGISTRY[name][1](path, device=device, threads=threads, provider=provider)
    return _REGISTRY[name][1](path, device=device, threads=threads)


def check_device(device: str, flag: str = "device") -> str:
    """`device` when it is one of DEVICES; else a one-line error naming `flag` (the API's
    argument, or the CLI's --device)."""
    if device not in DEVICES:
        raise ConfigError(
            f"{flag} {device!r} is not one of {', '.join(DEVICES)}{did_you_mean(device, DEVICES)}"
        )
    return device
