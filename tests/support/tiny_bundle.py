"""A small real bundle for runtime and bench tests, built without the training pipeline.

ResNet-18 (random init, 3 classes) exported at 32 px with a dynamic batch, an INT8 QDQ
copy calibrated on the same few images with ONNX Runtime, a torch checkpoint, a handful
of PNGs of different sizes and modes, and a manifest written through edgetune.bundle.
Built once per test session: the export takes a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edgetune.bundle import Manifest, artifact_record, write_manifest
from edgetune.preprocess import Preprocess

CLASSES = ["cat", "dog", "fox"]
PREPROCESS = Preprocess(size=(32, 32), resize=36)
FP32 = "model.onnx"
INT8 = "model.int8.cpu.onnx"
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TinyBundle:
    bundle: Path
    images: list[Path]  # real PNGs: RGB, grey, RGBA, of different sizes
    not_an_image: Path


_BUILT: dict[Path, TinyBundle] = {}


def tiny_bundle(root: Path) -> TinyBundle:
    """Build the bundle under `root` once; later calls return the same one."""
    if root not in _BUILT:
        _BUILT[root] = _build(root)
    return _BUILT[root]


def _build(root: Path) -> TinyBundle:
    import torch
    import torchvision

    bundle = root / "bundle"
    bundle.mkdir(parents=True)
    images = _write_images(root / "images")
    not_an_image = root / "images" / "notes.png"
    not_an_image.write_text("this is text, not a PNG\n")

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=len(CLASSES)).eval()
    x = torch.randn(2, 3, *PREPROCESS.size)
    torch.onnx.export(
        model, (x,), bundle / FP32,
        input_names=["input"], output_names=["logits"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}},
        dynamo=True, verbose=False,
        # One self-contained file, so the manifest's sha256 covers every weight.
        external_data=False,
    )
    torch.save(
        {"model": model.state_dict(), "arch": "resnet18", "classes": CLASSES,
         "preprocess": PREPROCESS.to_dict()},
        bundle / CHECKPOINT,
    )
    _quantize(bundle / FP32, bundle / INT8, PREPROCESS.batch(images))

    manifest = Manifest(
        model={"arch": "resnet18", "weights": None, "classes": CLASSES, "num_classes": 3},
        input={"name": "input", **PREPROCESS.to_dict()},
        artifacts=[
            artifact_record(bundle, FP32, backend="onnxruntime", target="cpu", precision="fp32"),
            artifact_record(bundle, INT8, backend="onnxruntime", target="cpu", precision="int8",
                            calibration={"method": "minmax", "samples": len(images)}),
        ],
        recommended={"cpu": {"file": INT8, "why": "test fixture"}},
        checkpoint=CHECKPOINT,
    )
    write_manifest(bundle, manifest)
    return TinyBundle(bundle, images, not_an_image)


def _write_images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    specs = [("rgb.png", "RGB", (50, 40)), ("grey.png", "L", (32, 32)), ("rgba.png", "RGBA", (48, 64))]
    paths = []
    for name, mode, (w, h) in specs:
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
        pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode=mode).save(folder / name)
        paths.append(folder / name)
    return paths


def _quantize(fp32: Path, int8: Path, batch: np.ndarray) -> None:
    """CPU recipe: QDQ, u8 activations, per-channel s8 weights (why u8: docs/ARCHITECTURE.md, principle 2)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter([{"input": batch[i : i + 1]} for i in range(len(batch))])

        def get_next(self):
            return next(self._items, None)

    quantize_static(
        str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
    )
