"""Find the labelled images on disk and split them, before any training starts.

Layouts: `DIR/train/<class>/*` + `DIR/val/<class>/*`, or `DIR/<class>/*` split into
train/val by a seeded, stratified split. Torch-free: calibration and evaluation use it too.

Messy data, as a user expects it handled:
- hidden files and folders, `__MACOSX`, `Thumbs.db`, `desktop.ini`: skipped silently (OS droppings);
- other files without an image extension (`notes.txt`, `IMG_1.heic`): left out with one warning
  naming them, since a photo in a format we do not read must not vanish unnoticed;
- unreadable images (zero bytes, not an image, truncated with --verify-images): one error naming
  them, or with --skip-bad-images left out of every stage with one warning;
- no class folders, one class, an empty class folder, classes that differ between train/ and
  val/, no validation images at all: one error each;
- classes with few training images, or none in val: a warning, since training still works.
"""

from __future__ import annotations

import os
import random
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgetune.data.image_check import describe, find_unreadable
from edgetune.errors import DataError, DataWarning, first_few

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".ppm", ".pgm"}
# Written by operating systems and zip tools, never by the user: skipped like hidden files.
OS_DROPPINGS = {"__macosx", "thumbs.db", "desktop.ini"}
READABLE = "JPEG, PNG, BMP, GIF, TIFF, WebP, PPM/PGM"
MIN_TRAIN_IMAGES = 5  # per class: below this, its val accuracy says little


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


def scan(data: str | Path, val_fraction: float = 0.2, seed: int = 0, *,
         verify_images: bool = False, skip_bad_images: bool = False) -> Splits:
    """The classes and the train/val samples under `data`, checked before any training.

    `verify_images` decodes every image (finds truncated files); otherwise only headers are
    read. `skip_bad_images` leaves unreadable images out instead of raising; it decodes every
    image too, because a file left out must be left out of training, validation and
    calibration alike, and only a full decode finds them all up front.
    Problems that stop the run raise `DataError`; the rest warn with `DataWarning`, and only
    once no error was found, so a refused data set gets one line, not a list.
    """
    root = Path(data)
    if not root.is_dir():
        raise DataError(
            f"data directory {root} does not exist; pass --data DIR with one sub-folder of images per class"
        )
    full = verify_images or skip_bad_images
    notes: list[str] = []
    if (root / "train").is_dir():
        if not (root / "val").is_dir():
            raise DataError(
                f"{root} has train/ but no val/; add {root}/val/<class>/ folders, or pass "
                f"--data {root / 'train'} to split it by --val-fraction"
            )
        found = {"train/": class_files(root / "train"), "val/": class_files(root / "val")}
        _same_classes(root, found["train/"].images, found["val/"].images)
        classes = sorted(found["train/"].images)
        _at_least_two(root, classes)
        note_ignored(found["train/"].ignored + found["val/"].ignored, notes)
        train_by, val_by = readable([found["train/"].images, found["val/"].images], full,
                                     skip_bad_images, notes)
        _none_empty(train_by, "train/")
        train, val = _samples(train_by, classes), _samples(val_by, classes)
        layout = "train/val"
    else:
        found = {"": class_files(root)}
        classes = sorted(found[""].images)
        _at_least_two(root, classes)
        note_ignored(found[""].ignored, notes)
        (by_class,) = readable([found[""].images], full, skip_bad_images, notes)
        _none_empty(by_class, "")
        train, val = _stratified_split(by_class, classes, val_fraction, seed)
        layout = "split"
    splits = Splits(classes, train, val, layout)
    _check_sizes(root, splits, notes)
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return splits


@dataclass
class Found:
    images: dict[str, list[Path]]  # class -> image files (by extension)
    ignored: list[Path]  # files without an image extension


