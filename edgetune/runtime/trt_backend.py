"""TensorRT backend: run a serialized engine (TensorRT 10 name-based tensor API).

Thin on purpose: deserialize, one execution context, set the input shape, bind device
buffers, `execute_async_v3`, copy back. Device memory comes from cuda-python's runtime
bindings, never from PyTorch, so deployment stays torch-free. Both imports are lazy:
importing this module costs nothing on a machine without a GPU.

Engines are built strongly typed from QDQ graphs (docs/ARCHITECTURE.md, principle 1), so the engine's own
I/O dtypes are honoured: a float32 batch is cast to what the input tensor asks for.
Before deserializing, the engine's sidecar record (engine_info) is compared with this
machine's TensorRT version and GPU: a mismatch is refused in one line. Written against the
name-based tensor API that TensorRT 8.5+ documents, so 8.6, 10.x and 11.x all run it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetune.errors import BundleError, ConfigError, InputError, MissingDependencyError
from edgetune.runtime.engine_info import EngineHost, EngineMismatchError, mismatch, read_sidecar
from edgetune.runtime.session import InputSpec, check_batch, shape_text

NAME = "tensorrt"
EXTRA = "tensorrt"  # the pip extra that installs it (on Jetson it comes with JetPack)
_CUDA_HINT = "pip install cuda-python"


def is_available() -> tuple[bool, str]:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, (
            f"tensorrt is not installed: pip install 'edgetune[{EXTRA}]' "
            "(on Jetson it comes with JetPack)"
        )
    try:
        cudart = _cudart()
    except MissingDependencyError as exc:
        return False, str(exc)
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess or not count:
        return False, f"no CUDA GPU is visible ({_error_name(err)})"
    return True, ""


def _cudart():
    """cuda-python's runtime module; its import path moved to cuda.bindings in 12.8."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            raise MissingDependencyError(
                f"TensorRT engines need cuda-python for device memory: {_CUDA_HINT}"
            ) from None
    return runtime


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of a CUDA device, via cuda-python."""
    cudart = _cudart()
    err, prop = cudart.cudaGetDeviceProperties(device)
    if err != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"cudaGetDeviceProperties failed: {_error_name(err)}")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return name.rstrip("\x00"), f"{prop.major}.{prop.minor}"


def engine_host() -> EngineHost:
    """This machine's TensorRT version and GPU: what an engine's record is compared with."""
    import tensorrt as trt

    name, cc = gpu_identity()
    return EngineHost(tensorrt=trt.__version__, compute_capability=cc, gpu=name)


def check_engine(recorded: dict | None) -> str | None:
    """Why the engine recorded as `recorded` cannot load here, or None."""
    return mismatch(recorded, engine_host())


def _error_name(err) -> str:
    return getattr(err, "name", str(err))


class TrtSession:
    backend = NAME
    device = "cuda"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None):
        if device == "cpu":
            raise ConfigError(
                "a TensorRT engine runs only on a CUDA GPU, not on device 'cpu'; "
                "pick an onnxruntime artifact (--artifact) or use --device auto"
            )
        ok, why = is_available()
        if not ok:
            raise MissingDependencyError(why)
        import tensorrt as trt

        # Refuse before deserializing: a foreign plan fails inside TensorRT with a cryptic error.
        recorded = read_sidecar(path)
        problem = check_engine(recorded)
        if problem:
            raise EngineMismatchError(f"cannot load {Path(path).name}: {problem}")
        self._trt = trt
        self._cudart = _cudart()
        self._buffers: dict[str, tuple[int, int]] = {}  # tensor -> (device pointer, bytes)
        self._stream = None
        # The runtime must outlive the engine it deserialized.
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        dla = str((recorded or {}).get("device", "gpu"))
        if dla.startswith("dla:"):  # a DLA engine runs on the core it was built for
            self._runtime.DLA_core = int(dla.split(":")[1])
            self.device = dla
        engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if engine is None:
            raise BundleError(
                f"TensorRT {trt.__version__} cannot load the engine {path}: engines are tied to "
                "the TensorRT version and GPU that built them; rebuild it on this device"
            )
        self._engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(
                f"engine {path} has inputs {inputs} and outputs {outputs}; "
                "edgetune runs classifiers with one image input and one logits output"
            )
        self._in, self._out = inputs[0], outputs[0]
        shape = tuple(d if d >= 0 else None for d in engine.get_tensor_shape(self._in))
        self.input = InputSpec(self._in, shape, "float32")
        self._context = engine.create_execution_context()
        self._stream = self._call(self._cudart.cudaStreamCreate())

    def run(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.input)
        trt, cudart = self._trt, self._cudart
        x = np.ascontiguousarray(batch, dtype=trt.nptype(self._engine.get_tensor_dtype(self._in)))
        if not self._context.set_input_shape(self._in, x.shape):
            low, _, high = self._engine.get_tensor_profile_shape(self._in, 0)
            raise InputError(
                f"input batch has shape {x.shape}; this engine was built for shapes from "
                f"{shape_text(tuple(low))} to {shape_text(tuple(high))}"
            )
        out_dtype = trt.nptype(self._engine.get_tensor_dtype(self._out))
        out = np.empty(tuple(self._context.get_tensor_shape(self._out)), dtype=out_dtype)
        d_in = self._device_buffer(self._in, x.nbytes)
        d_out = self._device_buffer(self._out, out.nbytes)
        self._context.set_tensor_address(self._in, d_in)
        self._context.set_tensor_address(self._out, d_out)
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, to_device, self._stream))
        if not self._context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"TensorRT execution failed for a batch of shape {x.shape}")
        self._call(cudart.cudaMemcpyAsync(out.ctypes.data, d_out, out.nbytes, to_host, self._stream))
        self._call(cudart.cudaStreamSynchronize(self._stream))
        return out.astype(np.float32, copy=False)

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None

    def __del__(self):
        if getattr(self, "_cudart", None) is not None:
            self.close()

    def _device_buffer(self, tensor: str, nbytes: int) -> int:
        # Grow-only: a benchmark loop at one batch size allocates once.
        ptr, size = self._buffers.get(tensor, (0, 0))
        if size < nbytes:
            if ptr:
                self._call(self._cudart.cudaFree(ptr))
            ptr = int(self._call(self._cudart.cudaMalloc(nbytes)))
            self._buffers[tensor] = (ptr, nbytes)
        return ptr

    def _call(self, result):
        # cuda-python returns (error, *values) instead of raising.
        err, *values = result
        if err != self._cudart.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA call failed: {_error_name(err)}")
        return values[0] if len(values) == 1 else None
