"""`edgetune choose`: rank pretrained backbones for the user's images before training. Parsing
only; the work is `edgetune.choose.choose`."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "choose", help="rank backbones by transferability (LogME) and latency before training",
        description="Run each candidate backbone once over your images (frozen, through the feature "
                    "cache), score how well its features separate your classes (LogME, You et al. 2021, "
                    "and a cross-validated linear probe), export and time its fp32 graph here or take "
                    "the device's times from `edgetune bench --json` files, then print the ranking with "
                    "its Pareto set and the `edgetune run` command for the best within --latency-budget.")
    p.add_argument("--data", required=True,
                   help="ImageFolder: DIR/train/<class>/*, DIR/val/<class>/*, or DIR/<class>/*")
    p.add_argument("--models", help="candidates, comma-separated; NAME@none or NAME@PATH gives one its own "
                                    "weights (default: the edge families whose --weights are at hand: "
                                    "EfficientNet-Lite0/1/2 from the lite extra, the others once downloaded)")
    p.add_argument("--weights", help="weights of every model named without its own: DEFAULT (default) | "
                                     "none | a weights name | PATH")
    p.add_argument("--image-sizes", help="input sizes to weigh, e.g. 160,192,224 (default: each model's own)")
    p.add_argument("--latency-budget", type=float, metavar="MS",
                   help="ms per image at batch 1: the command printed is for the best candidate within it")
    p.add_argument("--latency-from", metavar="FILE[,FILE]",
                   help="`edgetune bench --json` files from the device, for OUT/graphs/<arch>-<size>.onnx or "
                        "bundles; candidates they miss are timed here")
    p.add_argument("--rank-by", help="logme (default) | probe: the linear probe's cross-validated top-1")
    p.add_argument("--batch-size", type=int, help="images per forward pass while extracting (default 32)")
    p.add_argument("--val-fraction", type=float, help="held-out share when DIR has no val/ (default 0.2)")
    p.add_argument("--cache-dir", help="where the features are cached (default OUT/cache)")
    p.add_argument("--out", required=True, help="folder for ranking.json, ranking.csv, graphs/ and the cache")
    p.set_defaults(func=run_choose)


def run_choose(args: argparse.Namespace) -> int:
    from edgetune.choose.choose import choose
    from edgetune.config import ChooseConfig, build, field_names

    cfg = build(ChooseConfig, {k: v for k, v in vars(args).items() if k in field_names(ChooseConfig)})
    choose(cfg, args.out)
    return 0
