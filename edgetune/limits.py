"""Limits stated up front: before a long stage, its memory and disk needs are estimated and
a run that cannot fit is refused in one line, instead of dying from the OOM killer an hour in
(the kernel's SIGKILL leaves no message, no traceback and no checkpoint of the stage).
Torch-free.

Estimates are lower bounds built from what a stage must hold (a batch of images, a stage's
activations, the calibration outputs ONNX Runtime keeps), so a refusal means the stage would
certainly not fit; what they leave out is the runtime's own overhead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgetune.errors import EdgetuneError

HEADROOM = 256 << 20  # kept free for the interpreter, libraries and the page cache
CGROUP = Path("/sys/fs/cgroup")  # cgroup v2's unified hierarchy, as a container sees it


class ResourceError(EdgetuneError):
    """A stage would need more memory or disk than the machine (or --memory-limit) allows."""


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def available_memory() -> int:
    """What this process may still allocate: the kernel's MemAvailable, or less when a cgroup
    (a container, a systemd slice, a batch job) caps memory below it."""
    avail = _meminfo("MemAvailable")
    cap = _cgroup_room()
    return min(avail, cap) if cap is not None else avail


def memory_in_use() -> int:
    """This process's resident memory now."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def require_memory(stage: str, need: int, detail: str, fix: str, limit: int | None = None,
                   limit_flag: str = "--memory-limit") -> None:
    """Refuse `stage` when `need` more bytes cannot fit: beyond what the machine has available,
    or, with `limit` (bytes), beyond `limit` minus what this process already holds."""
    in_use = memory_in_use()
    if limit is not None:
        if in_use + need > limit:
            raise ResourceError(
                f"{stage} needs about {human(in_use + need)} of memory ({human(in_use)} in use + "
                f"{detail}) but {limit_flag} allows {human(limit)}; {fix}, or raise {limit_flag}")
        return
    room = available_memory() - HEADROOM
    if need > room:
        raise ResourceError(
            f"{stage} needs about {human(need)} more memory ({detail}) but this machine has "
            f"{human(max(room, 0))} available; {fix}, or free memory")


def require_disk(stage: str, need: int, folder: str | Path, detail: str, fix: str) -> None:
    """Refuse `stage` when `folder`'s file system has less than `need` bytes free."""
    where = existing_parent(Path(folder))
    free = shutil.disk_usage(where).free
    if need + HEADROOM > free:
        raise ResourceError(
            f"{stage} needs about {human(need)} of disk under {folder} ({detail}) but {where} has "
            f"{human(free)} free; {fix}")


def _meminfo(key: str) -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def _cgroup_room() -> int | None:
    """Bytes left under a cgroup v2 memory limit; None without one."""
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((CGROUP / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def existing_parent(p: Path) -> Path:
    """`p`, or its nearest ancestor that exists: what a disk-space query can ask about."""
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p
