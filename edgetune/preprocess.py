"""One source of truth for preprocessing, shared by training, calibration, evaluation,
the manifest and the torch-free runtime.

`Preprocess.apply` is plain PIL + numpy. The trainer's evaluation transform calls this
same function, so what was validated is exactly what deployment code runs.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgetune.errors import InputError

Interpolation = Literal["nearest", "bilinear", "bicubic"]
_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to `resize`, centre-crop `size` (H, W), scale to [0, 1],
    normalise with `mean`/`std`, lay out as NCHW float32."""

    size: tuple[int, int]
    resize: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: Interpolation = "bilinear"
    layout: Literal["NCHW"] = "NCHW"

    def __post_init__(self):
        if self.interpolation not in _PIL_FILTERS:
            raise ValueError(f"interpolation {self.interpolation!r} not in {sorted(_PIL_FILTERS)}")
        if self.resize < min(self.size):
            raise ValueError(f"resize {self.resize} is smaller than the crop {self.size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(
            size=tuple(d["size"]),
            resize=int(d["resize"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=d.get("interpolation", "bilinear"),
            layout=d.get("layout", "NCHW"),
        )

    def resize_crop(self, image: Image.Image) -> Image.Image:
        """Resize the shorter side then centre-crop, like torchvision's eval presets."""
        w, h = image.size
        if w <= h:
            new_w, new_h = self.resize, max(1, int(self.resize * h / w))
        else:
            new_w, new_h = max(1, int(self.resize * w / h)), self.resize
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), _PIL_FILTERS[self.interpolation])
        crop_h, crop_w = self.size
        top = int(round((new_h - crop_h) / 2.0))
        left = int(round((new_w - crop_w) / 2.0))
        return image.crop((left, top, left + crop_w, top + crop_h))

    def normalize(self, rgb_uint8: np.ndarray) -> np.ndarray:
        """HWC uint8 RGB -> CHW float32, normalised."""
        x = rgb_uint8.astype(np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def pixels(self, image: Image.Image) -> np.ndarray:
        """A PIL image of any mode -> HWC uint8 RGB at the model's input size: what a graph with
        the normalisation folded in (export/fold.py) or DeepStream's nvinfer takes."""
        return np.asarray(self.resize_crop(to_rgb(image)))

    def apply(self, image: Image.Image) -> np.ndarray:
        """A PIL image of any mode -> CHW float32 ready for the model."""
        return self.normalize(self.pixels(image))

    def batch(self, images) -> np.ndarray:
        """Many images (paths, PIL images or HWC uint8 arrays) -> NCHW float32."""
        return np.stack([self.apply(as_image(im)) for im in images])


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode (L, RGB, RGBA, P, I;16, I, F, CMYK …) -> 8-bit RGB."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        # 16/32-bit grey: convert("RGB") would clip, not scale; rescale to 8 bits first.
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if image.mode == "F":
            peak = 1.0 if arr.max() <= 1.0 else 255.0
        arr = np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image as RGB, or raise an InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}; pass a path to an existing image file")
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(
            f"cannot read image {path}: {exc}; expected a JPEG, PNG, BMP, TIFF or WebP file"
        ) from None


# Bounds on an image that arrives as bytes (a server request): a file this large is not a
# camera frame, and the pixel count is read from the header before anything is decoded, so a
# small file that would expand to gigabytes (a decompression bomb) is refused unopened.
MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_IMAGE_PIXELS = 64_000_000


def decode_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Encoded image bytes (JPEG, PNG, …) -> RGB PIL image, or an InputError that says why.
    Bytes only: nothing a caller sends is ever taken for a file name."""
    import io

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"an encoded image is bytes, not {type(data).__name__}")
    if len(data) > max_bytes:
        raise InputError(f"image of {len(data):,} bytes is over the {max_bytes:,}-byte limit")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise InputError(f"image of {im.width}x{im.height} pixels is over the {max_pixels:,}-pixel limit")
            im.load()
            return to_rgb(im)
    except UnidentifiedImageError:
        raise InputError(f"cannot decode the image ({len(data):,} bytes): not a format Pillow reads "
                         "(JPEG, PNG, BMP, TIFF, WebP, …)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot decode the image ({len(data):,} bytes): {exc}") from None


def as_image(item) -> Image.Image:
    """A path, a PIL image, or an HWC uint8 array (H×W, H×W×1, ×3 or ×4) -> RGB PIL image."""
    if isinstance(item, (str, os.PathLike)):
        return load_image(item)
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise InputError(
                f"image array has dtype {item.dtype}; expected uint8 HWC (convert with .astype(np.uint8))"
            )
        if item.ndim == 3 and item.shape[2] == 1:
            item = item[:, :, 0]
        if item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (3, 4)):
            return to_rgb(Image.fromarray(item))
        raise InputError(
            f"image array has shape {item.shape}; expected HWC uint8 with 1, 3 or 4 channels"
        )
    raise InputError(
        f"cannot use a {type(item).__name__} as an image; expected a file path, a PIL image "
        "or an HWC uint8 numpy array"
    )
