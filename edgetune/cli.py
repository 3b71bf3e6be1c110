"""`edgetune` command line: parses arguments and calls library functions, nothing more.

User errors print one line, `edgetune: error: …`, and exit 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

from edgetune import __version__, cli_adapt
from edgetune.errors import ConfigError, EdgetuneError, EdgetuneWarning, did_you_mean

# Defaults for `edgetune run` without --data: the embedded digits, trained from scratch
# (no internet needed) at a size where INT8 is worth measuring.
DEMO_PRESET = {"weights": "none", "image_size": 64, "unfreeze": "all", "epochs": 6,
               "augment": "light", "lr": 3e-3, "batch_size": 64}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, with a suggestion for a misspelt flag
        m = re.search(r"unrecognized arguments: (--[\w-]+)", message)
        if m:
            message += did_you_mean(m.group(1), _all_options(self))
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def _all_options(parser: argparse.ArgumentParser) -> list[str]:
    opts = []
    for action in parser._actions:
        opts += action.option_strings
        for sub in (getattr(action, "choices", None) or {}).values():
            if isinstance(sub, argparse.ArgumentParser):
                opts += _all_options(sub)
    return opts


def _train_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and model")
    g.add_argument("--data", nargs="+", help="ImageFolder: DIR/train/<class>/*, DIR/val/<class>/*, or DIR/<class>/* "
                   "(default: demo digits); several DIRs with the same classes train together, balanced per source")
    g.add_argument("--val-fraction", type=float, help="held-out share when DIR has no val/ (default 0.2)")
    g.add_argument("--model", help="torchvision model name (default resnet18)")
    g.add_argument("--weights", help="DEFAULT | none | a weights name | PATH to a state_dict or checkpoint")
    g.add_argument("--image-size", type=int, help="input size; required with --weights none")
    g.add_argument("--unfreeze", help="top blocks to train besides the head: K | head | all | auto (default 2)")
    g.add_argument("--unfreeze-schedule",
                   help="gradual unfreezing, DEPTH:EPOCHS,...: e.g. head:2,1:2,2 (head for 2 epochs, "
                        "then the top block too for 2, then 2 blocks)")
    g.add_argument("--verify-images", action="store_true", default=None,
                   help="decode every image before training (finds truncated files; slower)")
    g.add_argument("--skip-bad-images", action="store_true", default=None,
                   help="leave unreadable images out, with a warning, instead of stopping")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="head learning rate (default 1e-3)")
    g.add_argument("--backbone-lr-scale", type=float, help="lr factor for unfrozen blocks (default 0.1 pretrained, 1 from scratch)")
    g.add_argument("--optimizer", help="adamw | sgd")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--dropout", type=float, help="dropout before the new head")
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--patience", type=int, help="early stop after N epochs without val top-1 gain")
    g.add_argument("--augment", help="none | light | standard")
    g.add_argument("--bn-adapt-batches", type=int,
                   help="batches to re-estimate slow BatchNorm statistics on after each epoch (default 50; 0: off)")
    g.add_argument("--balance", help="class imbalance: none | loss (weighted) | sampler")
    g = p.add_argument_group("feature cache (the frozen prefix runs once per image)")
    g.add_argument("--cache", help="auto (on where it pays, the reason printed) | off")
    g.add_argument("--cache-views", type=int, help="augmented views cached per image (default: one per 6 epochs, at most 4)")
    g.add_argument("--cache-memory", help="memory budget, e.g. 4GB (default 40%% of available memory); larger caches are memory-mapped")
    g.add_argument("--cache-dir", help="where caches are kept and reused (default OUT/cache)")
    g.add_argument("--cache-dtype", help="float16 (default) | float32")
    g.add_argument("--cache-seed", type=int, help="seed of the cached augmented views (default: --seed)")
    g = p.add_argument_group("machine")
    g.add_argument("--device", help="auto | cpu | cuda")
    g.add_argument("--seed", type=int)
    g.add_argument("--memory-limit", help="memory the run may use, e.g. 8GB (default: what is available); "
                   "a run that cannot fit is refused before it starts")
    g.add_argument("--workers", type=int, help="data loader processes")
    g.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the trained part (CUDA)")


def _export_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("export and calibration")
    g.add_argument("--targets", help="comma list of cpu, tensorrt, gpu, openvino (default cpu)")
    g.add_argument("--calib-samples", type=int, help="calibration images (default 300)")
    g.add_argument("--calib-method", help="minmax | entropy | percentile")
    g.add_argument("--max-drop", type=float, help="top-1 points INT8 may lose (default 1.0)")
    g.add_argument("--bench-runs", type=int, help="timed runs per artifact")
    g.add_argument("--threads", type=int, help="inference threads when timing")
    g.add_argument("--eval-max", type=int, help="val images each artifact is judged on: a seeded subset "
                   "drawn evenly over the classes (default: all up to 10000, else 10000; 0: all)")


def _out_flags(p: argparse.ArgumentParser, required: bool = True, training: bool = True) -> None:
    p.add_argument("--out", required=required, help="run/bundle folder")
    if training:  # export writes its artifacts beside a run's checkpoints: nothing to resume
        p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--config", help="YAML file of flag: value defaults; flags override it")


def _no_abbrev(add_parser):
    # `--epoch 3` must not silently mean `--epochs 3`.
    return lambda *a, **k: add_parser(*a, **{"allow_abbrev": False, **k})


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgetune", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"edgetune {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser = _no_abbrev(sub.add_parser)
    p = sub.add_parser("run", help="fine-tune, export, calibrate, measure and bundle")
    _train_flags(p), _export_flags(p), _out_flags(p, required=False)
    cli_adapt.add_flags(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("train", help="fine-tune only; writes OUT/checkpoints/best.pt")
    _train_flags(p), _out_flags(p)
    p.set_defaults(func=_cmd_train)

    from edgetune import cli_tune

    cli_tune.add_parser(sub, _train_flags, _export_flags)

    p = sub.add_parser("export", help="the stages after training, from a checkpoint")
    p.add_argument("checkpoint", help="a .pt written by `edgetune train` (OUT/checkpoints/best.pt)")
    p.add_argument("--data", help="the data it was trained on (default: as recorded in the checkpoint)")
    _export_flags(p), _out_flags(p, training=False)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("build-engine", help="on the device: a TensorRT engine from the bundle's QDQ/fp16 graph")
    p.add_argument("bundle", help="a bundle folder exported with --targets tensorrt or gpu")
    p.add_argument("--source", help="graph to build from (default: model.int8.tensorrt.onnx, else model.fp16.onnx)")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch the engine accepts")
    p.add_argument("--workspace-gb", type=float, default=2.0, help="builder workspace")
    p.add_argument("--opt-batch", type=int, default=1, help="batch the engine is tuned for (1..max-batch)")
    p.add_argument("--device", default="gpu", help="gpu, or dla:N on Jetson where the TensorRT version has DLA")
    p.add_argument("--builder", default="auto",
                   help="auto, python or trtexec (default: the TensorRT Python bindings when installed)")
    p.set_defaults(func=_cmd_build_engine)

    try:
        from edgetune import cli_deploy
    except ImportError:
        cli_deploy = None
    if cli_deploy is not None:
        cli_deploy.add_parsers(sub)
    from edgetune import cli_tools

    cli_tools.add_parsers(sub)
    cli_tools.add_config_flags(parser)
    cli_adapt.add_parsers(sub, _export_flags, _out_flags)
    return parser


def _settings(args, cls) -> dict:
    from edgetune.config import field_names, load_yaml

    allowed = field_names(cls) | {"targets"}
    flags = {k: v for k, v in vars(args).items() if k in field_names(cls)}
    yaml = {}
    saved = Path(args.out) / "config.yaml" if getattr(args, "resume", False) and args.out else None
    if saved is not None and saved.is_file():
        # --resume continues the run as it was configured; --config and flags still override.
        yaml.update(load_yaml(saved, _all_fields()))
    if getattr(args, "config", None):
        yaml.update(load_yaml(args.config, _all_fields()))
    return {k: v for k, v in yaml.items() if k in allowed}, flags


def _all_fields() -> set[str]:
    from edgetune.cli_tools import all_keys

    return all_keys(build_parser())  # one --config file may hold every command's flags


def _train_config(args):
    from edgetune.config import TrainConfig, build

    yaml, flags = _settings(args, TrainConfig)
    data = flags.get("data") or yaml.get("data")
    return build(TrainConfig, DEMO_PRESET if data is None else {}, yaml, flags)


def _export_config(args):
    from edgetune.config import ExportConfig, build

    yaml, flags = _settings(args, ExportConfig)
    return build(ExportConfig, yaml, flags)


def _cmd_run(args) -> int:
    from edgetune import pipeline

    train_cfg, export_cfg = _train_config(args), _export_config(args)
    out = args.out or ("runs/demo" if train_cfg.data is None else None)
    if out is None:
        raise ConfigError("--out is required with --data; pass the folder to write the bundle to")
    manifest = pipeline.run(train_cfg, export_cfg, out, overwrite=args.overwrite, resume=args.resume,
                            adapt_cfg=cli_adapt.adapt_config(args))
    if manifest is not None:  # None: a torchrun worker other than rank 0, which exports
        _next_steps(out, manifest)
    return 0


def _cmd_train(args) -> int:
    from edgetune import pipeline
    from edgetune.train import train

    cfg = _train_config(args)
    out = pipeline.prepare_out(args.out, args.overwrite, args.resume)
    pipeline.write_config(out, cfg)
    result = train(cfg, out, resume=args.resume, command="train")
    from edgetune.train.distributed import from_env

    if from_env().is_main:
        print(f"best val top-1 {result.best_top1:.2%}; next: edgetune export {result.best} --out {out}")
    return 0


def _cmd_export(args) -> int:
    from edgetune import pipeline

    cfg = _export_config(args)
    manifest = pipeline.export_bundle(args.checkpoint, args.out, cfg, data=args.data)
    _next_steps(args.out, manifest)
    return 0


def _cmd_build_engine(args) -> int:
    from edgetune.engines import add_engine

    if args.max_batch < 1:
        raise ConfigError(f"--max-batch {args.max_batch} must be at least 1")
    name = add_engine(args.bundle, args.source, args.max_batch, args.workspace_gb,
                      opt_batch=args.opt_batch, device=args.device, builder=args.builder)
    print(f"engine: {args.bundle}/{name}; next: edgetune bench {args.bundle} --artifact {name}; "
          f"edgetune report {args.bundle}")
    return 0


def _next_steps(out, manifest) -> None:
    from edgetune.summary import print_summary

    print_summary(out, manifest)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            parser = build_parser()
            from edgetune.cli_tools import apply_config_file

            apply_config_file(parser, argv)
            args = parser.parse_args(argv)
            return args.func(args)
    except EdgetuneError as exc:
        if debug:
            raise
        print(f"edgetune: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgetune: interrupted", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # Ours read like our errors, one line; a dependency's keep Python's format and location.
    if issubclass(category, EdgetuneWarning) or Path(filename).resolve().is_relative_to(_PACKAGE):
        # `run` scans the data twice (training, then export): say each thing once.
        if str(message) not in _shown:
            _shown.add(str(message))
            print(f"edgetune: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_PACKAGE = Path(__file__).resolve().parent
_shown: set[str] = set()
_python_show_warning = warnings.showwarning


if __name__ == "__main__":
    sys.exit(main())
