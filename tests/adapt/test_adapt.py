"""Domain adaptation on a synthetic camera shift of the digits (contrast, brightness, blur,
noise): source-only against each --adapt method on labelled target val images, the no-shift
case, INT8 calibrated on target images, and the one-line errors."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import torch

from edgetune.config import AdaptConfig, ExportConfig, TrainConfig
from edgetune.data.demo_shift import CameraShift, ensure_shifted
from edgetune.data.sources import balance, scan_sources
from edgetune.data.target_domain import TargetData, scan_images, scan_labelled
from edgetune.errors import DataError
from edgetune.evaluate import EvalSet
from edgetune.preprocess import Preprocess
from tests.support.cli import FAST, assert_user_error, edgetune

CLASSES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def domains(digits_dir, tmp_path_factory):
    """The digits through a flat, bright, blurred, noisy camera (train/ and val/), and unseen
    val images through the source camera (`clean`: the no-shift case needs only those)."""
    root = tmp_path_factory.mktemp("domains")
    return {"shifted": ensure_shifted(digits_dir, root / "shifted", CameraShift()),
            "clean": ensure_shifted(digits_dir / "val", root / "clean", CameraShift.none())}


def _cfg(data, epochs=3):
    return TrainConfig(data=str(data), weights="none", image_size=32, unfreeze="all", epochs=epochs,
                       lr=3e-3, batch_size=64, augment="light", workers=0)


@pytest.fixture(scope="module")
def source_model(trained_run):
    """The session's run: a resnet18 trained from scratch on the source digits at 32 px."""
    return trained_run[0] / "checkpoints" / "best.pt"


def _top1(ckpt_path, samples) -> float:
    from edgetune.train import checkpoint
    from edgetune.train.model import build_from_checkpoint

    ckpt = checkpoint.load(ckpt_path)
    data = EvalSet(samples, Preprocess.from_dict(ckpt["preprocess"]))
    with torch.no_grad():
        pred = build_from_checkpoint(ckpt)(torch.from_numpy(data.x)).argmax(1).numpy()
    return float((pred == data.y).mean())


def _adapt(source_model, images_dir, reference, out, **settings):
    from edgetune.train.adapt import adapt_checkpoint

    # AdaBN needs few images (32 already help, per the paper); 400 keep the test quick.
    cfg = AdaptConfig(target_data=str(images_dir), **{"adapt_images": 400, **settings})
    target = TargetData(images_dir, scan_images(images_dir))
    logs = []
    record = adapt_checkpoint(source_model, out / "adapted.pt", cfg, target, reference, "cpu",
                              logs.append, work=out)
    return out / "adapted.pt", record, logs


@pytest.fixture(scope="module")
def shifted_results(source_model, domains, digits_dir, tmp_path_factory):
    """Target val top-1 of source-only, bn and the labelled-target oracle, and helpers to add more."""
    from edgetune.train import train

    shifted = domains["shifted"]
    target_val = scan_labelled(shifted / "val", CLASSES, "--target-val")
    reference = scan_sources(_cfg(digits_dir)).val
    top1, records = {"source-only": _top1(source_model, target_val)}, {}

    def add(method, **settings):
        path, records[method], _ = _adapt(source_model, shifted / "train", reference,
                                          tmp_path_factory.mktemp(method), adapt=method, **settings)
        top1[method] = _top1(path, target_val)

    add("bn")
    oracle = train(_cfg(shifted, epochs=2), tmp_path_factory.mktemp("oracle"), log=lambda *_: None).best
    top1["oracle"] = _top1(oracle, target_val)
    return top1, records, add


def test_bn_recovers_at_least_half_the_gap_to_a_labelled_target_model(shifted_results):
    top1, records, _ = shifted_results
    gap = top1["oracle"] - top1["source-only"]
    assert gap > 0.3, top1  # the shift is real: the source-only model fails on the target camera
    assert top1["bn"] - top1["source-only"] >= 0.5 * gap, top1
    assert records["bn"]["applied"] == "bn" and records["bn"]["input_shift"] > 0.5


