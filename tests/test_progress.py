"""Progress: bars on a terminal, one plain line per stage when output is a pipe or a file."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

STAGES = """
import time
from edgetune import progress
for _ in progress.track(range(3), "outer", unit="steps"):
    with progress.stage("inner", total=4, unit="runs") as s:
        for _ in range(4):
            time.sleep(0.04)  # long enough for rich's 10 Hz redraw to show every bar
            s.advance()
bar = progress.track(range(5), "epoch 1/1", unit="batch", line=False)
for _ in bar:
    bar.set_postfix(loss="0.5")
    time.sleep(0.04)
print("done")
"""


def run(code: str, tty: bool) -> str:
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    for var in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(var, None)
    if not tty:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout + proc.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=60) == 0
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_not_a_terminal_gives_one_line_per_stage_and_no_carriage_return():
    out = run(STAGES, tty=False)
    assert "\r" not in out and "\x1b" not in out
    lines = out.strip().splitlines()
    assert lines[-1] == "done"
    assert sum(ln.startswith("inner: 4 runs in ") for ln in lines) == 3
    assert sum(ln.startswith("outer: 3 steps in ") for ln in lines) == 1
    assert not any("epoch" in ln for ln in lines)  # the training loop logs its own epoch line
    assert len(lines) == 5


def test_terminal_gets_live_bars_that_nest():
    out = run(STAGES, tty=True)
    assert "\x1b[" in out and "━" in out  # rich's live bar, redrawn in place
    assert "outer" in out and "inner" in out and "epoch 1/1" in out and "loss 0.5" in out
    assert "inner: 4 runs in" not in out  # the bar, not the pipe's line
    assert out.rstrip().endswith("done")


def test_training_log_piped_has_no_bar(tmp_path, small_digits):
    from tests.support.cli import FAST, edgetune

    proc = edgetune("train", "--data", small_digits, "--out", tmp_path / "o", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout + proc.stderr
    assert any(ln.startswith("epoch 1/1  loss") for ln in proc.stdout.splitlines())
    # 57 training images at the default batch of 32 would make one step: the log says why not.
    assert ("batch 14, not 32: 57 training images make 1 step(s) an epoch at batch 32, too few to train "
            "a new head, and 4 at batch 14 (--batch-size sets it)") in proc.stdout + proc.stderr
