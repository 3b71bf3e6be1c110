"""`--unfreeze-schedule`'s syntax: `head:2,1:2,2` as stages with their first epochs, checked
with the other flags (edgetune.config) before training; what the stages do is
edgetune.train.schedule's."""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgetune.errors import ConfigError

_STAGE = re.compile(r"(head|all|\d+)(?::(\d+))?")


@dataclass(frozen=True)
class UnfreezeStage:
    unfreeze: str  # head | K | all
    first_epoch: int  # 0-based, inclusive


def parse_schedule(text: str, epochs: int) -> tuple[UnfreezeStage, ...]:
    """`head:2,1:2,2` → stages with their first epochs; checked against --epochs."""
    stages, start = [], 0
    parts = [p.strip() for p in text.split(",") if p.strip()]
    for i, part in enumerate(parts):
        m = _STAGE.fullmatch(part)
        last = i == len(parts) - 1
        if not m or (m.group(2) is None and not last) or (m.group(2) is not None and int(m.group(2)) < 1):
            raise ConfigError(
                f"--unfreeze-schedule {text!r}: stage {part!r} is not DEPTH:EPOCHS; use e.g. "
                "'head:2,1:2,2' (DEPTH is head, a number of top blocks or all; the last stage "
                "may omit its epochs)"
            )
        stages.append(UnfreezeStage(m.group(1), start))
        start += int(m.group(2)) if m.group(2) else 0
    if not stages:
        raise ConfigError("--unfreeze-schedule is empty; use e.g. 'head:2,1:2,2'")
    if stages[-1].first_epoch >= epochs or start > epochs:
        raise ConfigError(
            f"--unfreeze-schedule {text!r} needs more than --epochs {epochs}; shorten its stages "
            "or raise --epochs"
        )
    return tuple(stages)
