"""The frozen prefix's output, computed once per image (and augmented view) and reused.

A frozen prefix in eval mode maps an image to the same features every epoch, so running it
every step is waste: the suffix trains on what it wrote here. Random augmentation happens
before the prefix, so each image gets `views` augmented views drawn once, with a seed.

Where it lives: in memory when it fits `memory_budget`, else a memory-mapped .npy under the
cache folder; either way it is also kept on disk (when the disk has room) so a rerun, a
resume or a search trial reuses it. A cache is keyed by everything that changes its bytes
(the prefix's weights, the split point, the preprocessing, the image list, the views, the
augmentation and the seed) and checked by a checksum before use: a stale or corrupt one is
rebuilt, never trusted. Each key is a folder; `prune` keeps the cache folder under a byte cap
(`edgetune tune --cache-max`), least recently used first.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import shutil
import time
import weakref
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetune.atomic import atomic_path, write_text
from edgetune.errors import ConfigError
from edgetune.limits import available_memory, human
from edgetune.sizes import parse_size

FORMAT = "edgetune-feature-cache"
VERSION = 1
_CHUNK = 64 << 20  # bytes hashed at a time: a 10 GB cache never sits in memory twice
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


@dataclass(frozen=True)
class Request:
    """One set of features to cache: `samples` through `transform`, `views` times."""
    role: str  # "train", "val", "bn" (+ a rank suffix under torchrun)
    samples: list
    transform: object
    views: int
    augment: str  # recorded in the key: the same transform name draws the same views


@dataclass
class Features:
    """Cached features, (views, images, *shape), in memory or memory-mapped."""
    array: np.ndarray
    labels: np.ndarray
    where: str  # "memory" or "disk"

    @property
    def views(self) -> int:
        return self.array.shape[0]

    def __len__(self) -> int:
        return self.array.shape[1]

    def gather(self, index: np.ndarray, view: np.ndarray | int = 0) -> torch.Tensor:
        """Rows `index` (each from its `view`) as a float32 tensor."""
        view = np.broadcast_to(np.asarray(view), index.shape)
        if self.where == "disk":  # sorted reads are sequential on the memory map
            order = np.lexsort((index, view))
            rows = np.empty((len(index), *self.array.shape[2:]), self.array.dtype)
            rows[order] = self.array[view[order], index[order]]
        else:
            rows = self.array[view, index]
        return torch.from_numpy(rows.astype(np.float32, copy=False))


def feature_shape(prefix: nn.Module, image_size: tuple[int, int], device) -> tuple[int, ...]:
    prefix.eval()  # a frozen prefix never trains: in train mode this probe would move BatchNorm stats
    with torch.inference_mode():
        return tuple(prefix(torch.zeros(1, 3, *image_size, device=device)).shape[1:])


def estimate_bytes(shape: tuple[int, ...], images: int, views: int, dtype: str) -> int:
    return views * images * int(np.prod(shape)) * np.dtype(dtype).itemsize


def memory_budget(setting: str | None) -> int:
    """--cache-memory: '4GB', '512MB', '0'; default 40% of the memory available now, which in
    a container is what its cgroup limit leaves (the same figure --memory-limit checks against)."""
    if setting is None:
        return int(0.4 * available_memory())
    return parse_size(setting, "--cache-memory")


def check_writable(folder: Path) -> None:
    """A cache folder we cannot write to is a user error, said before any work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"--cache-dir {folder} is not writable ({exc.strerror or exc}); pass a writable "
            "--cache-dir or --cache off"
        ) from None


