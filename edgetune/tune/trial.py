"""One trial: train a configuration in its own folder, report every epoch, score what ships.

Each trial trains under OUT/trials/NNNN with its own seed, never in a user's bundle. Its
per-epoch val top-1 goes to the pruner, which may stop it. The value is the best val top-1
(`top1`), or the val top-1 of the CPU INT8 artifact exported from the best epoch (`int8`):
what ships is INT8, and a configuration that trains well can still quantize badly.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgetune.config import ExportConfig, TrainConfig
from edgetune.files import CHECKPOINTS, INT8_CPU, MANIFEST

BUNDLE = "bundle"
# What a finished trial keeps: its record, and the INT8 artifact its value was measured on.
# Checkpoints (tens of MB each, every trial) go: best.yaml retrains the winner exactly.
KEEP = (MANIFEST, INT8_CPU)


@dataclass
class Outcome:
    value: float
    epochs: int
    history: list[dict]
    shipped_p50: float | None = None  # ms: the recommended CPU artifact's, when the trial exported one
    config: TrainConfig | None = None  # as it trained: the flags the run resolves, resolved


def trial_seed(base: int, number: int) -> int:
    """Each trial's own seed, derived from --seed: reruns of a study draw the same ones. Trial 0
    keeps --seed: a new study's first trial (space.first_trial) is then the command's own run,
    which on few images matters (the defaults on EfficientNet-Lite0, 10 photographs a class:
    96.49% at seed 0, 89.47% at trial 0's derived seed)."""
    if number == 0:
        return base
    return (base * 1_000_003 + number * 7_919 + 1) % (2**31 - 1)


def trial_config(base: TrainConfig, params: dict, number: int) -> TrainConfig:
    """The base flags with the trial's values and seed. The cached views keep the base seed,
    so trials that freeze the same blocks share one feature cache."""
    return dataclasses.replace(base, **params, seed=trial_seed(base.seed, number),
                               cache_seed=base.resolved_cache_seed)


def run_trial(cfg: TrainConfig, folder: Path, objective: str, export_cfg: ExportConfig,
              report, log) -> Outcome:
    """Train `cfg` into `folder`; `report(record)` after every epoch may raise to prune."""
    from edgetune import pipeline
    from edgetune.train import train

    folder.mkdir(parents=True, exist_ok=True)
    pipeline.write_config(folder, cfg)
    history: list[dict] = []

    def on_epoch(record: dict) -> None:
        history.append(record)
        report(record)

    try:
        result = train(cfg, folder, log=log, command="tune", on_epoch=on_epoch)
        value, shipped = ((result.best_top1, None) if objective == "top1"
                          else _int8_top1(result.best, folder, cfg, export_cfg, log))
    finally:  # pruned, failed or done: the weights are not needed again
        shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)
    return Outcome(value, result.epochs, history, shipped, result.config)


def _int8_top1(best: Path, folder: Path, cfg: TrainConfig, export_cfg: ExportConfig, log):
    """Export the best epoch for the CPU and score its INT8 artifact on the val split; also
    the p50 of the artifact recommended for the CPU (INT8 where it won, else fp32)."""
    from edgetune import pipeline

    bundle = folder / BUNDLE
    manifest = pipeline.export_bundle(best, bundle, export_cfg, data=cfg.data, log=log)
    int8 = next(a for a in manifest.artifacts if a.file == INT8_CPU)
    shipped = manifest.artifact(manifest.recommended["cpu"]["file"]).latency_ms or {}
    for p in bundle.iterdir():
        if p.name not in KEEP:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return int8.top1, shipped.get("p50")


def trial_export_config(export_cfg: ExportConfig) -> ExportConfig:
    """A trial's export: the CPU target only, its ONNX Runtime INT8 artifact scored on the val
    split. The candidates are timed only to choose among them, so fewer runs will do, and
    other engines would only add time."""
    return dataclasses.replace(export_cfg, targets=("cpu",), cpu_engines=("onnxruntime",),
                               bench_runs=min(export_cfg.bench_runs, 20))

