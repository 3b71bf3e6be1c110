"""A classifier for the user's classes, from whichever source the `--model` name picks:
`timm/NAME` (timm), `efficientnet_lite0/1/2` (the Lite weight packages on timm's definition),
or a torchvision name. Pretrained weights, a new head, and the preprocessing they expect.
"""

from __future__ import annotations

from torch import nn

from edgetune.preprocess import Preprocess
from edgetune.train.lite import LITE, LiteSource
from edgetune.train.source import ModelSource, ParamGroups, Segment
from edgetune.train.timm_source import PREFIX, TimmSource
from edgetune.train.tv_source import TorchvisionSource


def source_of(arch: str) -> ModelSource:
    if arch.startswith(PREFIX):
        return TimmSource()
    if arch in LITE:
        return LiteSource()
    return TorchvisionSource(others=tuple(LITE))


def check_arch(arch: str) -> None:
    """A one-line error for a name no source can build (before any weights are resolved)."""
    source_of(arch).check(arch)


def preprocess_for(arch: str, weights: str, image_size: int | None) -> Preprocess:
    """The weights' own eval preprocessing, or a plain resize for --weights none / a file."""
    source = source_of(arch)
    source.check(arch)
    return source.preprocess(arch, weights, image_size)


def weights_at_hand(arch: str, weights: str) -> bool:
    """Whether `arch`'s `weights` load here without a download (a cache, an installed package, a file)."""
    return source_of(arch).weights_at_hand(arch, weights)


def create_model(arch: str, weights: str, num_classes: int, dropout: float = 0.0, log=print) -> nn.Module:
    """The model with pretrained (or file) weights and a fresh head for `num_classes`;
    a weights file's match is logged through `log`."""
    source = source_of(arch)
    source.check(arch)
    return source.create(arch, weights, num_classes, dropout, log)


def param_groups(arch: str, model: nn.Module) -> ParamGroups:
    return source_of(arch).param_groups(arch, model)


def segments_of(model: nn.Module, arch: str) -> list[Segment]:
    """`model`'s forward pass as segments, stem first, head last."""
    return source_of(arch).segments(model, arch)


def build_from_checkpoint(ckpt: dict) -> nn.Module:
    """The eval-mode model a checkpoint describes (no download: weights come from the file)."""
    arch = ckpt["arch"]
    model = source_of(arch).build(arch, len(ckpt["classes"]), ckpt.get("config", {}).get("dropout", 0.0))
    model.load_state_dict(ckpt["model"])
    return model.eval()
