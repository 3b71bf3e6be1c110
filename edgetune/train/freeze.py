"""Freeze plans are data: ordered parameter-name groups (stem … blocks) and a head, as the
model's source groups them (torchvision: a table per family; timm: its `group_matcher`).

"Unfreeze K" trains the head plus the last K groups; everything else is frozen, kept in
eval mode (BatchNorm statistics untouched) and outside autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from edgetune.errors import ConfigError
from edgetune.train.model import param_groups


@dataclass(frozen=True)
class FreezePlan:
    groups: tuple[tuple[str, ...], ...]  # parameter names per group, stem first
    head: tuple[str, ...]
    trainable_groups: int  # how many of the last groups train besides the head

    @classmethod
    def build(cls, arch: str, model: nn.Module, unfreeze: str) -> FreezePlan:
        grouped = param_groups(arch, model)
        groups = grouped.groups
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
        return cls(groups, grouped.head, k)

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
        train_unfrozen(model)

    def describe(self) -> str:
        n = len(self.groups)
        if self.trainable_groups == n:
            return f"all {n} blocks + head trainable"
        if self.trainable_groups == 0:
            return f"head only trainable ({n} blocks frozen)"
        return f"head + top {self.trainable_groups} of {n} blocks trainable"


def train_unfrozen(model: nn.Module) -> None:
    """model.train(), then eval() for every module whose parameters are all frozen, so frozen
    BatchNorm keeps its running statistics and frozen dropout stays off."""
    model.train()
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()
