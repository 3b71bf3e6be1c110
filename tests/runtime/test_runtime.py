"""The torch-free runtime: load a real bundle, predict, refuse what is wrong in one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetune import runtime
from edgetune.bundle import MANIFEST, Artifact, Manifest, read_manifest, write_manifest
from edgetune.errors import BundleError, ConfigError, InputError, MissingDependencyError
from edgetune.runtime import backends, choice, trt_backend
from tests.support.cli import edgetune, python
from tests.support.tiny_bundle import CLASSES, FP32, INT8


@pytest.fixture(scope="module")
def fp32_model(tiny):
    return runtime.load(tiny.bundle, artifact=FP32)


def clone(bundle: Path, dest: Path, copy: tuple[str, ...] = ()) -> Path:
    """A bundle to edit: big files hard-linked (never written), `copy` ones really copied."""
    dest.mkdir()
    for f in bundle.iterdir():
        if f.name in copy or f.name == MANIFEST:
            shutil.copy(f, dest / f.name)
        else:
            os.link(f, dest / f.name)
    return dest


def edit_manifest(bundle: Path, **changes) -> None:
    raw = json.loads((bundle / MANIFEST).read_text())
    raw.update(changes)
    (bundle / MANIFEST).write_text(json.dumps(raw))


def test_loads_the_artifact_recommended_for_this_cpu(tiny):
    model = runtime.load(tiny.bundle)
    assert model.artifact.file == INT8 and model.artifact.precision == "int8"
    assert model.device == "cpu" and model.classes == CLASSES
    assert model.input.name == "input" and model.input.shape[1:] == (3, 32, 32)
    assert model.preprocess.size == (32, 32)


def test_paths_pil_images_and_arrays_give_identical_predictions(tiny, fp32_model):
    by_path = fp32_model.predict(tiny.images)
    by_str = fp32_model.predict([str(p) for p in tiny.images])
    pil = [Image.open(p) for p in tiny.images]
    by_pil = fp32_model.predict(pil)
    by_array = fp32_model.predict([np.asarray(im) for im in pil])  # RGB, L (HxW) and RGBA arrays
    assert by_path == by_str == by_pil == by_array
    assert fp32_model.predict(tiny.images[0]) == by_path[0]  # one image -> one list


def test_topk_is_ordered_softmax(tiny, fp32_model):
    for top in fp32_model.predict(tiny.images, topk=3):
        scores = [s for _, s in top]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-9)  # all 3 classes: a full softmax
        assert sorted(label for label, _ in top) == sorted(CLASSES)
    assert [len(t) for t in fp32_model.predict(tiny.images, topk=1)] == [1, 1, 1]
    assert len(fp32_model.predict(tiny.images[0], topk=10)) == 3  # at most the number of classes

    logits = fp32_model.run(fp32_model.preprocess.batch(tiny.images))
    top1 = [CLASSES[i] for i in logits.argmax(1)]
    assert top1 == [t[0][0] for t in fp32_model.predict(tiny.images, topk=1)]


def test_int8_agrees_with_fp32_on_the_images(tiny, fp32_model):
    int8 = runtime.load(tiny.bundle)
    batch = fp32_model.preprocess.batch(tiny.images)
    ref, got = fp32_model.run(batch), int8.run(batch)
    # A random-init net at 32 px: loose, but catches a wrong graph or preprocessing.
    assert np.abs(ref - got).max() < 0.1 * max(1.0, float(np.abs(ref).max()))


def test_predict_pads_a_fixed_batch_graph(tiny, tmp_path):
    """A graph exported with a fixed batch of 2 still predicts 1 or 3 images."""
    import onnx

    graph = onnx.load(str(tiny.bundle / FP32))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    path = tmp_path / "fixed.onnx"
    onnx.save(graph, str(path))
    with pytest.warns(UserWarning):
        model = runtime.load(path)
    assert model.input.shape[0] == 2
    assert len(model.predict(tiny.images)) == 3 and len(model.predict(tiny.images[0])) == 3


def test_tampered_artifact_is_refused(tiny, tmp_path):
    bundle = clone(tiny.bundle, tmp_path / "b", copy=(INT8,))
    data = bytearray((bundle / INT8).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / INT8).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{INT8} fails its integrity check"):
        runtime.load(bundle)
    runtime.load(bundle, artifact=FP32)  # the untouched artifact still loads


def test_an_artifact_sharing_another_files_bytes_is_held_once(tiny, fp32_model, tmp_path):
    """Two records, one file: an artifact whose graph another artifact ships (OpenVINO's bf16
    run of model.onnx, an INT8 graph both engines run) names that file (`graph`) instead of a
    second copy. It loads and verifies through that file, the summary counts the bytes once, and
    tampering with the shared file is refused for both."""
    from edgetune.bundle import artifact_record
    from edgetune.report.summary import shipped_lines

    bundle = clone(tiny.bundle, tmp_path / "b", copy=(FP32,))
    m = read_manifest(bundle)
    m.artifacts.append(artifact_record(bundle, "model.again.onnx", graph=FP32, backend="onnxruntime",
                                       target="cpu", precision="fp32"))
    write_manifest(bundle, m)
    assert not (bundle / "model.again.onnx").exists()
    again = runtime.load(bundle, artifact="model.again.onnx")
    assert again.artifact.graph == FP32 and again.predict(tiny.images) == fp32_model.predict(tiny.images)
    m = read_manifest(bundle)
    cpu = [a for a in m.artifacts if a.target == "cpu"]
    line = shipped_lines(bundle, m)[0]
    assert "model.again.onnx (onnxruntime fp32, the same file as model.onnx)" in line
    assert f"{sum(a.size_bytes for a in cpu if not a.graph) / 1e6:.1f} MB" in line
    from edgetune.report.info import describe

    shown = next(a for a in describe(bundle)["artifacts"] if a["file"] == "model.again.onnx")
    assert shown["graph"] == FP32  # `edgetune info` prints "= model.onnx" for its size
    # The report judges the recommended artifact through the file it shares (the demo's crashed).
    from edgetune.data.scan import Sample
    from edgetune.evaluate import EvalSet
    from edgetune.report.html.collect import evaluate

    raw = json.loads((bundle / MANIFEST).read_text())
    raw["recommended"]["cpu"]["file"] = "model.again.onnx"
    ev = evaluate(bundle, raw, EvalSet([Sample(p, 0) for p in tiny.images], m.preprocess))
    assert ev["artifact"] == "model.again.onnx" and ev["images"] == len(tiny.images)
    data = bytearray((bundle / FP32).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / FP32).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.again.onnx .its bytes are model.onnx's. fails its integrity"):
        runtime.load(bundle, artifact="model.again.onnx")


def test_newer_manifest_version_is_refused(tiny, tmp_path):
    bundle = clone(tiny.bundle, tmp_path / "b")
    edit_manifest(bundle, version=99)
    with pytest.raises(BundleError, match="version 99.*upgrade edgetune"):
        runtime.load(bundle)


def test_artifact_path_leaving_the_bundle_is_refused(tiny, tmp_path):
    bundle = clone(tiny.bundle, tmp_path / "b")
    raw = json.loads((bundle / MANIFEST).read_text())
    raw["artifacts"][0]["file"] = "../x"
    (bundle / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"'\.\./x'.*inside the bundle"):
        runtime.load(bundle)


def test_without_a_recommendation_any_fp32_graph_is_used(tiny, tmp_path):
    bundle = clone(tiny.bundle, tmp_path / "b")
    edit_manifest(bundle, recommended={})
    assert runtime.load(bundle).artifact.file == FP32


def test_wrong_arrays_name_what_is_expected(fp32_model):
    with pytest.raises(InputError, match="float64; expected float32 NCHW"):
        fp32_model.run(np.zeros((1, 3, 32, 32)))
    with pytest.raises(InputError, match=r"\(1, 3, 16, 16\); expected Nx3x32x32"):
        fp32_model.run(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(InputError, match="dtype float32; expected uint8 HWC"):
        fp32_model.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(InputError, match=r"shape \(8, 8, 2\); expected HWC uint8 with 1, 3 or 4"):
        fp32_model.predict(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(InputError, match="cannot use a dict as an image"):
        fp32_model.predict([{"not": "an image"}])
    with pytest.raises(ConfigError, match="topk must be a positive integer"):
        fp32_model.predict(np.zeros((8, 8, 3), np.uint8), topk=0)


def test_missing_and_non_image_files_are_named(tiny, fp32_model):
    missing = tiny.images[0].parent / "missing.png"
    with pytest.raises(InputError, match=f"image not found: {missing}"):
        fp32_model.predict([tiny.images[0], missing])
    with pytest.raises(InputError, match=f"cannot read image {tiny.not_an_image}"):
        fp32_model.predict(tiny.not_an_image)


def test_bare_onnx_file_warns_and_numbers_classes(tiny):
    with pytest.warns(UserWarning, match="preprocessing is unknown"):
        model = runtime.load(tiny.bundle / FP32)
    assert model.classes == ["0", "1", "2"] and model.artifact.precision == "fp32"
    assert model.preprocess.size == (32, 32)
    assert len(model.predict(tiny.images[0], topk=2)) == 2


def test_bad_paths_and_options_are_one_line_errors(tiny, tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        runtime.load(tmp_path / "nowhere")
    with pytest.raises(BundleError, match="manifest.json is missing"):
        runtime.load(tmp_path)
    with pytest.raises(BundleError, match="neither a bundle folder"):
        runtime.load(tiny.images[0])
    with pytest.raises(BundleError, match="no artifact named 'model.onxx'"):
        runtime.load(tiny.bundle, artifact="model.onxx")
    with pytest.raises(ConfigError, match="did you mean 'cuda'"):
        runtime.load(tiny.bundle, device="cdua")
    with pytest.raises(ConfigError, match="backend 'ort'"):
        runtime.load(tiny.bundle, backend="ort")


@pytest.mark.skipif(backends.is_available("tensorrt")[0] or "CUDAExecutionProvider"
                    in __import__("onnxruntime").get_available_providers(),
                    reason="this host has a GPU engine; the CPU-only fallbacks do not apply")
def test_gpu_choices_on_a_cpu_host_say_what_is_missing(tiny):
    with pytest.raises(MissingDependencyError, match="onnxruntime-gpu"):
        runtime.load(tiny.bundle, device="cuda")
    engine_only = Manifest(
        model={"classes": CLASSES}, input={},
        artifacts=[Artifact("model.tensorrt.engine", "tensorrt", "tensorrt", "int8", "0" * 64, 1)],
        recommended={"tensorrt": {"file": "model.tensorrt.engine", "why": "fastest"}},
    )
    with pytest.raises(BundleError, match="no artifact in the bundle runs here"):
        choice.choose_artifact(engine_only)
    with pytest.raises(MissingDependencyError, match="needs tensorrt: tensorrt is not installed"):
        choice.choose_artifact(engine_only, artifact="model.tensorrt.engine")


def test_torch_free_load_predict_and_bench(tiny):
    """Deployment with torch and torchvision unimportable, and no training module loaded."""
    code = f"""
