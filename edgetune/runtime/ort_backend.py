"""ONNX Runtime backend: CPU everywhere, CUDA when onnxruntime-gpu is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetune.errors import MissingDependencyError
from edgetune.runtime.session import InputSpec, check_batch

NAME = "onnxruntime"


def is_available() -> tuple[bool, str]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False, "onnxruntime is not installed: pip install 'edgetune[runtime]'"
    return True, ""


def has_cuda() -> bool:
    """True when this onnxruntime build can run on a CUDA GPU (onnxruntime-gpu)."""
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


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

