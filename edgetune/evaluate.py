"""Accuracy of any Session on labelled images. Torch-free: it judges the artifact itself,
through the same preprocessing deployment code runs.

Images stream through `edgetune.data.reader` in bounded chunks on every pass, so memory does not
grow with the val split (held in memory it was 0.6 MB an image at 224 px). Results are the
same, image for image, as on an array held in memory: the same `Preprocess.apply`, the
same batches.
"""

from __future__ import annotations

import numpy as np

from edgetune import progress
from edgetune.data.reader import CHUNK, ChunkReader, read_all
from edgetune.data.scan import Sample
from edgetune.preprocess import Preprocess
from edgetune.runtime.session import Session

# Below this many val images every one is judged; above it, by default, a stratified subset of
# this size. Why it is enough: the standard error of a top-1 of 10,000 images is at most 0.5
# points, and artifacts are compared on the *same* images, so the error of a difference is
# sqrt(disagreement / n): 0.14 points when INT8 and fp32 disagree on 2% of images, well inside
# a 1-point budget. `--eval-max 0` judges every image whatever the size.
AUTO_EVAL_MAX = 10_000
EVAL_SEED = 0


class EvalSet:
    """Labelled images, read in chunks each time an artifact is judged on them."""

    def __init__(self, samples: list[Sample], pre: Preprocess, chunk: int = CHUNK):
        self.samples = list(samples)
        self.paths = [s.path for s in self.samples]  # for the report's thumbnails
        self.y = np.asarray([s.label for s in self.samples])
        self.pre, self.chunk = pre, chunk

    def __len__(self) -> int:
        return len(self.y)

    def reader(self, chunk: int | None = None) -> ChunkReader:
        return ChunkReader(self.paths, self.pre, chunk=chunk or self.chunk)

    def head(self, n: int) -> np.ndarray:
        """The first `n` images preprocessed (a parity batch)."""
        return read_all(self.paths[:n], self.pre)

    @property
    def x(self) -> np.ndarray:
        """Every image preprocessed and held: only for small sets (tests, a few hundred images)."""
        return read_all(self.paths, self.pre)


def logits_of(session: Session, data, batch: int = 64, desc: str = "evaluate") -> np.ndarray:
    """Logits for every image of `data`: an EvalSet (streamed) or an NCHW array."""
    if isinstance(data, np.ndarray):
        starts = progress.track(range(0, len(data), batch), desc, unit="batches")
        return np.concatenate([session.run(data[i:i + batch]) for i in starts])
    reader = data.reader(batch)
    chunks = progress.track(reader, desc, total=-(-len(reader) // batch), unit="batches")
    return np.concatenate([session.run(x) for _, x in chunks])


def graph_logits(path, batch: np.ndarray) -> np.ndarray:
    """A graph's logits on `batch` in ONNX Runtime's CPU session: how the INT8 candidates'
    layer ranking and bias correction compare a graph with fp32."""
    from edgetune.runtime.ort_backend import OrtSession

    return OrtSession(path, device="cpu").run(batch)


def top1(session: Session, data, batch: int = 64, desc: str = "evaluate") -> float:
    return round(float((logits_of(session, data, batch, desc).argmax(1) == data.y).mean()), 4)


def eval_subset(samples: list[Sample], eval_max: int | None) -> tuple[list[Sample], dict]:
    """The images artifacts are judged on, and the manifest's record of the choice.
    `eval_max`: None (auto: all up to AUTO_EVAL_MAX, else a subset of that size), 0 (all),
    or N (a seeded subset of at most N, drawn evenly over the classes)."""
    from edgetune.data.subsets import stratified_sample

    limit = AUTO_EVAL_MAX if eval_max is None else eval_max
    setting = f"auto ({AUTO_EVAL_MAX})" if eval_max is None else ("all" if eval_max == 0 else eval_max)
    record = {"of": len(samples), "eval_max": setting}
    if limit == 0 or len(samples) <= limit:
        return list(samples), {**record, "subset": "all"}
    picked = stratified_sample(samples, limit, seed=EVAL_SEED)
    return picked, {**record, "subset": f"stratified, seed {EVAL_SEED}"}


def describe_subset(record: dict, split: str = "val") -> str:
    """One log line saying which images the artifacts are judged on."""
    n, of = record.get("images", record["of"]), record["of"]
    if record["subset"] == "all":
        return f"evaluate: all {of} {split} images"
    return (f"evaluate: {n} of {of} {split} images, a {record['subset']} subset (--eval-max "
            f"{record['eval_max']}; --eval-max 0 judges every image)")
