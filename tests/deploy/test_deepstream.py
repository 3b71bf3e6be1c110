"""`edgetune deploy deepstream`: the nvinfer config uses DeepStream's documented keys with
documented values, and nvinfer's normalisation, emulated in numpy, feeds the folded graph so
that it reproduces the bundle's own preprocessing and graph."""

from __future__ import annotations

import configparser

import numpy as np
import onnxruntime as ort
import pytest

from edgetune.deploy.deepstream import CONFIG, LABELS, README, write_deepstream
from edgetune.export.opset import graph_opset
from edgetune.preprocess import load_image
from edgetune.runtime import softmax
from tests.support.cli import assert_user_error, edgetune, edgetune_without_torch
from tests.support.tiny_bundle import CLASSES, INT8, PREPROCESS

# The [property] keys of DeepStream 7.0's Gst-nvinfer ("Gst-nvinfer Property Group Supported Keys"
# in its plugin guide; the same names as CONFIG_GROUP_INFER_* in gstnvinfer_property_parser.h), with
# the documented values of those whose values are a closed set.
DOCUMENTED = {
    "num-detected-classes", "net-scale-factor", "model-file", "proto-file", "int8-calib-file", "batch-size",
    "model-engine-file", "uff-file", "onnx-file", "enable-dbscan", "labelfile-path", "mean-file",
    "gie-unique-id", "operate-on-gie-id", "operate-on-class-ids", "interval", "input-object-min-width",
    "input-object-min-height", "input-object-max-width", "input-object-max-height", "uff-input-dims",
    "uff-input-blob-name", "network-mode", "offsets", "output-blob-names", "parse-bbox-func-name",
    "custom-lib-path", "model-color-format", "classifier-async-mode", "process-mode", "classifier-threshold",
    "secondary-reinfer-interval", "output-tensor-meta", "enable-dla", "use-dla-core", "network-type",
    "maintain-aspect-ratio", "symmetric-padding", "parse-classifier-func-name", "custom-network-config",
    "tlt-encoded-model", "tlt-model-key", "segmentation-threshold", "segmentation-output-order",
    "workspace-size", "force-implicit-batch-dim", "infer-dims", "engine-create-func-name", "cluster-mode",
    "filter-out-class-ids", "scaling-filter", "scaling-compute-hw", "output-io-formats",
    "layer-device-precision", "network-input-order", "classifier-type", "crop-objects-to-roi-boundary",
    "gpu-id", "is-classifier", "uff-input-order", "disable-output-host-copy",
}
VALUES = {"network-type": {"0", "1", "2", "3", "100"}, "process-mode": {"1", "2"},
          "model-color-format": {"0", "1", "2"}, "network-mode": {"0", "1", "2", "3"},
          "network-input-order": {"0", "1"}, "maintain-aspect-ratio": {"0", "1"},
          "scaling-filter": {"0", "1", "2", "3", "4", "5", "6"}}


def read_config(folder) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",))
    parser.read_string((folder / CONFIG).read_text())
    assert parser.sections() == ["property"]
    return dict(parser["property"])


@pytest.fixture(scope="module")
def int8_config(tiny, tmp_path_factory):
    return write_deepstream(tiny.bundle, tmp_path_factory.mktemp("ds") / "secondary", source=INT8)


def test_the_config_uses_documented_keys_and_values(int8_config):
    folder = int8_config.folder
    props = read_config(folder)
    assert set(props) <= DOCUMENTED, set(props) - DOCUMENTED
    for key, allowed in VALUES.items():
        assert key not in props or props[key] in allowed, (key, props[key])
    assert (props["network-type"], props["process-mode"], props["model-color-format"]) == ("1", "2", "0")
    assert props["network-mode"] == "1" and "int8-calib-file" not in props  # INT8 from the graph's Q/DQ
    assert props["batch-size"] == "16" and float(props["classifier-threshold"]) == 0.5
    assert (folder / props["onnx-file"]).is_file() and graph_opset(folder / props["onnx-file"]) == 17
    assert (folder / props["labelfile-path"]).read_text() == ";".join(CLASSES) + "\n"
    assert props["infer-dims"] == "3;32;32" and props["output-blob-names"] == "probabilities"
    assert "nvinfer config-file-path=" in (folder / README).read_text()
    assert (folder / LABELS).is_file()


def test_nvinfers_normalisation_reproduces_the_bundles_preprocessing(int8_config, tiny):
    """nvinfer: y = net-scale-factor * (x - offsets), x the object's RGB pixels at the network size.
    Fed to the DeepStream graph, y gives the bundle's INT8 graph's softmax on Preprocess.apply."""
    props = read_config(int8_config.folder)
    scale = float(props["net-scale-factor"])
    offsets = np.array([float(v) for v in props["offsets"].split(";")], np.float32).reshape(1, 3, 1, 1)
    pixels = np.stack([PREPROCESS.pixels(load_image(p)) for p in tiny.images])  # resized + cropped, uint8 HWC
    x = pixels.transpose(0, 3, 1, 2).astype(np.float32)  # network-input-order 0: NCHW
    y = scale * (x - offsets)
    graph = ort.InferenceSession(str(int8_config.folder / props["onnx-file"]), providers=["CPUExecutionProvider"])
    got = graph.run(None, {graph.get_inputs()[0].name: y.astype(np.float32)})[0]

    bundle = ort.InferenceSession(str(tiny.bundle / INT8), providers=["CPUExecutionProvider"])
    want = softmax(bundle.run(None, {"input": PREPROCESS.batch(tiny.images)})[0])
    assert np.abs(got - want).max() < 1e-5
    assert (got.argmax(1) == want.argmax(1)).all()


def test_deploy_deepstream_cli_and_bad_input(tiny, tmp_path):
    proc = edgetune_without_torch("deploy", "deepstream", tiny.bundle, "--out", tmp_path / "ds", "--max-batch", "4")
    assert proc.returncode == 0, proc.stderr
    assert read_config(tmp_path / "ds")["batch-size"] == "4"
    assert read_config(tmp_path / "ds")["network-mode"] == "0"  # no TensorRT graph here: the fp32 one
    assert_user_error(edgetune("deploy", "deepstream", tiny.bundle, "--out", tmp_path / "ds"), "--overwrite")
    assert_user_error(edgetune("deploy", "deepstream", tiny.bundle, "--out", tmp_path / "d2", "--raw-images"),
                      "--raw-images applies to `edgetune deploy triton`")
    assert_user_error(edgetune("deploy", "deepstream", tiny.bundle, "--out", tmp_path / "d2", "--threshold", "2"),
                      "between 0 and 1")
