"""A trained network fake-quantized as one target's recipe quantizes it: the graph QAT trains.

The fake-quantization is PyTorch's own (torch.ao.quantization: FakeQuantize and its
observers, placed by FX's `prepare_qat_fx` under a backend config), chosen by measurement
on this machine against NVIDIA ModelOpt 0.47.0, NNCF 3.4.0 and torchao 0.18.0 (BENCHMARKS.md,
"Quantization-aware fine-tuning"): it needs nothing beyond torch, it can make both recipes
(u8 asymmetric activations for ONNX Runtime's CPU kernels, s8 symmetric for TensorRT), and
its exported graphs load in ONNX Runtime and OpenVINO and pass our TensorRT lint. ModelOpt
makes only the symmetric recipe and imported requests and huggingface_hub it does not
declare; NNCF compiled a C++ extension at first use (300 s here) and exported OpenVINO's
own FakeQuantize op, which ONNX Runtime cannot load; torchao's QAT swaps Linear layers
only, and its PT2E QAT failed to annotate a ResNet-18.

What this module adds to torch.ao is what makes its graph the one the PTQ recipes quantize:
timm's layers made traceable and foldable (`traceable`), Q/DQ placed as ONNX Runtime's
quantizer places them (conv and ReLU6 observed once, no pair on an empty slot), ranges from
the PTQ calibration images, and OpenVINO's zero-points 0.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from edgetune.preprocess import Preprocess

RECIPES = ("cpu", "tensorrt", "openvino")  # openvino: the cpu target's graph for OpenVINO, zero-points 0
LIBRARY = f"torch.ao.quantization (FX QAT), torch {torch.__version__.split('+')[0]}"


def traceable(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The same function, made traceable by FX and with every BatchNorm where folding finds it
    (`static_same_padding`, `plain_batchnorm`)."""
    return plain_batchnorm(static_same_padding(model, example))


def calibrated(model: nn.Module, recipe: str, example: torch.Tensor, calibration: list,
               pre: Preprocess) -> torch.fx.GraphModule:
    """`model` (traceable) fake-quantized for `recipe`, its activation ranges from the
    calibration images and frozen; for OpenVINO, zero-points 0."""
    if recipe not in RECIPES:
        raise ValueError(f"QAT recipe {recipe!r}: one of {', '.join(RECIPES)}")
    qat = fake_quantize(model, recipe, example)
    observe(qat, calibration, pre)
    if recipe == "openvino":
        zero_points_zero(qat)
    return qat


def _qconfig_mapping(recipe: str):
    """Fake-quantization as `calib.quantize`'s recipe for `recipe` quantizes: per-channel
    symmetric int8 weights everywhere; activations u8 asymmetric for ONNX Runtime's CPU
    kernels (`quantize_cpu`), s8 symmetric with zero-point 0 for TensorRT (`quantize_tensorrt`).
    OpenVINO's starts as the CPU's; once calibrated its signed activations turn s8 symmetric
    (`zero_points_zero`). Activation ranges are min/max (the default --calib-method) over the
    calibration sample, then frozen; weight ranges follow the weights as they train."""
    from torch.ao.quantization import (
        FakeQuantize,
        MinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        QConfig,
        QConfigMapping,
    )

    # -128..127: the ONNX exporter accepts no narrower int8 range.
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128,
                                    quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    if recipe == "tensorrt":
        act = FakeQuantize.with_args(observer=MinMaxObserver, quant_min=-128, quant_max=127,
                                     dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    else:
        act = FakeQuantize.with_args(observer=MinMaxObserver, quant_min=0, quant_max=255,
                                     dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    return QConfigMapping().set_global(QConfig(activation=act, weight=weight))


def fake_quantize(model: nn.Module, recipe: str, example: torch.Tensor) -> torch.fx.GraphModule:
    """`model` with BatchNorm folded into its convs (its statistics frozen where training left
    them, as the exported graph will hold them) and FakeQuantize where `recipe` puts Q/DQ.
    TensorRT's backend config quantizes the inputs of its compute ops with s8; the native one
    is ONNX Runtime's u8."""
    from torch.ao.quantization.backend_config import get_native_backend_config, get_tensorrt_backend_config
    from torch.ao.quantization.quantize_fx import prepare_qat_fx
    from torch.fx.experimental.optimization import fuse as fold_batchnorm

    folded = _without_identities(fold_batchnorm(model.eval()))
    folded.train()
    config = get_tensorrt_backend_config() if recipe == "tensorrt" else _with_conv_relu6(get_native_backend_config())
    # torch warns, once per op, that fixed-range ops (Hardsigmoid, Sigmoid) stay in float, and
    # that torch.ao is deprecated: both known (the module docstring), neither the user's to act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_qat_fx(folded, _qconfig_mapping(recipe), (example,), backend_config=config)


def _without_identities(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The graph without its nn.Identity calls (timm's empty dropout, attention and
    squeeze-excite slots): each is a node FX would give a FakeQuantize sharing its input's range,
    a Q/DQ pair in the graph that changes nothing, and one between a conv and its activation
    hides the pattern below."""
    for node in list(graph.graph.nodes):
        if node.op == "call_module" and isinstance(graph.get_submodule(node.target), nn.Identity):
            node.replace_all_uses_with(node.args[0])
            graph.graph.erase_node(node)
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph


def _with_conv_relu6(config):
    """The native backend config, plus conv then ReLU6 observed as one op: the activation after
    the ReLU6 only, as ONNX Runtime's PTQ quantizes it (the Clip dropped, its range within
    [0, 6]). Without this, ReLU6 shares the conv's observer: a range holding the conv's negative
    outputs, so [0, 6] got a fraction of the 256 levels, and the exported graph kept a Clip in
    float between two Q/DQ pairs, which ONNX Runtime cannot fuse into QLinearConv (EfficientNet-
    Lite0: 205 QuantizeLinear against the PTQ graph's 69)."""
    import torch.ao.nn.qat as nnqat
    import torch.nn.functional as F
    from torch.ao.quantization.backend_config import BackendPatternConfig, ObservationType

    dtypes = next(c for c in config.configs if c.pattern is nn.Conv2d).dtype_configs
    for conv in (nn.Conv2d, nnqat.Conv2d):
        for relu6 in (nn.ReLU6, F.relu6, F.hardtanh):
            config.set_backend_pattern_config(
                BackendPatternConfig((conv, relu6))
                .set_observation_type(ObservationType.OUTPUT_USE_DIFFERENT_OBSERVER_AS_INPUT)
                .set_dtype_configs(dtypes))
    return config


def static_same_padding(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """`model` with timm's Conv2dSame (TensorFlow's SAME padding, as the EfficientNet-Lite
    weights need) made FX-traceable: it computes its padding from the input's size at run time,
    a branch FX cannot trace; at the graph's fixed input size that padding is a constant, so each
    becomes ZeroPad2d then a plain Conv2d with the same weights (the same function)."""
    try:
        from timm.layers import Conv2dSame
        from timm.layers.padding import pad_same_arg
    except ImportError:  # no timm: no such layer
        return model
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, Conv2dSame)]
    if not found:
        return model
    sizes: dict[str, list[int]] = {}
    hooks = [m.register_forward_pre_hook(lambda _, args, n=n: sizes.__setitem__(n, list(args[0].shape[-2:])))
             for n, m in found]
    was_training = model.training
    with torch.no_grad():
        model.eval()(example)
    model.train(was_training)
    for h in hooks:
        h.remove()
    for name, m in found:
        conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, 0, m.dilation, m.groups,
                         m.bias is not None)
        conv.load_state_dict(m.state_dict())
        pad = nn.ZeroPad2d(pad_same_arg(sizes[name], list(m.kernel_size), list(m.stride), list(m.dilation)))
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, nn.Sequential(pad, conv))
    return model


