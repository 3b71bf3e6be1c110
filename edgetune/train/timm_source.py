"""timm's models as a model source (`--model timm/NAME`, `pip install 'edgetune[timm]'`).

Nothing here is a table per model: the preprocessing is the weights' pretrained config, and
the freeze groups and segments come from the model's own structure (edgetune.train.timm_structure).
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import nn

from edgetune.errors import ConfigError, did_you_mean, first_few, require
from edgetune.preprocess import Preprocess
from edgetune.train.source import ParamGroups, Segment
from edgetune.train.timm_structure import timm_groups, timm_segments
from edgetune.train.weights_file import is_path, load_weights_file

PREFIX = "timm/"


class TimmSource:
    """Names carry the prefix `timm/`; what follows it is timm's own name, with an optional
    pretrained tag (`timm/resnet18.a1_in1k`) that chooses the weights DEFAULT downloads."""

    EXTRA = "timm"  # what `pip install 'edgetune[…]'` brings timm with

    def timm(self, arch: str):
        return require("timm", self.EXTRA, f"--model {arch}")

    def name(self, arch: str) -> str:
        return arch[len(PREFIX):]

    def check(self, arch: str) -> None:
        timm = self.timm(arch)
        name = self.name(arch)
        base, tag = timm.models.split_model_name_tag(name)
        if not timm.is_model(base):
            known = timm.list_models() + timm.list_pretrained()
            hint = did_you_mean(name, known).replace("'", f"'{PREFIX}", 1)
            raise ConfigError(f"--model {arch}: timm has no model {name!r}{hint}; "
                              "timm.list_models() lists them (timm.list_pretrained() those with weights)")
        tags = [n.partition(".")[2] for n in timm.models.get_arch_pretrained_cfgs(base)]
        if tag and tag not in tags:
            raise ConfigError(f"--model {arch}: {base} has no pretrained tag {tag!r}{did_you_mean(tag, tags)}; "
                              f"its tags: {first_few(tags, 6)}")

    def pretrained_cfg(self, arch: str):
        return self.timm(arch).models.get_pretrained_cfg(self.name(arch))

    def preprocess(self, arch: str, weights: str, image_size: int | None) -> Preprocess:
        """The pretrained config's size, crop, interpolation, mean and std; with --image-size,
        that size, the shorter side resized to it (the whole image kept), as for torchvision."""
        cfg = self.pretrained_cfg(arch)
        _, h, w = cfg.input_size
        if image_size is not None and cfg.fixed_input_size and (image_size, image_size) != (h, w):
            raise ConfigError(f"--image-size {image_size}: {arch} takes only {h}x{w} inputs (its pretrained "
                              f"config fixes the size); drop --image-size or pass {h}")
        return preprocess_from(cfg.input_size, cfg.crop_pct, cfg.interpolation, cfg.mean, cfg.std, image_size)

    def create(self, arch: str, weights: str, num_classes: int, dropout: float, log) -> nn.Module:
        timm = self.timm(arch)
        if weights == "DEFAULT":
            if not self.pretrained_cfg(arch).has_weights:
                raise ConfigError(f"--model {arch} has no pretrained weights in timm; pick a tagged name with "
                                  "weights (timm.list_pretrained()), --weights PATH, or --weights none")
            try:
                model = timm.create_model(self.name(arch), pretrained=True, **_head_kwargs(num_classes, dropout))
                return model if num_classes == self.pretrained_cfg(arch).num_classes else fresh_head(model)
            except (OSError, RuntimeError) as exc:  # the hub's errors are OSErrors
                raise ConfigError(
                    f"could not download the pretrained weights of {arch} ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:120]}); connect to the internet once (timm caches them), "
                    "pass --weights PATH to a local file, or --weights none to train from scratch"
                ) from None
        if weights.lower() != "none" and not is_path(weights):
            raise ConfigError(f"--weights {weights!r}: timm models take DEFAULT (the weights of the tag in the "
                              f"name, e.g. timm/resnet18.a1_in1k), none, or a .safetensors/.pth file")
        model = self.build(arch, num_classes, dropout)
        if is_path(weights):
            load_weights_file(model, weights, arch, self.param_groups(arch, model).head, log)
        return model

    def weights_at_hand(self, arch: str, weights: str) -> bool:
        """DEFAULT: the tag's weights in Hugging Face's cache (or torch's, for a URL)."""
        if weights != "DEFAULT":
            return weights.lower() == "none" or is_path(weights)
        cfg = self.pretrained_cfg(arch)
        if not cfg.has_weights:
            return False
        if cfg.hf_hub_id:
            from huggingface_hub import try_to_load_from_cache

            return any(isinstance(try_to_load_from_cache(cfg.hf_hub_id, f), str)
                       for f in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"))
        import torch

        return bool(cfg.url) and (Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name).is_file()

    def build(self, arch: str, num_classes: int, dropout: float) -> nn.Module:
        timm = self.timm(arch)
        return fresh_head(timm.create_model(self.name(arch), pretrained=False, **_head_kwargs(num_classes, dropout)))

    def param_groups(self, arch: str, model: nn.Module) -> ParamGroups:
        return timm_groups(model)

    def segments(self, model: nn.Module, arch: str) -> list[Segment]:
        return timm_segments(model)


def fresh_head(model: nn.Module) -> nn.Module:
    """A new classifier starts with PyTorch's default init, as torchvision's heads do. timm's
    EfficientNets draw it Google's way (uniform ±1/sqrt(classes)): with 5 classes the Lite0 head
    started at a loss of 4.7 and, at lr 1e-3 on 137 photographs, was at 38.6% val top-1 after 2
    epochs where a linear probe of the same features gets 100%."""
    head = model.get_classifier()
    if isinstance(head, nn.Linear):
        head.reset_parameters()
    return model


def _head_kwargs(num_classes: int, dropout: float) -> dict:
    # timm's models carry their own dropout before the classifier (EfficientNet-Lite 0.2);
    # --dropout replaces it when given, as torchvision's own dropout stays unless added to.
    return {"num_classes": num_classes, **({"drop_rate": dropout} if dropout > 0 else {})}


def preprocess_from(input_size, crop_pct: float, interpolation: str, mean, std,
                    image_size: int | None) -> Preprocess:
    """A timm data config as edgetune's Preprocess: resize the shorter side to size / crop_pct
    (timm's `scale_size`), centre-crop the size. timm's "squash" crop mode (131 of 1,826
    pretrained configs) stretches the image instead; Preprocess keeps the aspect ratio."""
    if image_size is not None:
        size, resize = (image_size, image_size), image_size
    else:
        size = (int(input_size[1]), int(input_size[2]))
        resize = math.floor(min(size) / crop_pct)
    return Preprocess(size=size, resize=resize, mean=tuple(float(v) for v in mean),
                      std=tuple(float(v) for v in std), interpolation=interpolation)
