"""Accuracy of any Session on labelled images. Torch-free: it judges the artifact itself,
through the same preprocessing deployment code runs."""

from __future__ import annotations

import numpy as np

from edgetune import progress
from edgetune.dataset_scan import Sample
from edgetune.preprocess import Preprocess
from edgetune.runtime.session import Session


class EvalSet:
    """Labelled images preprocessed once, reused for every artifact."""

    def __init__(self, samples: list[Sample], pre: Preprocess):
        self.paths = [s.path for s in samples]  # for the report's thumbnails
        self.x = pre.batch(self.paths)
        self.y = np.asarray([s.label for s in samples])

    def __len__(self) -> int:
        return len(self.y)


def logits_of(session: Session, x: np.ndarray, batch: int = 64, desc: str = "evaluate") -> np.ndarray:
    starts = progress.track(range(0, len(x), batch), desc, unit="batches")
    return np.concatenate([session.run(x[i:i + batch]) for i in starts])


def top1(session: Session, data: EvalSet, batch: int = 64, desc: str = "evaluate") -> float:
    return round(float((logits_of(session, data.x, batch, desc).argmax(1) == data.y).mean()), 4)
