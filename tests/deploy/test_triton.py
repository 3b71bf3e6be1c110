"""`edgetune deploy triton`: every config.pbtxt parses with Triton's own schema (tritonclient's
model_config_pb2), and says what the bundle measured; bad input is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as schema

from edgetune.bundle import MANIFEST, Manifest, read_manifest, write_manifest
from edgetune.deploy import pbtxt
from edgetune.deploy.triton import write_repository
from edgetune.deploy.triton_images import preprocess_rows
from edgetune.errors import InputError
from tests.support.cli import assert_user_error, edgetune, edgetune_without_torch
from tests.support.tiny_bundle import CLASSES, INT8, PREPROCESS


def parse(folder: Path) -> schema.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), schema.ModelConfig())


@pytest.fixture(scope="module")
def measured(tiny, tmp_path_factory) -> Path:
    """The tiny bundle with the ONNX Runtime threads its INT8 artifact was timed with, as an
    export records them, and a TensorRT engine recorded beside (its file a stand-in: this
    machine has no TensorRT; the config is written from the record alone)."""
    bundle = tmp_path_factory.mktemp("measured") / "shop"
    shutil.copytree(tiny.bundle, bundle)
    manifest = read_manifest(bundle)
    manifest.artifact(INT8).session = {"graph_optimization_level": "ORT_ENABLE_ALL", "intra_op_num_threads": 2,
                                       "inter_op_num_threads": 1, "allow_spinning": False}
    from edgetune.bundle import artifact_record

    (bundle / "model.int8.tensorrt.engine").write_bytes(b"plan")
    manifest.artifacts.append(artifact_record(
        bundle, "model.int8.tensorrt.engine", backend="tensorrt", target="tensorrt", precision="int8",
        engine={"tensorrt": "10.3.0", "profile": {"input": "input", "min": [1, 3, 32, 32], "opt": [1, 3, 32, 32],
                                                  "max": [8, 3, 32, 32]}}))
    manifest.recommended["tensorrt"] = {"file": "model.int8.tensorrt.engine", "why": "test"}
    write_manifest(bundle, manifest)
    return bundle


def test_every_config_parses_with_tritons_schema_and_says_what_the_bundle_measured(measured, tmp_path):
    repo = tmp_path / "repo"
    models = write_repository(measured, repo, raw_images=True)
    assert [m.name for m in models] == ["shop_cpu", "shop_tensorrt", "shop_preprocess", "shop"]
    configs = {m.name: parse(repo / m.name) for m in models}

    cpu = configs["shop_cpu"]
    assert cpu.platform == "onnxruntime_onnx" and cpu.max_batch_size == 32  # the graph's batch axis is dynamic
    (inp,), (out,) = cpu.input, cpu.output
    assert (inp.name, inp.data_type, list(inp.dims)) == ("input", schema.TYPE_FP32, [3, 32, 32])
    assert inp.format == schema.ModelInput.FORMAT_NCHW
    assert (out.name, out.data_type, list(out.dims)) == ("logits", schema.TYPE_FP32, [3])
    assert (repo / "shop_cpu" / out.label_filename).read_text().splitlines() == CLASSES
    assert list(cpu.dynamic_batching.preferred_batch_size) == [8, 16, 32]
    assert cpu.dynamic_batching.max_queue_delay_microseconds > 0
    assert [(g.count, g.kind) for g in cpu.instance_group] == [(1, schema.ModelInstanceGroup.KIND_CPU)]
    threads = {k: v.string_value for k, v in cpu.parameters.items()}
    assert threads == {"intra_op_thread_count": "2", "inter_op_thread_count": "1"}  # as measured
    assert (repo / "shop_cpu" / "1" / "model.onnx").read_bytes() == (measured / INT8).read_bytes()

    plan = configs["shop_tensorrt"]
    assert plan.platform == "tensorrt_plan" and plan.max_batch_size == 8  # the engine's profile
    assert plan.instance_group[0].kind == schema.ModelInstanceGroup.KIND_GPU
    assert (repo / "shop_tensorrt" / "1" / "model.plan").is_file()

    pre, ensemble = configs["shop_preprocess"], configs["shop"]
    assert pre.backend == "python" and pre.input[0].data_type == schema.TYPE_STRING
    assert json.loads(pre.parameters["preprocess"].string_value)["size"] == [32, 32]
    compile((repo / "shop_preprocess" / "1" / "model.py").read_text(), "model.py", "exec")
    assert ensemble.platform == "ensemble"
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["shop_preprocess", "shop_cpu"]
    assert steps[0].output_map["input"] == steps[1].input_map["input"]  # one tensor passes between them


def test_the_image_models_preprocessing_is_the_bundles(tiny):
    import numpy as np

    rows = np.array([[p.read_bytes()] for p in tiny.images], dtype=object)
    assert np.array_equal(preprocess_rows(rows, PREPROCESS), PREPROCESS.batch(tiny.images))
    with pytest.raises(InputError, match="cannot decode"):
        preprocess_rows(np.array([[b"not an image"]], dtype=object), PREPROCESS)


def test_the_writer_quotes_what_the_schema_reads_back():
    text = pbtxt.text({"name": 'a "quoted" näme\\x', "max_batch_size": 4, "input": [
        {"name": "x", "data_type": pbtxt.Enum("TYPE_UINT8"), "dims": [-1, 3]}]})
    config = text_format.Parse(text, schema.ModelConfig())
    assert config.name == 'a "quoted" näme\\x' and list(config.input[0].dims) == [-1, 3]


def test_deploy_triton_bad_input_is_one_line(tiny, tmp_path):
    empty = tmp_path / "no-onnx"
    empty.mkdir()
    (empty / "model.pt").write_bytes(b"weights")
    write_manifest(empty, Manifest(model={"arch": "resnet18", "classes": CLASSES, "num_classes": 3},
                                   input={"name": "input", **PREPROCESS.to_dict()}))
    assert_user_error(edgetune("deploy", "triton", empty, "--out", tmp_path / "r"), "no ONNX artifact")
    assert_user_error(edgetune("deploy", "trition", tiny.bundle, "--out", tmp_path / "r"), "did you mean 'triton'")
    assert_user_error(edgetune("deploy", "triton", tiny.bundle, "--out", tmp_path / "r", "--threshold", "0.3"),
                      "--threshold applies to `edgetune deploy deepstream`")
    assert_user_error(edgetune("deploy", "triton", tiny.bundle, "--out", tmp_path / "r", "--name", "../x"),
                      "--name '../x' is not allowed")
    done = edgetune_without_torch("deploy", "triton", tiny.bundle, "--out", tmp_path / "r")  # torch-free
    assert done.returncode == 0, done.stderr
    assert_user_error(edgetune("deploy", "triton", tiny.bundle, "--out", tmp_path / "r"), "--overwrite")
    assert not (tmp_path / "r" / MANIFEST).exists()
