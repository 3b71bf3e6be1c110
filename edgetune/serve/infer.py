"""What each served request runs: plain functions of numpy arrays, testable without Triton.

Two models share one loaded bundle. The tensor model takes float32 NCHW batches that Triton
has already checked against the declared shape and dtype, so it cannot fail on a request, and
Triton's dynamic batcher may merge any requests into one call. The image model takes encoded
bytes, which may not decode; PyTriton answers a failed call with one error for every request in
it, so that model is not dynamically batched: one request per call, one error per bad request,
and nothing a good request sent beside it is lost (a request may still carry several images).
"""

from __future__ import annotations

import numpy as np

from edgetune.preprocess import decode_image
from edgetune.runtime import Model, softmax

TENSOR_INPUT, LOGITS = "input", "logits"
IMAGE, LABEL, SCORE = "image", "label", "score"


def classify_tensors(model: Model, batch: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 3, H, W) float32 -> {"logits": (N, classes)}: the engine call alone."""
    return {LOGITS: model.run(np.ascontiguousarray(batch, dtype=np.float32))}


def classify_images(model: Model, rows: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 1) encoded images (bytes) -> top-1 label (bytes), its softmax score, and the logits;
    an InputError, naming the row, when one does not decode."""
    images = []
    for i, row in enumerate(rows):
        data = row[0] if np.ndim(row) else row
        try:
            images.append(model.preprocess.apply(decode_image(bytes(data))))
        except Exception as exc:  # InputError, or bytes() of a value that is not bytes
            from edgetune.errors import InputError

            raise InputError(f"image {i}: {exc}") from None
    logits = model.run(np.stack(images))
    best = logits.argmax(1)
    probs = softmax(logits)
    labels = np.array([[model.classes[j].encode()] for j in best], dtype=object)
    scores = probs[np.arange(len(best)), best].astype(np.float32)[:, None]
    return {LABEL: labels, SCORE: scores, LOGITS: logits}
