"""What machine this is: what a number was measured on, and the worker counts its cores
allow. Torch-free."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from functools import lru_cache


@lru_cache(maxsize=1)
def describe() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "gpu": gpu_name(),
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's instruction-set flags (x86 `flags`, ARM `Features`), sorted; [] off Linux.
    They decide which kernels an engine takes (VNNI, AMX, SDOT), so a device's choice of
    artifact holds only for the flags it was made with."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return sorted(set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def usable_cpus() -> int:
    """The cores this process may run on (a container's cpuset, taskset), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_name() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    name = out.stdout.strip().splitlines()
    return name[0] if out.returncode == 0 and name else None


def short() -> str:
    d = describe()
    gpu = f", {d['gpu']}" if d["gpu"] else ""
    return f"{d['cpu']} ({d['cores']} cores{gpu})"


def decode_threads() -> int:
    """Threads that decode and preprocess images for evaluation and calibration: PIL and
    numpy release the GIL, so threads use every core (up to 8: past that the engine starves)."""
    return max(1, min(8, os.cpu_count() or 1))


def loader_processes(setting: int | None = None) -> int:
    """DataLoader worker processes for training (0: decode in the training process): `setting`
    (--workers) where given. On small machines decoding in-process beats fighting the training
    threads for the cores."""
    if setting is not None:
        return setting
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(8, cores - 1)