def plain_batchnorm(model: nn.Module) -> nn.Module:
    """`model` with timm's BatchNormAct2d (BatchNorm, dropout and activation in one module) made
    a plain BatchNorm2d followed by the same dropout and activation, so that folding finds it
    after its conv. FX traces through timm's module into a functional batch_norm that no fold
    matches: QAT then quantized the unfolded conv weights, which the PTQ graphs (BatchNorm
    folded before quantization) never hold. The same function, in eval mode as in training."""
    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # no timm: no such layer
        return model
    found = [(n, m) for n, m in model.named_modules() if type(m) is BatchNormAct2d]
    for name, m in found:
        bn = nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        bn.load_state_dict(m.state_dict())
        bn.train(m.training)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, nn.Sequential(bn, m.drop, m.act))
    return model


def unfolded_batchnorms(model: torch.fx.GraphModule) -> int:
    """BatchNorm left in a fake-quantized graph: one that follows no conv (or one folding missed)."""
    norms = nn.modules.batchnorm._BatchNorm
    return sum(1 for n in model.graph.nodes
               if (n.op == "call_function" and "batch_norm" in getattr(n.target, "__name__", ""))
               or (n.op == "call_module" and isinstance(model.get_submodule(n.target), norms)))


def batchnorm_record(qat: torch.fx.GraphModule) -> str:
    """What became of the BatchNorms, as the manifest records it."""
    left = unfolded_batchnorms(qat)
    if not left:
        return "folded into the convs, frozen"
    return f"folded into the convs where one precedes it, frozen; {left} left as BatchNormalization, frozen"


def observe(qat: torch.fx.GraphModule, calibration: list, pre: Preprocess) -> None:
    """Activation ranges from the calibration sample (min/max, as PTQ's default), then frozen."""
    from torch.ao.quantization import FakeQuantize

    from edgetune.train.data import image_loader

    qat.eval()
    with torch.no_grad():
        for x, _ in image_loader(calibration, pre):
            qat(x)
    for name, m in qat.named_modules():
        if isinstance(m, FakeQuantize) and not name.endswith("weight_fake_quant"):
            m.disable_observer()


def zero_points_zero(qat: torch.fx.GraphModule) -> int:
    """OpenVINO's recipe (calib.quantize.quantize_openvino, NNCF's scheme) on calibrated
    activations: zero-point 0 everywhere. A non-negative range (after ReLU) has it already as
    u8 (an observer's range always holds 0, so its minimum is 0); a signed one becomes s8
    symmetric over the same range, as the PTQ recipe's overrides make it. Returns how many
    activations turned signed."""
    from torch.ao.quantization import FakeQuantize, MinMaxObserver

    signed = 0
    for name, fq in qat.named_modules():
        if not isinstance(fq, FakeQuantize) or name.endswith("weight_fake_quant"):
            continue
        observed = fq.activation_post_process
        if float(observed.min_val) >= 0:
            continue
        symmetric = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-128,
                                   quant_max=127)
        symmetric.min_val.copy_(observed.min_val)
        symmetric.max_val.copy_(observed.max_val)
        fq.activation_post_process = symmetric
        fq.dtype, fq.qscheme, fq.quant_min, fq.quant_max = torch.qint8, torch.per_tensor_symmetric, -128, 127
        scale, zero_point = symmetric.calculate_qparams()
        fq.scale.copy_(scale.reshape(fq.scale.shape))
        fq.zero_point.copy_(zero_point.reshape(fq.zero_point.shape))
        signed += 1
    return signed
