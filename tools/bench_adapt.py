"""Domain adaptation on a synthetic camera shift: how much of the gap each --adapt method closes.

Source: the embedded digits. Target: the same digits through a flatter, brighter, blurrier,
noisier camera (edgetune.data.demo_shift). Rows: a model trained on the source only; bn, tent
and pseudo adaptations of it to the unlabelled target train images; an oracle trained on
the labelled target train images. Columns: top-1 on the source val split and on the
target val set, fp32 and INT8 (each bundle's INT8 artifact, calibrated on target images
when adapting), and the seconds the row's own stage took (training, or adaptation).

    .venv/bin/python tools/bench_adapt.py [--epochs 3] [--size 32] [--work /tmp/bench_adapt]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from pathlib import Path

from edgetune.config import AdaptConfig, ExportConfig, TrainConfig
from edgetune.data.demo import ensure_digits
from edgetune.data.demo_shift import CameraShift, ensure_shifted
from edgetune.data.sources import scan_sources
from edgetune.data.target_domain import TargetData, scan_images, scan_labelled
from edgetune.pipeline import export_bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--pseudo-epochs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/bench_adapt")
    args = ap.parse_args()
    from edgetune.train import train
    from edgetune.train.adapt import adapt_checkpoint

    work = Path(args.work)
    shutil.rmtree(work / "runs", ignore_errors=True)
    source = ensure_digits(work / "digits")
    shifted = ensure_shifted(source, work / "shifted", CameraShift(size=args.size))
    quiet = lambda *_: None  # noqa: E731

    def cfg(data):
        return TrainConfig(data=str(data), weights="none", image_size=args.size, unfreeze="all",
                           epochs=args.epochs, lr=3e-3, batch_size=64, augment="light", workers=0)

    classes = scan_sources(cfg(source)).classes
    target = TargetData(shifted / "train", scan_images(shifted / "train"),
                        scan_labelled(shifted / "val", classes, "--target-val"))
    export = ExportConfig(targets=("cpu",), calib_samples=200, bench_runs=20)
    rows = []

    def row(name, ckpt, seconds, tgt, adaptation=None):
        m = export_bundle(ckpt, work / "runs" / name / "bundle", export, data=str(source), log=quiet,
                          target=tgt, adaptation=adaptation)
        fp32, int8 = (next(a for a in m.artifacts if a.precision == p) for p in ("fp32", "int8"))
        src = [a.top1_source if a.top1_source is not None else a.top1 for a in (fp32, int8)]
        note = (adaptation or {}).get("fallback", "")
        rows.append((name, *src, fp32.top1_target, int8.top1_target, seconds,
                     m.calibration["domain"], note))
        print(f"  {name}: done", flush=True)

    t = time.perf_counter()
    source_run = train(cfg(source), work / "runs" / "source", log=quiet)
    row("source-only", source_run.best, time.perf_counter() - t, TargetData(val=target.val))
    for method in ("bn", "tent", "pseudo"):
        acfg = AdaptConfig(target_data=str(shifted / "train"), adapt=method, pseudo_epochs=args.pseudo_epochs)
        out = work / "runs" / method
        out.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        record = adapt_checkpoint(source_run.best, out / "adapted.pt", acfg, target,
                                  scan_sources(cfg(source)).val, "cpu", quiet, work=out)
        row(method, out / "adapted.pt", time.perf_counter() - t, target, record)
    t = time.perf_counter()
    oracle = train(cfg(shifted), work / "runs" / "oracle", log=quiet)
    row("labelled-target oracle", oracle.best, time.perf_counter() - t, target)  # INT8 calibrated on its own domain

    print(f"\nresnet18 from scratch, {args.size} px, {args.epochs} epochs; target: {CameraShift(size=args.size)}")
    print(f"machine: {platform.processor() or platform.machine()}, {_cores()} cores\n")
    head = ("row", "source fp32", "source int8", "target fp32", "target int8", "seconds", "calibrated on")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, s32, s8, t32, t8, sec, cal, note in rows:
        print(f"| {name}{f' ({note})' if note else ''} | {s32:.2%} | {s8:.2%} | {t32:.2%} | {t8:.2%} "
              f"| {sec:.1f} | {cal} |")


def _cores() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
