"""A candidate's frozen, pooled features (the head's input) on the user's images, and its fp32
graph.

Where the graph is timed here, it is exported once with the pooled features as a second
output, and the images run through it in ONNX Runtime: the export is needed for the timing
anyway, and ONNX Runtime runs these backbones several times faster than PyTorch's eager CPU
kernels (EfficientNet-Lite0 at 224 px, 32 images: 0.5-0.7 s against 4-6 s on this 2-core
EPYC), so the features cost little beyond the export. A network is exported once, by the
TorchScript exporter (`export.onnx.export_traced`: about a second where torch.export takes
4-10), and checked against PyTorch; its other sizes take that graph with the input resized,
checked at each size (`ensure_feature_graph`). The graph the device times,
`graphs/<arch>-<size>.onnx`, is that graph without the features output: the shipped model's
nodes (its pool a GlobalAveragePool where the bundle's is a ReduceMean).

Where a device's `bench --json` file times the model and size, nothing is exported: the
features come from PyTorch through the feature cache (filled once, so `choose` again reuses
them, and so does `edgetune run --unfreeze auto --cache-dtype float32` on the chosen model:
the same key as its probe).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetune.choose.candidates import Candidate
from edgetune.config import TrainConfig
from edgetune.data.scan import Splits
from edgetune.errors import ConfigError
from edgetune.host import loader_processes
from edgetune.train.cache import CacheSettings, FeatureCache, Request, feature_shape, memory_budget
from edgetune.train.data import eval_transform, image_loader
from edgetune.train.model import create_model, preprocess_for
from edgetune.train.prepare import PROBE_ROLES, cache_parts, probe_samples
from edgetune.train.segments import segments_of, split

FEATURES = "features"  # the second output of the graphs features are taken from
FEATURE_GRAPHS = "graphs"  # under the cache folder: one graph per candidate (its weights) and size


@dataclass
class Extracted:
    features: np.ndarray  # (images, D) float32: train then val
    labels: np.ndarray
    size: int  # the input size the features were taken at


def extract(cand: Candidate, splits: Splits, data: str, cache_dir: Path, graphs: Path | None,
            batch_size: int, log, last: dict | None = None) -> Extracted:
    """Features of the train and val images (up to 200 a class of each). With `graphs`, through the candidate's graph in
    ONNX Runtime, `graphs/<arch>-<size>.onnx` written when missing; without, through PyTorch
    and the feature cache. A model whose weights cannot load raises ConfigError (the caller
    skips it and says why). `last`, where the caller keeps one, holds the network this call
    made, for the next call with the same model and weights (its other sizes) to reuse."""
    # The images the `--unfreeze auto` probe runs (at most 200 a class of each split): the same
    # cache key as its features, and a bounded cost on a large data set.
    train, val = probe_samples(splits, seed=0)
    splits = dataclasses.replace(splits, train=train, val=val)
    pre = preprocess_for(cand.arch, cand.weights, cand.size)
    model = _network(cand, len(splits.classes), log, {} if last is None else last)
    size = pre.size[0]
    if graphs is None:
        features, labels = _through_cache(model, cand, pre, splits, data, cache_dir, batch_size, log)
        return Extracted(features, labels, size)
    shipped = graphs / Candidate(cand.arch, "none", size).graph
    own, how = ensure_feature_graph(model, Candidate(cand.arch, cand.weights, size), pre.size, cache_dir)
    if how:
        log(f"choose: {cand.name} {size} px: {how}")
    if not shipped.is_file():
        _without_features(own, shipped)
    features, labels = _through_graph(own, pre, splits, batch_size)
    return Extracted(features, labels, size)


def _network(cand: Candidate, classes: int, log, last: dict) -> nn.Module:
    """The candidate's network in eval mode: the one in `last` where it is the same model and
    weights (a network's sizes follow one another: its weights loaded once), else made, and kept
    there alone. Seeded, so a random initialisation is the same network on every run and its
    cache is reused."""
    key = (cand.arch, cand.weights)
    if key not in last:
        last.clear()
        torch.manual_seed(0)
        last[key] = create_model(cand.arch, cand.weights, classes, log=log).eval()
    return last[key]


def feature_graph(cand: Candidate, cache_dir: Path) -> Path:
    """Where a candidate's graph with the features output is kept: one per model, weights and
    size (`cand.size` resolved), reused by the next `choose`."""
    return cache_dir / FEATURE_GRAPHS / f"{Path(cand.graph).stem}-{_weights_key(cand)}.onnx"


def ensure_feature_graph(model: nn.Module, cand: Candidate, size: tuple[int, int],
                         cache_dir: Path) -> tuple[Path, str]:
    """The candidate's feature graph at `size` (`cand.size` resolved), and how it came when it
    was not there: from the same network's graph at another size, its input's height and width
    changed, where that graph agrees with PyTorch at this size; else exported. A convolutional
    network ending in a global pool holds no spatial size in its graph, so one export serves
    every size; a graph that does hold one (a Reshape of the map, "same" padding computed at
    export) fails the parity check or ONNX Runtime's shape checks, and is exported again."""
    own = feature_graph(cand, cache_dir)
    if own.is_file():
        return own, ""
    how = ""
    for other in _other_sizes(cand, cache_dir):
        why = _resized(other, model, cand.arch, size, own)
        if why is None:
            return own, (f"the {_size_of(other)} px graph, its input set to {size[0]}x{size[1]} "
                         "(parity with PyTorch checked)")
        how = f"exported: the {_size_of(other)} px graph does not serve this size ({why[:160]})"
    exported = _export_feature_graph(model, cand.arch, size, own)
    return own, "; ".join(filter(None, (how, exported)))


def _other_sizes(cand: Candidate, cache_dir: Path) -> list[Path]:
    """The same network's feature graphs at other sizes (same arch and weights key)."""
    stem, key = Path(cand.graph).stem.rsplit("-", 1)[0], _weights_key(cand)
    pattern = re.compile(rf"{re.escape(stem)}-(\d+)-{re.escape(key)}\.onnx")
    folder = cache_dir / FEATURE_GRAPHS
    return sorted(p for p in folder.glob("*.onnx") if pattern.fullmatch(p.name)) if folder.is_dir() else []


def _size_of(graph: Path) -> int:
    return int(graph.stem.rsplit("-", 2)[1])


def _resized(source: Path, model: nn.Module, arch: str, size: tuple[int, int], path: Path) -> str | None:
    """`source` with its input's height and width set to `size`, written to `path` where it
    agrees with `model` at that size (logits on two seeded random images, the export's own
    tolerance); otherwise nothing is written and the reason comes back."""
    import onnx

    from edgetune.atomic import atomic_path
    from edgetune.export.onnx import disagreement

    graph = onnx.load(str(source))
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = size
    # The intermediate shapes were inferred at the export's size: inferred again at this one.
    del graph.graph.value_info[:]
    for output in graph.graph.output:
        output.type.tensor_type.ClearField("shape")
    graph = onnx.shape_inference.infer_shapes(graph)
    why = disagreement(graph.SerializeToString(), WithFeatures(model, arch), size, f"{source.name} at {size[0]} px")
    if why is None:
        with atomic_path(path) as tmp:
            onnx.save(graph, str(tmp))
    return why


def _session(graph: Path | bytes):
    import onnxruntime as ort

    from edgetune.runtime.ort_backend import providers_for

    return ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), providers=providers_for("cpu"))


