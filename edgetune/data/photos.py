"""The real photographs edgetune ships (package data, `edgetune/data/photos/`): five classes of
GCompris photographs, written as an ImageFolder with a fixed, seeded, stratified train/val
split, and k-shot subsets of its train split for benchmarks. Torch-free, offline.

Sources and licenses: `edgetune/data/photos/LICENSES.md`; `tools/make_photos.py` rebuilds the
set from Debian's gcompris-qt-data.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

from edgetune.atomic import publish_folder
from edgetune.errors import ConfigError

SHIPPED = Path(__file__).parent / "photos"
VAL_FRACTION = 0.3
SHOTS = (5, 10, 20)  # labelled training images per class the benchmarks draw
# The split leaves every class at least this many training images, so each k-shot subset
# holds k of every class (the smallest classes have 28 images: 20 train, 8 val).
MIN_TRAIN = max(SHOTS)


def shipped() -> dict[str, list[Path]]:
    """The shipped photographs, per class, in name order."""
    return {d.name: sorted(d.glob("*.jpg")) for d in sorted(SHIPPED.iterdir()) if d.is_dir()}


def default_dir(name: str = "photos") -> Path:
    home = os.environ.get("EDGETUNE_HOME") or Path.home() / ".cache" / "edgetune"
    return Path(home) / name


def split(seed: int = 0) -> dict[str, dict[str, list[Path]]]:
    """{"train": {class: files}, "val": {class: files}}: per class a seeded shuffle, the first
    `VAL_FRACTION` (leaving `MIN_TRAIN` to train) held out. The same for every `seed` run."""
    out: dict[str, dict[str, list[Path]]] = {"train": {}, "val": {}}
    for cls, files in shipped().items():
        files = list(files)
        random.Random(f"{seed}:{cls}").shuffle(files)  # per class: adding a class moves no other
        n_val = max(1, min(round(len(files) * VAL_FRACTION), len(files) - MIN_TRAIN))
        out["val"][cls], out["train"][cls] = files[:n_val], files[n_val:]
    return out


def ensure_photos(root: str | Path | None = None, seed: int = 0) -> Path:
    """The photographs as `root/train/<class>/*.jpg` and `root/val/<class>/*.jpg` (written
    once, rewritten when the shipped set or the seed changed); returns `root`."""
    root = Path(root) if root else default_dir()
    return _materialise(root, split(seed), f"photos seed {seed}")


def ensure_k_shot(k: int, root: str | Path | None = None, seed: int = 0) -> Path:
    """`k` training photographs per class and the whole val split, as an ImageFolder under
    `root` (default: EDGETUNE_HOME/photos-k{k}, with -s{seed} for seeds other than 0). The
    subsets nest: the 5 of k=5 are among the 10 of k=10, so a benchmark's rows differ only by
    the images added."""
    if not 1 <= k <= MIN_TRAIN:
        raise ConfigError(f"k-shot subset k={k} is not available; use 1..{MIN_TRAIN} (benchmarks use "
                          f"{', '.join(map(str, SHOTS))})")
    full = split(seed)
    picked = {}
    for cls, files in full["train"].items():
        files = list(files)
        random.Random(f"{seed}:{cls}:shots").shuffle(files)
        picked[cls] = files[:k]
    # A folder per seed: two benchmarks of different seeds at once must not swap each other's images.
    root = Path(root) if root else default_dir(f"photos-k{k}" + (f"-s{seed}" if seed else ""))
    return _materialise(root, {"train": picked, "val": full["val"]}, f"photos seed {seed} k {k}")


def _materialise(root: Path, layout: dict[str, dict[str, list[Path]]], what: str) -> Path:
    def fill(folder: Path) -> None:
        for part, classes in layout.items():
            for cls, files in classes.items():
                (folder / part / cls).mkdir(parents=True, exist_ok=True)
                for f in files:
                    shutil.copyfile(f, folder / part / cls / f.name)

    return publish_folder(root, _stamp(layout, what), fill)  # an older set's files never linger


def _stamp(layout: dict[str, dict[str, list[Path]]], what: str) -> str:
    """What a materialised folder holds: the files per split and class, and their sizes."""
    h = hashlib.sha256()
    for part, classes in sorted(layout.items()):
        for cls, files in sorted(classes.items()):
            for f in files:
                h.update(f"{part}/{cls}/{f.name}:{f.stat().st_size}\n".encode())
    return f"{what}\n{h.hexdigest()}\n"


if __name__ == "__main__":  # `python -m edgetune.data.photos` (make demo): write them, print the folder
    print(ensure_photos())
