"""A classifier as an ordered list of segments whose composition is its forward pass.

The freeze plan trains a suffix of the network (the head, or the head and the top K blocks);
with the segments in hand, the frozen part is a prefix that can run once per image and be
cached, and the trainable part is a suffix that trains on the cached output. Each model
source says what its segments are (`edgetune.train.source`); `tests/train/test_segments.py`
checks that they compose to `model(x)` for every family. (A segment is a piece of the forward
pass; an unfreezing stage, `train.schedule.UnfreezeStage`, is a span of epochs.)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from edgetune.train.model import segments_of
from edgetune.train.source import Segment

__all__ = ["Segment", "Split", "segments_of", "split"]


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