def _export_feature_graph(model: nn.Module, arch: str, size: tuple[int, int], path: Path) -> str:
    """The graph with the features output at `size` (`export_for_timing`: traced and checked
    against PyTorch, about a second; else torch.export's). Returns how, where not traced."""
    from edgetune.export.onnx import OUTPUT, export_for_timing

    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        return export_for_timing(WithFeatures(model, arch), size, path, outputs=(OUTPUT, FEATURES))


class WithFeatures(nn.Module):
    """`model(x)` and its pooled features, the head's input: (logits, features)."""

    def __init__(self, model: nn.Module, arch: str):
        super().__init__()
        segments = segments_of(model, arch)
        self.trunk = nn.Sequential(*(s.module for s in segments[:-1]))
        self.model = model
        # timm's last segment is forward_head (pool, then classifier): the classifier alone here.
        self.head = model.get_classifier() if hasattr(model, "forward_head") else segments[-1].module

    def forward(self, x):
        pooled = pooled_features(self.model, self.trunk(x))
        return self.head(pooled), pooled


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The head's input from the trunk's output: a timm model's `forward_head(pre_logits=True)`
    (its pool: EfficientNet-Lite's trunk ends in a 1280 x 7 x 7 map at 224 px); torchvision's
    trunk output is pooled already."""
    if x.dim() > 2 and hasattr(model, "forward_head"):
        return model.forward_head(x, pre_logits=True)
    return torch.flatten(x, 1)


def _through_graph(graph: Path, pre, splits: Splits, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    session = _session(graph)
    feats, labels = [], []
    for x, y in image_loader([*splits.train, *splits.val], pre, batch=batch_size):
        feats.append(session.run([FEATURES], {session.get_inputs()[0].name: x.numpy()})[0])
        labels.append(y.numpy())
    return np.concatenate(feats).astype(np.float32), np.concatenate(labels)


def _without_features(graph: Path, out: Path) -> None:
    """The graph as it ships: the features output dropped, every node still feeds the logits."""
    import onnx

    from edgetune.atomic import atomic_path

    model = onnx.load(str(graph))
    keep = [o for o in model.graph.output if o.name != FEATURES]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))


def _weights_key(cand: Candidate) -> str:
    """The weights a graph holds: the name, and a file's size and modification time."""
    w = Path(cand.weights)
    stamp = f"{cand.weights}:{w.stat().st_size}:{w.stat().st_mtime_ns}" if w.is_file() else cand.weights
    return hashlib.sha256(stamp.encode()).hexdigest()[:10]


def _through_cache(model, cand: Candidate, pre, splits: Splits, data: str, cache_dir: Path, batch_size: int,
                   log) -> tuple[np.ndarray, np.ndarray]:
    # float32: a randomly initialised MobileNetV3's pooled features are ~1e-7, below float16's
    # smallest normal number: cached as float16 they were all zero, and LogME had nothing to score.
    cfg = TrainConfig(data=data, model=cand.arch, weights=cand.weights, image_size=cand.size,
                      batch_size=batch_size, cache_dtype="float32")
    head = segments_of(model, cand.arch)[-1].module
    trained = {id(p) for p in head.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trained)
    s = split(model, cand.arch)  # the prefix ends at the head's segment
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    settings = CacheSettings(cache_dir, memory_budget(None), cfg.cache_dtype, batch_size,
                             loader_processes(), device, cfg.seed)
    cache = FeatureCache(s.prefix.to(device), cache_parts(cfg, pre, s), settings, log=_quiet(log))
    shape = feature_shape(s.prefix, pre.size, device)
    # The roles and transform of the `--unfreeze auto` probe (train/prepare.py): the same key.
    got = [cache.get(Request(role, samples, eval_transform(pre), 1, "none"), shape)
           for role, samples in ((PROBE_ROLES["train"], splits.train), (PROBE_ROLES["val"], splits.val))]
    if any(g is None for g in got):
        raise ConfigError(f"{cand.name}: its features fit neither memory nor the disk under {cache_dir}; "
                          "free disk space or pass fewer --models")
    model.cpu()
    with torch.no_grad():
        features = [pooled_features(model, torch.from_numpy(np.asarray(g.array[0], np.float32))).numpy()
                    for g in got]
    return np.concatenate(features), np.concatenate([g.labels for g in got])


def _quiet(log):
    """The cache's fill and reuse lines, indented under the candidate's: they say where the
    seconds went."""
    return lambda *parts: log("  " + " ".join(str(p) for p in parts))
