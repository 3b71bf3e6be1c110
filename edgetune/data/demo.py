"""The embedded demo data: scikit-learn's handwritten digits (1,797 8×8 images, 10 classes),
written once as an ImageFolder with train/ and val/ splits. Ships with scikit-learn, so
it works offline."""

from __future__ import annotations

import os
import random
from pathlib import Path

from edgetune.atomic import DONE, publish_folder
from edgetune.errors import require


def default_dir() -> Path:
    home = os.environ.get("EDGETUNE_HOME") or Path.home() / ".cache" / "edgetune"
    return Path(home) / "demo-digits"


def ensure_digits(root: str | Path | None = None, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """Write the digits as PNGs under `root` (once) and return it."""
    root = Path(root) if root else default_dir()
    stamp = "sklearn.datasets.load_digits\n"
    if (root / DONE).is_file():
        return root

    def fill(folder: Path) -> None:
        datasets = require("sklearn.datasets", "train", "the demo data set")
        import numpy as np
        from PIL import Image

        digits = datasets.load_digits()
        rng = random.Random(seed)
        for label in range(10):
            idx = [i for i, t in enumerate(digits.target) if t == label]
            rng.shuffle(idx)
            n_val = round(len(idx) * val_fraction)
            for split, chunk in (("val", idx[:n_val]), ("train", idx[n_val:])):
                (folder / split / str(label)).mkdir(parents=True, exist_ok=True)
                for i in chunk:
                    pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
                    Image.fromarray(pixels, mode="L").save(folder / split / str(label) / f"{i:04d}.png")

    return publish_folder(root, stamp, fill)
