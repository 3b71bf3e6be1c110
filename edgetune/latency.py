"""Latency of one Session at one batch size: warm-up, then timed engine calls only.

Torch-free. Inputs are made before the clock starts; the warm-up is excluded.
"""

from __future__ import annotations

import time

import numpy as np

from edgetune import host
from edgetune.runtime.session import Session


def measure_latency(
    session: Session,
    shape: tuple[int, int, int],
    batch: int = 1,
    warmup: int = 10,
    runs: int | None = 50,
    seconds: float | None = None,
    seed: int = 0,
) -> dict:
    """p50/p90/p99/mean in ms and images/s for `session` on random inputs of `shape` (C, H, W)."""
    x = np.random.default_rng(seed).standard_normal((batch, *shape), dtype=np.float32)
    for _ in range(warmup):
        session.run(x)
    times = []
    deadline = time.perf_counter() + seconds if seconds else None
    while True:
        t0 = time.perf_counter()
        session.run(x)
        times.append(time.perf_counter() - t0)
        if deadline is not None:
            if time.perf_counter() >= deadline and len(times) >= 3:
                break
        elif len(times) >= (runs or 50):
            break
    ms = np.asarray(times) * 1e3
    mean = float(ms.mean())
    return {
        "batch": batch,
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p90": round(float(np.percentile(ms, 90)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "mean": round(mean, 3),
        "throughput": round(batch * 1e3 / mean, 1),
        "runs": len(times),
        "device": f"{session.backend}/{session.device} on {host.short()}",
    }
