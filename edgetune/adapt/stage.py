"""The adaptation stage between training and export, and what export does with target data.

`pipeline.run` calls `load_target` before training (a bad target folder fails at once),
`adapt` after it, and `pipeline.export_bundle` uses `judge_set`, `calibration_pool`,
`measure_domains` and `source_val_record`. `pipeline.adapt_bundle` (`edgetune adapt`) adapts
an existing bundle's checkpoint with `adapt_checkpoint` and re-exports it, without the source data.

Checkpoint selection never sees target labels: best.pt is chosen on the source val split,
the adapted model is the last step's, and INT8 candidates are judged on the source val split
(or, for an adapted model or without source data, by agreement with fp32 on unlabelled target
images). `--target-val` is measured and recorded, nothing more: choosing with it would report
an accuracy that was tuned on the very images it is measured on, which is the leak that makes
published adaptation numbers look better than what a user gets on the next camera's images.
"""

from __future__ import annotations

from pathlib import Path

from edgetune.config import AdaptConfig
from edgetune.data.scan import Sample
from edgetune.data.subsets import subset
from edgetune.data.target_domain import UNLABELLED, TargetData, relative, scan_images, scan_labelled
from edgetune.evaluate import EvalSet, logits_of
from edgetune.files import CHECKPOINT_ADAPTED as ADAPTED
from edgetune.preprocess import Preprocess

AGREEMENT_IMAGES = 500  # target images fp32 agreement is measured on
AGREEMENT = "agreement with fp32 on target images"


def load_target(cfg: AdaptConfig, train_cfg=None, classes: list[str] | None = None) -> TargetData | None:
    """Every target folder scanned and checked against the training classes; None without any."""
    if cfg.target_data is None and cfg.target_val is None and cfg.target_labels is None:
        return None
    verify = bool(train_cfg and train_cfg.verify_images)
    skip = bool(train_cfg and train_cfg.skip_bad_images)
    if classes is None and (cfg.target_val or cfg.target_labels):
        from edgetune.data.sources import scan_sources

        classes = scan_sources(train_cfg).classes
    images = (scan_images(cfg.target_data, verify_images=verify, skip_bad_images=skip)
              if cfg.target_data else [])
    val = (scan_labelled(cfg.target_val, classes, "--target-val", verify_images=verify,
                         skip_bad_images=skip) if cfg.target_val else [])
    labelled = (scan_labelled(cfg.target_labels, classes, "--target-labels", verify_images=verify,
                              skip_bad_images=skip) if cfg.target_labels else [])
    root = Path(cfg.target_data) if cfg.target_data else None
    return TargetData(root, images, val, labelled)


def adapt(best: Path, out: Path, cfg: AdaptConfig, target: TargetData | None, train_cfg,
          log=print) -> tuple[Path, dict]:
    """The checkpoint to export and the manifest's adaptation record ({} without --target-data)."""
    record = {"target_labels": cfg.target_labels} if cfg.target_labels else {}
    if cfg.method is None:
        return best, record
    from edgetune.data.sources import scan_sources
    from edgetune.train.adapt import adapt_checkpoint, pick_device

    reference = scan_sources(train_cfg).val  # the input shift is measured against source images
    record.update(adapt_checkpoint(best, Path(out) / ADAPTED, cfg, target, reference,
                                   pick_device(train_cfg.device), log, work=Path(out)))
    return Path(out) / ADAPTED, record


def calibration_pool(target: TargetData | None, splits, n: int) -> tuple[list[Sample], dict]:
    """The images INT8 calibration draws from, and the manifest's record of them: the target
    images when given (ranges should fit the camera the device sees), else the source training
    images, drawn evenly over the classes."""
    from edgetune.data.subsets import stratified_sample

    if target is not None and target.images:
        picked = subset(target.images, n, seed=0)
        return ([Sample(p, UNLABELLED) for p in picked],
                {"domain": "target", "root": str(target.root), "images": relative(picked, target.root)})
    sample = stratified_sample(splits.train, n, seed=0)
    return sample, {"domain": "source", "images": [str(s.path) for s in sample]}


def measure_domains(out: Path, artifacts: list, source_val, target: TargetData | None, pre: Preprocess,
                    threads: int | None, log=print) -> dict:
    """Each artifact's top-1 on `--target-val` and, when artifacts were judged on target images,
    on the source val split; recorded on the artifacts. Returns the evaluation record's additions."""
    from edgetune.bundle import artifact_path
    from edgetune.evaluate import top1
    from edgetune.runtime.ort_backend import OrtSession

    sets = {"top1_source": source_val,
            "top1_target": EvalSet(target.val, pre) if target is not None and target.val else None}
    for a in artifacts:
        if a.file.endswith(".onnx"):
            session = OrtSession(artifact_path(out, a), device="cpu", threads=threads)
            for name, data in sets.items():
                if data is not None:
                    setattr(a, name, top1(session, data))
    if sets["top1_target"] is None:
        return {}
    log(f"measure: top-1 on {len(target.val)} labelled target images (--target-val; measured only, "
        "never used to choose)")
    return {"target_val": {"images": len(target.val), "used_for_selection": False}}


def source_val_record(subset: dict, history: list[dict]) -> dict:
    """The evaluation record's `source_val` when artifacts were judged by agreement: which
    source val images `top1_source` was measured on and, where the training history is at
    hand, the val top-1 of the model before adaptation (training's best epoch, the one adapted)."""
    tops = [r["top1"] for r in history if isinstance(r.get("top1"), (int, float))]
    return {**subset, **({"top1_before_adaptation": round(max(tops), 4)} if tops else {})}


def judge_set(fp32: Path, source_val, target: TargetData | None, adaptation: dict | None, pre: Preprocess,
              calib_samples: int):
    """What INT8 candidates are judged on: the source val split, unless the model was adapted
    to the target (its source accuracy then says little about the device) or there is no
    source data; then agreement with fp32 on target images, which needs no labels."""
    adapted = bool(adaptation) and adaptation.get("applied", "none") != "none"
    if source_val is not None and not adapted:
        return source_val
    return fp32_agreement_set(fp32, target, pre, calib_samples)


def fp32_agreement_set(fp32: Path, target: TargetData | None, pre: Preprocess,
                       calib_samples: int) -> EvalSet:
    """An EvalSet whose labels are fp32's own predictions: what INT8 is judged by when no
    labelled images are at hand. Streamed, like any EvalSet."""
    from edgetune.runtime.ort_backend import OrtSession

    if target is None or not target.images:  # the CLI requires --target-data; a library caller may not
        raise ValueError("export without source data needs target images to judge artifacts on")
    # Not the calibration images (seed 0): INT8 is judged on images its ranges never saw.
    calibrated = set(subset(target.images, calib_samples, seed=0))
    unseen = [p for p in target.images if p not in calibrated] or target.images
    paths = subset(unseen, AGREEMENT_IMAGES, seed=1)
    unlabelled = EvalSet([Sample(p, UNLABELLED) for p in paths], pre)
    pred = logits_of(OrtSession(fp32, device="cpu"), unlabelled).argmax(1)
    return EvalSet([Sample(p, int(k)) for p, k in zip(paths, pred)], pre)
