"""Checkpoints: plain dicts of tensors and primitives, loadable with `weights_only=True`
(no arbitrary pickle), written atomically so a kill at any moment leaves the last good one."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from edgetune.atomic import atomic_path
from edgetune.errors import BundleError

FORMAT = "edgetune-checkpoint"
VERSION = 1


def save(path: str | Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"checkpoint {path} does not exist; pass a .pt file written by `edgetune train`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, tampered or foreign pickles all land here
        raise BundleError(_refusal(path, exc)) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise BundleError(f"{path} is not an edgetune checkpoint")
    if ckpt.get("version", 0) > VERSION:
        raise BundleError(f"{path} has checkpoint version {ckpt['version']}; upgrade edgetune to read it")
    return ckpt


def _refusal(path: Path, exc: Exception) -> str:
    # Never pass on torch's unpickling text: it suggests weights_only=False, which would run
    # whatever code the file carries.
    if isinstance(exc, pickle.UnpicklingError) and "GLOBAL" in str(exc):
        return (f"checkpoint {path} holds Python objects besides tensors and plain values; edgetune "
                "loads checkpoints with weights_only=True and never runs their code: use a .pt "
                "written by `edgetune train`")
    if isinstance(exc, pickle.UnpicklingError):
        why = "not a readable pickle"
    else:
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}" if str(exc) else type(exc).__name__
    return f"checkpoint {path} cannot be loaded safely ({why}); it is corrupt or not an edgetune checkpoint"


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tupled(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tupled(x):
    return tuple(_tupled(v) for v in x) if isinstance(x, (list, tuple)) else x


def training_history(ckpt_path: str | Path, out: str | Path) -> list[dict]:
    """The per-epoch records (epoch, train_loss, val_loss, top1, top5, lr, stage, …) of the
    run that made `ckpt_path`, as plain data for the report: from the checkpoint itself when it
    holds them, else from the run's last.pt; [] when neither does (a bundle exported elsewhere)."""
    from edgetune.files import CHECKPOINT_LAST

    ckpt_path = Path(ckpt_path)
    for path in (ckpt_path, ckpt_path.parent / Path(CHECKPOINT_LAST).name, Path(out) / CHECKPOINT_LAST):
        if not path.is_file():
            continue
        try:
            records = load(path).get("history") or []
        except BundleError:
            continue
        if records:
            return [{k: _plain(v) for k, v in r.items()} for r in records if isinstance(r, dict)]
    return []


def _plain(v):
    if hasattr(v, "item"):  # a tensor or numpy scalar
        return v.item()
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
