"""Latency per model and input size: from a device's `bench --json` files (`--latency-from`),
or measured here on the fp32 graph, the candidates timed in turns. Torch-free."""

from __future__ import annotations

from pathlib import Path

from edgetune.bench import read_latencies
from edgetune.latency import measure_interleaved

ROUNDS, RUNS = 5, 10  # per graph: 50 timed calls, in turns with the others


def read_files(text: str | None) -> dict[tuple[str, int, str], tuple[float, str]]:
    """`--latency-from A.json,B.json`: {(arch, size, precision): (p50 ms, file)}, later files
    overriding earlier ones. Every file is read (and refused in one line) before any work."""
    found: dict[tuple[str, int, str], tuple[float, str]] = {}
    for name in (text.split(",") if text else []):
        found.update({k: (v, Path(name).name) for k, v in read_latencies(name).items()})
    return found


def shipped(known: dict, arch: str, size: int) -> tuple[float, str] | None:
    """The fastest precision the device timed for (arch, size): INT8 where it won there."""
    times = [v for (a, s, _), v in known.items() if (a, s) == (arch, size)]
    return min(times) if times else None


def measure_here(graphs: dict[tuple[str, int], Path]) -> dict[tuple[str, int], float]:
    """p50 ms at batch 1 of each fp32 graph on this machine, every model and size timed in the
    same turns, so a burst of load from elsewhere hits every candidate alike. (Timed a size at
    a time, each network at its own size, Lite0/1/2 at 224, 240 and 260 px, was timed alone,
    and Lite1 came out slower than Lite2.)"""
    if not graphs:
        return {}
    from edgetune.runtime.ort_backend import OrtSession

    names = {(a, s): f"{a}-{s}" for a, s in graphs}
    timed = measure_interleaved({names[k]: OrtSession(path, device="cpu") for k, path in graphs.items()},
                                {names[(a, s)]: (3, s, s) for a, s in graphs}, rounds=ROUNDS, runs=RUNS)
    return {k: timed[name]["p50"] for k, name in names.items()}
