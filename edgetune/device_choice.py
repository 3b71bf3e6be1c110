"""`edgetune bench BUNDLE --choose`: the device times the bundle's CPU artifacts the way the
export did, and keeps its own choice in `BUNDLE/devices/<fingerprint>.json`. Torch-free.

The way the export did: every artifact in turns, rotated rounds, then a runoff of those
within 10 % of the fastest (`latency.measure_with_runoff`), and the same rule
(`ranking.choose`: the fastest within the accuracy budget, ties within the noise to the
more accurate, then the smaller). Accuracy is the export's: the device has no labelled
images, and each artifact was evaluated as it runs (OpenVINO's bf16 in bf16).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from edgetune import ranking
from edgetune.bundle import Artifact, read_manifest, verify_artifact
from edgetune.errors import BundleError, ConfigError, MissingDependencyError
from edgetune.latency import measure_with_runoff
from edgetune.runtime import backends, devices
from edgetune.runtime.choice import CPU_BACKENDS


@dataclass
class Timed:
    """One artifact on the device, in the shape `ranking` weighs."""

    artifact: Artifact
    latency: dict | None = None
    verdict: str = ""

    @property
    def name(self) -> str:
        return self.artifact.file

    @property
    def top1(self) -> float | None:
        return self.artifact.top1

    @property
    def size_bytes(self) -> int:
        return self.artifact.size_bytes


def cpu_artifacts(manifest) -> list[Artifact]:
    """The artifacts a CPU can run: the cpu target's in any engine (and a version 1 bundle's
    openvino target)."""
    return [a for a in manifest.artifacts if a.target in ("cpu", "openvino") and a.backend in CPU_BACKENDS]


def choose_on_device(bundle: str | Path, threads: int | None = None, runs: int = 50,
                     measure: str = "top-1", log=print) -> tuple[devices.DeviceChoice, Path]:
    """Time every CPU artifact of `bundle` whose engine is installed here, choose, and write
    the record; returns it and its path. `runs`: timed calls per artifact, as the export's
    `--bench-runs` (rounds of 10). Refused in one line where there is nothing to choose."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    artifacts = cpu_artifacts(manifest)
    if len(artifacts) < 2:
        held = ", ".join(a.file for a in artifacts) or "none"
        raise ConfigError(f"nothing to choose: {bundle} holds one CPU artifact ({held}); export it with the cpu "
                          "target, which ships several (--ship-candidates N), or time it with plain edgetune bench")
    here = [a for a in artifacts if backends.is_available(a.backend)[0]]
    if len(here) < 2:
        missing = {a.backend: backends.is_available(a.backend)[1] for a in artifacts if a not in here}
        raise MissingDependencyError(f"nothing to choose on this host: of {bundle}'s CPU artifacts only "
                                     f"{', '.join(a.file for a in here) or 'none'} can run here; "
                                     + "; ".join(missing.values()))
    unjudged = [a.file for a in here if a.top1 is None]
    if unjudged:
        raise BundleError(f"{bundle} records no accuracy for {', '.join(unjudged)}: the choice weighs the "
                          "export's top-1 against the budget; re-export the bundle with edgetune export")
    fp32 = next(a for a in here if a.precision == "fp32" and a.backend == "onnxruntime")
    max_drop = manifest.evaluation.get("max_drop", 1.0)
    floor = fp32.top1 - max_drop / 100.0
    rounds = max(3, runs // 10)
    sessions = {a.file: backends.open_session(a.backend, verify_artifact(bundle, a), "cpu", threads,
                                              precision=a.precision, spinning=False) for a in here}
    entries = [Timed(a) for a in here]
    log(f"choose: timing {len(here)} CPU artifacts side by side, {rounds} rounds")
    latency = measure_with_runoff(sessions, (3, *manifest.preprocess.size), rounds,
                                  [[e.name for e in entries if ranking.within(e, floor)]], log)
    del sessions
    for e in entries:
        e.latency = {**latency[e.name], "threads": threads}
    winner = ranking.choose(entries, floor, max_drop, measure)
    description = devices.describe_host()
    record = devices.DeviceChoice(
        fingerprint=devices.fingerprint(description), host=description,
        chosen={"file": winner.name, "sha256": winner.artifact.sha256,
                "why": f"{winner.verdict} ({winner.latency['p50']:.2f} ms p50 at batch 1, {winner.artifact.backend})"},
        order=[e.name for e in ranking.rank(entries, floor)],
        timings=[{"file": e.name, "backend": e.artifact.backend, "precision": e.artifact.precision,
                  "sha256": e.artifact.sha256, "top1": e.top1, "size_bytes": e.size_bytes, "latency": e.latency,
                  "verdict": e.verdict} for e in entries],
        settings={"threads": threads, "rounds": rounds, "runs_per_round": 10, "max_drop": max_drop,
                  "measure": measure,
                  "skipped": [{"file": a.file, "why": backends.is_available(a.backend)[1]}
                              for a in artifacts if a not in here]},
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    return record, devices.write_choice(bundle, record)
