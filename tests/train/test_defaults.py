"""The defaults never cost accuracy silently: on real photographs (the shipped set), the default
settings reach --cache off's top-1 within 1 point, and the log says what trained and why the
cache was on or off."""

from __future__ import annotations

import pytest
import torch

from edgetune.config import TrainConfig
from edgetune.data.photos import ensure_photos
from edgetune.train import train

# Where training starts: from scratch (every block trains, nothing to cache), and from
# EfficientNet-Lite0's ImageNet weights (the lite extra, offline): --unfreeze auto takes the head,
# and the cache serves it one view where --cache off augments afresh every epoch. 96 px keeps
# the pair to seconds. Six epochs there: both start from the same imprinted head, and after two
# at the imprinted head's small rate the one cached view was 3 images behind two fresh ones
# (after six, level).
STARTS = [
    pytest.param({"weights": "none", "image_size": 32, "lr": 3e-3}, id="from-scratch"),
    pytest.param({"model": "efficientnet_lite0", "weights": "DEFAULT", "image_size": 96, "epochs": 6},
                 id="pretrained-lite0"),
]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return ensure_photos(tmp_path_factory.mktemp("photos"))


@pytest.mark.parametrize("start", STARTS)
def test_default_cache_is_within_a_point_of_cache_off(photos, tmp_path, start):
    common = {"data": str(photos), "model": "resnet18", "epochs": 2, "batch_size": 32, "workers": 0, **start}
    logs: list[str] = []
    default = train(TrainConfig(**common), tmp_path / "default", log=logs.append)
    off = train(TrainConfig(cache="off", **common), tmp_path / "off", log=lambda *_: None)
    assert default.best_top1 >= off.best_top1 - 0.01, (default.best_top1, off.best_top1)
    assert any(line.startswith("edgetune: cache ") for line in logs), logs  # says on or off, and why
    if start["weights"] == "none":
        assert any("every block trains" in line for line in logs), logs
    else:
        assert any("--unfreeze auto (the default with pretrained weights) chose head" in line for line in logs), logs
        assert any(line.startswith("edgetune: cache on") for line in logs), logs
        # The head alone on pretrained features of 27 images a class, imprinted: the usual rate,
        # recorded as it ran.
        assert any(line.startswith("edgetune: head imprinted from the class means of 137 ") for line in logs), logs
        assert not any(line.startswith("edgetune: lr ") for line in logs), logs
        assert default.config.lr == 1e-3 and torch.load(default.best, weights_only=False)["config"]["lr"] == 1e-3


def test_the_default_batch_shrinks_so_that_a_small_set_still_makes_steps():
    # At batch 32 a training set of 25 images is one step an epoch: ten steps leave a new head
    # undertrained (BENCHMARKS.md, Transfer from ImageNet on few photographs).
    cfg = TrainConfig()
    assert [cfg.batch_for(n) for n in (10, 25, 100, 10_000)] == [8, 8, 25, 32]
    assert cfg.batch_for(100, processes=2) == 12  # each process's share makes the steps
    assert TrainConfig(batch_size=32).batch_for(25) == 32  # --batch-size stands


def test_the_default_lr_and_epochs_follow_what_trains():
    """A new head alone on pretrained features: imprinted, lr 3e-4 under 10 images a class and
    1e-3 otherwise; started at random, 3e-3. 1e-3 where blocks train (a schedule that unfreezes
    any) or the weights are random; 20 epochs for such a head under 10 images a class, else 10;
    --lr and --epochs stand (BENCHMARKS.md, Transfer from ImageNet on few photographs)."""
    from edgetune.train.prepare import resolve_for_depth
    from edgetune.unfreeze_schedule import UnfreezeStage

    head, blocks = (UnfreezeStage("head", 0),), (UnfreezeStage("2", 0),)
    gradual = (UnfreezeStage("head", 0), UnfreezeStage("1", 2))
    scratch = TrainConfig(weights="none", image_size=32)

    def resolved(cfg, stages, per_class=50):
        c = resolve_for_depth(cfg, stages, per_class, [].append)
        return c.lr, c.epochs

    assert resolved(TrainConfig(), head) == (1e-3, 10)
    assert resolved(TrainConfig(), head, per_class=5) == (3e-4, 20)
    assert resolved(TrainConfig(head_init="random"), head) == (3e-3, 10)
    assert resolved(TrainConfig(head_init="random"), head, per_class=5) == (3e-3, 20)
    assert resolved(TrainConfig(), blocks, per_class=5) == (1e-3, 10)
    assert resolved(TrainConfig(), gradual) == (1e-3, 10)
    assert resolved(scratch, head, per_class=5) == (1e-3, 10)
    assert resolved(TrainConfig(lr=0.01, epochs=3), head, per_class=5) == (0.01, 3)
    logs: list[str] = []
    resolve_for_depth(TrainConfig(), head, 5, logs.append)
    assert logs == ["edgetune: lr 0.0003, not 0.001: a new head alone on pretrained features takes smaller steps "
                    "from its imprinted start on under 10 images a class (--lr sets it)",
                    "edgetune: 20 epochs, not 10: a new head alone on under 10 images a class learns from each "
                    "epoch's fresh augmented view of them (--epochs sets it)"]
