"""fp16 ONNX graph for GPU targets (ONNX Runtime CUDA, TensorRT strongly typed), made by
onnxconverter-common's maintained converter. Inputs and outputs stay float32 so callers
feed the same arrays; ops that overflow or lose accuracy in half precision stay fp32."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx

from edgetune.atomic import atomic_path

# On top of the converter's own block list: reductions and normalisations accumulate in
# fp16 badly (softmax over many classes, global pooling sums, LayerNorm in ConvNeXt).
KEEP_FP32 = ["Softmax", "ReduceMean", "ReduceSum", "GlobalAveragePool", "LayerNormalization",
             "Exp", "Log", "Pow", "Sqrt", "Div", "Erf"]


def convert_fp16(fp32: str | Path, out: str | Path) -> Path:
    from onnxconverter_common import float16

    model = onnx.load(str(fp32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per tiny weight truncated to fp16's range
        half = float16.convert_float_to_float16(
            model, keep_io_types=True,
            op_block_list=sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(KEEP_FP32)),
        )
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(half, str(tmp))
    return out
