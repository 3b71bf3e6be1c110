"""The frozen prefix's output, computed once per image (and augmented view) and reused.

A frozen prefix in eval mode maps an image to the same features every epoch, so running it
every step is waste: the suffix trains on what it wrote here. Random augmentation happens
before the prefix, so each image gets `views` augmented views drawn once, with a seed.

Where it lives: in memory when it fits `memory_budget`, else a memory-mapped .npy under the
cache folder; either way it is also kept on disk (when the disk has room) so a rerun, a
resume or a search trial reuses it. A cache is keyed by everything that changes its bytes
(the prefix's weights, the split point, the preprocessing, the image list, the views, the
augmentation and the seed) and checked by a checksum before use: a stale or corrupt one is
rebuilt, never trusted. Each key is a folder (`cache_folder`, which also keeps the folder under
a byte cap for `edgetune tune --cache-max`, least recently used first).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetune.atomic import atomic_path, write_text
from edgetune.errors import ConfigError
from edgetune.limits import available_memory, existing_parent, human
from edgetune.sizes import parse_size
from edgetune.train.cache_folder import FORMAT, VERSION, hold, touch

_CHUNK = 64 << 20  # bytes hashed at a time: a 10 GB cache never sits in memory twice


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
            return hold(Features(reused, labels, "memory" if in_memory else "disk"), place)
        disk_free = shutil.disk_usage(existing_parent(place)).free if place is not None else 0
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
        return hold(Features(array, labels, "memory" if in_memory else "disk"), place)

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
            touch(meta_path)
            return array
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            self.log(f"cache: not reusing {place} ({exc}); rebuilding it")
            return None


def _bar(total: int, desc: str):
    """A progress bar on a terminal; in a log the fill's start and end lines say enough."""
    from edgetune import progress

    return progress.stage(desc, total=total, unit="img", line=False)
