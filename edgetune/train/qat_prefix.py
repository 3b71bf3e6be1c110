"""QAT's frozen prefix, run once per cached view instead of every step.

Where training left only the top of the network trainable (a head, or the top blocks), the
fake-quantized graph below it is fixed during QAT: its weights are frozen (their per-channel
ranges with them), its BatchNorm folded, its activation ranges frozen after calibration, and
it runs in eval mode as training ran its frozen part. Its output for an image view never
changes, yet QAT ran it at every step, fake-quantizing every activation of the backbone: on
pretrained EfficientNet-Lite0 at 224 px, head only, 72 % of a QAT epoch's CPU went to the
activations' fake-quantization and 21 % to the convolutions (torch.profiler). So the graph is
split at the first node of a trained module (torch.fx's `split_module`), and the prefix's
output goes through the feature cache (`edgetune.train.cache`): memory, or memory-mapped from
the training's cache folder, reused by the next export of the same checkpoint. How many
augmented views it holds follows training's own rule (`prepare.plan_cache`) for the QAT
stage's epochs. The suffix shares its modules with the whole graph, so what it trains is what
exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgetune.config import TrainConfig
from edgetune.preprocess import Preprocess
from edgetune.train.cache import CacheSettings, FeatureCache, Features, Request, feature_shape, memory_budget


@dataclass(frozen=True)
class PrefixFeatures:
    """The frozen prefix's outputs for QAT's training images, and the graph that trains on them."""
    suffix: torch.fx.GraphModule  # its modules are the whole graph's: training it trains the export
    features: Features  # (views, images, *shape)
    why: str

    def batch(self, index: np.ndarray, epoch: int) -> torch.Tensor:
        """Rows `index` of the view that serves `epoch`."""
        return self.features.gather(index, epoch % self.features.views)


def split_at_trained(qat: torch.fx.GraphModule, modules: set[str]):
    """(prefix, suffix): the graph before the first call of a trained module, and the rest,
    where exactly one value crosses between them; None otherwise (a frozen skip connection
    around the trained part, or nothing frozen below it)."""
    from torch.fx.passes.split_module import split_module

    nodes = [n for n in qat.graph.nodes if n.op not in ("placeholder", "output")]
    trained = [i for i, n in enumerate(nodes) if n.op == "call_module" and _within(str(n.target), modules)]
    if not trained or trained[0] == 0:
        return None
    first = trained[0]
    position = {n: i for i, n in enumerate(nodes)}
    parts = split_module(qat, qat, lambda n: 0 if position[n] < first else 1)
    prefix, suffix = getattr(parts, "submod_0", None), getattr(parts, "submod_1", None)
    if prefix is None or suffix is None:
        return None
    crossing = [n for n in suffix.graph.nodes if n.op == "placeholder"]
    outputs = next(n for n in prefix.graph.nodes if n.op == "output").args[0]
    if len(crossing) != 1 or isinstance(outputs, (tuple, list)):
        return None
    return prefix, suffix


def _within(target: str, modules: set[str]) -> bool:
    return any(target == m or target.startswith(m + ".") for m in modules)


def prefix_features(qat: torch.fx.GraphModule, modules: set[str], head_only: bool, recipe: str,
                    train: list, pre: Preprocess, tcfg: TrainConfig, epochs: int, workers: int,
                    cache_dir: Path | None, log, tag: str = "") -> PrefixFeatures | None:
    """The frozen prefix's outputs for `train`, as many views as training's rule gives the
    QAT stage's `epochs`; None where nothing is frozen, the split is not one value, the cache
    is off, or the features fit neither memory nor disk (QAT then runs the whole graph).
    `tag` names a torchrun process's share in the cache, as training's does."""
    from edgetune.train.data import train_transform
    from edgetune.train.prepare import plan_cache

    parts = split_at_trained(qat, modules)
    if parts is None:
        log("qat: the whole graph runs every step (nothing frozen below the trained layers, or more than "
            "one value crosses to them)")
        return None
    prefix, suffix = parts
    classes = max(len({s.label for s in train}), 1)
    plan = plan_cache(tcfg, 1, head_only, epochs, len(train) / classes)
    if not plan.views:
        log(f"qat: the whole graph runs every step ({plan.why})")
        return None
    seed = tcfg.resolved_cache_seed
    # float32: the prefix ends in a fake-quantized activation, values on its int8 grid that
    # float16 would round off it.
    settings = CacheSettings(cache_dir, memory_budget(tcfg.cache_memory), "float32", tcfg.batch_size, workers,
                             torch.device("cpu"), seed, tcfg.skip_bad_images)
    parts = {"qat": recipe, "arch": tcfg.model, "preprocess": pre.to_dict(), "seed": seed, "dtype": "float32",
             "split": "the QAT prefix"}
    cache = FeatureCache(prefix, parts, settings, log=lambda *a: log("  qat " + " ".join(map(str, a))))
    shape = feature_shape(prefix, pre.size, torch.device("cpu"))
    features = cache.get(Request(f"qat-train{tag}", train, train_transform(pre, tcfg.augment), plan.views,
                                 tcfg.augment), shape)
    if features is None:
        return None
    return PrefixFeatures(suffix, features, f"the frozen prefix cached, {plan.views} view(s): {plan.why}")