@pytest.mark.slow
def test_tent_and_pseudo_also_close_half_the_gap(shifted_results):
    top1, records, add = shifted_results
    add("tent")
    add("pseudo", pseudo_epochs=1)
    assert records["tent"]["applied"] in ("tent", "bn")
    for method in ("tent", "pseudo"):
        assert top1[method] - top1["source-only"] >= 0.5 * (top1["oracle"] - top1["source-only"]), top1
    assert records["pseudo"]["history"][0]["pseudo_labelled"] > 0


def test_no_shift_changes_val_top1_by_at_most_half_a_point(source_model, domains, digits_dir, tmp_path):
    """Unseen images from the source camera as the target: the model stays as good as it was."""
    reference = scan_sources(_cfg(digits_dir)).val
    clean_val = scan_labelled(domains["clean"], CLASSES, "--target-val")
    path, record, logs = _adapt(source_model, domains["clean"], reference, tmp_path, adapt="bn")
    assert record["input_shift"] < record["min_shift"], record
    assert any("look like the source" in line for line in logs)
    before, after = _top1(source_model, reference), _top1(path, reference)
    assert abs(after - before) <= 0.005, (before, after)
    assert abs(_top1(path, clean_val) - _top1(source_model, clean_val)) <= 0.005


def test_tent_collapse_guard_falls_back_to_bn(source_model, domains, digits_dir, tmp_path):
    reference = scan_sources(_cfg(digits_dir)).val
    _, record, logs = _adapt(source_model, domains["shifted"] / "train", reference, tmp_path,
                             adapt="tent", tent_lr=1.0, adapt_images=200)
    assert record["applied"] == "bn" and record["fallback"] == "collapse guard", record
    assert any("collapse guard fired" in line and "fell back to bn" in line for line in logs)


def test_export_of_adapted_model_calibrates_int8_on_target_images(source_model, domains, digits_dir,
                                                                   tmp_path):
    """bn folds into the conv weights, parity holds, INT8 calibrated on target images stays
    within 1.5 points of fp32 on the target val set, and the manifest names its images."""
    from edgetune.adapt.stage import AGREEMENT
    from edgetune.pipeline import export_bundle

    shifted = domains["shifted"]
    reference = scan_sources(_cfg(digits_dir)).val
    path, record, _ = _adapt(source_model, shifted / "train", reference, tmp_path / "a", adapt="bn")
    target = TargetData(shifted / "train", scan_images(shifted / "train"),
                        scan_labelled(shifted / "val", CLASSES, "--target-val"))
    m = export_bundle(path, tmp_path / "bundle",
                      ExportConfig(targets=("cpu",), calib_samples=100, bench_runs=5, qat="off",
                                   cpu_engines=("onnxruntime",)),
                      data=str(digits_dir), log=lambda *_: None, target=target, adaptation=record)
    graph = onnx.load(tmp_path / "bundle" / "model.onnx")
    assert "BatchNormalization" not in {n.op_type for n in graph.graph.node}
    fp32, int8 = (next(a for a in m.artifacts if a.precision == p) for p in ("fp32", "int8"))
    assert fp32.parity["top1_agreement"] >= 0.99
    assert fp32.top1_target > 0.8 and abs(int8.top1_target - fp32.top1_target) <= 0.015, (fp32, int8)
    assert fp32.top1_source is not None and int8.top1_source is not None
    assert m.evaluation["split"] == AGREEMENT and m.evaluation["target_val"]["used_for_selection"] is False
    assert m.calibration["domain"] == "target" and len(m.calibration["images"]) == 100
    assert all((shifted / "train" / name).is_file() for name in m.calibration["images"])
    assert m.adaptation["applied"] == "bn"


def test_adapt_command_needs_no_source_data(trained_run, domains, tmp_path):
    from edgetune.adapt.stage import AGREEMENT
    from edgetune.pipeline import adapt_bundle

    bundle, _ = trained_run
    m = adapt_bundle(bundle, tmp_path / "adapted", AdaptConfig(target_data=str(domains["shifted"] / "train")),
                     ExportConfig(targets=("cpu",), calib_samples=50, bench_runs=5, qat="off",
                                  cpu_engines=("onnxruntime",)), log=lambda *_: None)
    assert m.adaptation["applied"] == "bn" and m.adaptation["shift_reference"] == "the model's own statistics"
    assert m.evaluation["split"] == AGREEMENT and m.artifact("model.onnx").top1 == 1.0
    assert (tmp_path / "adapted" / "model.pt").is_file()
    # No labelled image anywhere: the report says so rather than show agreement as accuracy.
    html = (tmp_path / "adapted" / "report.html").read_text()
    assert "No confusion matrix or worst-classified images" in html and 'alt="confusion matrix"' not in html
    assert '<div class="k">top-1 (fp32)</div><div class="v">not measured</div>' in html