from edgetune import runtime, bench, latency, host, bundle, preprocess
from edgetune.cli import device as cli_device
from edgetune.cli import main
model = runtime.load({str(tiny.bundle)!r})
print(model.predict({str(tiny.images[0])!r}, topk=1))
report = bench.benchmark({str(tiny.bundle)!r}, batches=[1], warmup=1, runs=2)
assert len(report.rows) == 2, report.rows
assert main(["predict", {str(tiny.bundle)!r}, {str(tiny.images[1])!r}, "--json"]) == 0
banned = ("torch", "torchvision", "edgetune.train",
          "edgetune.export", "edgetune.calib", "edgetune.pipeline")
loaded = [m for m in sys.modules if sys.modules[m] is not None
          and any(m == b or m.startswith(b + ".") for b in banned)]
assert not loaded, loaded
print("TORCH-FREE OK")
"""
    out = python(code, torch_free=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "TORCH-FREE OK" in out.stdout


def test_cli_predict_prints_topk_and_json(tiny):
    out = edgetune("predict", str(tiny.bundle), *map(str, tiny.images), "--topk", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("%") == 6 and INT8 in out.stderr
    out = edgetune("predict", str(tiny.bundle), str(tiny.images[0]), "--json",
                       "--artifact", FP32)
    result = json.loads(out.stdout)
    assert result[0]["image"] == str(tiny.images[0]) and len(result[0]["top"]) == 3


@pytest.mark.parametrize("args, message", [
    (["--topk", "0"], "--topk '0' is not allowed: expected an integer >= 1"),
    (["--device", "gpu"], "--device 'gpu' is not one of auto, cpu, cuda"),
    (["--artifact", "nope.onnx"], "no artifact named 'nope.onnx'"),
    (["MISSING"], "image not found"),
    (["NOT_AN_IMAGE"], "cannot read image"),
])
def test_cli_predict_errors_are_one_line(tiny, args, message):
    swap = {"MISSING": str(tiny.images[0].parent / "missing.png"), "NOT_AN_IMAGE": str(tiny.not_an_image)}
    images = [swap[a] for a in args if a in swap] or [str(tiny.images[0])]
    flags = [a for a in args if a not in swap]
    out = edgetune("predict", str(tiny.bundle), *images, *flags)
    assert out.returncode == 2
    assert out.stderr.startswith("edgetune: error: ") and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.tensorrt
@pytest.mark.skipif(not trt_backend.is_available()[0], reason=trt_backend.is_available()[1])
def test_tensorrt_engine_matches_onnxruntime(tiny, fp32_model, tmp_path):
    """Build a strongly typed engine from the fp32 graph; its logits match ONNX Runtime's."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # fp32 graph: strongly typed where the flag exists (10.x), explicit batch on 8.6.
    kind = "STRONGLY_TYPED" if int(trt.__version__.split(".")[0]) >= 10 else "EXPLICIT_BATCH"
    network = builder.create_network(1 << int(getattr(trt.NetworkDefinitionCreationFlag, kind)))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(tiny.bundle / FP32)), parser.get_error(0)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 32, 32), (4, 3, 32, 32), (8, 3, 32, 32))
    config.add_optimization_profile(profile)
    engine = tmp_path / "model.engine"
    engine.write_bytes(bytes(builder.build_serialized_network(network, config)))

    session = backends.open_session("tensorrt", engine)
    batch = fp32_model.preprocess.batch(tiny.images)
    ref = fp32_model.run(batch)
    # TF32 convolutions on recent GPUs: a relative tolerance, not fp32-exact.
    np.testing.assert_allclose(session.run(batch), ref, atol=1e-2 * max(1.0, float(np.abs(ref).max())))
    with pytest.raises(InputError, match="built for shapes from 1x3x32x32 to 8x3x32x32"):
        session.run(np.zeros((9, 3, 32, 32), np.float32))


def test_tensorrt_reports_why_it_is_unavailable():
    ok, why = trt_backend.is_available()
    assert ok or why  # never (False, "")
    if not ok:
        with pytest.raises(MissingDependencyError, match=why.split(":")[0]):
            backends.open_session("tensorrt", "model.engine")


def test_read_manifest_roundtrip_keeps_recommended(tiny, tmp_path):
    bundle = clone(tiny.bundle, tmp_path / "b")
    manifest = read_manifest(bundle)
    manifest.recommended = {"cpu": FP32}  # a bare file name, not {"file", "why"}, is accepted too
    write_manifest(bundle, manifest)
    assert runtime.load(bundle).artifact.file == FP32
