"""Images from the deployment domain, found on disk before any work starts. Torch-free.

- `--target-data DIR`: unlabelled images in any folder layout, found recursively;
- `--target-val DIR`, `--target-labels DIR`: labelled target images, `DIR/<class>/*`, whose
  classes must be the training classes.

The rules for messy folders are `edgetune.data.scan`'s: hidden files and OS droppings skipped,
files that are not images by extension left out with a warning, unreadable images one
error (or left out with `--skip-bad-images`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from edgetune.data.image_check import describe, find_unreadable
from edgetune.data.scan import IMAGE_EXTENSIONS, READABLE, Sample, class_files, note_ignored, readable, walk
from edgetune.errors import DataError, DataWarning, first_few

UNLABELLED = -1  # the label of a target image nobody labelled


@dataclass(frozen=True)
class TargetData:
    """What the user gave about the deployment domain; every list may be empty."""

    root: Path | None = None
    images: list[Path] = field(default_factory=list)  # unlabelled (--target-data)
    val: list[Sample] = field(default_factory=list)  # labelled, measured only (--target-val)
    labelled: list[Sample] = field(default_factory=list)  # labelled, trained on (--target-labels)

    def samples(self) -> list[Sample]:
        return [Sample(p, UNLABELLED) for p in self.images]


def scan_images(folder: str | Path, flag: str = "--target-data", *, verify_images: bool = False,
                skip_bad_images: bool = False) -> list[Path]:
    """Every readable image under `folder`, recursively, sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{flag} {root} does not exist; pass a folder of images from the deployment camera")
    files = walk(root)
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        raise DataError(f"{flag} {root} holds no images ({READABLE}), in any sub-folder; "
                        "pass a folder of images from the deployment camera")
    notes: list[str] = []
    note_ignored([p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS], notes)
    try:
        (kept,) = readable([{"": images}], verify_images or skip_bad_images, True, notes)
    except DataError as exc:
        raise DataError(f"{flag} {root}: {exc}") from None
    if not kept[""]:
        raise DataError(f"{flag} {root}: none of its {len(images)} images can be read; "
                        "pass a folder of readable images from the deployment camera")
    if len(kept[""]) < len(images) and not skip_bad_images:
        bad = find_unreadable(images, full=verify_images)
        raise DataError(f"{flag} {root}: cannot read {len(bad)} image file(s): {describe(bad)}; remove "
                        "or replace them, or pass --skip-bad-images to adapt without them")
    for note in notes:
        warnings.warn(f"{flag}: {note}", DataWarning, stacklevel=2)
    return kept[""]


def scan_labelled(folder: str | Path, classes: list[str], flag: str, *, verify_images: bool = False,
                  skip_bad_images: bool = False) -> list[Sample]:
    """`folder/<class>/*` as samples labelled in the order of the training `classes`."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{flag} {root} does not exist; pass a folder with one sub-folder per class")
    try:
        found = class_files(root)
    except DataError as exc:
        raise DataError(f"{flag}: {exc}") from None
    missing, extra = sorted(set(classes) - set(found.images)), sorted(set(found.images) - set(classes))
    if missing or extra:
        parts = [f"{what}: {first_few(names)}" for what, names in
                 (("missing", missing), ("not a training class", extra)) if names]
        raise DataError(f"{flag} {root}: its class folders differ from the training classes "
                        f"({'; '.join(parts)}); give it one folder per training class, named the same")
    notes: list[str] = []
    note_ignored(found.ignored, notes)
    try:
        (by_class,) = readable([found.images], verify_images or skip_bad_images, skip_bad_images, notes)
    except DataError as exc:
        raise DataError(f"{flag} {root}: {exc}") from None
    for note in notes:
        warnings.warn(f"{flag}: {note}", DataWarning, stacklevel=2)
    return [Sample(p, classes.index(c)) for c in classes for p in by_class[c]]


def relative(paths: list[Path], root: Path | None) -> list[str]:
    """Paths as the manifest records them: relative to the target folder when inside it."""
    out = []
    for p in paths:
        try:
            out.append(p.relative_to(root).as_posix() if root else str(p))
        except ValueError:
            out.append(str(p))
    return out
