"""ONNX Runtime backend: CPU everywhere; CUDA and TensorRT execution providers with
onnxruntime-gpu, for users who would rather not build engines themselves.

`provider` picks the execution provider: auto (CUDA when there, else CPU), cpu, cuda, or
tensorrt (ORT's TensorRT EP, falling back to CUDA then CPU for what it does not take; its
engines and timing cache go to a folder beside the model, so the second load is fast).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetune.errors import ConfigError, MissingDependencyError, did_you_mean
from edgetune.runtime.session import InputSpec, check_batch

NAME = "onnxruntime"
EXTRA = "runtime"  # the pip extra that installs it: edgetune[runtime]
PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")
_EP = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def is_available() -> tuple[bool, str]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False, f"onnxruntime is not installed: pip install 'edgetune[{EXTRA}]'"
    return True, ""


def version() -> str:
    import onnxruntime

    return onnxruntime.__version__


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


def select_providers(device: str, provider: str, have: list[str]) -> list[str]:
    """ORT provider names, best first, for a device and provider choice, given what this
    onnxruntime build offers; a choice it cannot honour is refused in one line."""
    if provider not in PROVIDERS:
        raise ConfigError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}"
                          + did_you_mean(provider, PROVIDERS))
    if provider == "auto":
        provider = "cpu" if device == "cpu" else ("cuda" if device == "cuda" else "auto")
    elif device == "cpu" and provider != "cpu":
        raise ConfigError(f"provider {provider!r} runs on a GPU, not on device 'cpu'; drop one of the two")
    if provider == "auto":
        return [p for p in (_EP["cuda"], _EP["cpu"]) if p in have]
    if _EP[provider] not in have:
        raise MissingDependencyError(
            f"provider {provider!r} needs {_EP[provider]}, which this onnxruntime lacks (it offers "
            f"{', '.join(have)}); install onnxruntime-gpu (with TensorRT for 'tensorrt') or use provider 'cpu'")
    chain = {"cpu": ["cpu"], "cuda": ["cuda", "cpu"], "tensorrt": ["tensorrt", "cuda", "cpu"]}[provider]
    return [_EP[p] for p in chain if _EP[p] in have]


def session_options(threads: int | None = None, spinning: bool = True) -> dict:
    """The ONNX Runtime options a session is opened with, as the manifest and `bench` record them.

    Optimisation level ORT_ENABLE_ALL, applied when the session loads: the NHWC layout
    transformer that gives INT8 convs their fast kernels and the NCHWc one for fp32 only run
    at that level, so we never ship a graph optimised offline at a lower one. Spinning: idle
    worker threads busy-wait for the next parallel section, which lowers batch-1 latency of
    one model alone in a process, and steals the cores from anything else running beside it.
    """
    return {"graph_optimization_level": "ORT_ENABLE_ALL",
            "intra_op_num_threads": threads or "default", "inter_op_num_threads": 1 if threads else "default",
            "allow_spinning": bool(spinning)}


def ort_session_options(ort, opts: dict):
    """ONNX Runtime's SessionOptions for the recorded options (`session_options`): one place
    turns the record into the engine's settings, so a profiled or timed session matches."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if opts["intra_op_num_threads"] != "default":
        options.intra_op_num_threads = opts["intra_op_num_threads"]
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if opts["allow_spinning"] else "0")
    return options


def _provider_options(names: list[str], model: Path) -> list:
    cache = str(model.parent / f".{model.name}.ort-trt-cache")
    trt = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": cache,
           "trt_timing_cache_enable": "True", "trt_timing_cache_path": cache}
    return [(n, trt) if n == _EP["tensorrt"] else n for n in names]


class OrtSession:
    backend = NAME

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None,
                 provider: str = "auto", spinning: bool = True):
        ok, why = is_available()
        if not ok:
            raise MissingDependencyError(why)
        import onnxruntime as ort

        if provider == "auto":
            providers = providers_for(device)
        else:
            names = select_providers(device, provider, ort.get_available_providers())
            providers = _provider_options(names, Path(path))

        self.options = session_options(threads, spinning)
        options = ort_session_options(ort, self.options)
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=providers
        )
        used = self._session.get_providers()[0]
        self.provider = next((k for k, v in _EP.items() if v == used), used)
        self.device = "cpu" if used == "CPUExecutionProvider" else "cuda"
        meta = self._session.get_inputs()[0]
        self.input = InputSpec(meta.name, tuple(meta.shape), "float32")
        self._output = self._session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.input)
        return self._session.run([self._output], {self.input.name: batch})[0]

