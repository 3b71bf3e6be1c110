"""Accuracy of any Session on labelled images. Torch-free: it judges the artifact itself,
through the same preprocessing deployment code runs."""

from __future__ import annotations

import numpy as np

from edgetune.dataset_scan import Sample
from edgetune.preprocess import Preprocess
from edgetune.runtime.session import Session


class EvalSet:
    """Labelled images preprocessed once, reused for every artifact."""

    def __init__(self, samples: list[Sample], pre: Preprocess):
        self.x = pre.batch([s.path for s in samples])
        self.y = np.asarray([s.label for s in samples])

    def __len__(self) -> int:
        return len(self.y)


def logits_of(session: Session, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([session.run(x[i:i + batch]) for i in range(0, len(x), batch)])


def top1(session: Session, data: EvalSet, batch: int = 64) -> float:
    return round(float((logits_of(session, data.x, batch).argmax(1) == data.y).mean()), 4)
