"""Shared fixtures: small real data (scikit-learn's digits on disk) and one tiny trained run,
built once per session so the suite stays fast."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgetune.data.demo import ensure_digits


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """The full demo data: DIR/train/<0-9>/*.png and DIR/val/<0-9>/*.png."""
    return ensure_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def small_digits(digits_dir, tmp_path_factory) -> Path:
    """Three classes, 24 images each, in the single-folder layout (split by edgetune)."""
    root = tmp_path_factory.mktemp("small") / "data"
    for c in ("0", "1", "7"):
        (root / c).mkdir(parents=True)
        for p in sorted((digits_dir / "train" / c).glob("*.png"))[:24]:
            shutil.copy(p, root / c / p.name)
    return root


@pytest.fixture(scope="session")
def trained_run(digits_dir, tmp_path_factory):
    """A resnet18 trained from scratch on the digits at 32 px, exported for cpu, tensorrt and gpu."""
    from edgetune.config import ExportConfig, TrainConfig
    from edgetune.pipeline import run

    out = tmp_path_factory.mktemp("run") / "bundle"
    train_cfg = TrainConfig(data=str(digits_dir), model="resnet18", weights="none", image_size=32,
                            unfreeze="all", epochs=2, lr=3e-3, batch_size=64, augment="light")
    export_cfg = ExportConfig(targets=("cpu", "tensorrt", "gpu"), calib_samples=100, bench_runs=30)
    manifest = run(train_cfg, export_cfg, out, log=lambda *_: None)
    return out, manifest


@dataclass(frozen=True)
class Export:
    out: Path
    manifest: object  # edgetune.bundle.Manifest
    log: list[str]


@pytest.fixture(scope="session")
def reexported_run(trained_run, digits_dir, tmp_path_factory) -> Export:
    """`trained_run`'s checkpoint exported again into a copy of its folder, judged on a
    40-image subset of the val split (--eval-max 40): what a user's re-export looks like; for
    a JetPack 6.0 device (--tensorrt-version 8.6) and with graphs that take uint8 NHWC pixels
    (--fold-preprocessing nhwc)."""
    from edgetune.config import ExportConfig
    from edgetune.pipeline import export_bundle

    copy = tmp_path_factory.mktemp("reexport") / "bundle"
    shutil.copytree(trained_run[0], copy)
    log: list[str] = []
    manifest = export_bundle(copy / "checkpoints" / "best.pt", copy,
                             ExportConfig(targets=("tensorrt",), calib_samples=100, eval_max=40,
                                          fold_preprocessing="nhwc", tensorrt_version="8.6"),
                             data=str(digits_dir), log=log.append)
    return Export(copy, manifest, log)


@dataclass(frozen=True)
class AdaptedRun:
    out: Path
    manifest: object  # edgetune.bundle.Manifest
    log: list[str]  # what the resumed, adapting run logged
    target: Path  # the target camera's images (--target-data and --target-val)


@pytest.fixture(scope="session")
def adapted_run(small_digits, tmp_path_factory) -> AdaptedRun:
    """The smallest adapted run, made the way a user adds the device's camera to a finished
    run: three digit classes trained one epoch at 32 px and exported, then the same command
    with --resume and --target-data (those images seen through demo_shift's camera, which
    also serve as --target-val): bn adaptation and a re-export, without retraining."""
    from edgetune.config import AdaptConfig, ExportConfig, TrainConfig
    from edgetune.data.demo_shift import CameraShift, ensure_shifted
    from edgetune.pipeline import run

    root = tmp_path_factory.mktemp("adapted")
    shifted = ensure_shifted(small_digits, root / "shifted", CameraShift())
    cfg = TrainConfig(data=str(small_digits), weights="none", image_size=32, unfreeze="all", epochs=1,
                      batch_size=16, workers=0)
    export = ExportConfig(targets=("cpu",), calib_samples=20, bench_runs=3)
    run(cfg, export, root / "run", log=lambda *_: None)
    log: list[str] = []
    manifest = run(cfg, export, root / "run", resume=True, log=log.append,
                   adapt_cfg=AdaptConfig(target_data=str(shifted), target_val=str(shifted)))
    return AdaptedRun(root / "run", manifest, log, shifted)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A small real bundle (fp32 + INT8 ResNet-18 at 32 px, a checkpoint, a few PNGs) made
    without the training pipeline: what the runtime, bench and engine-choice tests load."""
    from tests.support.tiny_bundle import tiny_bundle

    return tiny_bundle(tmp_path_factory.getbasetemp() / "tiny")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, installed with apt-get where it is missing and we can."""
    import os
    import subprocess

    found = shutil.which("chromium")
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("chromium is not installed and cannot be here (needs apt-get as root); "
                    "install Debian's 'chromium' package to run the browser test")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        if cmd[1] == "install" and proc.returncode == 0:
            break
    found = shutil.which("chromium")
    if not found:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"chromium could not be installed with apt-get: {why}")
    return found
