"""Which blocks train when: gradual unfreezing, and the rule of thumb behind `--unfreeze auto`.
Pure Python: the schedule's syntax is checked with the other flags (`unfreeze_schedule.parse_schedule`).

A schedule is `DEPTH:EPOCHS,...`, e.g. `head:2,1:2,2`: the head alone for 2 epochs, then the
top block too for 2, then the top 2 blocks for the remaining epochs (the last stage may omit
its epochs). Depths are `head`, a number of top blocks, or `all`, and never decrease: a
block, once unfrozen, keeps training (ULMFiT's gradual unfreezing).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgetune.config import TrainConfig
from edgetune.errors import ConfigError
from edgetune.unfreeze_schedule import UnfreezeStage


def depth(unfreeze: str, groups: int) -> int:
    """How many top blocks `unfreeze` trains besides the head."""
    return {"head": 0, "all": groups}[unfreeze] if unfreeze in ("head", "all") else int(unfreeze)


def check_depths(stages: tuple[UnfreezeStage, ...], groups: int, arch: str, flag: str) -> None:
    """Every depth exists in the model and none decreases."""
    previous = -1
    for s in stages:
        d = depth(s.unfreeze, groups)
        if d > groups:
            raise ConfigError(
                f"{flag}: stage {s.unfreeze!r} names more blocks than {arch} has ({groups}); "
                f"use head, 1..{groups} or all"
            )
        if d < previous:
            raise ConfigError(
                f"{flag}: stage {s.unfreeze!r} freezes blocks an earlier stage trained; list "
                "depths in increasing order, e.g. head:2,1:2,2"
            )
        previous = d


def stage_at(stages: tuple[UnfreezeStage, ...], epoch: int) -> int:
    """Index of the stage that trains 0-based `epoch`."""
    return max(i for i, s in enumerate(stages) if s.first_epoch <= epoch)


@dataclass(frozen=True)
class AutoChoice:
    unfreeze: str
    why: str


def default_unfreeze(cfg: TrainConfig) -> AutoChoice:
    """What trains from scratch when --unfreeze is not given, and why. (With pretrained weights
    the default is `auto`: `choose_unfreeze` decides and says why.)"""
    return AutoChoice(cfg.resolved_unfreeze, "every block trains (the default with --weights none): "
                                             "a random block is not a feature extractor; --unfreeze K "
                                             "freezes the lowest")


def random_frozen(stages: tuple[UnfreezeStage, ...], groups: int) -> str | None:
    """From scratch, a warning when blocks stay frozen the whole run: they keep their random
    initialisation, fixed random features the rest must learn around. None: every block trains."""
    trained = max(depth(s.unfreeze, groups) for s in stages)
    if trained >= groups:
        return None
    return (f"{groups - trained} of {groups} blocks stay frozen at their random initialisation "
            "(--weights none): they never learn; omit --unfreeze to train every block")


# How many training images per class the rule of thumb calls "little data", and the head-only
# probe's top-1 above which the pretrained features already separate the classes well.
FEW_IMAGES, MANY_IMAGES = 100, 1000
# Below this many images per class a trained block overfits whatever the probe says: pretrained
# Lite0 on 5 photographs a class (probe 84%), head alone 93.0% val top-1, head + top block 87.7%.
TINY_IMAGES = 10
SIMILAR, DISTANT = 0.90, 0.70


def choose_unfreeze(per_class: float, probe_top1: float | None, from_scratch: bool,
                    groups: int) -> AutoChoice:
    """The transfer-learning rule of thumb (CS231n; Yosinski et al. 2014), as a function.

    Pretrained features are generic low down and specific high up. With little data from a
    domain like the pretraining one, retraining more than the head overfits; with more data,
    or a domain the features fit poorly (the head-only probe says so), unfreezing the top
    blocks pays, and with a lot of data from a distant domain, everything may train.
    """
    if from_scratch:
        return AutoChoice("all", "no pretrained weights: every block must learn")
    n = f"{per_class:.0f} training images per class"
    if per_class < TINY_IMAGES:
        return AutoChoice("head", f"{n} is very little data: a trained block would overfit it, whatever "
                                  "the domain; the head alone trains on the pretrained features")
    if probe_top1 is None:
        if per_class < FEW_IMAGES:
            return AutoChoice("head", f"{n} is little data: train the head only, keep the "
                                      "pretrained features")
        return AutoChoice("1", f"{n}: enough to adapt the top block as well")
    probe = f"a head-only probe reaches {probe_top1:.1%} val top-1"
    if probe_top1 >= SIMILAR:
        if per_class < MANY_IMAGES:
            return AutoChoice("head", f"{probe}: the pretrained features fit this data; with "
                                      f"{n}, training more would mostly overfit")
        return AutoChoice("1", f"{probe} and {n}: the top block can adapt without overfitting")
    if probe_top1 >= DISTANT:
        return AutoChoice("1" if per_class < MANY_IMAGES else "2",
                          f"{probe}: the domain differs somewhat from the pretraining data, "
                          f"so the top block{'s' if per_class >= MANY_IMAGES else ''} must adapt ({n})")
    if per_class >= MANY_IMAGES:
        return AutoChoice("all", f"{probe}: a distant domain, and {n} is enough to retrain "
                                 "every block")
    return AutoChoice(str(min(2, groups)), f"{probe}: a distant domain; with {n}, the top 2 blocks "
                                           "adapt while the generic lower features stay")
