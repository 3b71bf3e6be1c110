"""Engines refused before TensorRT sees them, the fallback to ONNX under automatic choice,
ONNX Runtime's execution providers, and build-engine's flags: the parts that run on a CPU."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgetune import runtime
from edgetune.bundle import Artifact, read_manifest
from edgetune.errors import ConfigError, EdgetuneWarning, MissingDependencyError
from edgetune.runtime import choice, ort_backend
from edgetune.runtime.engine_info import EngineHost, mismatch, read_sidecar, sidecar_path, write_sidecar
from tests.support.cli import assert_user_error, edgetune
from tests.support.tiny_bundle import CLASSES, FP32, INT8

BUILT = {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7", "device": "gpu",
         "profile": {"input": "input", "min": [1, 3, 32, 32], "opt": [1, 3, 32, 32], "max": [8, 3, 32, 32]},
         "build_seconds": 41.2}
ORIN = EngineHost("10.3.0.30", "8.7", "Orin")



def test_mismatch_names_what_differs_and_the_fix():
    assert mismatch(BUILT, ORIN) is None
    assert mismatch(None, ORIN) is None  # nothing recorded: only TensorRT can tell
    other_trt = mismatch(BUILT, EngineHost("10.13.3.9", "8.7", "Orin"))
    assert "built with TensorRT 10.3.0.30 for Orin (sm 8.7)" in other_trt
    assert "this machine has TensorRT 10.13.3.9" in other_trt and "edgetune build-engine" in other_trt
    other_gpu = mismatch(BUILT, EngineHost("10.3.0.30", "8.9", "NVIDIA L4"))
    assert "this GPU is NVIDIA L4 (sm 8.9)" in other_gpu and "\n" not in other_gpu
    # trtexec's banner gives three components, the bindings four: the same version.
    assert mismatch({**BUILT, "tensorrt": "10.3.0"}, ORIN) is None
    assert mismatch({**BUILT, "tensorrt": "10.3.1"}, ORIN) is not None
    assert mismatch({**BUILT, "tensorrt": "10.3.0.26"}, ORIN) is not None
    # Same architecture, another board name: TensorRT loads it, so do we.
    assert mismatch(BUILT, EngineHost("10.3.0.30", "8.7", "Jetson AGX Orin 64GB")) is None


def test_sidecar_sits_beside_a_plain_engine(tmp_path):
    engine = tmp_path / "model.int8.tensorrt.engine"
    plan = bytes(range(256)) * 4  # stands for the plan bytes: the sidecar must not touch them
    engine.write_bytes(plan)
    assert read_sidecar(engine) is None
    write_sidecar(engine, BUILT)
    assert sidecar_path(engine).name == "model.int8.tensorrt.engine.json"
    assert read_sidecar(engine) == BUILT and engine.read_bytes() == plan


def _with_engine(tiny, engine: dict) -> object:
    manifest = read_manifest(tiny.bundle)
    manifest.artifacts.append(Artifact("model.int8.tensorrt.engine", "tensorrt", "tensorrt", "int8",
                                       "0" * 64, 1, engine=engine))
    manifest.recommended["tensorrt"] = {"file": "model.int8.tensorrt.engine", "why": "fastest"}
    return manifest


def test_automatic_choice_takes_a_matching_engine(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chosen = choice.pick_recommended(_with_engine(tiny, BUILT), ["tensorrt", "cpu"], ORIN).artifact
    assert chosen.file == "model.int8.tensorrt.engine"


def test_automatic_choice_falls_back_to_onnx_and_says_so(tiny):
    manifest = _with_engine(tiny, BUILT)
    l4 = EngineHost("10.13.3.9", "8.9", "NVIDIA L4")
    with pytest.warns(EdgetuneWarning, match=r"skipping model.int8.tensorrt.engine: built with TensorRT "
                                             r"10.3.0.30 .* falling back to an ONNX artifact"):
        chosen = choice.pick_recommended(manifest, ["tensorrt", "cpu"], l4).artifact
    assert chosen.file == INT8 and chosen.backend == "onnxruntime"
    # Nothing else recommended: the fp32 graph, which runs everywhere.
    manifest.recommended.pop("cpu")
    with pytest.warns(EdgetuneWarning):
        assert choice.pick_recommended(manifest, ["tensorrt", "cpu"], l4).artifact.file == FP32


def test_provider_selection_is_pure_and_checked():
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert ort_backend.select_providers("auto", "tensorrt", gpu) == gpu
    assert ort_backend.select_providers("cuda", "cuda", gpu) == gpu[1:]
    assert ort_backend.select_providers("auto", "auto", gpu) == gpu[1:]
    assert ort_backend.select_providers("cpu", "auto", gpu) == ["CPUExecutionProvider"]
    with pytest.raises(MissingDependencyError, match="provider 'tensorrt' needs TensorrtExecutionProvider"):
        ort_backend.select_providers("auto", "tensorrt", ["CPUExecutionProvider"])
    with pytest.raises(ConfigError, match="did you mean 'tensorrt'"):
        ort_backend.select_providers("auto", "tensorrtt", gpu)
    with pytest.raises(ConfigError, match="not on device 'cpu'"):
        ort_backend.select_providers("cpu", "cuda", gpu)


def test_providers_through_the_session_interface(tiny):
    model = runtime.load(tiny.bundle, artifact=FP32, provider="cpu")
    assert (model.backend, model.device, model._session.provider) == ("onnxruntime", "cpu", "cpu")
    assert model.run(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, len(CLASSES))
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(MissingDependencyError, match="install onnxruntime-gpu"):
            runtime.load(tiny.bundle, artifact=FP32, provider="tensorrt")


def test_predict_provider_flag_is_one_line_when_missing(tiny):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here: the provider exists")
    assert_user_error(edgetune("predict", tiny.bundle, tiny.images[0], "--artifact", FP32, "--provider", "cuda"),
                      "provider 'cuda' needs CUDAExecutionProvider", "onnxruntime-gpu")
    assert_user_error(edgetune("predict", tiny.bundle, tiny.images[0], "--provider", "tensorrtt"),
                      "did you mean 'tensorrt'")


def test_build_engine_flags_are_checked_first(tiny):
    assert_user_error(edgetune("build-engine", tiny.bundle, "--device", "dla"), "'gpu' or 'dla:N'")
    assert_user_error(edgetune("build-engine", tiny.bundle, "--opt-batch", "9", "--max-batch", "8"),
                      "--opt-batch 9", "1 <= opt-batch <= max-batch")


def test_without_the_recommended_engine_the_next_best_runs_with_one_warning(tiny, monkeypatch):
    """A bundle whose cpu recommendation is an OpenVINO artifact, on a host without OpenVINO."""
    from edgetune.runtime import backends

    manifest = read_manifest(tiny.bundle)
    ov = "model.int8.openvino.onnx"
    manifest.artifacts.append(Artifact(ov, "openvino", "cpu", "int8", "0" * 64, 1, extra="openvino"))
    manifest.recommended["cpu"] = {"file": ov, "why": "fastest", "order": [ov, INT8, FP32]}
    present = backends.is_available
    monkeypatch.setattr(backends, "is_available",
                        lambda name: (False, "openvino is not installed") if name == "openvino" else present(name))
    with pytest.warns(EdgetuneWarning, match=rf"{ov} is recommended for this CPU but needs openvino: "
                                             rf"pip install 'edgetune\[openvino\]'; running {INT8} \(onnxruntime\)"):
        pick = choice.pick_recommended(manifest, ["cpu"], None)
    assert pick.artifact.file == INT8 and pick.by == f"the best after {ov}, by the export's recommendation"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked for ONNX Runtime: its best, nothing to warn about
        assert choice.pick_recommended(manifest, ["cpu"], None, backend="onnxruntime").artifact.file == INT8
