"""Freeze plans are data: per family, ordered parameter-name groups (stem … blocks) and a head.

"Unfreeze K" trains the head plus the last K groups; everything else is frozen, kept in
eval mode (BatchNorm statistics untouched) and outside autograd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgetune.errors import ConfigError


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


@dataclass(frozen=True)
class FreezePlan:
    family: Family
    groups: tuple[tuple[str, ...], ...]  # parameter names per group, stem first
    head: tuple[str, ...]
    trainable_groups: int  # how many of the last groups train besides the head

    @classmethod
    def build(cls, arch: str, param_names: list[str], unfreeze: str) -> FreezePlan:
        fam = family_of(arch)
        keyed: dict[tuple, list[str]] = {}
        head = []
        for name in param_names:
            if re.match(fam.head, name):
                head.append(name)
                continue
            key = _group_key(fam, name)
            if key is None:
                raise RuntimeError(f"freeze plan for {fam.name}: parameter {name} matches no group")
            keyed.setdefault(key, []).append(name)
        groups = tuple(tuple(keyed[k]) for k in sorted(keyed))
        if unfreeze == "all":
            k = len(groups)
        elif unfreeze == "head":
            k = 0
        else:
            k = int(unfreeze)
            if k > len(groups):
                raise ConfigError(
                    f"--unfreeze {k}: {arch} has {len(groups)} blocks; use 0..{len(groups)}, 'head' or 'all'"
                )
        return cls(fam, groups, tuple(head), k)

    @property
    def trainable(self) -> set[str]:
        names = set(self.head)
        for g in self.groups[len(self.groups) - self.trainable_groups:]:
            names.update(g)
        return names

    def backbone_trainable(self) -> set[str]:
        return self.trainable - set(self.head)

    def apply(self, model) -> None:
        """Set requires_grad per parameter."""
        trainable = self.trainable
        for name, p in model.named_parameters():
            p.requires_grad_(name in trainable)

    def set_train_mode(self, model) -> None:
        """model.train(), then eval() for every module whose parameters are all frozen, so
        frozen BatchNorm keeps its running statistics and frozen dropout stays off."""
        model.train()
        for module in model.modules():
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()

    def describe(self) -> str:
        n = len(self.groups)
        if self.trainable_groups == n:
            return f"all {n} blocks + head trainable"
        if self.trainable_groups == 0:
            return f"head only trainable ({n} blocks frozen)"
        return f"head + top {self.trainable_groups} of {n} blocks trainable"


def _group_key(fam: Family, name: str) -> tuple | None:
    for i, pattern in enumerate(fam.groups):
        m = re.match(pattern, name)
        if m:
            return (i, int(m.group(1)) if m.groups() else 0)
    return None
