"""The graphs edgetune only times and reads (choose's, tune's latency graphs): the TorchScript
exporter at one input size, timm's "SAME" padding made constant, and torch.export where the
trace disagrees with the model."""

from __future__ import annotations

from collections import Counter

import onnx
import torch
from torch import nn

from edgetune.export.onnx import disagreement, export_for_timing, export_traced
from edgetune.train.model import create_model


def test_same_padding_is_folded_into_the_convs_and_agrees_with_pytorch(tmp_path):
    """EfficientNet-Lite as Google trained it pads like TensorFlow (timm's Conv2dSame): traced
    as is, every call computes its padding (hundreds of Shape, Cast and Sub nodes); made
    constant at the export's size, the graph is Conv, Clip and Add with the pads in each Conv,
    as torch.export writes it, and its logits are the model's."""
    from timm.layers.conv2d_same import Conv2dSame

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", "none", 5).eval()
    same = [m for m in model.modules() if isinstance(m, Conv2dSame)]
    assert same  # the stride-2 depthwise convolutions and the stem
    export_traced(model, (64, 64), tmp_path / "lite0.onnx")
    ops = Counter(n.op_type for n in onnx.load(tmp_path / "lite0.onnx").graph.node)
    assert set(ops) == {"Conv", "Clip", "Add", "GlobalAveragePool", "Reshape", "Gemm"}, ops
    assert disagreement(tmp_path / "lite0.onnx", model, (64, 64), "traced") is None
    assert all("forward" not in vars(m) for m in same)  # the model pads per call again after the export
    # The constants hold at 64 px, not everywhere: at 72 the stem pads differently, and the check says so.
    assert disagreement(tmp_path / "lite0.onnx", model, (72, 72), "traced at 72 px") is not None


def test_every_same_layer_pads_as_timm_does_at_an_odd_size():
    """Conv2dSame, MaxPool2dSame (-inf padding) and AvgPool2dSame at 37 x 41 px, where TensorFlow
    pads unevenly: the constant padding gives timm's output exactly, and the layers are timm's
    own again after the context."""
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame

    from edgetune.export.same_padding import static_same_padding

    torch.manual_seed(0)
    model = nn.Sequential(Conv2dSame(3, 4, 3, stride=2), MaxPool2dSame(3, 2), AvgPool2dSame(3, 2),
                          Conv2dSame(4, 4, 5, stride=2, groups=2))
    x = torch.randn(2, 3, 37, 41)
    with torch.no_grad():
        want = model(x)
        with static_same_padding(model, (37, 41)) as changed:
            got = model(x)
        assert changed == 4 and torch.equal(got, want)
        assert all("forward" not in vars(m) for m in model)


class TracedWrong(nn.Module):
    """A model the tracer records wrongly (as it would a branch on a value): zeros while traced."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x).mean((2, 3))
        return y * 0 if torch.jit.is_tracing() else y


def test_a_trace_that_disagrees_is_replaced_by_torch_export(tmp_path):
    torch.manual_seed(0)
    model = TracedWrong().eval()
    how = export_for_timing(model, (16, 16), tmp_path / "m.onnx")
    assert how.startswith("exported by torch.export (m.onnx, traced: max |Δ|"), how
    assert disagreement(tmp_path / "m.onnx", model, (16, 16), "exported") is None


def test_a_plain_network_is_traced(tmp_path):
    """MobileNetV3 (Hardswish, squeeze-excitation): traced, and the trace agrees."""
    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small", "none", 5).eval()
    assert export_for_timing(model, (32, 32), tmp_path / "m.onnx") == ""
    assert disagreement(tmp_path / "m.onnx", model, (32, 32), "traced") is None
