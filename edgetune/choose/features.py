"""A candidate's frozen, pooled features (the head's input) on the user's images, through the
feature cache: filled once, so `choose` again reuses them (and so does `edgetune run --unfreeze
auto --cache-dtype float32` on the chosen model: the same key as its probe). Also writes the
candidate's fp32 graph."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgetune.choose.candidates import Candidate
from edgetune.config import TrainConfig
from edgetune.data.scan import Splits
from edgetune.errors import ConfigError
from edgetune.host import loader_processes
from edgetune.train.cache import CacheSettings, FeatureCache, Request, feature_shape, memory_budget
from edgetune.train.data import eval_transform
from edgetune.train.model import create_model, preprocess_for
from edgetune.train.prepare import cache_parts
from edgetune.train.segments import segments_of, split


@dataclass
class Extracted:
    features: np.ndarray  # (images, D) float32: train then val
    labels: np.ndarray
    size: int  # the input size the features were taken at


def extract(cand: Candidate, splits: Splits, data: str, cache_dir: Path, graphs: Path | None,
            batch_size: int, log) -> Extracted:
    """Features of every train and val image; with `graphs`, the fp32 graph
    `graphs/<arch>-<size>.onnx` is written when missing. A model whose weights cannot load
    raises ConfigError (the caller skips it and says why)."""
    # float32: a randomly initialised MobileNetV3's pooled features are ~1e-7, below float16's
    # smallest normal number: cached as float16 they were all zero, and LogME had nothing to score.
    cfg = TrainConfig(data=data, model=cand.arch, weights=cand.weights, image_size=cand.size,
                      batch_size=batch_size, cache_dtype="float32")
    pre = preprocess_for(cand.arch, cand.weights, cand.size)
    # Seeded, so a random initialisation is the same network on every run and its cache is reused.
    torch.manual_seed(cfg.seed)
    model = create_model(cand.arch, cand.weights, len(splits.classes))
    model.eval()
    head = segments_of(model, cand.arch)[-1].module
    trained = {id(p) for p in head.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trained)
    s = split(model, cand.arch)  # the prefix ends at the pooled features
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    settings = CacheSettings(cache_dir, memory_budget(None), cfg.cache_dtype, batch_size,
                             loader_processes(), device, cfg.seed)
    cache = FeatureCache(s.prefix.to(device), cache_parts(cfg, pre, s), settings, log=_quiet(log))
    shape = feature_shape(s.prefix, pre.size, device)
    # The roles and transform of the `--unfreeze auto` probe (train/prepare.py): the same key.
    got = [cache.get(Request(role, samples, eval_transform(pre), 1, "none"), shape)
           for role, samples in (("probe-train", splits.train), ("probe-val", splits.val))]
    if any(g is None for g in got):
        raise ConfigError(f"{cand.name}: its features fit neither memory nor the disk under {cache_dir}; "
                          "free disk space or pass fewer --models")
    features = np.concatenate([np.asarray(g.array[0], np.float32).reshape(len(g), -1) for g in got])
    labels = np.concatenate([g.labels for g in got])
    graph = graphs / Candidate(cand.arch, "none", pre.size[0]).graph if graphs is not None else None
    if graph is not None and not graph.is_file():
        from edgetune.export.onnx import export_onnx

        graphs.mkdir(parents=True, exist_ok=True)
        export_onnx(model.cpu(), pre.size, graph)
    return Extracted(features, labels, pre.size[0])


def _quiet(log):
    """The cache's fill and reuse lines, indented under the candidate's: they say where the
    seconds went."""
    return lambda *parts: log("  " + " ".join(str(p) for p in parts))
