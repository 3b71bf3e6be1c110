"""torchrun: two gloo processes train one model (DDP) and write the same bundle as one process."""

import json
import os
import socket
import subprocess
import sys

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "edgetune", *map(str, args)]
    # One thread per process: two processes on a 2-core machine must not fight over cores.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


ARGS = ["--model", "resnet18", "--weights", "none", "--image-size", "32", "--unfreeze", "1",
        "--epochs", "3", "--lr", "3e-3", "--batch-size", "32", "--augment", "light", "--workers", "0"]
EXPORT = ["--calib-samples", "50", "--bench-runs", "5"]


def test_two_process_gloo_run_matches_one_process(digits_dir, tmp_path):
    proc = _torchrun("run", "--data", digits_dir, *ARGS, *EXPORT, "--out", tmp_path / "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "× 2 processes" in proc.stdout  # rank 0 logs, once
    assert proc.stdout.count("epoch 1/3") == 1
    single = subprocess.run([sys.executable, "-m", "edgetune", "run", "--data", str(digits_dir), *ARGS,
                             *EXPORT, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                            timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    one = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert ddp.keys() == one.keys() and ddp["format"] == one["format"]
    assert [a["file"] for a in ddp["artifacts"]] == [a["file"] for a in one["artifacts"]]
    top1 = lambda m: m["artifacts"][0]["top1"]  # noqa: E731 - the fp32 graph
    assert abs(top1(ddp) - top1(one)) <= 0.02, (top1(ddp), top1(one))


@pytest.mark.slow
def test_two_process_uncached_and_resume(small_digits, tmp_path):
    """Every block trains (no cache, DistributedSampler); a resumed run continues under torchrun."""
    args = ["--data", small_digits, "--model", "resnet18", "--weights", "none", "--image-size", "32",
            "--unfreeze", "all", "--batch-size", "8", "--workers", "0", "--out", tmp_path / "o"]
    first = _torchrun("train", *args, "--epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    again = _torchrun("train", *args, "--epochs", "2", "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stdout and "epoch 2/2" in again.stdout
