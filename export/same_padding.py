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
    """The layer's torch base class's forward (Conv2d, MaxPool2d, AvgPool2d: timm builds each
    with padding 0) after a constant pad, as timm's forward pads: zeros, or -inf before a max."""
    from timm.layers.padding import pad_same_arg

    kernel = m.weight.shape[-2:] if isinstance(m, nn.Conv2d) else m.kernel_size
    pad = pad_same_arg(list(hw), list(kernel), list(m.stride), list(getattr(m, "dilation", (1, 1))))
    value = -float("inf") if isinstance(m, nn.MaxPool2d) else 0.0
    base = next(c for c in type(m).__mro__[1:] if c.__module__.startswith("torch.nn"))
    return lambda x: base.forward(m, F.pad(x, pad, value=value))
