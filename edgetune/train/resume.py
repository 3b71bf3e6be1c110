"""Where a run stands, saved with every checkpoint, and `--resume` putting a run back there:
the model, optimizer, scheduler, scaler and random state, after checking the checkpoint is
this run's (model, classes, unfreezing schedule)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from edgetune.errors import EdgetuneError
from edgetune.train import checkpoint


@dataclass
class RunState:
    """Where training stands: saved with every checkpoint (the same keys as its fields) and
    restored by --resume."""
    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished in the current epoch
    best_top1: float = -1.0
    history: list[dict] = field(default_factory=list)  # one record per finished epoch
    bad_epochs: int = 0  # epochs since val top-1 last improved (early stopping)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> RunState:
        return cls(**{f.name: ckpt[f.name] for f in fields(cls)})


def restore(path, ckpt, model, optimizer, scheduler, scaler, meta) -> RunState:
    """Load `ckpt` (read from `path`) into this run's objects; `meta` is this run's arch,
    classes and schedule, which must match the checkpoint's."""
    if ckpt["arch"] != meta["arch"] or ckpt["classes"] != meta["classes"]:
        raise EdgetuneError(
            f"--resume: {path} holds {ckpt['arch']} for classes {ckpt['classes']}, not this run's "
            f"{meta['arch']}; resume with the same --model and --data, or use --overwrite"
        )
    if [list(s) for s in ckpt.get("schedule", meta["schedule"])] != meta["schedule"]:
        raise EdgetuneError(
            f"--resume: {path} was trained with other settings (unfreezing schedule "
            f"{ckpt['schedule']}); resume without changing --unfreeze or --unfreeze-schedule, "
            "or use --overwrite"
        )
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise EdgetuneError(
            f"--resume: {path} was trained with other settings ({str(exc).splitlines()[0][:80]}); "
            "resume without changing --model, --weights, --unfreeze, --optimizer or --dropout, or use --overwrite"
        ) from None
    checkpoint.set_rng_state(ckpt["rng"])
    return RunState.from_checkpoint(ckpt)
