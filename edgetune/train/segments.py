"""A torchvision classifier as an ordered list of segments whose composition is its forward pass.

The freeze plan trains a suffix of the network (the head, or the head and the top K blocks);
with the segments in hand, the frozen part is a prefix that can run once per image and be
cached, and the trainable part is a suffix that trains on the cached output. The per-family
tables below mirror each model's own `forward`; `tests/test_segments.py` checks that the
composition equals `model(x)` for every family. (A segment is a piece of the forward pass; an
unfreezing stage, `train.schedule.UnfreezeStage`, is a span of epochs.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgetune.train.freeze import family_of


@dataclass(frozen=True)
class Segment:
    name: str  # parameter-name prefix, e.g. "layer3." ("" for parameter-free segments)
    module: nn.Module


class _Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


def segments_of(model: nn.Module, arch: str) -> list[Segment]:
    """`model`'s forward pass as segments, stem first, head last."""
    family = family_of(arch).name
    if family == "resnet":
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return [Segment("stem", stem),
                *(Segment(f"layer{i}.", getattr(model, f"layer{i}")) for i in range(1, 5)),
                Segment("", nn.Sequential(model.avgpool, _Flatten())), Segment("fc.", model.fc)]
    if family == "regnet":
        blocks = [Segment(f"trunk_output.{n}.", m) for n, m in model.trunk_output.named_children()]
        return [Segment("stem.", model.stem), *blocks,
                Segment("", nn.Sequential(model.avgpool, _Flatten())), Segment("fc.", model.fc)]
    # mobilenet, efficientnet, convnext: features[i] blocks, a pool, a classifier
    blocks = [Segment(f"features.{n}.", m) for n, m in model.features.named_children()]
    pool = getattr(model, "avgpool", None) or nn.AdaptiveAvgPool2d(1)  # MobileNetV2 pools inline
    # ConvNeXt's classifier starts with a LayerNorm over channels and flattens itself.
    tail = nn.Sequential(pool) if family == "convnext" else nn.Sequential(pool, _Flatten())
    return [*blocks, Segment("", tail), Segment("classifier.", model.classifier)]


def _trainable(segment: Segment) -> bool:
    return any(p.requires_grad for p in segment.module.parameters())


@dataclass
class Split:
    """The frozen prefix and the trainable suffix of a model at its first trainable segment."""
    prefix: nn.Sequential
    suffix: nn.Sequential
    index: int  # segments in the prefix
    where: str  # what the prefix outputs, e.g. "the input of layer4"

    @property
    def empty_prefix(self) -> bool:
        return self.index == 0

    @property
    def head_only(self) -> bool:
        return len(self.suffix) == 1  # the classifier alone trains, on the pooled features


def split(model: nn.Module, arch: str) -> Split:
    """Split after the last frozen segment (call after `FreezePlan.apply`).

    The plan trains the last K groups plus the head, so every segment after the first
    trainable one trains too: the prefix is frozen as a whole."""
    segments = segments_of(model, arch)
    index = next((i for i, s in enumerate(segments) if _trainable(s)), len(segments))
    frozen_after = [s.name for s in segments[index:] if s.name and not _trainable(s)]
    if frozen_after:
        raise RuntimeError(f"the trainable segments are not a suffix: {frozen_after} are frozen")
    if index >= len(segments) - 1:
        where = "the pooled features (head only)"
    else:
        where = f"the input of {segments[index].name.rstrip('.')}"
    return Split(nn.Sequential(*(s.module for s in segments[:index])),
                 nn.Sequential(*(s.module for s in segments[index:])), index, where)
