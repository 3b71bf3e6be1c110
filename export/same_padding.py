"""TensorFlow "SAME" padding made constant for one input size, while a model is traced.

timm's `Conv2dSame`, `MaxPool2dSame` and `AvgPool2dSame` (the `tf_*` models: EfficientNet-Lite
with Google's weights) compute their padding from the input's height and width on every call.
The TorchScript exporter records that arithmetic as graph nodes (597 nodes for Lite0 against
94), which run on every inference. At a fixed input size the padding is a constant: each
layer's input size is read in one forward pass, and the layer pads by that constant while the
context is open. The exported graph then holds a Pad that onnxscript's optimizer folds into the
Conv, as torch.export's graph has it. Only valid at `size`: the caller checks parity there.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


@contextlib.contextmanager
def static_same_padding(model: nn.Module, size: tuple[int, int]):
    """Within the context, every timm "SAME" layer of `model` pads by the constant it computes
    at input `size` (height, width); yields how many layers were changed."""
    layers = _same_layers(model)
    if not layers:
        yield 0
        return
    inputs: dict[nn.Module, tuple[int, int]] = {}
    hooks = [m.register_forward_pre_hook(lambda m, args: inputs.__setitem__(m, tuple(args[0].shape[-2:])))
             for m in layers]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *size))
    finally:
        for h in hooks:
            h.remove()
    for m, hw in inputs.items():
        m.forward = _static_forward(m, hw)
    try:
        yield len(inputs)
    finally:
        for m in inputs:
            del m.forward  # the class's own forward again


def _same_layers(model: nn.Module) -> list[nn.Module]:
    try:
        from timm.layers.conv2d_same import Conv2dSame
        from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame
    except ImportError:  # without timm, no model of edgetune's has such a layer
        return []
    return [m for m in model.modules() if isinstance(m, (Conv2dSame, MaxPool2dSame, AvgPool2dSame))]


def _static_forward(m: nn.Module, hw: tuple[int, int]):
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.padding import pad_same_arg
    from timm.layers.pool2d_same import MaxPool2dSame

    kernel = m.weight.shape[-2:] if isinstance(m, Conv2dSame) else _pair(m.kernel_size)
    stride = _pair(m.stride)
    dilation = _pair(getattr(m, "dilation", 1))
    pad = pad_same_arg(list(hw), list(kernel), list(stride), list(dilation))
    if isinstance(m, Conv2dSame):
        return lambda x: F.conv2d(F.pad(x, pad), m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
    if isinstance(m, MaxPool2dSame):
        return lambda x: F.max_pool2d(F.pad(x, pad, value=-float("inf")), m.kernel_size, m.stride, 0,
                                      m.dilation, m.ceil_mode)
    return lambda x: F.avg_pool2d(F.pad(x, pad), m.kernel_size, m.stride, 0, m.ceil_mode, m.count_include_pad)


def _pair(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
