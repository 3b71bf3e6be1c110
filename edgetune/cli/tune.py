"""`edgetune tune`: the search's flags on top of every train and export flag. Parsing only;
the search itself is `edgetune.tune.search`."""

from __future__ import annotations

import argparse

from edgetune.cli.flags import export_config, export_flags, train_config, train_flags


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tune", help="search fine-tuning hyperparameters (Optuna); writes OUT/trials.csv and OUT/best.yaml",
        description="Train many configurations, prune hopeless ones early, and write the best as "
                    "OUT/best.yaml for `edgetune run --config`. Flags you give are fixed; the rest of "
                    "the default space (lr, backbone-lr-scale, weight-decay, unfreeze, label-smoothing, "
                    "dropout, augment) is searched. Rerun the same command to continue a stopped study; "
                    "run it on several machines with one --storage URL to share the work.")
    g = p.add_argument_group("search")
    g.add_argument("--trials", type=int, help="finished trials the study should hold (default 20)")
    g.add_argument("--sampler", help="tpe (default) | random | grid (needs --space with lists)")
    g.add_argument("--space", help="YAML: flag: {low: A, high: B, log: true} or flag: [a, b, c]; train flags, "
                                   "and qat with --objective int8")
    g.add_argument("--objective", help="top1 (default): best val top-1 | int8: val top-1 of the CPU INT8 artifact")
    g.add_argument("--pruner", help="median (default with one objective): stop trials below the median from "
                                    "epoch 2 | none (default with --objectives, which Optuna cannot prune)")
    g.add_argument("--objectives", help="top1,latency | int8,latency: a 2-objective study, top-1 up and p50 "
                                        "latency down; OUT/pareto.csv holds the front")
    g.add_argument("--latency-budget", type=float, metavar="MS",
                   help="with --objectives: trials slower than MS at batch 1 are infeasible; best.yaml is "
                        "the most accurate within it")
    g.add_argument("--latency-from", metavar="FILE[,FILE]",
                   help="with --objectives: the device's `edgetune bench --json` files, read per model and "
                        "input size (the fastest precision); pairs they miss are timed here")
    g.add_argument("--models", help="search --model over these, e.g. mobilenet_v3_large,resnet18, or top:K:DIR: "
                                    "the K best of `edgetune choose --out DIR`")
    g.add_argument("--image-sizes", help="search --image-size over these, e.g. 160,192,224")
    g.add_argument("--timeout", type=float, help="start no new trial after S seconds (a rerun continues)")
    g.add_argument("--storage", help="RDB URL shared by workers, e.g. postgresql://user@host/db "
                                     "(default: sqlite in OUT)")
    g.add_argument("--study-name", help="the study's name in --storage (default: the --out folder's name)")
    g.add_argument("--cache-max", metavar="SIZE",
                   help="after every trial, prune the shared feature cache to SIZE, least recently used "
                        "first, e.g. 20GB (default: the lesser of 50GB and half of the disk's free space "
                        "plus what the cache holds, when the search starts; 0: keep nothing between trials)")
    train_flags(p), export_flags(p)
    p.add_argument("--out", required=True, help="the study folder: study.db, trials/, trials.csv, best.yaml")
    p.add_argument("--overwrite", action="store_true", help="start a new study in --out (the cache is kept)")
    p.add_argument("--config", help="YAML file of flag: value defaults; flags override it")
    p.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from edgetune.config import TrainConfig, TuneConfig, build, field_names
    from edgetune.tune.search import tune

    cfg = build(TuneConfig, {k: v for k, v in vars(args).items() if k in field_names(TuneConfig)})
    from edgetune.tune.space import EXPORT_FLAGS

    searchable = field_names(TrainConfig) | set(EXPORT_FLAGS)
    fixed = {k for k, v in vars(args).items() if k in searchable and v is not None}
    tune(train_config(args), export_config(args), cfg, args.out, fixed, overwrite=args.overwrite)
    return 0
