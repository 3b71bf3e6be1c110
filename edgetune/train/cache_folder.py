"""The feature cache's folder: one key folder per cached set (meta.json + features.npy), when
each was last used, which this process still reads, and keeping the folder under a byte cap,
least recently used first (`edgetune tune --cache-max`). Torch-free: file operations only.

An entry's last use is its meta.json's mtime: written when the entry is filled, touched when
it is reused (a touch, not a rewrite: rewriting could resurrect the meta of an entry another
worker is refilling). In use: what this process still reads, tracked through its Features.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import time
import weakref
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgetune.limits import existing_parent
from edgetune.sizes import parse_size

FORMAT = "edgetune-feature-cache"
VERSION = 1
_KEY = re.compile(r"[0-9a-f]{24}")  # key_of's folder names; nothing else under --cache-dir is ours to remove
_TOMB = ".pruned-"  # an entry being removed, renamed out of every reader's way
# --cache-max's default: the lesser of these. 50 GB holds every split a default search of a
# resnet18 at 224 px visits on ~25k images (687 KB per image and view over its four depths,
# about 2.6 cached views per image: three augment settings and val), and the shallow splits
# of a resnet50; half the disk the cache may use leaves the rest to trials and other users.
CAP = 50 << 30
DISK_SHARE = 0.5
# A folder without a complete meta.json is a fill in progress or a killed fill's leftovers.
# A live fill writes its features file batch by batch, so one untouched this long is dead.
DEBRIS_AGE_S = 6 * 3600


_users: Counter[Path] = Counter()  # entry folder -> live Features read from it


def hold(features, place: Path | None):
    """Count `features` as a user of entry `place` until it is garbage."""
    if place is not None:
        place = place.resolve()
        _users[place] += 1
        weakref.finalize(features, _release, place)
    return features


def _release(place: Path) -> None:
    _users[place] -= 1
    if _users[place] <= 0:
        del _users[place]


def touch(meta: Path) -> None:
    """Record a reuse of the entry whose meta.json this is."""
    try:
        os.utime(meta)
    except OSError:  # another user's entry, or one pruned meanwhile: its order only is lost
        pass


@dataclass(frozen=True)
class Entry:
    """One key folder of a cache."""
    place: Path
    size: int  # bytes of its files
    used: float | None  # its last fill or reuse; None without a complete meta.json
    touched: float  # the newest mtime of the folder and its files

    @property
    def complete(self) -> bool:
        return self.used is not None


@dataclass(frozen=True)
class Pruned:
    """What `prune` removed, and the folder's size after."""
    removed: tuple[Entry, ...]
    size: int

    @property
    def freed(self) -> int:
        return sum(e.size for e in self.removed)


def entries(folder: Path) -> list[Entry]:
    """The key folders of cache `folder` as they are now; one that vanishes meanwhile (another
    worker pruned it) is left out."""
    try:
        children = [Path(c.path) for c in os.scandir(folder)
                    if _KEY.fullmatch(c.name) and c.is_dir(follow_symlinks=False)]
    except OSError:  # no cache yet
        return []
    found = []
    for place in children:
        try:
            found.append(_entry(place))
        except OSError:
            continue
    return found


def _entry(place: Path) -> Entry:
    size, touched = 0, place.stat().st_mtime
    for f in os.scandir(place):
        try:
            st = f.stat(follow_symlinks=False)
        except FileNotFoundError:  # a fill's temporary file, renamed meanwhile
            continue
        size, touched = size + st.st_size, max(touched, st.st_mtime)
    return Entry(place, size, _last_use(place), touched)


def _last_use(place: Path) -> float | None:
    """meta.json's mtime when it is complete: ours, for this folder, beside its features."""
    meta = place / "meta.json"
    try:
        used = meta.stat().st_mtime
        record = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(record, dict) and record.get("format") == FORMAT and record.get("key") == place.name
          and (place / "features.npy").is_file())
    return used if ok else None


def disk_cap(setting: str | None, folder: Path) -> int:
    """--cache-max: '20GB', '0'; default the lesser of CAP and DISK_SHARE of the disk the cache
    may use now (its file system's free space plus what it already holds, so a rerun does
    not shrink the cap by what the last run cached)."""
    if setting is not None:
        return parse_size(setting, "--cache-max")
    room = shutil.disk_usage(existing_parent(folder)).free + sum(e.size for e in entries(folder))
    return min(CAP, int(DISK_SHARE * room))


def prune(folder: Path, cap: int, now: float | None = None) -> Pruned:
    """Remove key folders from cache `folder` until it holds at most `cap` bytes, least
    recently used first. Kept whatever the cap: an entry this process still reads, and a
    folder without a complete meta.json touched within DEBRIS_AGE_S (a fill in progress,
    maybe another worker's). Older such folders are a killed fill's leftovers, never reusable:
    they go first, whatever the cap. Another worker reading an entry removed here keeps
    reading it: its memory map holds the file until it is done."""
    gc.collect()  # Features that only a reference cycle keeps alive are read by no one: release them
    now = time.time() if now is None else now
    _bury(folder)
    found = entries(folder)
    size = sum(e.size for e in found)
    debris = [e for e in found if not e.complete and now - e.touched > DEBRIS_AGE_S]
    unused = sorted((e for e in found if e.complete and e.place.resolve() not in _users),
                    key=lambda e: e.used)
    removed = []
    for e in debris + unused:
        if e.complete and size <= cap:
            break
        if _remove(e, now):
            removed.append(e)
            size -= e.size
    return Pruned(tuple(removed), size)


def _remove(e: Entry, now: float) -> bool:
    """Remove `e` unless it changed since it was listed: reused (a new last use) or taken
    up by a fill (a new write)."""
    try:
        again = _entry(e.place)
    except OSError:  # already gone: another worker pruned it
        return False
    if again.used != e.used or (not e.complete and now - again.touched <= DEBRIS_AGE_S):
        return False
    # Renamed first, in one step: a reader or a fill that comes after finds no folder (and
    # makes a fresh one), never a half-removed one; rmtree then works on a name nobody uses.
    tomb = e.place.with_name(f"{_TOMB}{e.place.name}-{os.getpid()}")
    try:
        os.rename(e.place, tomb)
    except OSError:  # gone meanwhile: another worker pruned it
        return False
    shutil.rmtree(tomb, ignore_errors=True)
    return True


def _bury(folder: Path) -> None:
    """Finish removals a killed prune left half done."""
    try:
        tombs = [c.path for c in os.scandir(folder) if c.name.startswith(_TOMB) and c.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for tomb in tombs:
        shutil.rmtree(tomb, ignore_errors=True)
