"""The one command: train → checkpoint → ONNX → calibrate → per-target INT8 → measure → bundle.

Each stage is a library function from files to files; this module only chains them.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

import numpy as np

from edgetune import __version__, cpu_target, files, targets
from edgetune.adapt import stage as adapt_stage
from edgetune.atomic import sha256_file, write_text
from edgetune.bundle import Manifest, artifact_record, write_manifest
from edgetune.config import AdaptConfig, ExportConfig, TrainConfig, to_dict
from edgetune.errors import ConfigError
from edgetune.evaluate import EvalSet, describe_subset, eval_subset, top1
from edgetune.files import CHECKPOINT, FP32
from edgetune.latency import measure_latency
from edgetune.preprocess import Preprocess, load_image
from edgetune.report import choice, figures, html
from edgetune.runtime import backends
from edgetune.runtime.ort_backend import OrtSession


def _not_a_run(entry: Path) -> bool:
    # A config.yaml alone is a run that stopped before training: nothing to lose. A search's
    # folder inside OUT (`edgetune tune --out OUT/search`) is its own; the report shows it.
    return entry.name == files.CONFIG or (entry / files.TRIALS_CSV).is_file()


def prepare_out(out: str | Path, overwrite: bool, resume: bool) -> Path:
    """A run's folder: refused when it holds another run, unless asked to overwrite or resume."""
    return files.prepare_out(out, files.RUN_FILES, overwrite=overwrite, resume=resume, ignore=_not_a_run)


def check_inputs(train_cfg: TrainConfig, out: str | Path, overwrite: bool, resume: bool,
                 target_labels: str | None = None):
    """The output folder and the data checked before PyTorch loads (seconds on a small
    machine): a user's mistake on disk is one line at once. Returns the scanned splits."""
    from edgetune.data.sources import scan_sources

    files.check_out(out, overwrite=overwrite, resume=resume, ignore=_not_a_run)
    return scan_sources(train_cfg, target_labels)


def run(train_cfg: TrainConfig, export_cfg: ExportConfig, out: str | Path, *,
        overwrite: bool = False, resume: bool = False, log=print,
        adapt_cfg: AdaptConfig | None = None) -> Manifest | None:
    """The whole pipeline; under torchrun every process trains and rank 0 exports, the
    others joining only its QAT stages (they return None)."""
    adapt_cfg = adapt_cfg or AdaptConfig()
    cpu_target.require_engines(export_cfg)
    splits = check_inputs(train_cfg, out, overwrite, resume, adapt_cfg.target_labels)
    # Bad target folders fail before training too.
    target = adapt_stage.load_target(adapt_cfg, train_cfg, classes=splits.classes)
    from edgetune.train import train
    from edgetune.train.distributed import initialized
    from edgetune.train.footprint import check_run
    from edgetune.train.model import preprocess_for

    check_run(train_cfg, export_cfg, out, preprocess_for(train_cfg.model, train_cfg.weights,
                                                         train_cfg.image_size))  # before hours of work
    out = prepare_out(out, overwrite, resume)
    write_config(out, train_cfg, export_cfg, *([adapt_cfg] if adapt_cfg != AdaptConfig() else []))
    with initialized(train_cfg.device) as (world, _):  # one process group from training to the export
        result = train(train_cfg, out, resume=resume, log=log, target_labels=adapt_cfg.target_labels,
                       splits=splits)

        def export_best():
            best, adaptation = adapt_stage.adapt(result.best, out, adapt_cfg, target, train_cfg, log)
            return export_bundle(best, out, export_cfg, data=train_cfg.data, log=log, target=target,
                                 adaptation=adaptation)

        return rank0_exports(world, export_best)


def export(ckpt_path: str | Path, out: str | Path, cfg: ExportConfig, data: str | None = None) -> Manifest | None:
    """`edgetune export`: `export_bundle`, which under torchrun rank 0 runs while the others
    join its QAT stages (they return None)."""
    from edgetune.train.distributed import initialized

    with initialized("cpu") as (world, _):  # QAT, the one stage they share, runs on the CPU
        return rank0_exports(world, lambda: export_bundle(ckpt_path, out, cfg, data=data))


def rank0_exports(world, export) -> Manifest | None:
    """`export()` on rank 0 while the other processes run their share of each QAT stage it
    starts (edgetune.train.qat); on one process, simply `export()`."""
    from edgetune.train import distributed, qat

    if not world.is_main:
        qat.follow(world)
        return None
    with distributed.leading(world):
        return export()


def write_config(out: Path, *cfgs) -> None:
    import yaml

    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 writes for all
        return
    write_text(out / files.CONFIG, yaml.safe_dump(to_dict(*cfgs), sort_keys=False))


