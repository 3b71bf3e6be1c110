#!/usr/bin/env python
"""Quantization-aware fine-tuning against post-training quantization, per model and recipe.

    python tools/bench_qat.py                                  # the three rows below, the photographs
    python tools/bench_qat.py --rows efficientnet_b0:none --epochs 3 --data DIR

Rows (`MODEL:WEIGHTS`): efficientnet_b0:none and mobilenet_v3_large:none train from random
weights at --size px (224; no ImageNet download here), efficientnet_lite0:DEFAULT fine-tunes the
ImageNet weights the `lite` extra installs offline with edgetune's defaults. Each row: `edgetune
train` (--epochs; the pretrained row keeps its own default schedule) on --data (the shipped
photographs: 137 train / 57 val), then the export for the cpu target (ONNX Runtime's u8
candidates) and the tensorrt target (its symmetric QDQ graph, executed by ONNX Runtime's CPU
kernels: no GPU here) with `--qat always`: the QAT graph is made and judged on the same val
images for both recipes, whatever PTQ scored. Calibration as the export's default (300 images)
unless --calib-samples says otherwise. Per recipe: fp32 top-1, the best PTQ candidate's with
every layer in int8 (not `int8-mixed`, which keeps layers in float), QAT's, and QAT's wall time
as a share of the training's. `recovered`: (QAT - PTQ) / (fp32 -
PTQ) where PTQ lost more than a point (the issue's goal: at least 60%).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgetune import host
from edgetune.config import ExportConfig

ROWS = "efficientnet_b0:none,mobilenet_v3_large:none,efficientnet_lite0:DEFAULT"


def bench_row(row: str, args, data: str, work: Path, log) -> list[dict]:
    from edgetune.config import TrainConfig
    from edgetune.pipeline import export_bundle
    from edgetune.train import train

    arch, weights = row.split(":")
    scratch = weights.lower() == "none"
    extra = {"image_size": args.size, "unfreeze": "all", "epochs": args.epochs, "lr": args.lr} if scratch else {}
    cfg = TrainConfig(data=data, model=arch, weights=weights, workers=0, seed=args.seed, **extra)
    out = work / arch
    t0 = time.perf_counter()
    result = train(cfg, out, log=log)
    train_s = time.perf_counter() - t0
    export_bundle(result.best, out, ExportConfig(targets=("cpu", "tensorrt"), cpu_engines=("onnxruntime",),
                                                 qat="always", qat_epochs=args.qat_epochs,
                                                 calib_samples=args.calib_samples, bench_runs=10),
                  data=data, log=log)
    label = f"{arch} ({'random init, ' + str(args.size) + ' px' if scratch else 'ImageNet'})"
    return read_rows(out, label, result.config.epochs, train_s)


def read_rows(out: Path, label: str, epochs: int, train_s: float) -> list[dict]:
    """A finished row's figures per recipe, from its bundle's manifest."""
    from edgetune.bundle import read_manifest
    from edgetune.qat_candidate import QAT

    m = read_manifest(out)
    fp32 = m.artifact("model.onnx").top1
    rows = []
    for recipe, cands in m.candidates.items():
        # Every layer in int8: a candidate that leaves layers in float (`int8-mixed`) meets a
        # budget another way, at another speed; QAT's recovery is measured against full INT8.
        ptq = [c for c in cands if c["precision"] == "int8" and c["candidate"] != QAT and not c.get("float_nodes")]
        qat = next(c for c in cands if c["candidate"] == QAT)
        best = max(ptq, key=lambda c: c["top1"])
        drop = fp32 - best["top1"]
        rows.append({"row": label, "recipe": recipe, "epochs": epochs, "fp32": fp32, "ptq": best["top1"],
                     "ptq_name": best["candidate"], "qat": qat["top1"], "qat_epochs": qat["qat"]["epochs"],
                     "qat_lr": qat["qat"]["lr"], "trained": qat["qat"]["trained"], "qat_s": qat["qat"]["seconds"],
                     "train_s": train_s, "images": m.evaluation["images"],
                     "recovered": (qat["top1"] - best["top1"]) / drop if drop > 0.01 else None})
    return rows


def print_table(rows: list[dict], console: Console) -> None:
    t = Table(title=f"QAT against PTQ, val top-1 ({rows[0]['images'] if rows else 0} val images; {host.short()})",
              title_justify="left")
    for col in ("model", "recipe", "train epochs", "fp32", "best PTQ", "QAT", "recovered", "QAT schedule",
                "QAT s / train s"):
        t.add_column(col, justify="left" if col in ("model", "recipe", "QAT schedule") else "right")
    for r in rows:
        t.add_row(r["row"], r["recipe"], str(r["epochs"]), f"{r['fp32']:.2%}", f"{r['ptq']:.2%} ({r['ptq_name']})",
                  f"{r['qat']:.2%}", "-" if r["recovered"] is None else f"{r['recovered']:.0%}",
                  f"{r['qat_epochs']} ep at lr {r['qat_lr']:g}, {r['trained']}",
                  f"{r['qat_s']:.0f} / {r['train_s']:.0f} = {r['qat_s'] / r['train_s']:.0%}")
    console.print(t)
    console.print("recovered: (QAT - PTQ) / (fp32 - PTQ) where PTQ lost more than 1 point, else -; "
                  "tensorrt: its QDQ graph executed by ONNX Runtime's CPU kernels")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=ROWS, help=f"MODEL:WEIGHTS,... (default {ROWS})")
    p.add_argument("--data", help="an image folder (default: the shipped photographs)")
    p.add_argument("--size", type=int, default=224, help="image size of the random-init rows")
    p.add_argument("--epochs", type=int, default=5, help="training epochs of the random-init rows")
    p.add_argument("--lr", type=float, default=2e-3, help="training lr of the random-init rows")
    p.add_argument("--qat-epochs", type=int, default=None, help="default: edgetune's (10%% of training, >= 1)")
    p.add_argument("--calib-samples", type=int, default=ExportConfig.calib_samples,
                   help="calibration images (default: the export's, %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="keep each row's run folder under this folder (default: a temporary one)")
    p.add_argument("--verbose", action="store_true", help="print edgetune's log")
    args = p.parse_args()
    console = Console(width=200)
    if args.data:
        data = args.data
    else:
        from edgetune.data.photos import ensure_photos

        data = str(ensure_photos())
    log = console.print if args.verbose else (lambda *_: None)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for row in args.rows.split(","):
            console.print(f"[bold]{row}[/bold]: train, export for cpu and tensorrt with --qat always")
            for r in bench_row(row, args, data, Path(args.out or work), log):
                rows.append(r)
                console.print(f"  {r['recipe']}: fp32 {r['fp32']:.2%}, best PTQ {r['ptq']:.2%}, QAT {r['qat']:.2%}, "
                              f"QAT {r['qat_s']:.0f} s / training {r['train_s']:.0f} s")
    print_table(rows, console)
    console.print(f"command: python tools/{Path(__file__).name} {shlex.join(sys.argv[1:])}")
    console.print(f"host: {host.short()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