def test_sources_merge_balanced_and_target_labels_join(small_digits, tmp_path):
    few = tmp_path / "few"
    for c in ("0", "1", "7"):
        (few / c).mkdir(parents=True)
        for p in sorted((small_digits / c).glob("*.png"))[:4]:
            shutil.copy(p, few / c / p.name)
    one = scan_sources(TrainConfig(data=str(small_digits)))
    both = scan_sources(TrainConfig(data=[str(small_digits), str(few)]))
    assert len(both.val) == len(one.val) + len(scan_sources(TrainConfig(data=str(few))).val)
    counts = np.bincount([str(s.path).startswith(str(few)) for s in both.train])
    assert abs(counts[0] - counts[1]) <= max(counts) * 0.35  # each source drawn about equally
    with_labels = scan_sources(TrainConfig(data=str(small_digits)), target_labels=few)
    assert sum(str(s.path).startswith(str(few)) for s in with_labels.train) >= len(one.train) * 0.7
    assert balance([[1], [2, 3, 4, 5]]) == [1, 1, 1, 1, 2, 3, 4, 5]


def test_target_errors_are_one_line(small_digits, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no images")
    run = ["run", "--data", small_digits, "--out", tmp_path / "o", *FAST]
    assert_user_error(edgetune(*run, "--target-data", empty), "--target-data", "holds no images")
    assert_user_error(edgetune(*run, "--adapt", "tent"), "--adapt tent", "--target-data")
    other = tmp_path / "other"
    for c in ("0", "1", "8"):
        (other / c).mkdir(parents=True)
        shutil.copy(next((small_digits / "0").glob("*.png")), other / c / "a.png")
    assert_user_error(edgetune(*run, "--target-val", other), "--target-val", "missing: 7",
                      "not a training class: 8")
    # The same checks in-process (each CLI call above costs seconds of start-up).
    with pytest.raises(DataError, match="--target-labels .*missing: 7; not a training class: 8"):
        scan_labelled(other, ["0", "1", "7"], "--target-labels")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="--target-data .*none of its 1 images can be read"):
        scan_images(bad)
    (bad / "y.png").write_bytes((small_digits / "0" / next((small_digits / "0").iterdir()).name).read_bytes())
    with pytest.raises(DataError, match=r"cannot read 1 image file\(s\).*x.png \(0 bytes\)"):
        scan_images(bad)
    assert scan_images(bad, skip_bad_images=True) == [bad / "y.png"]


def test_family_without_batchnorm_says_so_and_skips(domains, tmp_path):
    from edgetune.train import checkpoint
    from edgetune.train.model import create_model, preprocess_for

    model = create_model("convnext_tiny", "none", 10)
    cfg = _cfg("unused")
    checkpoint.save(tmp_path / "c.pt", {"arch": "convnext_tiny", "weights": "none", "classes": CLASSES,
                                        "preprocess": preprocess_for("convnext_tiny", "none", 32).to_dict(),
                                        "config": {**cfg.__dict__, "model": "convnext_tiny"},
                                        "model": model.state_dict()})
    images = domains["shifted"] / "val" / "3"
    _, record, logs = _adapt(tmp_path / "c.pt", images, None, tmp_path, adapt="tent")
    assert record["applied"] == "none" and record["batchnorm_layers"] == 0
    assert any("has no BatchNorm layers" in line for line in logs)


def test_resume_with_target_data_adapts_the_finished_run_without_retraining(adapted_run):
    import yaml

    m = adapted_run.manifest
    assert not any(line.startswith("epoch ") for line in adapted_run.log)  # training was finished: not redone
    assert m.adaptation["applied"] == "bn" and m.calibration["domain"] == "target"
    assert (adapted_run.out / "checkpoints" / "adapted.pt").is_file()
    saved = yaml.safe_load((adapted_run.out / "config.yaml").read_text())
    assert saved["target_data"] == str(adapted_run.target)  # a later --resume adapts alike
