"""Several labelled source folders with the same classes, merged into one training set
(multi-source training, `--data A B`), plus the few labelled target images of
`--target-labels`. Torch-free.

Per-source balancing: without it the largest folder decides what the model learns and a
small second camera is noise. Each source's training samples are repeated until it holds
about as many as the largest one, so an epoch draws every source about equally and the
order stays a plain seeded permutation (exact resume still holds). Validation images are
merged as they are: each one counts once.
"""

from __future__ import annotations

from pathlib import Path

from edgetune.data.scan import Sample, Splits, scan
from edgetune.errors import DataError


def data_dirs(data) -> list[Path]:
    """`--data` as a list of folders: one string, or several."""
    if data is None:
        from edgetune.data.demo import ensure_digits

        return [ensure_digits()]
    return [Path(d) for d in ([data] if isinstance(data, (str, Path)) else data)]


def scan_sources(cfg, target_labels: str | Path | None = None) -> Splits:
    """The train/val splits of every `cfg.data` folder, merged and balanced per source;
    the labelled target images under `target_labels` join training as one more source."""
    found = [scan(d, cfg.val_fraction, cfg.seed, verify_images=cfg.verify_images,
                  skip_bad_images=cfg.skip_bad_images) for d in data_dirs(cfg.data)]
    first = found[0]
    extra = None
    if target_labels is not None:
        from edgetune.data.target_domain import scan_labelled

        extra = scan_labelled(target_labels, first.classes, "--target-labels",
                              verify_images=cfg.verify_images, skip_bad_images=cfg.skip_bad_images)
    if len(found) == 1 and not extra:
        return first
    dirs = data_dirs(cfg.data)
    for d, s in zip(dirs[1:], found[1:]):
        if s.classes != first.classes:
            raise DataError(
                f"--data {d} has classes {s.classes}, --data {dirs[0]} has {first.classes}; "
                "every source folder needs the same class folders"
            )
    groups = [s.train for s in found] + ([list(extra)] if extra else [])
    return Splits(first.classes, balance(groups), [v for s in found for v in s.val], first.layout)


def balance(groups: list[list[Sample]]) -> list[Sample]:
    """Each group repeated (a whole number of times) up to about the largest one's size."""
    largest = max(len(g) for g in groups)
    out: list[Sample] = []
    for g in groups:
        out += list(g) * max(1, round(largest / len(g)))
    return out
