"""Running the real CLI, or a short Python program, in a subprocess (optionally with PyTorch
made unimportable, as on a deployment host), and what a user error must look like."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# A from-scratch resnet18 at 32 px: seconds per epoch on small data, nothing downloaded.
FAST = ["--weights", "none", "--image-size", "32", "--epochs", "1", "--workers", "0"]
# `import torch` raises ImportError from here on: the deployment side must not need it.
TORCH_BAN = "import sys\nsys.modules['torch'] = None\nsys.modules['torchvision'] = None\n"


def edgetune_command(*args) -> list[str]:
    """The argv of `edgetune ARGS…`, for tests that start it themselves (Popen, signals)."""
    return [sys.executable, "-m", "edgetune.cli", *map(str, args)]


def edgetune(*args, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    """`edgetune ARGS…` as a user runs it."""
    return subprocess.run(edgetune_command(*args),
                          capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **env} if env else None)


def python(code: str, *args, torch_free: bool = False, timeout=300) -> subprocess.CompletedProcess:
    """`python -c CODE ARGS…`; with `torch_free`, torch and torchvision cannot be imported."""
    return subprocess.run([sys.executable, "-c", (TORCH_BAN if torch_free else "") + code, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def edgetune_without_torch(*args, timeout=300) -> subprocess.CompletedProcess:
    """`edgetune ARGS…` on a host where torch and torchvision cannot be imported."""
    return python("import sys\nfrom edgetune.cli import main\nsys.exit(main(sys.argv[1:]))", *args,
                  torch_free=True, timeout=timeout)


# Runs each argv list through main() in this one process, its stderr and exit code captured,
# and prints them as JSON: the commands' errors come before any work, so one interpreter (one
# import of torch and timm) can answer several.
_EACH = """
import contextlib, io, json, sys
from edgetune.cli.main import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def edgetune_each(*commands, prelude: str = "", env=None, timeout=300) -> list[subprocess.CompletedProcess]:
    """Several `edgetune` commands that fail before any work, run in one Python process;
    `prelude` runs first (e.g. `sys.modules['timm'] = None`: timm is not installed)."""
    argvs = [[str(a) for a in cmd] for cmd in commands]
    proc = subprocess.run([sys.executable, "-c", prelude + _EACH, json.dumps(argvs)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **env} if env else None)
    assert proc.returncode == 0, proc.stderr
    return [subprocess.CompletedProcess(argv, code, "", err)
            for argv, (code, err) in zip(argvs, json.loads(proc.stdout.strip().splitlines()[-1]))]


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
