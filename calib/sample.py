"""The calibration images as ONNX Runtime reads them, and the key of the ranges they give.
Which images calibrate is `edgetune.data.subsets.stratified_sample`: every class's
activations shape the ranges, not just the most frequent class's."""

from __future__ import annotations

import hashlib
import sys

from onnxruntime.quantization import CalibrationDataReader

from edgetune import progress
from edgetune.data.reader import ChunkReader
from edgetune.data.scan import Sample
from edgetune.preprocess import Preprocess


def fingerprint(samples: list[Sample], pre: Preprocess) -> str:
    """A hash of the sample's bytes and preprocessing: the calibration cache key."""
    h = hashlib.sha256(repr(pre.to_dict()).encode())
    for s in samples:
        h.update(s.path.read_bytes())
    return h.hexdigest()


def calibration_batch(method: str, images: int, limit: int = 32) -> int:
    """Images in one calibration batch: `limit` for min/max; for the histogram methods (entropy,
    percentile), the largest size up to `limit` that divides `images`. ONNX Runtime (1.32)
    stacks every batch's outputs of a tensor with `np.asarray` before its histogram, so a
    shorter last batch stopped `--calib-method percentile` with a traceback (EfficientNet-Lite0 on
    137 photographs: four batches of 32 and one of 9)."""
    if method == "minmax" or images < 1:
        return limit
    return max(b for b in range(1, min(limit, images) + 1) if images % b == 0)


class ImageReader(CalibrationDataReader):
    """ONNX Runtime's calibration protocol over images streamed in batches (edgetune.data.reader):
    decoded while ONNX Runtime runs the previous batch, never all held at once."""

    def __init__(self, samples: list[Sample], pre: Preprocess, input_name: str, batch: int = 32):
        self.images = ChunkReader([s.path for s in samples], pre, chunk=batch)
        self.input_name, self.batch = input_name, batch
        # ONNX Runtime reads us while our quantizer silences its stdout: the line goes here.
        self.log_file = sys.stdout
        self.rewind()

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        # ONNX Runtime reads to the end: the bar closes with the last batch.
        self._it = iter(progress.track(
            ({self.input_name: x} for _, x in self.images),
            "calibrate", total=-(-len(self.images) // self.batch), unit="batches", file=self.log_file))

    def __len__(self) -> int:
        return len(self.images)
