"""Nothing lost: a run killed with SIGKILL, or stopped with Ctrl-C, resumes to the same
weights as an uninterrupted one."""

import shlex
import signal
import subprocess
import time

import pytest
import torch

from edgetune.train import checkpoint
from tests.support.cli import assert_user_error, edgetune, edgetune_command


def _train_cmd(data, out, *extra):
    return edgetune_command("train", "--data", data, "--out", out, "--model", "resnet18", "--weights", "none",
                            "--image-size", "32", "--unfreeze", "all", "--epochs", "3", "--batch-size", "8",
                            "--checkpoint-every", "2", "--workers", "0", *extra)


@pytest.fixture(scope="module")
def whole(small_digits, tmp_path_factory):
    """The uninterrupted run both tests compare against."""
    out = tmp_path_factory.mktemp("whole")
    proc = subprocess.run(_train_cmd(small_digits, out), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def _as_from_a_terminal():
    # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored (so does edgetune). CI may run us that way; a user's terminal never does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_and_wait_for_a_checkpoint(cmd, last, **popen):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, preexec_fn=_as_from_a_terminal, **popen)
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    return proc


def _same_weights(a_path, b_path):
    a, b = checkpoint.load(a_path), checkpoint.load(b_path)
    assert b["epoch"] == a["epoch"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_sigkill_then_resume_matches_uninterrupted(small_digits, whole, tmp_path):
    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.pt"
    proc = _start_and_wait_for_a_checkpoint(_train_cmd(small_digits, killed), last,
                                            stderr=subprocess.DEVNULL)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "the run never wrote a checkpoint"
    state = checkpoint.load(last)  # the kill never leaves a half-written checkpoint
    assert (state["epoch"], state["step"]) < (3, 0)

    resumed = subprocess.run(_train_cmd(small_digits, killed, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    _same_weights(whole / "checkpoints" / "last.pt", last)


def test_ctrl_c_saves_names_the_resume_command_and_that_command_finishes_exactly(
        small_digits, whole, tmp_path):
    out = tmp_path / "stopped"
    last = out / "checkpoints" / "last.pt"
    proc = _start_and_wait_for_a_checkpoint(_train_cmd(small_digits, out), last,
                                            stderr=subprocess.PIPE, text=True)
    assert proc.poll() is None, "the run ended before Ctrl-C could be sent"
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=120)[1]
    done = subprocess.CompletedProcess(proc.args, proc.returncode, None, stderr)
    line = assert_user_error(done, "interrupted; state saved to", str(last))
    command = line.split("resume with: ", 1)[1]
    assert command == f"edgetune train --resume --out {out}"
    stopped = checkpoint.load(last)
    assert (stopped["epoch"], stopped["step"]) < (3, 0)
    # The printed command, as typed: the run's settings come back from OUT/config.yaml.
    argv = shlex.split(command)
    resumed = edgetune(*argv[1:])
    assert resumed.returncode == 0, resumed.stderr
    _same_weights(whole / "checkpoints" / "last.pt", last)
