"""Can this file be trained on? Checked before training, so a bad file is named at once
instead of stopping an epoch half-way.

Two depths: the header (cheap: format and size, no pixels; finds zero-byte, foreign and
misnamed files) or a full decode (finds truncated files too, at the cost of reading every
pixel once). Torch-free.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from edgetune.errors import first_few


def find_unreadable(paths: Iterable[Path], full: bool = False) -> dict[Path, str]:
    """Each path that cannot be read, with a short reason, in the order given."""
    paths = list(paths)
    check = _decode_problem if full else _header_problem
    # Threads: header reads wait on the disk (network drives most of all) and PIL releases
    # the GIL while decoding, so both scale with threads without a process pool's start-up.
    workers = min(32, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        problems = pool.map(lambda p: _problem(p, check), paths, chunksize=64)
        return {p: why for p, why in zip(paths, problems) if why}


def describe(bad: dict[Path, str]) -> str:
    """'a.png (0 bytes), b.jpg (truncated) and 4 more': the first few, then a count."""
    return first_few(f"{p} ({why})" for p, why in bad.items())


def _problem(path: Path, check) -> str | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "broken link" if path.is_symlink() else "missing"
    except OSError as exc:
        return _reason(exc)
    if stat.st_size == 0:
        return "0 bytes"
    # Keyed by size and mtime: `edgetune run` scans twice (train, then export) and a file
    # rewritten in between must be checked again.
    return check(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1 << 20)  # `edgetune run` scans twice: the second only stats
def _header_problem(path: str, size: int, mtime_ns: int) -> str | None:
    try:
        with Image.open(path) as im:
            im.size  # noqa: B018  (the header is parsed on open)
    except Exception as exc:  # noqa: BLE001 - a hostile file may raise anything; it is data, not our bug
        return _reason(exc)
    return None


@functools.lru_cache(maxsize=None)
def _decode_problem(path: str, size: int, mtime_ns: int) -> str | None:
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # noqa: BLE001 - as above
        return _reason(exc)
    return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image"
    if isinstance(exc, Image.DecompressionBombError):
        return "too many pixels"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "truncated" in text:
        return "truncated"
    return text[:60]
