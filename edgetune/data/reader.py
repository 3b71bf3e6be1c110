"""Images to preprocessed batches in bounded chunks: the one reader evaluation, candidate
scoring, the HTML report and INT8 calibration stream through. Torch-free.

Why: held in memory, a preprocessed 224-px image is 0.6 MB, so 30,000 val images no longer fit
a 24 GB machine. Streamed, at most `prefetch + 1` chunks exist at once (the one the engine
runs and the ones being prepared), whatever the number of images.

Decoding and preprocessing run in a pool of threads: PIL releases the GIL while it decodes and
resizes, and numpy while it normalises, so threads use every core without a process pool's
start-up and pickling. The next chunk is prepared while the engine runs the current one.
Each image goes through `Preprocess.apply`, the function deployment code runs, so a streamed
result is bit-identical to one computed on images held in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from edgetune.host import decode_threads
from edgetune.preprocess import Preprocess, as_image

CHUNK = 64  # images per chunk: 38 MB at 224 px, enough to keep ORT's batch kernels busy
PREFETCH = 1  # chunks prepared ahead of the one the engine runs


class ChunkReader:
    """`items` (paths, PIL images or HWC uint8 arrays) as (start, NCHW float32 chunk) pairs,
    in order. Re-iterable: each pass decodes again (nothing is kept between passes)."""

    def __init__(self, items: Sequence, pre: Preprocess, chunk: int = CHUNK, prefetch: int = PREFETCH,
                 workers: int | None = None):
        if chunk < 1 or prefetch < 0:
            raise ValueError(f"chunk {chunk} must be ≥ 1 and prefetch {prefetch} ≥ 0")
        self.items, self.pre, self.chunk, self.prefetch = items, pre, chunk, prefetch
        self.workers = workers or decode_threads()
        self.peak_chunks = 0  # the most chunks alive at once (consumed + in preparation): for tests
        self.chunks_read = 0

    def __len__(self) -> int:
        return len(self.items)

    def chunk_bytes(self) -> int:
        return self.chunk * 3 * self.pre.size[0] * self.pre.size[1] * 4

    def peak_bytes(self) -> int:
        """The most memory the reader's own chunks take at once."""
        return (self.prefetch + 1) * self.chunk_bytes()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        starts = iter(range(0, len(self.items), self.chunk))
        with ThreadPoolExecutor(self.workers, thread_name_prefix="edgetune-read") as pool:
            pending: deque[tuple[int, np.ndarray, list[Future]]] = deque()
            for _ in range(max(1, self.prefetch)):
                self._submit(pool, pending, next(starts, None))
            while pending:
                start, buf, futures = pending.popleft()
                for f in futures:
                    f.result()  # an unreadable image raises here, naming the file
                # Queued before the yield: the pool prepares it while the engine runs this one.
                if self.prefetch:
                    self._submit(pool, pending, next(starts, None))
                self.peak_chunks = max(self.peak_chunks, len(pending) + 1)
                self.chunks_read += 1
                yield start, buf
                del buf  # ours is gone; the consumer's reference, if it kept one, is its own
                if not self.prefetch:
                    self._submit(pool, pending, next(starts, None))

    def _submit(self, pool, pending: deque, start: int | None) -> None:
        if start is None:
            return
        n = min(self.chunk, len(self.items) - start)
        buf = np.empty((n, 3, *self.pre.size), np.float32)
        # One task per slice of the chunk, not per image: a few hundred microseconds of work
        # per image would otherwise pay a future each.
        step = max(1, -(-n // self.workers))
        futures = [pool.submit(self._fill, buf, start, lo, min(n, lo + step)) for lo in range(0, n, step)]
        pending.append((start, buf, futures))

    def _fill(self, buf: np.ndarray, start: int, lo: int, hi: int) -> None:
        for i in range(lo, hi):
            buf[i] = self.pre.apply(as_image(self.items[start + i]))


def read_all(items: Sequence, pre: Preprocess, **kwargs) -> np.ndarray:
    """Every item preprocessed into one array: only for sets known to be small (a parity
    batch, a sensitivity batch); large sets stream through `ChunkReader`."""
    out = np.empty((len(items), 3, *pre.size), np.float32)
    for start, x in ChunkReader(items, pre, **kwargs):
        out[start:start + len(x)] = x
    return out
