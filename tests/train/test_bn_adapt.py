"""Slow BatchNorm statistics are re-estimated; the usual ones are left alone."""

import torch

from edgetune.config import TrainConfig
from edgetune.train import checkpoint, train
from edgetune.train.bn_adapt import slow_batchnorms
from edgetune.train.model import create_model


def test_only_trainable_slow_batchnorms_are_picked():
    resnet = create_model("resnet18", "none", 3)
    assert slow_batchnorms(resnet) == []  # momentum 0.1: its own statistics keep up
    mobilenet = create_model("mobilenet_v3_small", "none", 3)
    assert slow_batchnorms(mobilenet)
    for p in mobilenet.parameters():
        p.requires_grad_(False)
    assert slow_batchnorms(mobilenet) == []  # frozen layers keep their statistics


def test_mobilenet_statistics_match_its_weights(small_digits, tmp_path):
    """After a short fine-tune, the saved running mean of a trainable BatchNorm is the
    average over the adaptation images, not 1%-per-step drift from its initial zeros."""
    cfg = TrainConfig(data=str(small_digits), model="mobilenet_v3_small", weights="none",
                      image_size=32, unfreeze="all", epochs=1, batch_size=16, bn_adapt_batches=2)
    logs = []
    result = train(cfg, tmp_path / "on", log=logs.append)
    assert any("re-estimated" in line for line in logs)
    adapted = checkpoint.load(result.last)["model"]
    off = train(TrainConfig(**{**cfg.__dict__, "bn_adapt_batches": 0}), tmp_path / "off",
                log=lambda *_: None)
    drifted = checkpoint.load(off.last)["model"]
    key = "features.0.1.running_var"
    # Initial running_var is 1; three steps at momentum 0.01 barely move it.
    assert torch.allclose(drifted[key], torch.ones_like(drifted[key]), atol=0.1)
    assert not torch.allclose(adapted[key], torch.ones_like(adapted[key]), atol=0.1)
