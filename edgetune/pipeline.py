"""The one command: train → checkpoint → ONNX → calibrate → per-target INT8 → measure → bundle.

Each stage is a library function from files to files; this module only chains them.
"""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

from edgetune import __version__, checkpoint
from edgetune.atomic import write_text
from edgetune.bundle import Artifact, Manifest, artifact_record, write_manifest
from edgetune.config import ExportConfig, TrainConfig, to_dict
from edgetune.errors import ConfigError
from edgetune.evaluate import EvalSet, top1
from edgetune.latency import measure_latency
from edgetune.preprocess import Preprocess
from edgetune.recommend import recommend
from edgetune.runtime.ort_backend import OrtSession

FP32 = "model.onnx"
CHECKPOINT = "model.pt"
# Files and folders a run writes: the only things --overwrite removes.
OWNED = ("manifest.json", "config.yaml", CHECKPOINT, "checkpoints", "calib", "model.onnx",
         "model.int8.cpu.onnx", "model.int8.tensorrt.onnx", "model.fp16.onnx")


def prepare_out(out: str | Path, overwrite: bool, resume: bool) -> Path:
    """Refuse a non-empty output folder unless asked to overwrite or resume into it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder path")
    # A config.yaml alone is a run that stopped before training: nothing to lose.
    entries = [p for p in out.iterdir() if p.name != "config.yaml"] if out.is_dir() else []
    if entries and not (overwrite or resume):
        raise ConfigError(
            f"--out {out} is not empty; pass --overwrite to replace its run, --resume to continue "
            "it, or choose another --out"
        )
    if overwrite and not resume:
        import shutil

        for name in OWNED:
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def run(train_cfg: TrainConfig, export_cfg: ExportConfig, out: str | Path, *,
        overwrite: bool = False, resume: bool = False, log=print) -> Manifest:
    from edgetune.train import train

    out = prepare_out(out, overwrite, resume)
    write_config(out, train_cfg, export_cfg)
    result = train(train_cfg, out, resume=resume, log=log)
    return export_bundle(result.best, out, export_cfg, data=train_cfg.data, log=log)


def write_config(out: Path, *cfgs) -> None:
    import yaml

    write_text(out / "config.yaml", yaml.safe_dump(to_dict(*cfgs), sort_keys=False))


def export_bundle(ckpt_path: str | Path, out: str | Path, cfg: ExportConfig, data: str | None = None,
                  log=print) -> Manifest:
    """From a trained checkpoint: the ONNX fp32 graph, INT8 per target, each measured, and the manifest."""
    from edgetune.export.onnx import check_parity, export_onnx
    from edgetune.model import build_from_checkpoint
    from edgetune.train import load_splits

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint.load(ckpt_path)
    model = build_from_checkpoint(ckpt)
    pre = Preprocess.from_dict(ckpt["preprocess"])
    splits = load_splits(ckpt, data)
    checkpoint.save(out / CHECKPOINT, {k: ckpt[k] for k in
                                       ("arch", "weights", "classes", "preprocess", "config", "model")})

    log(f"export: ONNX fp32 → {out / FP32}")
    export_onnx(model, pre.size, out / FP32)
    val = EvalSet(splits.val, pre)
    parity = check_parity(model, out / FP32, val.x[: cfg.parity_images])
    artifacts = [_measure(out, FP32, "cpu", "fp32", val, pre, cfg, parity=parity.to_dict())]

    int8_targets = [t for t in cfg.targets if t in ("cpu", "tensorrt")]
    if int8_targets:
        cal = _calibrate(out, splits, pre, cfg, log)
        from edgetune.calib.quantize import RECIPES

        for target in int8_targets:
            name = f"model.int8.{target}.onnx"
            log(f"quantize: INT8 for {target} ({cfg.calib_method}, {cal.samples} images) → {out / name}")
            RECIPES[target](cal, out / name)
            if target == "tensorrt":
                _lint_for_tensorrt(out / name)
            artifacts.append(_measure(out, name, target, "int8", val, pre, cfg,
                                      calibration={**cal.to_dict(), "recipe": target},
                                      timed=target == "cpu"))

    manifest = Manifest(
        model={"arch": ckpt["arch"], "weights": ckpt["weights"], "classes": ckpt["classes"],
               "num_classes": len(ckpt["classes"])},
        input={"name": "input", **pre.to_dict()},
        artifacts=artifacts,
        checkpoint=CHECKPOINT,
        evaluation={"split": "val", "images": len(val)},
        versions=_versions(),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    for target in ("cpu", *[t for t in cfg.targets if t != "cpu"]):
        choice = recommend(artifacts, target, cfg.max_drop)
        if choice:
            manifest.recommended[target] = choice
    write_manifest(out, manifest)
    for a in artifacts:
        lat = f"{a.latency_ms['p50']:.2f} ms" if a.latency_ms else "not timed here"
        log(f"  {a.file:28s} {a.precision:5s} top-1 {a.top1:.2%}  batch-1 p50 {lat}")
    log(f"recommended for cpu: {manifest.recommended['cpu']['file']} ({manifest.recommended['cpu']['why']})")
    return manifest


def _lint_for_tensorrt(path: Path) -> None:
    from edgetune.calib.lint import lint_tensorrt_qdq

    issues = lint_tensorrt_qdq(path)
    if issues:  # our recipe produced a graph TensorRT would reject: a bug, not a user error
        raise RuntimeError(f"{path.name} fails the TensorRT QDQ lint: " + "; ".join(map(str, issues[:5])))


def _calibrate(out: Path, splits, pre: Preprocess, cfg: ExportConfig, log):
    from edgetune.calib.quantize import Calibration, prepare
    from edgetune.calib.sample import ImageReader, fingerprint, stratified_sample

    sample = stratified_sample(splits.train, cfg.calib_samples, seed=0)
    prepared = prepare(out / FP32, out / "calib" / "model.prep.onnx")
    key = fingerprint(sample, pre)[:16]
    cache = out / "calib" / f"ranges-{cfg.calib_method}-{key}.json"
    reader = None
    if cache.is_file():
        log(f"calibrate: reusing ranges {cache}")
    else:
        log(f"calibrate: {len(sample)} images, {cfg.calib_method} → {cache}")
        reader = ImageReader(sample, pre, "input")
    return Calibration(prepared, cache, cfg.calib_method, len(sample), reader)


def _measure(out: Path, file: str, target: str, precision: str, val: EvalSet, pre: Preprocess,
             cfg: ExportConfig, timed: bool = True, **extra) -> Artifact:
    session = OrtSession(out / file, device="cpu", threads=cfg.threads)
    latency = None
    if timed:
        latency = measure_latency(session, (3, *pre.size), batch=1, runs=cfg.bench_runs)
        latency["threads"] = cfg.threads
    notes = "" if timed else "QDQ graph for TensorRT: top-1 measured in ONNX Runtime; time it on the target"
    return artifact_record(out, file, backend="onnxruntime", target=target, precision=precision,
                           top1=top1(session, val), latency_ms=latency, notes=notes, **extra)


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch
    import torchvision

    return {"edgetune": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}
