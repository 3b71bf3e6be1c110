"""`--weights PATH`: what matched is logged, a file of another architecture is refused in one
line naming what it seems to be for, and the formats (state_dict, checkpoint, safetensors)."""

import pytest
import torch
import torchvision

from edgetune.errors import ConfigError
from edgetune.train.model import create_model


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=7).state_dict(), path)
    return path


def test_loaded_tensors_are_counted_and_the_new_head_named(resnet18_file):
    log: list[str] = []
    model = create_model("resnet18", str(resnet18_file), 3, log=log.append)
    assert log == ["edgetune: --weights resnet18.pth: loaded 120 of 120 backbone tensors; the head is new; "
                   "2 tensors of the file unused"]
    saved = torch.load(resnet18_file, weights_only=True)
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], saved["layer4.1.conv2.weight"])


def test_missing_and_misshapen_tensors_are_listed(resnet18_file, tmp_path):
    state = torch.load(resnet18_file, weights_only=True)
    del state["layer1.0.conv1.weight"]
    state["layer2.0.bn1.bias"] = torch.zeros(3)
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "ddp.pt")  # DDP's prefix is stripped
    log: list[str] = []
    create_model("resnet18", str(tmp_path / "ddp.pt"), 3, log=log.append)
    assert "loaded 118 of 120 backbone tensors; left out: layer2.0.bn1.bias (3 in the file, 128 here), " \
           "layer1.0.conv1.weight; the head is new" in log[0]


def test_a_file_of_another_architecture_is_refused_naming_it(resnet18_file, tmp_path):
    with pytest.raises(ConfigError, match=r"matches 0 of \d+ backbone tensors of mobilenet_v3_small: it seems "
                                          r"to be a ResNet \(torchvision's or timm's resnet"):
        create_model("mobilenet_v3_small", str(resnet18_file), 3)
    torch.save({"format": "edgetune-checkpoint", "arch": "resnet18",
                "model": torch.load(resnet18_file, weights_only=True)}, tmp_path / "best.pt")
    with pytest.raises(ConfigError, match="it seems to be an edgetune checkpoint of resnet18"):
        create_model("mobilenet_v3_small", str(tmp_path / "best.pt"), 3)


def test_safetensors_file(resnet18_file, tmp_path):
    from safetensors.torch import save_file

    save_file(torch.load(resnet18_file, weights_only=True), tmp_path / "resnet18.safetensors")
    log: list[str] = []
    create_model("resnet18", str(tmp_path / "resnet18.safetensors"), 7, log=log.append)
    assert "loaded 120 of 120 backbone tensors; the head too" in log[0]