def weights_hash(prefix: nn.Module) -> str:
    """The weights the prefix runs, hashed (once per cache: a ResNet-50 prefix is ~100 MB)."""
    h = hashlib.sha256()
    for name, tensor in prefix.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def key_of(weights: str, parts: dict, request: Request) -> str:
    """Everything that changes the cached bytes, hashed."""
    h = hashlib.sha256(weights.encode())
    h.update(json.dumps({**parts, "role": request.role, "views": request.views,
                         "augment": request.augment}, sort_keys=True).encode())
    for s in request.samples:
        st = os.stat(s.path)
        h.update(f"{s.path}\0{s.label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def checksum(array: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    flat = array.reshape(-1).view(np.uint8) if array.flags.c_contiguous else array.tobytes()
    for i in range(0, flat.size, _CHUNK):
        h.update(flat[i:i + _CHUNK])
    return h.hexdigest()


@dataclass(frozen=True)
class CacheSettings:
    """How a cache is kept and filled, the same for every request of a run."""
    folder: Path | None  # where caches are kept (None: memory only, nothing reused across runs)
    budget: int  # bytes a cache may hold in memory; a larger one is memory-mapped from `folder`
    dtype: str  # float16 | float32
    batch_size: int  # images per prefix call while filling
    workers: int  # DataLoader processes while filling
    device: object  # torch.device the prefix runs on
    seed: int  # seed of the augmented views
    skip_bad: bool = False  # --skip-bad-images: an image unreadable since the scan gives way


class FeatureCache:
    """Fills and reuses `Features` for one split point of one model. `parts`: what, besides
    the prefix's weights and the request, changes the cached bytes (the key's other inputs)."""

    def __init__(self, prefix: nn.Module, parts: dict, settings: CacheSettings, log=print):
        self.prefix, self.parts, self.log = prefix, parts, log
        s = settings
        self.folder, self.budget, self.dtype, self.skip_bad = s.folder, s.budget, s.dtype, s.skip_bad
        self.batch_size, self.workers, self.device, self.seed = s.batch_size, s.workers, s.device, s.seed
        self.weights = weights_hash(prefix)

    def get(self, request: Request, shape: tuple[int, ...]) -> Features | None:
        """Reuse a valid cache for `request` or fill a new one; None when neither memory nor
        disk can hold it (the caller trains uncached)."""
        labels = np.asarray([s.label for s in request.samples], dtype=np.int64)
        key = key_of(self.weights, self.parts, request)
        full = (request.views, len(request.samples), *shape)
        size = estimate_bytes(shape, len(request.samples), request.views, self.dtype)
        in_memory = size <= self.budget
        place = self.folder / key if self.folder is not None else None
        reused = self._reuse(place, key, full, in_memory) if place is not None else None
        if reused is not None:
            self.log(f"cache: reusing {request.role} features {place} ({human(size)}, "
                     f"{'memory' if in_memory else 'memory-mapped'})")
            return _hold(Features(reused, labels, "memory" if in_memory else "disk"), place)
        disk_free = shutil.disk_usage(self._existing(place)).free if place is not None else 0
        room_on_disk = place is not None and disk_free > size + (256 << 20)
        if not in_memory and not room_on_disk:
            self.log(f"cache: {request.role} features need {human(size)}: more than the memory "
                     f"budget ({human(self.budget)}) and the free disk ({human(disk_free)}); "
                     "training uncached (raise --cache-memory or free disk space)")
            return None
        where = "memory" if in_memory else f"a memory-mapped file in {place}"
        self.log(f"cache: filling {request.views} view(s) × {len(request.samples)} {request.role} "
                 f"images of {self.parts['split']} {tuple(shape)} {self.dtype}: {human(size)}, "
                 f"in {where}")
        t0 = time.perf_counter()
        if in_memory:
            array = np.empty(full, self.dtype)
            self._fill(array, request)
            if room_on_disk:
                self._save(place, key, array)
        else:
            array = self._fill_on_disk(place, key, full, request)
        self.log(f"cache: {request.role} filled in {time.perf_counter() - t0:.1f}s")
        return _hold(Features(array, labels, "memory" if in_memory else "disk"), place)

    # -- filling ------------------------------------------------------------------------

    @torch.inference_mode()
    def _fill(self, array: np.ndarray, request: Request) -> None:
        from edgetune.train.data import ImageDataset, make_loader

        self.prefix.eval()
        ds = ImageDataset(request.samples, request.transform, self.skip_bad)
        total = request.views * len(ds)
        with _bar(total, f"cache {request.role}") as progress:
            for v in range(request.views):
                # The views are drawn from their own seeded stream; training's RNG is untouched.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.seed * 7919 + v)
                    loader = make_loader(ds, self.batch_size, self.workers, seed=self.seed * 7919 + v)
                    start = 0
                    for images, _ in loader:
                        feats = self.prefix(images.to(self.device, non_blocking=True))
                        array[v, start:start + len(images)] = feats.float().cpu().numpy()
                        start += len(images)
                        progress.update(len(images))

    def _fill_on_disk(self, place: Path, key: str, full: tuple, request: Request) -> np.ndarray:
        place.mkdir(parents=True, exist_ok=True)
        (place / "meta.json").unlink(missing_ok=True)  # incomplete until the meta says otherwise
        tmp = place / f".features.{os.getpid()}.npy"
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.dtype, shape=full)
        try:
            self._fill(array, request)
            array.flush()
            digest = checksum(array)
            del array
            os.replace(tmp, place / "features.npy")
        finally:
            tmp.unlink(missing_ok=True)
        self._write_meta(place, key, full, digest)
        return np.load(place / "features.npy", mmap_mode="r")

    def _save(self, place: Path, key: str, array: np.ndarray) -> None:
        place.mkdir(parents=True, exist_ok=True)
        (place / "meta.json").unlink(missing_ok=True)
        with atomic_path(place / "features.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, array)
        self._write_meta(place, key, array.shape, checksum(array))

    def _write_meta(self, place: Path, key: str, shape: tuple, digest: str) -> None:
        meta = {"format": FORMAT, "version": VERSION, "key": key, "shape": list(shape),
                "dtype": self.dtype, "checksum": digest, **self.parts}
        write_text(place / "meta.json", json.dumps(meta, indent=1))

    # -- reuse --------------------------------------------------------------------------

    def _reuse(self, place: Path, key: str, full: tuple, in_memory: bool) -> np.ndarray | None:
        meta_path, data = place / "meta.json", place / "features.npy"
        if not meta_path.is_file() or not data.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if (meta.get("format"), meta.get("key"), tuple(meta.get("shape", ())), meta.get("dtype")) != (
                    FORMAT, key, full, self.dtype):
                raise ValueError("it was written for another run")
            array = np.load(data, mmap_mode="r")
            if array.shape != full or array.dtype != np.dtype(self.dtype):
                raise ValueError("its shape does not match its record")
            if in_memory:
                array = np.array(array)
            if checksum(array) != meta.get("checksum"):
                raise ValueError("its checksum does not match: the file is corrupt")
            _touch(meta_path)
            return array
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            self.log(f"cache: not reusing {place} ({exc}); rebuilding it")
            return None

    @staticmethod
    def _existing(place: Path | None) -> Path:
        p = place
        while p is not None and not p.exists():
            p = p.parent
        return p or Path(".")


# -- keeping the folder under a cap ----------------------------------------------------------
#
# An entry's last use is its meta.json's mtime: written when the entry is filled, touched when
# it is reused (a touch, not a rewrite: rewriting could resurrect the meta of an entry another
# worker is refilling). In use: what this process still reads, tracked through its Features.

_users: Counter[Path] = Counter()  # entry folder -> live Features read from it


def _hold(features: Features, place: Path | None) -> Features:
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


def _touch(meta: Path) -> None:
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
    room = shutil.disk_usage(FeatureCache._existing(folder)).free + sum(e.size for e in entries(folder))
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


def _bar(total: int, desc: str):
    """A progress bar on a terminal; in a log the fill's start and end lines say enough."""
    from edgetune import progress

    return progress.stage(desc, total=total, unit="img", line=False)
