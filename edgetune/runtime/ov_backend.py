"""OpenVINO backend: the same ONNX graphs (or OpenVINO IR) on Intel's CPU runtime.

Torch-free, imported lazily: `pip install 'edgetune[openvino]'`. Intel validates OpenVINO
on Intel CPUs (Atom, Core, Xeon) only; it runs on AMD x86-64 CPUs with AVX2/AVX-512, and
edgetune's figures on an AMD EPYC come from such a run, but Intel does not support it there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetune.errors import MissingDependencyError
from edgetune.runtime.session import InputSpec, check_batch

NAME = "openvino"
EXTRA = "openvino"  # the pip extra that installs it: edgetune[openvino]
# An artifact's precision -> the inference precision OpenVINO is told to run it in. An INT8
# graph's float parts stay f32, as they were evaluated; "bf16" is the fp32 graph run in bf16.
_HINTS = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}


def is_available() -> tuple[bool, str]:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False, f"openvino is not installed: pip install 'edgetune[{EXTRA}]'"
    return True, ""


def version() -> str:
    import openvino

    return openvino.__version__


def bf16_supported() -> bool:
    """The CPU runs bf16 natively (AVX-512 BF16 or AMX), as OpenVINO's CPU plugin reports it;
    elsewhere a bf16 hint would quietly run f32, so no bf16 candidate is offered."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def compile_options(threads: int | None = None, precision: str = "fp32") -> dict:
    """Latency mode, one stream, and the inference precision the artifact is named by
    (`precision`: fp32, bf16 or int8). Never OpenVINO's default: on CPUs with AVX-512 BF16
    or AMX it runs an fp32 graph in bf16, which would be an "fp32" row that is not."""
    if precision not in _HINTS:
        raise ValueError(f"no OpenVINO inference precision for an artifact of precision {precision!r}")
    options = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_PRECISION_HINT": _HINTS[precision]}
    if threads:
        options["INFERENCE_NUM_THREADS"] = str(threads)
    return options


class OvSession:
    backend = NAME

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None,
                 precision: str = "fp32"):
        ok, why = is_available()
        if not ok:
            raise MissingDependencyError(why)
        if device not in ("auto", "cpu"):
            raise MissingDependencyError(f"the openvino backend runs on the CPU here, not on {device!r}; "
                                         "use --device cpu")
        import openvino as ov

        core = ov.Core()
        self.options = compile_options(threads, precision)
        self._compiled = core.compile_model(core.read_model(str(path)), "CPU", self.options)
        self._request = self._compiled.create_infer_request()
        self.device = "cpu"
        port = self._compiled.input(0)
        shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        self.input = InputSpec(port.get_any_name(), shape, "float32")

    def run(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.input)
        self._request.infer({0: batch})
        return self._request.get_output_tensor(0).data.copy()
