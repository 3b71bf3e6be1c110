"""timm models as a source: freeze groups from group_matcher, segments that compose to the
forward pass and split where the plan says, preprocessing from the pretrained config."""

import pytest
import torch

pytest.importorskip("timm", reason="the timm extra is not installed: pip install 'edgetune[timm]'")

from edgetune.errors import ConfigError  # noqa: E402
from edgetune.train.freeze import FreezePlan  # noqa: E402
from edgetune.train.model import create_model, preprocess_for, segments_of  # noqa: E402
from edgetune.train.segments import split  # noqa: E402

# The end-to-end families, and two whose structure differs: ConvNeXt's head is one module
# (norm, pool, fc); GhostNet's forward_head runs a conv that its matcher files with the last block.
ARCHS = ["timm/tf_efficientnet_lite0", "timm/mobilenetv3_small_050", "timm/mobilenetv4_conv_small",
         "timm/resnet10t", "timm/regnetx_002", "timm/convnext_atto", "timm/ghostnet_050"]


def _model(arch):
    torch.manual_seed(0)
    return create_model(arch, "none", 5).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_segments_compose_and_split_where_the_plan_says(arch):
    model = _model(arch)
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    y = x
    for segment in segments_of(model, arch):
        y = segment.module(y)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)
    for unfreeze in ("head", "2"):
        plan = FreezePlan.build(arch, model, unfreeze)
        plan.apply(model)
        s = split(model, arch)
        assert not any(p.requires_grad for p in s.prefix.parameters())
        assert {id(p) for p in s.suffix.parameters()} == {id(p) for p in model.parameters() if p.requires_grad}
        torch.testing.assert_close(s.suffix(s.prefix(x)), expected, rtol=1e-4, atol=1e-5)
        assert s.index > 0  # the cache has a prefix to run


def test_groups_are_stem_blocks_then_the_head_forward_head_runs():
    model = _model("timm/tf_efficientnet_lite0")
    plan = FreezePlan.build("timm/tf_efficientnet_lite0", model, "head")
    assert plan.head == ("classifier.weight", "classifier.bias")
    assert plan.groups[0][0] == "conv_stem.weight" and len(plan.groups) == 8  # stem + 7 stages
    assert "conv_head.weight" in plan.groups[-1]  # the matcher files the last conv with the last stage
    ghost = _model("timm/ghostnet_050")
    assert "conv_head.weight" in FreezePlan.build("timm/ghostnet_050", ghost, "head").head  # after the pool


def test_the_head_segment_sets_the_models_dropout_mode():
    """forward_head's dropout reads the model's own flag: evaluating the cached suffix turns it off."""
    torch.manual_seed(0)
    arch = "timm/mobilenetv4_conv_small"
    model = create_model(arch, "none", 5, dropout=0.5)
    FreezePlan.build(arch, model, "1").apply(model)
    s = split(model, arch)
    model.train()
    x = s.prefix.eval()(torch.randn(4, 3, 64, 64))
    s.suffix.eval()
    torch.testing.assert_close(s.suffix(x), s.suffix(x))
    s.suffix.train()
    assert not torch.equal(s.suffix(x), s.suffix(x))


@pytest.mark.parametrize("arch", ["timm/tf_efficientnet_lite0", "timm/resnet10t"])
def test_a_pool_then_linear_head_caches_the_pooled_features(arch):
    """Where forward_head is pool, dropout, linear, the pool is in the head-only prefix: the cache
    holds (N, C), not the trunk's map; the classifier alone trains, with the model's dropout."""
    torch.manual_seed(0)
    model = create_model(arch, "none", 5, dropout=0.5)
    FreezePlan.build(arch, model, "head").apply(model)
    s = split(model, arch)
    assert s.head_only and s.where == "the pooled features (head only)"
    x = s.prefix.eval()(torch.randn(4, 3, 64, 64))
    assert x.shape == (4, model.num_features)
    s.suffix.train()
    assert not torch.equal(s.suffix(x), s.suffix(x))  # --dropout 0.5 still applies, in training
    s.suffix.eval()
    torch.testing.assert_close(s.suffix(x), model.get_classifier()(x))


def test_a_vit_keeps_forward_features_whole():
    """A ViT adds its position embedding between modules: one features segment, still exact."""
    arch = "timm/vit_tiny_patch16_224"
    model = _model(arch)
    segments = segments_of(model, arch)
    assert [s.name for s in segments] == ["features.", "head."]
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(segments[1].module(segments[0].module(x)), model(x), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for s in segments for p in s.module.parameters()) == sum(
        p.numel() for p in model.parameters())


def test_preprocessing_comes_from_the_pretrained_config():
    pre = preprocess_for("timm/mobilenetv4_conv_small.e2400_r224_in1k", "DEFAULT", None)
    assert pre.size == (224, 224) and pre.resize == 256 and pre.interpolation == "bicubic"
    assert pre.mean == (0.485, 0.456, 0.406)
    assert preprocess_for("timm/tf_efficientnet_lite0", "none", 64).mean == (0.5, 0.5, 0.5)
    small = preprocess_for("timm/resnet18.a1_in1k", "DEFAULT", 64)
    assert small.size == (64, 64) and small.resize == 64
    with pytest.raises(ConfigError, match="takes only 224x224 inputs"):
        preprocess_for("timm/vit_tiny_patch16_224", "none", 64)
