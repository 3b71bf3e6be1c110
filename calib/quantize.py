"""One calibration, one QDQ graph per target; each target's recipe is one function.

Ranges are computed once from the fp32 graph and the calibration sample, saved as JSON,
and every recipe reuses them (ONNX Runtime's calibration cache).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgetune.atomic import atomic_path

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


@dataclass(frozen=True)
class Calibration:
    """Where the ranges live and how they were made; shared by every target's recipe."""

    model: Path  # the pre-processed fp32 graph the ranges belong to
    cache: Path  # ranges JSON
    method: str
    samples: int
    reader: object | None = field(default=None, compare=False)  # None once the cache exists

    def to_dict(self) -> dict:
        return {"method": self.method, "samples": self.samples, "ranges": self.cache.name}


def prepare(fp32: Path, out: Path) -> Path:
    """Shape inference plus ORT's graph optimisations (Conv+BN folding and the like), once,
    so calibration and every recipe see the same tensor names."""
    with atomic_path(out) as tmp:
        quant_pre_process(str(fp32), str(tmp), skip_symbolic_shape=False)
    return out


def _quantize(cal: Calibration, out: Path, activation: QuantType, exclude, op_types, extra) -> Path:
    options = {"CalibPercentile": 99.999, **extra} if cal.method == "percentile" else dict(extra)
    # ORT's histogram calibrators narrate on stdout; our users get one line per stage.
    with atomic_path(out) as tmp, contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            str(cal.model), str(tmp), cal.reader if not cal.cache.is_file() else None,
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
            activation_type=activation, weight_type=QuantType.QInt8,
            op_types_to_quantize=op_types, nodes_to_exclude=list(exclude),
            calibrate_method=METHODS[cal.method], calibration_cache_path=str(cal.cache),
            extra_options=options,
        )
    return out


def quantize_cpu(cal: Calibration, out: Path, exclude=(), op_types=None) -> Path:
    """x86/ARM CPUs via ONNX Runtime: unsigned 8-bit activations, signed per-channel weights.

    Why unsigned: ORT's x86 int8 GEMM kernels (VNNI/AVX2) take u8×s8; with signed
    activations it falls back to slower paths. Measured on a 2-core AVX-512 VNNI Xeon,
    ResNet-18 at 224 px, batch 1: fp32 17 ms, u8 activations 8.7 ms, s8 activations 27.5 ms.
    Asymmetric activations also use the whole range after ReLU.
    """
    return _quantize(cal, out, QuantType.QUInt8, exclude, op_types, {"WeightSymmetric": True})


def quantize_cpu_s8s8(cal: Calibration, out: Path, exclude=(), op_types=None) -> Path:
    """ONNX Runtime on ARM: signed 8-bit activations and weights (S8S8), which ORT's
    quantization guide calls its default and first choice in QDQ. ARM is where the runtime
    agrees: its ARM64 kernels take s8 x s8 (SDOT, SMMLA), and its graph optimiser fuses
    signed QDQ into INT8 kernels only there (`QDQIsInt8Allowed`). On x86 most of the graph
    keeps its Q/DQ around float kernels, or, with `session.qdqisint8allowed=1`, reaches ORT's
    portable s8 x s8 kernels (only AVX-VNNI-INT8 CPUs have a fast GEMM); on an AVX-512 VNNI
    EPYC ResNet-18 ran 8-16x slower than `quantize_cpu`'s U8S8 at 32 px. The device that runs
    the bundle decides (`edgetune bench --choose`). Asymmetric activations, as ORT makes
    them by default; symmetric per-channel weights, as in every recipe here.
    """
    return _quantize(cal, out, QuantType.QInt8, exclude, op_types, {"WeightSymmetric": True})


def quantize_openvino(cal: Calibration, out: Path, exclude=(), op_types=None) -> Path:
    """OpenVINO's CPU plugin (its low-precision transformations turn Q/DQ into INT8 kernels).

    NNCF's scheme, zero-points 0 everywhere: unsigned 8-bit activations where the calibrated
    range is non-negative (after ReLU), signed symmetric where it is not (the normalised
    input, residual sums, SiLU/HardSwish outputs); signed per-channel weights. Why: the CPU
    recipe's asymmetric unsigned activations put a zero-point on every tensor that can be
    negative, and OpenVINO runs a conv with an input zero-point through a compensation pass
    and its input through a reference Convert (ResNet-18's first conv, in its profiler). ONNX
    Runtime wants the opposite (unsigned activations for its u8×s8 kernels), so this graph is
    only ever a candidate in OpenVINO. Needs the ranges the CPU recipe calibrated.
    """
    from onnxruntime.quantization.calibrate import load_tensors_data

    if not cal.cache.is_file():
        raise RuntimeError(f"quantize_openvino needs calibrated ranges in {cal.cache} (run a CPU recipe first)")
    signed = {"quant_type": QuantType.QInt8, "symmetric": True}
    overrides = {name: [dict(signed)] for name, t in load_tensors_data(cal.cache).data.items()
                 if float(t.range_value[0].min()) < 0}
    return _quantize(cal, out, QuantType.QUInt8, exclude, op_types,
                     {"WeightSymmetric": True, "TensorQuantOverrides": overrides})


def quantize_tensorrt(cal: Calibration, out: Path, exclude=()) -> Path:
    """TensorRT (strongly typed network from explicit Q/DQ; also TensorRT 8.6/10 on Jetson).

    TensorRT only accepts symmetric int8: activations s8 with zero-point 0, weights s8
    per output channel (axis 0 of Conv weights), biases left in float for TensorRT to fuse.
    Only compute ops get Q/DQ on their inputs: TensorRT propagates the scales through
    pooling/ReLU and fuses Q/DQ into Conv/Gemm; Q/DQ elsewhere blocks fusions.
    Removable activations are kept explicit so the graph means the same after TRT folds it.
    """
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "QDQKeepRemovableActivations": True,
    }
    return _quantize(cal, out, QuantType.QInt8, exclude, ["Conv", "Gemm", "MatMul", "Add"], extra)


RECIPES = {"cpu": quantize_cpu, "cpu-s8s8": quantize_cpu_s8s8, "tensorrt": quantize_tensorrt,
           "openvino": quantize_openvino}
