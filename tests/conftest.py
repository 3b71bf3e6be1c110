"""Shared fixtures: small real data (scikit-learn's digits on disk) and one tiny trained run,
built once per session so the suite stays fast: once for all of pytest-xdist's workers too
(`built_once`: the first worker to ask builds, the others wait and read the same folder).
Tests read these folders; a test that changes one works on its own copy."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgetune.data.demo import ensure_digits

pytest_plugins = ["tests.support.cputime"]  # CPU seconds per test, beside --durations

# One PyTorch thread per process (none of the imports above loads torch; the CLI runs, torchrun
# and the tools the tests start inherit it): pytest-xdist already runs a worker per core, and
# two threads each on two cores spun against each other. The same suite on the 2-core EPYC:
# 939 -> 706 CPU-s, 551 -> 438 s.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_unconfigure(config):
    """Each pytest-xdist worker holds every test's models at the end: the exit's cyclic
    collection over them is skipped, as `edgetune.cli.main.console` skips its own."""
    import gc

    gc.freeze()


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory, worker_id) -> Path:
    """The folder every worker of this session sees (pytest-xdist), or this process's own."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def built_once(root: Path, name: str, build) -> Path:
    """`build(folder)` once per session, by whichever worker asks first; the others wait for
    it. Returns the folder."""
    from filelock import FileLock

    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (folder / ".built").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            (folder / ".built").write_text("")
    return folder


@pytest.fixture(scope="session")
def digits_dir(shared_root) -> Path:
    """The full demo data: DIR/train/<0-9>/*.png and DIR/val/<0-9>/*.png."""
    return ensure_digits(shared_root / "digits")  # published whole: safe for workers at once


@pytest.fixture(scope="session")
def small_digits(digits_dir, shared_root) -> Path:
    """Three classes, 24 images each, in the single-folder layout (split by edgetune)."""
    def build(folder: Path) -> None:
        for c in ("0", "1", "7"):
            (folder / "data" / c).mkdir(parents=True)
            for p in sorted((digits_dir / "train" / c).glob("*.png"))[:24]:
                shutil.copy(p, folder / "data" / c / p.name)

    return built_once(shared_root, "small", build) / "data"


@pytest.fixture(scope="session")
def trained_run(digits_dir, shared_root):
    """A resnet18 trained from scratch on the digits at 32 px, exported for cpu, tensorrt and gpu."""
    from edgetune.bundle import read_manifest
    from edgetune.config import ExportConfig, TrainConfig
    from edgetune.pipeline import run

    train_cfg = TrainConfig(data=str(digits_dir), model="resnet18", weights="none", image_size=32,
                            unfreeze="all", epochs=2, lr=3e-3, batch_size=64, augment="light")
    # --qat off in the shared fixtures: tests/train/test_qat.py covers QAT; here it would only add time.
    export_cfg = ExportConfig(targets=("cpu", "tensorrt", "gpu"), calib_samples=100, bench_runs=30, qat="off")
    out = built_once(shared_root, "run", lambda folder: run(train_cfg, export_cfg, folder / "bundle",
                                                            log=lambda *_: None)) / "bundle"
    return out, read_manifest(out)


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
                             ExportConfig(targets=("tensorrt",), calib_samples=100, eval_max=40, qat="off",
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
def adapted_run(small_digits, shared_root) -> AdaptedRun:
    """The smallest adapted run, made the way a user adds the device's camera to a finished
    run: three digit classes trained one epoch at 32 px and exported, then the same command
    with --resume and --target-data (those images seen through demo_shift's camera, which
    also serve as --target-val): bn adaptation and a re-export, without retraining."""
    import json

    from edgetune.bundle import read_manifest
    from edgetune.config import AdaptConfig, ExportConfig, TrainConfig
    from edgetune.data.demo_shift import CameraShift, ensure_shifted
    from edgetune.pipeline import run

    def build(root: Path) -> None:
        shifted = ensure_shifted(small_digits, root / "shifted", CameraShift())
        cfg = TrainConfig(data=str(small_digits), weights="none", image_size=32, unfreeze="all", epochs=1,
                          batch_size=16, workers=0)
        # --max-drop 5: on 15 val images one image is 6.7 points, and under the default budget
        # the re-export searched layers to keep in float (15 s of this fixture's 41): that
        # search is tests/calib's. ONNX Runtime alone: weighing OpenVINO (every graph compiled,
        # judged and timed again, in both exports) is tests/calib's too.
        export = ExportConfig(targets=("cpu",), cpu_engines=("onnxruntime",), calib_samples=20, bench_runs=3,
                              qat="off", max_drop=5.0)
        run(cfg, export, root / "run", log=lambda *_: None)
        log: list[str] = []
        run(cfg, export, root / "run", resume=True, log=log.append,
            adapt_cfg=AdaptConfig(target_data=str(shifted), target_val=str(shifted)))
        (root / "log.json").write_text(json.dumps(log))

    root = built_once(shared_root, "adapted", build)
    return AdaptedRun(root / "run", read_manifest(root / "run"), json.loads((root / "log.json").read_text()),
                      root / "shifted")


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
