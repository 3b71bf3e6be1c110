import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from edgetune.errors import InputError
from edgetune.preprocess import Preprocess, as_image, to_rgb

PRE = Preprocess(size=(48, 48), resize=56, interpolation="bilinear")


def _torchvision_eval(pre: Preprocess):
    return v2.Compose([
        v2.PILToTensor(),
        v2.Resize(pre.resize, interpolation=v2.InterpolationMode(pre.interpolation), antialias=True),
        v2.CenterCrop(list(pre.size)),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(pre.mean), list(pre.std)),
    ])


def test_matches_torchvision_eval_preset():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (80, 120, 3), dtype=np.uint8))
    ours = PRE.apply(image)
    ref = _torchvision_eval(PRE)(image).numpy()
    assert ours.shape == (3, 48, 48) and ours.dtype == np.float32
    # PIL and torchvision-tensor resizing differ by rounding: within 2/255 after normalising.
    assert np.abs(ours - ref).max() < 2.5 / 255 / min(PRE.std)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "I", "F", "CMYK", "LA"])
def test_any_mode_becomes_rgb(mode):
    base = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    if mode == "I;16":
        im = Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
        assert im.mode == "I;16"
    else:
        im = base.convert(mode)
    rgb = to_rgb(im)
    assert rgb.mode == "RGB" and rgb.size == (8, 8)
    if mode == "I;16":
        # 16-bit grey is scaled, not clipped: the brightest pixel stays bright.
        assert np.asarray(rgb).max() > 200


def test_arrays_are_checked():
    with pytest.raises(InputError, match="uint8"):
        as_image(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(InputError, match="shape"):
        as_image(np.zeros((8, 8, 2), np.uint8))
    assert as_image(np.zeros((8, 8, 1), np.uint8)).mode == "RGB"


def test_roundtrip_dict():
    assert Preprocess.from_dict(PRE.to_dict()) == PRE
