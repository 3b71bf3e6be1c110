"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Everything edgetune writes (checkpoints, artifacts, manifests) goes through here:
write to a temporary name in the same directory, flush and fsync, then rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file 0600; a bundle must stay readable by the service account
        # that deploys it, so give it the mode a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    # The rename itself must reach the disk, or a power cut can undo it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


DONE = ".complete"  # the last file a published folder gets: what it holds


def publish_folder(root: str | os.PathLike, stamp: str, fill: Callable[[Path], None]) -> Path:
    """`root` holding what `fill(folder)` writes, marked with `stamp`; built beside `root` and
    moved into place in one rename, so two processes that ask at once (two runs, the test
    suite's workers) never read a half-written file. Kept when its stamp already matches."""
    root = Path(root)
    done = root / DONE
    if done.is_file() and done.read_text() == stamp:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".part", dir=root.parent))
    fill(part)
    write_text(part / DONE, stamp)
    try:
        os.rename(part, root)  # atomic where root is absent (or an empty folder)
    except OSError:
        if done.is_file() and done.read_text() == stamp:  # another process published the same
            shutil.rmtree(part, ignore_errors=True)
            return root
        old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old", dir=root.parent))
        os.rename(root, old / root.name)  # an older or unfinished folder: replaced whole
        os.rename(part, root)
        shutil.rmtree(old, ignore_errors=True)
    return root
