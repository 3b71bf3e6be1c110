#!/usr/bin/env python
"""ResNet-18 at 224 px on this machine: PyTorch eager fp32, ONNX Runtime fp32 and INT8.

    python tools/bench_runtime.py                       # batch 1 and 8, 50 timed runs each
    python tools/bench_runtime.py --batch 1 --seconds 10 --threads 2 --json bench.json

Builds a real bundle with edgetune's own stages (no training: random weights time the same
as trained ones, and nothing is downloaded): export_onnx, then INT8 with the CPU recipe
calibrated on the embedded digits, then `edgetune.bench` times every artifact and the
checkpoint. The bundle is kept in --out and reused; --rebuild makes it again.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.console import Console

from edgetune import bench, host
from edgetune.bundle import MANIFEST, Manifest, artifact_record, write_manifest
from edgetune.preprocess import Preprocess
from edgetune.train import checkpoint

FP32, INT8, CKPT = "model.onnx", "model.int8.cpu.onnx", "model.pt"


def build_bundle(out: Path, arch: str, size: int, calib_samples: int, console: Console) -> None:
    """fp32 ONNX + calibrated INT8 (cpu recipe) + checkpoint + manifest, from random weights."""
    import torch

    from edgetune.calib.quantize import Calibration, prepare, quantize_cpu
    from edgetune.calib.sample import ImageReader
    from edgetune.data.demo import ensure_digits
    from edgetune.data.scan import scan
    from edgetune.data.subsets import stratified_sample
    from edgetune.export.onnx import export_onnx
    from edgetune.train.model import create_model

    splits = scan(ensure_digits())
    torch.manual_seed(0)
    model = create_model(arch, "none", len(splits.classes)).eval()
    pre = Preprocess(size=(size, size), resize=round(size * 256 / 224))
    out.mkdir(parents=True, exist_ok=True)

    console.print(f"export: {arch} at {size} px → {out / FP32}")
    export_onnx(model, pre.size, out / FP32)
    sample = stratified_sample(splits.train, calib_samples, seed=0)
    console.print(f"calibrate: {len(sample)} digits images, minmax → {out / INT8}")
    cache = out / "calib" / "ranges-minmax.json"
    cache.unlink(missing_ok=True)  # ranges belong to this export only
    cal = Calibration(prepare(out / FP32, out / "calib" / "model.prep.onnx"), cache, "minmax",
                      len(sample), ImageReader(sample, pre, "input"))
    quantize_cpu(cal, out / INT8)
    checkpoint.save(out / CKPT, {"arch": arch, "weights": "none", "classes": splits.classes,
                                 "preprocess": pre.to_dict(), "config": {}, "model": model.state_dict()})
    # Random weights: the manifest records no top-1, only what the artifacts are.
    write_manifest(out, Manifest(
        model={"arch": arch, "weights": "none", "classes": splits.classes,
               "num_classes": len(splits.classes)},
        input={"name": "input", **pre.to_dict()},
        artifacts=[
            artifact_record(out, FP32, backend="onnxruntime", target="cpu", precision="fp32"),
            artifact_record(out, INT8, backend="onnxruntime", target="cpu", precision="int8",
                            calibration={**cal.to_dict(), "recipe": "cpu"}),
        ],
        checkpoint=CKPT,
    ))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-runtime", help="bundle folder (kept, reused)")
    parser.add_argument("--rebuild", action="store_true", help="export and calibrate again")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--calib-samples", type=int, default=200)
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--warmup", type=int, default=10)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--runs", type=int)
    budget.add_argument("--seconds", type=float)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)

    console = Console(width=max(Console().width, 130))
    out = Path(args.out)
    if args.rebuild or not (out / MANIFEST).is_file():
        build_bundle(out, args.model, args.size, args.calib_samples, console)
    report = bench.benchmark(
        out, batches=[int(b) for b in args.batch.split(",")], threads=args.threads,
        warmup=args.warmup, runs=args.runs, seconds=args.seconds, compare_torch=True,
    )
    console.print(bench.render_table(report))
    console.print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    console.print(f"host: {host.short()}, {host.describe()['system']} {host.describe()['machine']}, "
                  f"CPU used by other work before/after: {report.cpu_busy}")
    if args.json:
        console.write_json(args.json, report.to_dict())
        print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
