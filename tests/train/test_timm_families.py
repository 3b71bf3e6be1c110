"""timm backbones end to end, one per family: train an epoch from scratch at 32 px on three
digit classes, export (parity against PyTorch), INT8 for the CPU and TensorRT (the QDQ lint
and pre-flight), then predict through the torch-free runtime. Nothing is downloaded."""

import pytest

pytest.importorskip("timm", reason="the timm extra is not installed: pip install 'edgetune[timm]'")

from edgetune import runtime  # noqa: E402
from edgetune.config import ExportConfig, TrainConfig  # noqa: E402
from edgetune.pipeline import run  # noqa: E402

# One small member per family. Each costs an ONNX export (2.5 s for resnet10t, 8 s for the
# 16-block EfficientNet: torch.export's tracing); the CPU INT8 candidates are weighed for the
# Lite model alone (they are graph-level code, tested on resnet18 elsewhere), every family
# gets the TensorRT QDQ graph, its lint and pre-flight, and is run through the runtime.
FAMILIES = [
    ("efficientnet_lite0", ("cpu", "tensorrt")),  # the Lite weights' name: timm's tf_efficientnet_lite0
    ("timm/mobilenetv3_small_050", ("tensorrt",)),
    ("timm/mobilenetv4_conv_small", ("tensorrt",)),
    ("timm/resnet10t", ("tensorrt",)),
    ("timm/regnetx_002", ("tensorrt",)),
]
INT8 = "model.int8.tensorrt.onnx"


@pytest.mark.parametrize("arch,targets", FAMILIES, ids=[a for a, _ in FAMILIES])
def test_family_runs_end_to_end(arch, targets, small_digits, tmp_path):
    log: list[str] = []
    cfg = TrainConfig(data=str(small_digits), model=arch, weights="none", image_size=32, unfreeze="1",
                      epochs=1, batch_size=16, workers=0, augment="none")
    # ONNX Runtime alone for the Lite row's CPU candidates: weighing OpenVINO is tests/calib's.
    export = ExportConfig(targets=targets, calib_samples=16, bench_runs=2, parity_images=8,
                          cpu_engines=("onnxruntime",))
    manifest = run(cfg, export, tmp_path / "out", log=log.append)
    assert manifest.model["arch"] == arch
    assert any(line.startswith("edgetune: cache on") for line in log), log  # the frozen prefix was cached
    by_file = {a.file: a for a in manifest.artifacts}
    assert by_file["model.onnx"].parity["top1_agreement"] >= 0.99
    assert all(line.startswith("passed") for line in by_file[INT8].preflight.values()), by_file[INT8].preflight
    if "cpu" in targets:
        assert {c["candidate"] for c in manifest.candidates["cpu"]} >= {"fp32", "int8"}
    image = next((small_digits / "7").iterdir())
    for artifact in ("model.onnx", INT8):
        top = runtime.load(tmp_path / "out", artifact=artifact).predict(image, topk=3)
        assert [c for c, _ in top] and {c for c, _ in top} <= {"0", "1", "7"}