def class_files(folder: Path) -> Found:
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not skipped(p.name))
    if not subdirs:
        loose = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        hint = f" (it holds {len(loose)} images directly: move them into one folder per class)" if loose else ""
        raise DataError(
            f"{folder} has no class folders{hint}; expected {folder}/<class>/<image files> "
            "(or train/ and val/ folders holding them)"
        )
    images: dict[str, list[Path]] = {}
    ignored: list[Path] = []
    empty: list[str] = []
    for d in subdirs:
        files = walk(d)
        images[d.name] = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        ignored += [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
        if not images[d.name]:
            empty.append(str(d))
    if empty:
        raise DataError(
            f"class folder{'s' if len(empty) > 1 else ''} {first_few(empty)} "
            f"{'have' if len(empty) > 1 else 'has'} no images; add images ({READABLE}) or remove the folder"
        )
    return Found(images, ignored)


def walk(folder: Path) -> list[Path]:
    """Every file under `folder` (a broken link too: it is reported, not dropped), sorted,
    without hidden or OS-dropping files and folders: the one recursive walk every image
    folder (class folders, target-domain folders) goes through. os.walk reads each directory's entry
    types with its listing, where a stat per file made 100,000 files take many seconds."""
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not skipped(d)]
        found += [Path(top, f) for f in files if not skipped(f)]
    return sorted(found)


def skipped(name: str) -> bool:
    return name.startswith(".") or name.lower() in OS_DROPPINGS


def _same_classes(root: Path, train: dict, val: dict) -> None:
    only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
    if only_train or only_val:
        parts = [f"only in {split}: {first_few(names)}" for split, names
                 in (("train/", only_train), ("val/", only_val)) if names]
        raise DataError(
            f"{root}: class folders differ between train/ and val/ ({'; '.join(parts)}); "
            "give both splits the same class folders"
        )


def _at_least_two(root: Path, classes: list[str]) -> None:
    if len(classes) < 2:
        raise DataError(
            f"{root} holds one class ({classes[0]}); a classifier needs at least two class folders"
        )


def note_ignored(ignored: list[Path], notes: list[str]) -> None:
    if not ignored:
        return
    kinds = Counter(p.suffix.lower() or "no extension" for p in ignored)
    summary = ", ".join(f"{k} ×{n}" for k, n in kinds.most_common())
    notes.append(
        f"left out {len(ignored)} file(s) that are not images by extension ({summary}): "
        f"{first_few(ignored)}; edgetune reads {READABLE}: convert any you meant to train on"
    )


def readable(groups: list[dict[str, list[Path]]], full: bool, skip: bool,
              notes: list[str]) -> list[dict[str, list[Path]]]:
    """Each `class -> files` map without its unreadable images; raises unless `skip`.
    train/ and val/ are checked together so one line names the bad files of both."""
    bad = find_unreadable([p for g in groups for files in g.values() for p in files], full=full)
    if not bad:
        return groups
    if not skip:
        deeper = "" if full else " (--verify-images also finds truncated files)"
        raise DataError(
            f"cannot read {len(bad)} image file(s): {describe(bad)}; remove or replace them, or pass "
            f"--skip-bad-images to train without them{deeper}"
        )
    notes.append(f"--skip-bad-images: left out {len(bad)} unreadable image(s): {describe(bad)}")
    return [{c: [p for p in files if p not in bad] for c, files in g.items()} for g in groups]


def _none_empty(by_class: dict[str, list[Path]], split: str) -> None:
    # Reached only when --skip-bad-images took a class's last image: a class needs training images.
    empty = [c for c, files in by_class.items() if not files]
    if empty:
        raise DataError(
            f"class{'es' if len(empty) > 1 else ''} {first_few(empty)} in {split or 'the data'} "
            f"{'have' if len(empty) > 1 else 'has'} no readable images left; replace the unreadable "
            "ones or remove the class folder"
        )


def _check_sizes(root: Path, splits: Splits, notes: list[str]) -> None:
    if not splits.val:
        raise DataError(
            f"{root} leaves no validation images (every class has fewer than 2 images); "
            "add images, or give a val/ folder"
        )
    train_n, val_n = splits.counts("train"), splits.counts("val")
    few = [f"{c} ({train_n[i]})" for i, c in enumerate(splits.classes) if train_n[i] < MIN_TRAIN_IMAGES]
    if few:
        notes.append(f"class(es) with fewer than {MIN_TRAIN_IMAGES} training images: {first_few(few)}; "
                     "the model will barely learn them: add images")
    unjudged = [c for i, c in enumerate(splits.classes) if val_n[i] == 0]
    if unjudged:
        notes.append(f"class(es) with no validation image: {first_few(unjudged)}; their accuracy is "
                     "not measured: add images")


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
