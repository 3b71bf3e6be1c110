"""Find the labelled images on disk and split them, before any training starts.

Layouts: `DIR/train/<class>/*` + `DIR/val/<class>/*`, or `DIR/<class>/*` split into
train/val by a seeded, stratified split. Torch-free: calibration and evaluation use it too.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from edgetune.errors import DataError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass(frozen=True)
class Splits:
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    layout: str  # "train/val" | "split"

    def counts(self, split: str) -> Counter:
        return Counter(s.label for s in getattr(self, split))


def scan(data: str | Path, val_fraction: float = 0.2, seed: int = 0) -> Splits:
    """The classes and the train/val samples under `data`, checked for obvious problems."""
    root = Path(data)
    if not root.is_dir():
        raise DataError(
            f"data directory {root} does not exist; pass --data DIR with one sub-folder of images per class"
        )
    if (root / "train").is_dir() and (root / "val").is_dir():
        train_by_class = _class_files(root / "train")
        val_by_class = _class_files(root / "val")
        classes = sorted(train_by_class)
        missing = sorted(set(classes) ^ set(val_by_class))
        if missing:
            raise DataError(
                f"{root}: class folders differ between train/ and val/ ({', '.join(missing)}); "
                "give both splits the same class folders"
            )
        train = _samples(train_by_class, classes)
        val = _samples(val_by_class, classes)
        layout = "train/val"
    else:
        by_class = _class_files(root)
        classes = sorted(by_class)
        train, val = _stratified_split(by_class, classes, val_fraction, seed)
        layout = "split"
    if len(classes) < 2:
        raise DataError(
            f"{root} holds one class ({classes[0]}); a classifier needs at least two class folders"
        )
    check_headers([s.path for s in train + val])
    return Splits(classes, train, val, layout)


def _class_files(folder: Path) -> dict[str, list[Path]]:
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise DataError(
            f"{folder} has no class folders; expected {folder}/<class>/<image files> "
            "(or train/ and val/ folders holding them)"
        )
    out = {}
    for d in subdirs:
        files = sorted(
            p for p in d.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(d).parts)
            and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise DataError(
                f"class folder {d} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                "add images or remove the folder"
            )
        out[d.name] = files
    return out


def _samples(by_class: dict[str, list[Path]], classes: list[str]) -> list[Sample]:
    return [Sample(p, classes.index(c)) for c in classes for p in by_class[c]]


def _stratified_split(by_class, classes, val_fraction, seed):
    rng = random.Random(seed)
    train, val = [], []
    for label, c in enumerate(classes):
        files = list(by_class[c])
        rng.shuffle(files)
        n_val = round(len(files) * val_fraction)
        if len(files) >= 2:
            n_val = min(max(n_val, 1), len(files) - 1)  # every class in both splits
        else:
            n_val = 0
        val += [Sample(p, label) for p in files[:n_val]]
        train += [Sample(p, label) for p in files[n_val:]]
    return train, val


def check_headers(paths: list[Path]) -> None:
    """Open each file's header (cheap: no full decode) and name every file PIL can't read."""
    bad = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.size  # noqa: B018  (the header is parsed on open)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            bad.append(p)
    if bad:
        shown = ", ".join(str(p) for p in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise DataError(
            f"cannot read {len(bad)} image file(s): {shown}; remove or replace them"
        )
