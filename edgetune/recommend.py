"""Which artifact to deploy per target: the fastest one within the accuracy budget.
Torch-free, so it can be re-run on the target device after `edgetune bench`."""

from __future__ import annotations

from edgetune.bundle import Artifact

# Artifacts timed on this machine can only be recommended for the targets they run on here.
RUNS_ON = {"cpu": ("cpu",), "gpu": ("gpu",), "tensorrt": ("tensorrt",)}


def recommend(artifacts: list[Artifact], target: str, max_drop: float) -> dict | None:
    """{"file", "why"} for `target`, or None when no artifact of that target is measured."""
    fp32 = next((a for a in artifacts if a.precision == "fp32" and a.top1 is not None), None)
    mine = [a for a in artifacts if a.target in RUNS_ON[target] or a.precision == "fp32"]
    if target != "cpu":
        mine = [a for a in mine if a.target == target]
    if not mine:
        return None
    floor = (fp32.top1 - max_drop / 100.0) if fp32 else 0.0
    within = [a for a in mine if a.top1 is not None and a.top1 >= floor - 1e-9]
    timed = [a for a in within if a.latency_ms]
    if not timed:
        best = max(within or mine, key=lambda a: a.top1 or 0.0)
        return {"file": best.file, "why": "most accurate; not timed on this machine: run edgetune bench on the target"}
    best = min(timed, key=lambda a: a.latency_ms["p50"])
    why = f"fastest within {max_drop:g} top-1 points of fp32 ({best.latency_ms['p50']:.2f} ms p50 at batch 1)"
    rejected = [a for a in mine if a not in within]
    if rejected:
        why += "; over budget: " + ", ".join(f"{a.file} ({a.top1:.2%})" for a in rejected)
    if best.precision == "fp32" and any(a.precision == "int8" for a in within):
        slower = [a for a in timed if a.precision == "int8"]
        if slower:
            why += f"; INT8 does not pay here ({slower[0].file}: {slower[0].latency_ms['p50']:.2f} ms)"
    return {"file": best.file, "why": why}
