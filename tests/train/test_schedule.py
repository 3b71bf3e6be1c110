"""Gradual unfreezing and --unfreeze auto: the pure rules, and a real two-stage run."""

import pytest
import torch

from edgetune.config import TrainConfig
from edgetune.errors import ConfigError
from edgetune.train import checkpoint, train
from edgetune.train.schedule import choose_unfreeze, default_unfreeze, random_frozen, stage_at
from edgetune.unfreeze_schedule import parse_schedule


def test_parse_and_locate_stages():
    stages = parse_schedule("head:2,1:2,2", epochs=8)
    assert [(s.unfreeze, s.first_epoch) for s in stages] == [("head", 0), ("1", 2), ("2", 4)]
    assert [stage_at(stages, e) for e in range(8)] == [0, 0, 1, 1, 2, 2, 2, 2]
    with pytest.raises(ConfigError, match="DEPTH:EPOCHS"):
        parse_schedule("head,1:2", epochs=8)  # only the last stage may omit its epochs
    with pytest.raises(ConfigError, match="--epochs 3"):
        parse_schedule("head:2,1:2", epochs=3)


@pytest.mark.parametrize("per_class,probe,scratch,expected", [
    (30, 0.95, False, "head"),     # little data, features fit: the head alone
    (3000, 0.95, False, "1"),      # plenty of data: the top block can adapt too
    (30, 0.80, False, "1"),        # the domain differs somewhat
    (3000, 0.80, False, "2"),
    (30, 0.40, False, "2"),        # a distant domain, little data
    (3000, 0.40, False, "all"),    # a distant domain, lots of data
    (30, None, True, "all"),       # nothing pretrained
    (5, 0.40, False, "head"),      # a few images a class: any trained block overfits
    (5, None, False, "head"),
])
def test_auto_rule(per_class, probe, scratch, expected):
    choice = choose_unfreeze(per_class, probe, scratch, groups=5)
    assert choice.unfreeze == expected
    assert choice.why  # every choice says why


def test_gradual_unfreezing_trains_each_stage_from_its_own_split(small_digits, tmp_path):
    cfg = TrainConfig(data=str(small_digits), model="resnet18", weights="none", image_size=32,
                      unfreeze_schedule="head:1,1", epochs=2, batch_size=16, augment="none",
                      workers=0)
    logs = []
    result = train(cfg, tmp_path / "o", log=logs.append)
    assert [(h["stage"], h["unfreeze"], h["cached"]) for h in result.history] == [
        (1, "head", True), (2, "1", True)]
    assert any("the pooled features" in line for line in logs)
    assert any("the input of layer4" in line for line in logs)
    ckpt = checkpoint.load(result.last)
    assert ckpt["schedule"] == [["head", 0], ["1", 1]]


def test_auto_from_a_pretrained_checkpoint_probes_and_explains(small_digits, trained_run, tmp_path):
    """Transfer as users do it: the session's run pretrained on all the digits; its checkpoint
    is fine-tuned with --unfreeze auto on a subset; the choice is printed with its reason."""
    torch.manual_seed(0)
    best = trained_run[0] / "checkpoints" / "best.pt"
    cfg = TrainConfig(data=str(small_digits), model="resnet18", weights=str(best), image_size=32,
                      unfreeze="auto", epochs=1, batch_size=16, augment="none", workers=0)
    logs = []
    result = train(cfg, tmp_path / "o", log=logs.append)
    line = next(line for line in logs if "--unfreeze auto chose" in line)
    assert "head-only probe reaches" in line and "training images per class" in line
    assert result.history[0]["unfreeze"] in ("head", "1", "2")


def test_default_depth_trains_every_block_from_scratch_and_says_why():
    scratch = TrainConfig(weights="none", image_size=32)
    assert scratch.unfreeze is None and scratch.resolved_unfreeze == "all"
    assert TrainConfig().resolved_unfreeze == "auto"  # pretrained: the data and a probe decide
    assert TrainConfig(weights="none", image_size=32, unfreeze="2").resolved_unfreeze == "2"  # honoured
    assert "a random block is not a feature extractor" in default_unfreeze(scratch).why
    stages = parse_schedule("head:1,2", epochs=3)
    assert random_frozen(stages, groups=5).startswith("3 of 5 blocks stay frozen at their random")
    assert random_frozen(parse_schedule("head:1,all", epochs=3), groups=5) is None
