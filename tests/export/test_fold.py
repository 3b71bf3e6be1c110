"""Graphs with the preprocessing folded in, and graphs at an older opset for TensorRT 8.6: each
the same network as its source, shown on real images in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgetune.bundle import read_manifest
from edgetune.calib.preflight import preflight
from edgetune.export.fold import IMAGE, as_layout, check_fold, fold_preprocessing
from edgetune.export.graph_parity import ParityError, compare
from edgetune.export.opset import convert_opset, graph_opset, same_network
from edgetune.files import INT8_TENSORRT, folded_name
from edgetune.preprocess import load_image
from tests.support.tiny_bundle import FP32, INT8, PREPROCESS


@pytest.fixture(scope="module")
def pixels(tiny) -> np.ndarray:
    """The tiny bundle's real images at the input size, as uint8 HWC, with random ones beside."""
    real = [PREPROCESS.pixels(load_image(p)) for p in tiny.images]
    noise = np.random.default_rng(0).integers(0, 256, (13, *PREPROCESS.size, 3), dtype=np.uint8)
    return np.concatenate([np.stack(real), noise])


@pytest.mark.parametrize("source, precision", [(FP32, "fp32"), (INT8, "int8")])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_the_folded_graph_equals_the_float_graph(tiny, pixels, tmp_path, source, precision, layout):
    folded = fold_preprocessing(tiny.bundle / source, tmp_path / "folded.onnx", PREPROCESS, layout)
    parity = check_fold(tiny.bundle / source, folded, PREPROCESS, pixels, layout, precision)
    # The same float32 ops as Preprocess.normalize, in numpy's order: the same logits
    assert parity.max_abs_diff <= 1e-5 and parity.top1_agreement == 1.0 and parity.images == 16
    graph = onnx.load(str(folded)).graph
    image = graph.input[0]
    assert image.name == IMAGE and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_value or d.dim_param for d in image.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str)  # the batch stays dynamic
    assert dims[1:] == ([32, 32, 3] if layout == "NHWC" else [3, 32, 32])


def test_float_pixels_with_softmax_give_probabilities(tiny, pixels, tmp_path):
    folded = fold_preprocessing(tiny.bundle / INT8, tmp_path / "ds.onnx", PREPROCESS, "NCHW", "float32",
                                softmax=True)
    parity = check_fold(tiny.bundle / INT8, folded, PREPROCESS, pixels, "NCHW", "int8", "float32", softmax=True)
    assert parity.max_abs_diff <= 1e-5
    assert as_layout(pixels, "NCHW", "float32").dtype == np.float32


def test_a_wrong_fold_is_caught(tiny, pixels, tmp_path):
    """The check is not vacuous: the same graph folded with another std disagrees."""
    from dataclasses import replace

    wrong = fold_preprocessing(tiny.bundle / FP32, tmp_path / "wrong.onnx", replace(PREPROCESS, std=(1.0, 1.0, 1.0)),
                               "NHWC")
    with pytest.raises(ParityError, match="disagrees"):
        check_fold(tiny.bundle / FP32, wrong, PREPROCESS, pixels, "NHWC", "fp32")
    with pytest.raises(ParityError):
        compare(np.eye(3), np.eye(3)[::-1], 1e-3, "swapped")


@pytest.mark.parametrize("source", [FP32, INT8])
def test_opset_17_is_the_same_network_and_passes_the_8_6_preflight(tiny, pixels, tmp_path, source):
    src = tiny.bundle / source
    old = graph_opset(src)
    assert old > 17
    assert any("opset" in str(w) for w in preflight(src, "8.6").warnings)
    converted = convert_opset(src, tmp_path / "o17.onnx", 17)
    assert graph_opset(converted) == 17
    batch = np.stack([PREPROCESS.normalize(p) for p in pixels])
    parity = same_network(src, converted, batch)
    assert parity.max_abs_diff == 0.0 and parity.top1_agreement == 1.0
    assert preflight(converted, "8.6").warnings == []  # (the CPU INT8 recipe fails 8.6's QDQ lint, as it should)


def test_an_export_for_jetpack_6_with_folded_graphs(reexported_run):
    """--tensorrt-version 8.6 --fold-preprocessing nhwc: the TensorRT graph at opset 17 with its
    parity recorded, and the folded graphs listed apart from the artifacts, each checked."""
    out, manifest = reexported_run.out, read_manifest(reexported_run.out)
    trt = manifest.artifact(INT8_TENSORRT)
    assert graph_opset(out / INT8_TENSORRT) == 17
    assert trt.opset["opset"] == 17 and trt.opset["from"] == 20 and trt.opset["for"] == "TensorRT 8.6"
    assert trt.opset["parity"]["max_abs_diff"] <= 1e-5 and trt.opset["parity"]["top1_agreement"] == 1.0
    assert trt.preflight["8.6"] == "passed"  # no opset warning left
    assert set(manifest.folded) == {folded_name(f, "NHWC") for f in ("model.onnx", INT8_TENSORRT)}
    for name, record in manifest.folded.items():
        assert (out / name).is_file() and record["layout"] == "NHWC" and record["pixels"] == "uint8"
        assert record["parity"]["max_abs_diff"] <= 1e-5 and record["parity"]["images"] > 0
        assert name not in {a.file for a in manifest.artifacts}  # never loaded as a float graph
    assert any("opset 17 for TensorRT 8.6" in line for line in reexported_run.log)
    from edgetune.report.info import describe

    assert set(describe(out)["folded"]) == set(manifest.folded)  # `edgetune info` names them
