"""What an engine was built for, kept beside it, and checked before TensorRT sees the plan.

TensorRT documents no way to read a plan's version or target GPU without deserializing it,
and a plan built elsewhere fails there with a cryptic error (or worse). So the engine file
stays a plain TensorRT plan, loadable by trtexec and C++, and what it was built for is
written to a sidecar `<engine>.json` and to the manifest. The runtime compares that record
with this machine first and refuses a mismatch in one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgetune.atomic import write_json
from edgetune.errors import BundleError
from edgetune.files import engine_record


class EngineMismatchError(BundleError):
    """The engine was built for another TensorRT version or GPU."""


@dataclass(frozen=True)
class EngineHost:
    """This machine, as an engine sees it."""

    tensorrt: str  # tensorrt.__version__, e.g. "10.3.0.30"
    compute_capability: str  # "8.7"
    gpu: str = ""


def sidecar_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine_record(engine))


def write_sidecar(engine: str | Path, info: dict) -> Path:
    path = sidecar_path(engine)
    write_json(path, info)
    return path


def read_sidecar(engine: str | Path) -> dict | None:
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); rebuild the engine with edgetune build-engine") from None
    return info if isinstance(info, dict) else None


def same_version(a: str, b: str) -> bool:
    """'10.3.0' (trtexec's banner) matches '10.3.0.30' (the bindings): compare the components
    both have, at least major.minor.patch."""
    pa, pb = a.split("."), b.split(".")
    n = max(3, min(len(pa), len(pb)))
    return pa[:n] == pb[:n]


def mismatch(recorded: dict | None, host: EngineHost) -> str | None:
    """Why an engine built as `recorded` cannot run on `host`, or None when it can (or when
    nothing was recorded: then only TensorRT itself can tell)."""
    if not recorded:
        return None
    built_trt = str(recorded.get("tensorrt", ""))
    built_cc = str(recorded.get("compute_capability", ""))
    where = f"built with TensorRT {built_trt or '?'} for {recorded.get('gpu') or 'a GPU'} (sm {built_cc or '?'})"
    if built_trt and not same_version(built_trt, host.tensorrt):
        return (f"{where}, but this machine has TensorRT {host.tensorrt}: engines only load on the "
                "TensorRT version that built them; rebuild it here with edgetune build-engine")
    if built_cc and built_cc != host.compute_capability:
        return (f"{where}, but this GPU is {host.gpu or 'another GPU'} (sm {host.compute_capability}): "
                "engines only load on the GPU architecture that built them; rebuild it here with "
                "edgetune build-engine")
    return None
