"""ONNX Runtime backend: CPU everywhere, CUDA when onnxruntime-gpu is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetune.errors import InputError, MissingDependencyError
from edgetune.runtime.session import InputSpec

NAME = "onnxruntime"


def is_available() -> tuple[bool, str]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False, "onnxruntime is not installed: pip install 'edgetune[runtime]'"
    return True, ""


def providers_for(device: str) -> list[str]:
    """ORT providers for 'cpu', 'cuda' or 'auto' (CUDA first when it is there)."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in have:
            raise MissingDependencyError(
                "device 'cuda' needs onnxruntime-gpu (this onnxruntime offers "
                f"{', '.join(have)}); install onnxruntime-gpu or use --device cpu"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


class OrtSession:
    backend = NAME

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None):
        ok, why = is_available()
        if not ok:
            raise MissingDependencyError(why)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=providers_for(device)
        )
        used = self._session.get_providers()[0]
        self.device = "cuda" if used == "CUDAExecutionProvider" else "cpu"
        meta = self._session.get_inputs()[0]
        self.input = InputSpec(meta.name, tuple(meta.shape), "float32")
        self._output = self._session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.input)
        return self._session.run([self._output], {self.input.name: batch})[0]


def check_batch(batch: np.ndarray, spec: InputSpec) -> None:
    """Refuse arrays the engine would reject with an opaque message."""
    if not isinstance(batch, np.ndarray):
        raise InputError(f"run() takes a numpy array, got {type(batch).__name__}")
    if batch.dtype != np.float32:
        raise InputError(
            f"input batch has dtype {batch.dtype}; expected float32 NCHW (use .astype(np.float32))"
        )
    expected = spec.shape
    if batch.ndim != len(expected) or any(
        isinstance(e, int) and e != b for e, b in zip(expected, batch.shape)
    ):
        shown = "x".join(str(e) if isinstance(e, int) else "N" for e in expected)
        raise InputError(f"input batch has shape {batch.shape}; expected {shown} (NCHW)")
