"""timm's models read from their own structure, not from a table per model: the freeze
groups are timm's `group_matcher` (stem, each block), the head is what `forward_head` runs,
and the segments are the modules `forward_features` calls one after another, found by
running it once with hooks on a small input, then `forward_head` as the last segment (two,
the pool and the classifier, where it is a parameter-free pool before a linear layer).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn

from edgetune.train.source import ParamGroups, Segment

PROBE = 64  # px: the size forward_features is traced at (a model with a fixed input size uses its own)


@dataclass(frozen=True)
class _Structure:
    groups: ParamGroups
    head: frozenset[str]  # the model's children forward_head runs
    chain: list[str] | None  # qualified names forward_features runs in a chain; None: it does more


# The structure is a function of the model's modules, which training never changes; the
# freeze plan and the segments ask for it several times per stage, and each answer costs a
# forward pass.
_KNOWN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def timm_groups(model: nn.Module) -> ParamGroups:
    """timm's coarse groups (stem, each block, …), stem first. The head is what forward_head
    runs (the classifier, and in some families a conv after the pooling that the matcher
    files with the last block): so the head group and the head segment are the same modules."""
    return _structure(model).groups


def timm_segments(model: nn.Module) -> list[Segment]:
    """The modules forward_features runs in a chain (a block container that spans several
    freeze groups is opened into its blocks), then forward_head. When forward_features does
    more than chain them (a ViT adds its position embedding between two modules), they stay
    one segment: training still works, the cache then serves head-only training alone."""
    found = _structure(model)
    head = {n: m for n, m in model.named_children() if n in found.head}
    head_part = _pool_then_classifier(model, head) or [Segment("head.", _Part(model, "forward_head", head,
                                                                              owns_mode=True))]
    if found.chain is None:
        trunk = {n: m for n, m in model.named_children() if n not in head}
        return [Segment("features.", _Part(model, "forward_features", trunk, owns_mode=False, own_params=True)),
                *head_part]
    named = dict(model.named_modules())
    return [*(Segment(f"{n}." if any(True for _ in named[n].parameters()) else "", named[n])
              for n in found.chain), *head_part]


def _pool_then_classifier(model: nn.Module, head: dict[str, nn.Module]) -> list[Segment] | None:
    """Where forward_head is a parameter-free pool, the model's dropout and a linear classifier
    (EfficientNet, EfficientNet-Lite, ResNet), two segments: the pool joins the frozen prefix, so
    a head-only cache holds the pooled 1280 numbers an image rather than Lite0's 1280 x 7 x 7 map
    at 224 px (49x the bytes: 12.5 GB a view at 100k images). None for other heads (a conv
    after the pool, a norm, timm's ClassifierHead): forward_head stays one segment."""
    classifier = model.get_classifier()
    pool = head.get("global_pool")
    names = {n for n, m in head.items() if m is classifier}
    if (pool is None or len(names) != 1 or set(head) != {"global_pool", *names} or any(True for _ in pool.parameters())
            or not isinstance(classifier, nn.Linear) or not isinstance(getattr(model, "drop_rate", None), float)):
        return None
    return [Segment("", _Pooled(pool)), Segment(f"{names.pop()}.", _DropoutLinear(model, classifier))]


class _Pooled(nn.Module):
    """timm's global pool, flattened to (N, C), as forward_head runs it first."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(x), 1)


class _DropoutLinear(nn.Module):
    """The rest of forward_head: the model's dropout (--dropout, or the family's own rate) while
    training, then the classifier."""

    def __init__(self, model: nn.Module, classifier: nn.Linear):
        super().__init__()
        self.classifier = classifier
        self._model = [model]  # not registered: the rate is read when it runs, as forward_head does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rate = float(self._model[0].drop_rate)
        return self.classifier(nn.functional.dropout(x, p=rate, training=self.training) if rate else x)


def _structure(model: nn.Module) -> _Structure:
    found = _KNOWN.get(model)
    if found is None:
        from timm.models import group_parameters

        trace = _trace(model)
        called = {n.split(".")[0] for n in trace.called()}
        head = frozenset(n for n, _ in model.named_children() if n not in called)
        head_params = tuple(n for n, _ in model.named_parameters() if n.split(".")[0] in head)
        grouped = group_parameters(model, model.group_matcher(coarse=True))
        groups = (tuple(n for n in names if n not in head_params) for _, names in sorted(grouped.items()))
        params = ParamGroups(tuple(g for g in groups if g), head_params)
        owner = {n: g for g, names in enumerate(params.groups) for n in names}
        found = _KNOWN[model] = _Structure(params, head, trace.chain(_open(model, "", owner)))
    return found


class _Part(nn.Module):
    """Runs one of the model's own methods (forward_features or forward_head) over the
    modules it registers: parameters, devices and train/eval reach exactly those."""

    def __init__(self, model: nn.Module, method: str, modules: dict[str, nn.Module], owns_mode: bool,
                 own_params: bool = False):
        super().__init__()
        self.parts = nn.ModuleDict({k.replace(".", "_"): m for k, m in modules.items()})
        if own_params:  # a ViT's position embedding and class token belong to the model itself
            for name, p in model.named_parameters(recurse=False):
                self.register_parameter(name, p)
        self._method = method
        self._model = [model]  # a list: not registered, so the whole model is not this part's child
        self._owns_mode = owns_mode

    def train(self, mode: bool = True):
        super().train(mode)
        if self._owns_mode:
            # forward_head reads the model's own flag (its functional dropout): the head sets it.
            self._model[0].training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self._model[0], self._method)(x)


def _open(module: nn.Module, prefix: str, owner: dict) -> set[str]:
    """Qualified names of the children, a Sequential opened while its parameters span groups."""
    out = set()
    for name, child in module.named_children():
        qual = f"{prefix}{name}"
        groups = {owner.get(f"{qual}.{n}") for n, _ in child.named_parameters()}
        if isinstance(child, nn.Sequential) and len(groups) > 1:
            out |= _open(child, f"{qual}.", owner)
        else:
            out.add(qual)
    return out


@dataclass
class _Trace:
    """One run of forward_features: every module call in order, with its input and output."""
    x: torch.Tensor
    calls: list[tuple[str, object, object]]
    features: object

    def called(self) -> set[str]:
        return {n for n, _, _ in self.calls}

    def chain(self, candidates: set[str]) -> list[str] | None:
        """The candidates in call order when each ran once, on the previous one's output, from
        the input to the features (then they compose to forward_features); else None."""
        calls = [c for c in self.calls if c[0] in candidates]
        names = [n for n, _, _ in calls]
        if not calls or len(set(names)) != len(names):
            return None
        previous = self.x
        for _, inp, out in calls:
            if inp is not previous:
                return None
            previous = out
        return names if previous is self.features else None


@torch.no_grad()
def _trace(model: nn.Module) -> _Trace:
    calls: list[tuple[str, object, object]] = []

    def record(name):
        return lambda _mod, args, out: calls.append((name, args[0] if args else None, out))

    hooks = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n]
    modes = {m: m.training for m in model.modules()}
    cfg = getattr(model, "pretrained_cfg", None) or {}
    low = max(PROBE, *(cfg.get("min_input_size") or (0, 0, 0))[1:])
    size = tuple(cfg["input_size"][1:]) if cfg.get("fixed_input_size") else (low, low)
    param = next(model.parameters())
    x = torch.zeros(1, 3, *size, device=param.device, dtype=param.dtype)
    try:
        model.eval()  # no BatchNorm statistics move, and a batch of one is fine
        features = model.forward_features(x)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return _Trace(x, calls, features)
