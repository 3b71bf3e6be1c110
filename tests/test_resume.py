"""Nothing lost: a run killed with SIGKILL resumes to the same weights as an uninterrupted one."""

import signal
import subprocess
import sys
import time

import torch

from edgetune import checkpoint


def _train_cmd(data, out, *extra):
    return [sys.executable, "-m", "edgetune.cli", "train", "--data", str(data), "--out", str(out),
            "--model", "resnet18", "--weights", "none", "--image-size", "32", "--unfreeze", "all",
            "--epochs", "3", "--batch-size", "8", "--checkpoint-every", "2", "--workers", "0", *extra]


def test_sigkill_then_resume_matches_uninterrupted(small_digits, tmp_path):
    whole = subprocess.run(_train_cmd(small_digits, tmp_path / "whole"), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(small_digits, killed), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "the run never wrote a checkpoint"
    state = checkpoint.load(last)  # the kill never leaves a half-written checkpoint
    assert (state["epoch"], state["step"]) < (3, 0)

    resumed = subprocess.run(_train_cmd(small_digits, killed, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a = checkpoint.load(tmp_path / "whole" / "checkpoints" / "last.pt")
    b = checkpoint.load(last)
    assert b["epoch"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
