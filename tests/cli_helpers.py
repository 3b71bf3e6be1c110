"""Running the real CLI in a subprocess, and what its stderr must look like."""

from __future__ import annotations

import os
import subprocess
import sys

# A from-scratch resnet18 at 32 px: seconds per epoch on small data, nothing downloaded.
FAST = ["--weights", "none", "--image-size", "32", "--epochs", "1", "--workers", "0"]


def edgetune(*args, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgetune.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **env} if env else None)


def assert_user_error(proc, *needles) -> str:
    """Exit code 2, exactly one stderr line `edgetune: error: …` holding every needle."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("edgetune: error: ")
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def warning_lines(proc) -> list[str]:
    """The run succeeded and every stderr line is one of our one-line warnings."""
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert all(ln.startswith("edgetune: warning: ") for ln in lines), proc.stderr
    return lines
