"""A synthetic camera shift on the embedded digits: the same classes seen through a flatter,
brighter, blurrier, noisier camera. Torch-free; the adaptation tests and tools/bench_adapt.py
use it as the deployment domain.

The shift is applied at the model's input resolution, after the same bilinear upsampling
edgetune's preprocessing does, because a real camera's blur and sensor noise happen at the
pixels the model sees, not at the 8×8 source resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from edgetune.atomic import DONE, publish_folder


@dataclass(frozen=True)
class CameraShift:
    contrast: float = 0.45  # pixel values squeezed towards the mean: a flat, hazy lens
    brightness: float = 90.0  # added to every pixel (0..255): over-exposure
    blur: float = 1.2  # Gaussian blur radius in pixels: soft focus
    noise: float = 18.0  # std of Gaussian sensor noise (0..255)
    size: int = 32

    @classmethod
    def none(cls, size: int = 32) -> CameraShift:
        return cls(contrast=1.0, brightness=0.0, blur=0.0, noise=0.0, size=size)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        grey = image.convert("L").resize((self.size, self.size), Image.Resampling.BILINEAR)
        if self.blur > 0:
            grey = grey.filter(ImageFilter.GaussianBlur(self.blur))
        x = np.asarray(grey, np.float32)
        x = (x - 127.5) * self.contrast + 127.5 + self.brightness
        if self.noise > 0:
            x = x + rng.normal(0.0, self.noise, x.shape)
        return Image.fromarray(np.clip(x, 0, 255).round().astype(np.uint8), mode="L")


def ensure_shifted(source: str | Path, root: str | Path, shift: CameraShift = CameraShift(),
                   seed: int = 0) -> Path:
    """`source` (an ImageFolder, e.g. `ensure_digits()`) seen through `shift`, written once
    under `root` with the same folder layout; returns `root`."""
    source, root = Path(source), Path(root)
    if (root / DONE).is_file():
        return root

    def fill(folder: Path) -> None:
        rng = np.random.default_rng(seed)
        for path in sorted(source.rglob("*.png")):
            dest = folder / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as im:
                shift.apply(im, rng).save(dest)

    return publish_folder(root, f"{shift}\n", fill)
