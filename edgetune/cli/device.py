"""`edgetune predict`, `bench` and `info`: the torch-free commands run on the device itself.

Handlers only turn flags
into arguments and call `edgetune.runtime` / `edgetune.bench`; flag values are checked
here so a bad one is reported by its flag name, in one line.
"""

from __future__ import annotations

import argparse
import json
import sys

from edgetune.atomic import write_json
from edgetune.errors import ConfigError
from edgetune.runtime.backends import check_device


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="classify images with a bundle (no PyTorch needed)",
        description="Top-k classes per image, using the artifact recommended for this machine.",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder (with manifest.json) or a single .onnx file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, …)")
    p.add_argument("--topk", default="5", metavar="K", help="classes to show per image (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--artifact", metavar="NAME", help="artifact file to use instead of the recommended one")
    p.add_argument("--device", default="auto", metavar="DEVICE", help="auto | cpu | cuda (default auto)")
    p.add_argument("--provider", default="auto", metavar="EP",
                   help="ONNX Runtime execution provider for .onnx artifacts: auto | cpu | cuda | tensorrt")
    p.set_defaults(func=run_predict)

    p = subparsers.add_parser(
        "bench", help="time a bundle's artifacts on this machine (no PyTorch needed)",
        description="Latency percentiles and throughput per artifact and batch size.",
    )
    p.add_argument("bundle", metavar="BUNDLE|MODEL", help="bundle folder or a single .onnx file")
    p.add_argument("--artifact", default="all", metavar="NAME|all",
                   help="comma list of artifact files, or all (default)")
    p.add_argument("--batch", default="1,8", metavar="1,8", help="comma list of batch sizes (default 1,8)")
    p.add_argument("--threads", metavar="N", help="engine threads (default: the engine's own choice)")
    p.add_argument("--warmup", default="10", metavar="N", help="untimed calls first (default 10)")
    p.add_argument("--runs", metavar="N", help="timed calls per row (default 50)")
    p.add_argument("--seconds", metavar="S", help="time budget per row instead of --runs")
    p.add_argument("--device", default="auto", metavar="DEVICE", help="auto | cpu | cuda (default auto)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    p.add_argument("--compare-torch", action="store_true",
                   help="add PyTorch eager fp32 rows from the bundle's checkpoint (needs torch)")
    p.set_defaults(func=run_bench)

    p = subparsers.add_parser(
        "info", help="what a bundle holds: classes, input, artifacts, recommendations (no PyTorch needed)",
        description="Classes, input, each artifact's precision, size, top-1 and p50, the recommendation "
                    "per target, and the versions that made it.",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder (with manifest.json)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=run_info)


def run_predict(args: argparse.Namespace) -> int:
    from edgetune import runtime

    topk = int_flag(args.topk, "--topk", minimum=1)
    device = check_device(args.device, "--device")
    model = runtime.load(args.bundle, device=device, artifact=args.artifact, provider=args.provider)
    results = model.predict(list(args.images), topk=topk)
    if args.json:
        print(json.dumps([
            {"image": image, "top": [{"label": label, "score": round(score, 6)} for label, score in top]}
            for image, top in zip(args.images, results)
        ], indent=2))
        return 0
    print(f"{model.artifact.file} ({model.artifact.precision}, {model.backend}/{model.device})",
          file=sys.stderr)
    for image, top in zip(args.images, results):
        print(image)
        for label, score in top:
            print(f"  {score:7.2%}  {label}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgetune import bench

    artifacts = "all" if args.artifact == "all" else list_flag(args.artifact, "--artifact")
    batches = batch_flag(args.batch)
    threads = int_flag(args.threads, "--threads", minimum=1) if args.threads is not None else None
    warmup = int_flag(args.warmup, "--warmup", minimum=0)
    if args.runs is not None and args.seconds is not None:
        raise ConfigError("--runs and --seconds are exclusive: pass one of them")
    runs = int_flag(args.runs, "--runs", minimum=1) if args.runs is not None else None
    seconds = float_flag(args.seconds, "--seconds") if args.seconds is not None else None
    report = bench.benchmark(
        args.bundle, artifacts=artifacts, batches=batches, threads=threads, warmup=warmup,
        runs=runs, seconds=seconds, device=check_device(args.device, "--device"),
        compare_torch=args.compare_torch,
    )
    console = Console()
    if not console.is_terminal:  # piped or redirected: keep full rows, don't fold to 80 columns
        console = Console(width=200)
    console.print(bench.render_table(report))
    if args.json:
        write_json(args.json, report.to_dict())
        print(f"report: {args.json}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgetune.report import info

    described = info.describe(args.bundle)
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    console = Console()
    if not console.is_terminal:  # piped: full rows, not folded to 80 columns
        console = Console(width=160)
    console.print(info.render(described))
    return 0


def int_flag(value: str, flag: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise ConfigError(f"{flag} {value!r} is not allowed: expected an integer >= {minimum}")
    return number


def batch_flag(value: str) -> list[int]:
    items = list_flag(value, "--batch")
    bad = [b for b in items if not b.isdigit() or int(b) < 1]
    if bad:
        raise ConfigError(
            f"--batch {value!r} is not allowed: {bad[0]!r} is not a batch size; "
            "expected a comma list of positive integers such as 1,8"
        )
    return [int(b) for b in items]


def float_flag(value: str, flag: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not number > 0 or number == float("inf"):
        raise ConfigError(f"{flag} {value!r} is not allowed: expected a number of seconds > 0")
    return number


def list_flag(value: str, flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise ConfigError(f"{flag} {value!r} is not allowed: expected a comma list such as 1,8")
    return items
