"""Build a torchvision classifier for the user's classes: pretrained weights, a new head,
and the preprocessing those weights expect."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torchvision
from torch import nn

from edgetune.errors import ConfigError, did_you_mean
from edgetune.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from edgetune.train.freeze import FAMILIES


def supported_models() -> list[str]:
    names = torchvision.models.list_models(module=torchvision.models)
    return sorted(n for n in names if any(re.fullmatch(f.archs, n) for f in FAMILIES))


def check_arch(arch: str) -> None:
    models = supported_models()
    if arch not in models:
        raise ConfigError(
            f"unknown model {arch!r}{did_you_mean(arch, models)}; supported families: "
            + ", ".join(f.name for f in FAMILIES)
            + " (e.g. resnet18, mobilenet_v3_small, efficientnet_b0, regnet_y_400mf, convnext_tiny)"
        )


def resolve_weights(arch: str, weights: str):
    """'DEFAULT' or a weights name like 'IMAGENET1K_V2' -> a torchvision WeightsEnum member;
    'none' or a file path -> None (the file is loaded separately)."""
    if weights.lower() == "none" or _is_path(weights):
        return None
    enum = torchvision.models.get_model_weights(arch)
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = ["DEFAULT", *enum.__members__]
        raise ConfigError(
            f"--weights {weights!r} is not known for {arch}{did_you_mean(weights, names)}; use one of "
            f"{', '.join(names)}, 'none', or a path to a state_dict/checkpoint file"
        ) from None


def _is_path(weights: str) -> bool:
    return "/" in weights or weights.endswith((".pt", ".pth", ".bin")) or Path(weights).is_file()


def preprocess_for(arch: str, weights: str, image_size: int | None) -> Preprocess:
    """The weights' own eval transform, or a plain resize for --weights none / a file."""
    w = resolve_weights(arch, weights)
    if w is not None and image_size is None:
        t = w.transforms()
        crop = int(t.crop_size[0])
        return Preprocess(
            size=(crop, crop),
            resize=int(t.resize_size[0]),
            mean=tuple(float(v) for v in t.mean),
            std=tuple(float(v) for v in t.std),
            interpolation=t.interpolation.value,
        )
    size = image_size or 224
    # The user chose the size: resize the shorter side to it and keep the whole image.
    return Preprocess(size=(size, size), resize=size, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def create_model(arch: str, weights: str, num_classes: int, dropout: float = 0.0) -> nn.Module:
    """A torchvision model with pretrained (or file) weights and a fresh head for `num_classes`."""
    check_arch(arch)
    enum_weights = resolve_weights(arch, weights)
    try:
        model = torchvision.models.get_model(arch, weights=enum_weights)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        if enum_weights is None:
            raise
        raise ConfigError(
            f"could not download the pretrained weights {enum_weights} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120]}); connect to the internet once (they are cached), "
            "pass --weights PATH to a local file, or --weights none to train from scratch"
        ) from None
    if _is_path(weights):
        load_weights_file(model, weights)
    replace_head(model, num_classes, dropout)
    return model


def load_weights_file(model: nn.Module, path: str) -> None:
    """Load a state_dict or an edgetune checkpoint; a head of another size is left out."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--weights {path}: no such file; pass DEFAULT, none, or an existing file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise ConfigError(
            f"--weights {path} is not a weights_only-loadable state_dict or checkpoint ({type(exc).__name__})"
        ) from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"--weights {path} holds no state_dict")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ConfigError(f"--weights {path} shares no parameters with {type(model).__name__}")
    model.load_state_dict(usable, strict=False)


def replace_head(model: nn.Module, num_classes: int, dropout: float = 0.0) -> None:
    """Swap the last Linear layer for one with `num_classes` outputs (optionally after dropout)."""
    parent, attr, old = _last_linear(model)
    new = nn.Linear(old.in_features, num_classes)
    setattr(parent, attr, nn.Sequential(nn.Dropout(dropout), new) if dropout > 0 else new)


def _last_linear(model: nn.Module):
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = (name, module)
    if found is None:
        raise RuntimeError(f"{type(model).__name__} has no Linear head to replace")
    name, module = found
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, attr, module


def build_from_checkpoint(ckpt: dict) -> nn.Module:
    """The eval-mode model a checkpoint describes (no download: weights come from the file)."""
    model = torchvision.models.get_model(ckpt["arch"], weights=None)
    replace_head(model, len(ckpt["classes"]), ckpt.get("config", {}).get("dropout", 0.0))
    model.load_state_dict(ckpt["model"])
    return model.eval()
