"""Nothing lost, nothing trusted blindly, through the real CLI: a diverging run keeps its last
good checkpoint; corrupt, foreign, newer or tampered files are refused in one line."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
import torch

from edgetune.bundle import MANIFEST
from edgetune.train import checkpoint
from tests.support.cli import FAST, assert_user_error, edgetune
from tests.support.tiny_bundle import INT8

LAST = "checkpoints/last.pt"


@pytest.fixture(scope="module")
def diverged(small_digits, tmp_path_factory):
    """A run whose loss turns NaN on its second step, checkpointing every step."""
    out = tmp_path_factory.mktemp("diverged") / "run"
    proc = edgetune("train", "--data", small_digits, "--out", out, *FAST, "--epochs", "2",
                    "--unfreeze", "all", "--batch-size", "8", "--lr", "1e9", "--warmup-epochs", "0",
                    "--checkpoint-every", "1")
    return out, proc


def test_nan_loss_is_one_line_and_keeps_the_last_good_checkpoint(diverged):
    out, proc = diverged
    line = assert_user_error(proc, "the loss became", "last good checkpoint is kept", "lower --lr")
    epoch, step = map(int, re.search(r"at epoch (\d+), step (\d+)", line).groups())
    assert (epoch, step) > (1, 1), "diverged on the very first step: nothing to keep"
    kept = checkpoint.load(out / LAST)
    assert (kept["epoch"], kept["step"]) == (epoch - 1, step - 1)  # the step before the NaN
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    assert not (out / "checkpoints" / "best.pt").exists()  # no epoch finished: nothing to call best


def test_a_corrupt_checkpoint_is_refused_on_resume(diverged, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(diverged[0], out)
    data = (out / LAST).read_bytes()
    (out / LAST).write_bytes(data[: len(data) // 3])  # a disk that filled up, a copy cut short
    assert_user_error(edgetune("train", "--resume", "--out", out), "last.pt cannot be loaded safely",
                      "corrupt")


def test_resume_into_other_settings_is_one_line(diverged, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(diverged[0], out)
    assert_user_error(edgetune("train", "--resume", "--out", out, "--unfreeze", "head"),
                      "--resume", "trained with other settings", "--overwrite")


class _RunsCode:
    """A pickle that runs a command when loaded with weights_only=False."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"format": checkpoint.FORMAT, "version": 1, "payload": _RunsCode(marker)},
               tmp_path / "evil.pt")
    assert_user_error(edgetune("export", tmp_path / "evil.pt", "--out", tmp_path / "o"),
                      "evil.pt holds Python objects", "never runs their code")
    assert not marker.exists()


@pytest.mark.parametrize("payload, message", [
    ({"format": checkpoint.FORMAT, "version": checkpoint.VERSION + 1}, "upgrade edgetune"),
    ({"weights": torch.zeros(2)}, "is not an edgetune checkpoint"),
])
def test_newer_or_foreign_checkpoints_are_refused(tmp_path, payload, message):
    torch.save(payload, tmp_path / "x.pt")
    assert_user_error(edgetune("export", tmp_path / "x.pt", "--out", tmp_path / "o"), message)



def _copy(bundle, dest):
    shutil.copytree(bundle, dest)
    return dest


def _tamper(b):
    data = bytearray((b / INT8).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / INT8).write_bytes(bytes(data))


def _edit(b, change):
    raw = json.loads((b / MANIFEST).read_text())
    change(raw)
    (b / MANIFEST).write_text(json.dumps(raw))


@pytest.mark.parametrize("damage, message", [
    (_tamper, f"{INT8} fails its integrity check"),
    (lambda b: _edit(b, lambda m: m["artifacts"][0].update(file="../x")), "'../x'"),
    (lambda b: _edit(b, lambda m: m["artifacts"][0].update(file="/etc/passwd")), "must be relative"),
    (lambda b: _edit(b, lambda m: m.update(version=99)), "upgrade edgetune"),
], ids=["tampered-artifact", "path-leaving-bundle", "absolute-path", "newer-version"])
def test_predict_refuses_an_untrustworthy_bundle_in_one_line(tiny, tmp_path, damage, message):
    bundle = _copy(tiny.bundle, tmp_path / "b")
    damage(bundle)
    assert_user_error(edgetune("predict", bundle, tiny.images[0]), message)