def export_bundle(ckpt_path: str | Path, out: str | Path, cfg: ExportConfig, data: str | None = None,
                  log=print, target=None, adaptation: dict | None = None) -> Manifest:
    """From a trained checkpoint: the ONNX fp32 graph, INT8 per target, each measured, and the manifest.
    `target` (adapt_stage.TargetData): calibrate on the deployment images, measure on `--target-val`;
    without source data (`data=False`), artifacts are judged by agreement with fp32 on target images."""
    from edgetune.export.onnx import check_parity, export_onnx
    from edgetune.train import checkpoint, load_splits
    from edgetune.train.model import build_from_checkpoint

    cpu_target.require_engines(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint.load(ckpt_path)
    model = build_from_checkpoint(ckpt)
    pre = Preprocess.from_dict(ckpt["preprocess"])
    splits = load_splits(ckpt, data) if data is not False else None
    checkpoint.save(out / CHECKPOINT, {k: ckpt[k] for k in
                                       ("arch", "weights", "classes", "preprocess", "config", "model")})

    log(f"export: ONNX fp32 → {out / FP32}")
    export_onnx(model, pre.size, out / FP32)
    source_val, subset = None, {}
    if splits:
        picked, subset = eval_subset(splits.val, cfg.eval_max)
        source_val, subset["images"] = EvalSet(picked, pre), len(picked)
        log(describe_subset(subset))
    # An adapted model is judged where it will run: by agreement with fp32 on target images.
    val = adapt_stage.judge_set(out / FP32, source_val, target, adaptation, pre, cfg.calib_samples)
    measure = "top-1" if val is source_val else figures.AGREEMENT  # what every verdict names
    parity = check_parity(model, out / FP32, val.head(cfg.parity_images))
    fp32 = artifact_record(out, FP32, backend="onnxruntime", target="cpu", precision="fp32",
                           top1=top1(OrtSession(out / FP32, device="cpu"), val, desc=f"evaluate {FP32}"),
                           parity=parity.to_dict(), extra=backends.extra("onnxruntime"))
    artifacts, recommended, candidates = [fp32], {}, {}

    pool, calibration = adapt_stage.calibration_pool(target, splits, cfg.calib_samples)
    cpu = "cpu" in cfg.targets or "openvino" in cfg.targets  # openvino: the cpu target, OpenVINO required
    if cpu or "tensorrt" in cfg.targets:
        cal, calib_batch = _calibrate(out, pool, pre, cfg, log)
    qat = _qat_job(ckpt, splits, pool, cfg, log, out) if cpu or "tensorrt" in cfg.targets else None
    floor = fp32.top1 - cfg.max_drop / 100.0
    if cpu:
        shipped, candidates["cpu"], chosen = cpu_target.build_cpu(
            out, cal, val, calib_batch, pre, cfg, fp32, log, measure, qat=qat)
        artifacts, recommended = shipped, chosen
    else:
        fp32.latency_ms = measure_latency(OrtSession(out / FP32, device="cpu", threads=cfg.threads),
                                          (3, *pre.size), runs=cfg.bench_runs)
        recommended["cpu"] = {"file": FP32, "why": "the only CPU artifact (--targets has no cpu)"}
    if "tensorrt" in cfg.targets:
        trt, rows = targets.build_tensorrt(out, cal, val, cfg, log, floor, qat=qat, calib_batch=calib_batch)
        artifacts.append(trt)
        if len(rows) > 1:  # PTQ against QAT, or layers left in float
            candidates["tensorrt"] = rows
    if "gpu" in cfg.targets:
        artifacts.append(targets.build_gpu_fp16(out, val, cfg, log))
    for name in cfg.targets:
        if name not in ("cpu", "openvino"):
            recommended[name] = targets.recommend_untimed(artifacts, name, floor, measure)
    folded = {}
    if cfg.fold_preprocessing:
        pixels = np.stack([pre.pixels(load_image(p)) for p in val.paths[:cfg.parity_images]])
        folded = targets.fold_artifacts(out, artifacts, recommended, pre, cfg.fold_preprocessing, pixels, log)
    history = checkpoint.training_history(ckpt_path, out)
    evaluation = {"split": "val" if val is source_val else adapt_stage.AGREEMENT, "images": len(val),
                  "max_drop": cfg.max_drop, **({k: v for k, v in subset.items() if k != "images"}
                                               if val is source_val else {})}
    if source_val is not None and val is not source_val:
        evaluation["source_val"] = adapt_stage.source_val_record(subset, history)
    evaluation.update(adapt_stage.measure_domains(out, artifacts, source_val if val is not source_val
                                                  else None, target, pre, cfg.threads, log))

    manifest = Manifest(
        model={"arch": ckpt["arch"], "weights": ckpt["weights"], "classes": ckpt["classes"],
               "num_classes": len(ckpt["classes"])},
        input={"name": "input", **pre.to_dict()},
        artifacts=artifacts,
        recommended=recommended,
        candidates=candidates,
        checkpoint=CHECKPOINT,
        checkpoint_sha256=sha256_file(out / CHECKPOINT),
        evaluation=evaluation,
        adaptation=adaptation or {},
        calibration=calibration,
        folded=folded,
        versions=_versions(),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    write_manifest(out, manifest)
    choice.show_choice(manifest, log)
    # Labelled images only: a confusion matrix drawn from fp32's own predictions would be all diagonal.
    html.write_report(out, val=source_val, history=history)
    return manifest


def adapt_bundle(bundle: str | Path, out: str | Path, cfg: AdaptConfig, export_cfg, data=None,
                 device: str = "auto", overwrite: bool = False, log=print):
    """`edgetune adapt`: the bundle's checkpoint adapted to the target images and exported to
    `out`. The source data is optional (`data`); without it, INT8 is judged by agreement with
    fp32 on target images and the input shift against the model's own statistics."""
    from edgetune.bundle import read_manifest, verify_checkpoint
    from edgetune.train.adapt import adapt_checkpoint, pick_device
    from edgetune.train.loop import load_splits

    manifest = read_manifest(bundle)
    ckpt_path = verify_checkpoint(bundle, manifest)
    target = adapt_stage.load_target(cfg, classes=manifest.classes)
    if Path(out).resolve() == Path(bundle).resolve():
        raise ConfigError(f"--out {out} is the bundle being adapted; pass a new folder for the adapted bundle")
    out = files.prepare_out(out, files.RUN_FILES, overwrite=overwrite, resumable=False)
    reference = None
    if data is not None:
        from edgetune.train import checkpoint

        reference = load_splits(checkpoint.load(ckpt_path), data).val
    record = adapt_checkpoint(ckpt_path, Path(out) / adapt_stage.ADAPTED, cfg, target, reference,
                              pick_device(device), log, work=Path(out))
    record["source_bundle"] = str(bundle)
    return export_bundle(Path(out) / adapt_stage.ADAPTED, out, export_cfg,
                         data=data if data is not None else False, log=log, target=target,
                         adaptation=record)


def _qat_job(ckpt: dict, splits, pool: list, cfg: ExportConfig, log, out: Path):
    """What quantization-aware fine-tuning needs, or None with --qat off. It trains on the
    train split only (val judges every artifact), so it needs the checkpoint's training config
    and its source data. Its unfinished epochs wait in OUT/calib for the run to go on; its
    frozen prefix's outputs may be memory-mapped where training keeps its feature cache."""
    if cfg.qat == "off":
        return None
    from edgetune.train.qat import QatJob

    trained = ckpt.get("config") or {}
    if splits is None or not trained.get("epochs"):
        why = ("the checkpoint holds no training config" if not trained.get("epochs")
               else "there is no labelled source data to train on")
        if cfg.qat == "always":
            raise ConfigError(f"--qat always: {why}; export a checkpoint written by edgetune train or run "
                              "with its --data, or use --qat off")
        log(f"qat: skipped ({why})")
        return None
    return QatJob(ckpt, splits.train, pool, cfg.qat_epochs, cfg.qat_lr, out / files.CALIB,
                  files.cache_folder(trained.get("cache_dir"), out))


def _calibrate(out: Path, sample, pre: Preprocess, cfg: ExportConfig, log):
    from edgetune.calib.quantize import Calibration, prepare
    from edgetune.calib.sample import ImageReader, calibration_batch, fingerprint
    from edgetune.data.subsets import stratified_sample

    prepared = prepare(out / FP32, out / files.CALIB / "model.prep.onnx")
    # Ranges belong to one graph and one sample: a re-export of the same checkpoint reuses
    # them, a different model never does.
    key = _hash_text(fingerprint(sample, pre) + sha256_file(prepared))[:16]
    cache = out / files.CALIB / f"ranges-{cfg.calib_method}-{key}.json"
    reader = None
    if cache.is_file():
        log(f"calibrate: reusing ranges {cache}")
    else:
        log(f"calibrate: {len(sample)} images, {cfg.calib_method} → {cache}")
        reader = ImageReader(sample, pre, "input", batch=calibration_batch(cfg.calib_method, len(sample)))
    # A few images of every class for the sensitivity ranking, should INT8 miss the budget.
    batch = EvalSet(stratified_sample(sample, 32, seed=1), pre).x
    return Calibration(prepared, cache, cfg.calib_method, len(sample), reader), batch


def _hash_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch
    import torchvision

    return {"edgetune": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, **backends.cpu_engine_versions()}
