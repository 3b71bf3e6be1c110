import pytest
import torch
import torchvision

from edgetune.config import TrainConfig
from edgetune.errors import ConfigError
from edgetune.train import checkpoint, train
from edgetune.train.freeze import FreezePlan
from edgetune.train.model import create_model

ARCHS = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf",
         "convnext_tiny"]


@pytest.mark.parametrize("arch", ARCHS)
def test_plan_groups_every_parameter(arch):
    model = torchvision.models.get_model(arch, weights=None)
    names = [n for n, _ in model.named_parameters()]
    head = FreezePlan.build(arch, model, "head")
    top1 = FreezePlan.build(arch, model, "1")
    everything = FreezePlan.build(arch, model, "all")
    assert head.trainable == set(head.head) and head.head
    assert top1.trainable == set(head.head) | set(top1.groups[-1])
    assert everything.trainable == set(names)
    assert len(top1.groups) >= 4  # stem … blocks: "the last K groups" means something


def test_unknown_family_and_too_many_blocks():
    with pytest.raises(ConfigError, match="supported"):
        FreezePlan.build("vit_b_16", torch.nn.Linear(1, 1), "1")
    with pytest.raises(ConfigError, match="0..5"):
        FreezePlan.build("resnet18", torchvision.models.resnet18(), "9")


def test_frozen_layers_and_batchnorm_stats_untouched(small_digits, tmp_path):
    """Train head + top block: everything below is bit-for-bit unchanged, BatchNorm
    running statistics included; the trainable part moved."""
    torch.manual_seed(0)
    start = create_model("resnet18", "none", 3)
    init = tmp_path / "init.pt"
    torch.save(start.state_dict(), init)
    cfg = TrainConfig(data=str(small_digits), model="resnet18", weights=str(init), image_size=32,
                      unfreeze="1", epochs=1, batch_size=16, augment="light")
    result = train(cfg, tmp_path / "out", log=lambda *_: None)
    after = checkpoint.load(result.last)["model"]
    before = start.state_dict()
    plan = FreezePlan.build("resnet18", start, "1")
    trainable_modules = {n.rsplit(".", 1)[0] for n in plan.trainable}
    changed_frozen, unchanged_trainable = [], []
    for name, tensor in before.items():
        module = name.rsplit(".", 1)[0]
        same = torch.equal(tensor, after[name])
        if module in trainable_modules:
            if not same and name.endswith(("weight", "bias")):
                continue
            if same and name.endswith(("weight",)):
                unchanged_trainable.append(name)
        elif not same:
            changed_frozen.append(name)
    assert not changed_frozen, changed_frozen
    assert not unchanged_trainable, unchanged_trainable
    # The trainable block's BatchNorm did update its statistics.
    assert not torch.equal(before["layer4.0.bn1.running_mean"], after["layer4.0.bn1.running_mean"])
    assert torch.equal(before["layer3.1.bn2.running_var"], after["layer3.1.bn2.running_var"])


def test_same_seed_same_weights(small_digits, tmp_path):
    cfg = TrainConfig(data=str(small_digits), model="resnet18", weights="none", image_size=32,
                      unfreeze="all", epochs=1, batch_size=16)
    a = checkpoint.load(train(cfg, tmp_path / "a", log=lambda *_: None).last)["model"]
    b = checkpoint.load(train(cfg, tmp_path / "b", log=lambda *_: None).last)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
