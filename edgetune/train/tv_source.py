"""torchvision's classifiers as a model source: the family table (freeze groups and head),
the weights enums and their eval transforms, a new head, and the segments of each family.

The tables below mirror each family's own `forward`; `tests/train/test_segments.py` checks
that the segments compose to `model(x)` for every family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torchvision
from torch import nn

from edgetune.errors import ConfigError, did_you_mean
from edgetune.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from edgetune.train.source import Flatten, ParamGroups, Segment
from edgetune.train.weights_file import is_path, load_weights_file


@dataclass(frozen=True)
class Family:
    name: str
    archs: str  # regex over torchvision model names
    groups: tuple[str, ...]  # ordered regexes; a capture group numbers the blocks inside one
    head: str  # regex of the classifier head's parameters


FAMILIES = (
    Family("resnet", r"resnet\d+|resnext\w+|wide_resnet\w+",
           (r"^(?:conv1|bn1)\.", r"^layer(\d+)\."), r"^fc\."),
    Family("mobilenet", r"mobilenet_v[23]\w*", (r"^features\.(\d+)\.",), r"^classifier\."),
    Family("efficientnet", r"efficientnet_\w+", (r"^features\.(\d+)\.",), r"^classifier\."),
    Family("regnet", r"regnet_\w+", (r"^stem\.", r"^trunk_output\.block(\d+)\."), r"^fc\."),
    Family("convnext", r"convnext_\w+", (r"^features\.(\d+)\.",), r"^classifier\."),
)


def family_of(arch: str) -> Family:
    for fam in FAMILIES:
        if re.fullmatch(fam.archs, arch):
            return fam
    raise ConfigError(
        f"model {arch!r} is not in a supported family; supported: "
        + ", ".join(f.name for f in FAMILIES)
    )


def supported_models() -> list[str]:
    names = torchvision.models.list_models(module=torchvision.models)
    return sorted(n for n in names if any(re.fullmatch(f.archs, n) for f in FAMILIES))


class TorchvisionSource:
    def __init__(self, others: tuple[str, ...] = ()):
        self.others = others  # the other sources' plain names, offered by the did-you-mean too

    def check(self, arch: str) -> None:
        models = supported_models()
        if arch not in models:
            hint = _timm_hint(arch) or did_you_mean(arch, [*models, *self.others])
            raise ConfigError(
                f"unknown model {arch!r}{hint}; torchvision families: "
                + ", ".join(f.name for f in FAMILIES)
                + " (e.g. resnet18, mobilenet_v3_small, efficientnet_b0, regnet_y_400mf, convnext_tiny)"
                + "".join(f", {o}" for o in self.others)
                + ", or timm/NAME for any timm model (pip install 'edgetune[timm]')"
            )

    def preprocess(self, arch: str, weights: str, image_size: int | None) -> Preprocess:
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

    def create(self, arch: str, weights: str, num_classes: int, dropout: float, log) -> nn.Module:
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
        replace_head(model, num_classes, dropout)
        if is_path(weights):  # after the new head: a file's head loads when it has as many classes
            load_weights_file(model, weights, arch, self.param_groups(arch, model).head, log)
        return model

    def weights_at_hand(self, arch: str, weights: str) -> bool:
        """none or a file, or weights whose download is in torch's cache."""
        import torch

        try:
            w = resolve_weights(arch, weights)
        except ConfigError:
            return False
        return w is None or (Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name).is_file()

    def build(self, arch: str, num_classes: int, dropout: float) -> nn.Module:
        model = torchvision.models.get_model(arch, weights=None)
        replace_head(model, num_classes, dropout)
        return model

    def param_groups(self, arch: str, model: nn.Module) -> ParamGroups:
        fam = family_of(arch)
        keyed: dict[tuple, list[str]] = {}
        head = []
        for name, _ in model.named_parameters():
            if re.match(fam.head, name):
                head.append(name)
                continue
            key = _group_key(fam, name)
            if key is None:
                raise RuntimeError(f"freeze plan for {fam.name}: parameter {name} matches no group")
            keyed.setdefault(key, []).append(name)
        return ParamGroups(tuple(tuple(keyed[k]) for k in sorted(keyed)), tuple(head))

    def segments(self, model: nn.Module, arch: str) -> list[Segment]:
        family = family_of(arch).name
        if family == "resnet":
            stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
            return [Segment("stem", stem),
                    *(Segment(f"layer{i}.", getattr(model, f"layer{i}")) for i in range(1, 5)),
                    Segment("", nn.Sequential(model.avgpool, Flatten())), Segment("fc.", model.fc)]
        if family == "regnet":
            blocks = [Segment(f"trunk_output.{n}.", m) for n, m in model.trunk_output.named_children()]
            return [Segment("stem.", model.stem), *blocks,
                    Segment("", nn.Sequential(model.avgpool, Flatten())), Segment("fc.", model.fc)]
        # mobilenet, efficientnet, convnext: features[i] blocks, a pool, a classifier
        blocks = [Segment(f"features.{n}.", m) for n, m in model.features.named_children()]
        pool = getattr(model, "avgpool", None) or nn.AdaptiveAvgPool2d(1)  # MobileNetV2 pools inline
        # ConvNeXt's classifier starts with a LayerNorm over channels and flattens itself.
        tail = nn.Sequential(pool) if family == "convnext" else nn.Sequential(pool, Flatten())
        return [*blocks, Segment("", tail), Segment("classifier.", model.classifier)]


def _timm_hint(arch: str) -> str:
    """A timm name typed without its prefix: suggest the prefix, when timm is installed."""
    import importlib.util

    if importlib.util.find_spec("timm") is None:
        return ""
    import timm

    return f" (did you mean 'timm/{arch}'?)" if timm.is_model(arch) else ""


def resolve_weights(arch: str, weights: str):
    """'DEFAULT' or a weights name like 'IMAGENET1K_V2' -> a torchvision WeightsEnum member;
    'none' or a file path -> None (the file is loaded separately)."""
    if weights.lower() == "none" or is_path(weights):
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


def _group_key(fam: Family, name: str) -> tuple | None:
    for i, pattern in enumerate(fam.groups):
        m = re.match(pattern, name)
        if m:
            return (i, int(m.group(1)) if m.groups() else 0)
    return None
