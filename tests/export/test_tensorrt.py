"""TensorRT end to end on a GPU host: build (Python bindings and trtexec), load, predict,
bench, refuse a mismatched engine. Skipped here with the reason; `make test-gpu` runs them."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from edgetune import bench, runtime
from edgetune.bundle import read_manifest, write_manifest
from edgetune.engines import add_engine
from edgetune.export.tensorrt import find_trtexec, timing_cache_path
from edgetune.runtime import trt_backend
from edgetune.runtime.engine_info import EngineMismatchError, read_sidecar, sidecar_path

pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.skipif(not trt_backend.is_available()[0],
                       reason=f"{trt_backend.is_available()[1]}; run `make test-gpu` on a GPU host with TensorRT"),
]
INT8_GRAPH = "model.int8.tensorrt.onnx"


@pytest.fixture
def bundle(trained_run, tmp_path):
    """A private copy of the trained bundle: engines are written into it."""
    out, _ = trained_run
    dest = tmp_path / "bundle"
    shutil.copytree(out, dest)
    return dest


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean())


@pytest.mark.parametrize("source", [INT8_GRAPH, "model.fp16.onnx"])
def test_build_load_predict_bench(bundle, source, digits_dir):
    name = add_engine(bundle, source, max_batch=8, opt_batch=4, log=lambda *_: None)
    engine = bundle / name
    manifest = read_manifest(bundle)
    record = manifest.artifact(name).engine
    # The manifest and the sidecar say what it was built for; the plan itself is bare.
    assert record == read_sidecar(engine)
    import tensorrt as trt

    assert record["tensorrt"] == trt.__version__
    assert record["compute_capability"] == trt_backend.gpu_identity()[1]
    assert record["profile"]["opt"][0] == 4 and record["profile"]["max"][0] == 8
    assert record["build_seconds"] > 0 and timing_cache_path(engine).stat().st_size > 0
    plain = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(engine.read_bytes())
    assert plain is not None  # trtexec and C++ can load it: no header glued on

    model = runtime.load(bundle)  # automatic choice: the engine, on this GPU
    assert model.artifact.file == name and model.backend == "tensorrt"
    images = sorted((digits_dir / "val").glob("*/*.png"))[:40]
    batch = model.preprocess.batch(images)
    onnx_logits = runtime.load(bundle, artifact=source, device="cpu").run(batch[:8])
    assert _agreement(model.run(batch[:8]), onnx_logits) >= 0.85
    assert len(model.predict(images, topk=1)) == len(images)

    report = bench.benchmark(bundle, artifacts=[name], batches=[1, 8], warmup=2, runs=5)
    assert [r.batch for r in report.rows] == [1, 8] and all(r.p50 > 0 for r in report.rows)


def test_timing_cache_is_reused_by_the_next_build(bundle):
    add_engine(bundle, INT8_GRAPH, log=lambda *_: None)
    cache = timing_cache_path(bundle / "model.int8.tensorrt.engine")
    first = cache.read_bytes()
    add_engine(bundle, INT8_GRAPH, log=lambda *_: None)
    assert len(cache.read_bytes()) >= len(first)  # loaded, extended, written back


def test_mismatched_engine_is_refused_before_deserializing_and_choice_falls_back(bundle):
    name = add_engine(bundle, INT8_GRAPH, log=lambda *_: None)
    info = read_sidecar(bundle / name)
    info["tensorrt"] = "8.6.2.3"
    sidecar_path(bundle / name).write_text(json.dumps(info))
    with pytest.raises(EngineMismatchError, match="built with TensorRT 8.6.2.3 .* rebuild it here"):
        trt_backend.TrtSession(bundle / name)
    manifest = read_manifest(bundle)
    manifest.artifact(name).engine = info
    write_manifest(bundle, manifest)
    with pytest.warns(UserWarning, match="falling back to an ONNX artifact"):
        model = runtime.load(bundle)
    assert model.backend == "onnxruntime"


@pytest.mark.skipif(find_trtexec() is None, reason="trtexec is neither on PATH nor in /usr/src/tensorrt/bin")
def test_trtexec_fallback_builds_the_same_kind_of_engine(bundle):
    name = add_engine(bundle, INT8_GRAPH, builder="trtexec", log=lambda *_: None)
    assert read_sidecar(bundle / name)["builder"] == "trtexec"
    model = runtime.load(bundle, artifact=name)
    assert model.run(np.zeros((2, 3, 32, 32), np.float32)).shape[0] == 2


@pytest.mark.skipif(os.environ.get("EDGETUNE_DLA") is None, reason="set EDGETUNE_DLA=N on a Jetson with DLA cores")
def test_dla_engine_records_its_core(bundle):
    core = os.environ["EDGETUNE_DLA"]
    name = add_engine(bundle, "model.fp16.onnx", device=f"dla:{core}", log=lambda *_: None)
    assert read_sidecar(bundle / name)["device"] == f"dla:{core}"
    assert runtime.load(bundle, artifact=name).device == f"dla:{core}"
