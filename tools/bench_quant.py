#!/usr/bin/env python
"""edgetune's recommended CPU artifact against fp32 and ONNX Runtime's quantize_static defaults.

    python tools/bench_quant.py                                   # the four models, 224 px
    python tools/bench_quant.py --models resnet18 --epochs 1 --methods minmax,entropy,percentile

Per model: a short fine-tune on the embedded digits at 224 px from scratch (no internet
here for pretrained weights), `edgetune`'s own export (candidates, budget, choice), then
ORT's `quantize_static` with its defaults on the same calibration images. All three are
evaluated on the same val images and timed side by side, in turns, in one run.
With --methods, the CPU recipe is also calibrated with each method to compare top-1.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgetune import host
from edgetune.bundle import read_manifest


def bench_model(arch: str, args, console: Console) -> dict:
    from onnxruntime.quantization import quantize_static

    from edgetune.calib.quantize import Calibration, quantize_cpu
    from edgetune.calib.sample import ImageReader
    from edgetune.config import ExportConfig, TrainConfig
    from edgetune.data.demo import ensure_digits
    from edgetune.data.scan import scan
    from edgetune.data.subsets import stratified_sample
    from edgetune.evaluate import EvalSet, top1
    from edgetune.latency import measure_interleaved
    from edgetune.pipeline import run
    from edgetune.runtime.ort_backend import OrtSession

    out = Path(args.out) / arch
    data = ensure_digits()
    if not (out / "manifest.json").is_file():
        console.print(f"[bold]{arch}[/bold]: fine-tune {args.epochs} epoch(s) at {args.size} px and export")
        run(TrainConfig(data=str(data), model=arch, weights="none", image_size=args.size, unfreeze="all",
                        epochs=args.epochs, lr=2e-3, batch_size=32, augment="light"),
            ExportConfig(targets=("cpu",), calib_samples=args.calib_samples, max_drop=args.max_drop),
            out, overwrite=True, log=lambda *_: None)
    m = read_manifest(out)
    pre = m.preprocess
    splits = scan(data)
    val = EvalSet(splits.val, pre)
    sample = stratified_sample(splits.train, args.calib_samples, seed=0)
    prep = out / "calib" / "model.prep.onnx"

    default = out / "ort_default.onnx"
    if not default.is_file():
        # Exactly what a user gets from the documented one-liner: QDQ, int8 activations
        # and weights, per-tensor, MinMax.
        quantize_static(str(prep), str(default), ImageReader(sample, pre, "input"))
    recommended = m.recommended["cpu"]["file"]
    paths = {"fp32": out / "model.onnx", "ort-default": default, "edgetune": out / recommended}
    tops = {k: top1(OrtSession(p, device="cpu"), val) for k, p in paths.items()}
    sessions = {k: OrtSession(p, device="cpu") for k, p in paths.items()}
    lat = measure_interleaved(sessions, (3, *pre.size), rounds=args.rounds, runs=10)
    row = {"model": arch, "recommended": recommended,
           **{f"{k}_top1": v for k, v in tops.items()}, **{f"{k}_p50": lat[k]["p50"] for k in paths}}

    for method in [m_ for m_ in args.methods.split(",") if m_]:
        cache = out / "calib" / f"bench-ranges-{method}.json"
        cal = Calibration(prep, cache, method, len(sample),
                          None if cache.is_file() else ImageReader(sample, pre, "input"))
        path = quantize_cpu(cal, out / "calib" / f"bench-{method}.onnx")
        row[f"{method}_top1"] = top1(OrtSession(path, device="cpu"), val)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,resnet50,mobilenet_v3_small,efficientnet_b0")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--calib-samples", type=int, default=128)
    p.add_argument("--max-drop", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=8, help="interleaved timing rounds of 10 runs each")
    p.add_argument("--methods", default="", help="also compare calibration methods, e.g. minmax,entropy,percentile")
    p.add_argument("--out", default="runs/bench_quant")
    args = p.parse_args()
    console = Console(width=170)
    rows = [bench_model(a, args, console) for a in args.models.split(",")]

    t = Table(title=f"batch-1 p50 ms and val top-1 ({args.size} px, {host.short()})", title_justify="left")
    for col in ("model", "fp32", "ORT quantize_static defaults", "edgetune recommended", "vs best other",
                "drop (pts)"):
        t.add_column(col)
    for r in rows:
        best_other = min(r["fp32_p50"], r["ort-default_p50"])
        t.add_row(r["model"], f"{r['fp32_p50']:.2f} ms / {r['fp32_top1']:.2%}",
                  f"{r['ort-default_p50']:.2f} ms / {r['ort-default_top1']:.2%}",
                  f"{r['edgetune_p50']:.2f} ms / {r['edgetune_top1']:.2%} ({r['recommended']})",
                  f"{r['edgetune_p50'] / best_other:.2f}x",
                  f"{(r['fp32_top1'] - r['edgetune_top1']) * 100:.1f}")
    console.print(t)
    methods = [m for m in args.methods.split(",") if m]
    if methods:
        mt = Table(title="CPU recipe top-1 by calibration method", title_justify="left")
        for col in ("model", "fp32", *methods):
            mt.add_column(col)
        for r in rows:
            mt.add_row(r["model"], f"{r['fp32_top1']:.2%}", *[f"{r[f'{m}_top1']:.2%}" for m in methods])
        console.print(mt)
    console.print(f"command: python tools/{Path(__file__).name} {shlex.join(sys.argv[1:])}")
    console.print(f"host: {host.short()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
