"""`edgetune run`, `train`, `export` and `build-engine`: the commands that make a bundle.
Parsing only; the work is in `edgetune.pipeline`, `edgetune.train` and `edgetune.engines`."""

from __future__ import annotations

from edgetune.cli.flags import (
    adapt_config,
    adapt_flags,
    export_config,
    export_flags,
    out_flags,
    train_config,
    train_flags,
)
from edgetune.errors import ConfigError
from edgetune.files import FP16, INT8_TENSORRT


def add_parsers(sub) -> None:
    p = sub.add_parser("run", help="fine-tune, export, calibrate, measure and bundle")
    train_flags(p), export_flags(p), out_flags(p, required=False)
    adapt_flags(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("train", help="fine-tune only; writes OUT/checkpoints/best.pt")
    train_flags(p), out_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="the stages after training, from a checkpoint")
    p.add_argument("checkpoint", help="a .pt written by `edgetune train` (OUT/checkpoints/best.pt)")
    p.add_argument("--data", help="the data it was trained on (default: as recorded in the checkpoint)")
    export_flags(p), out_flags(p, training=False)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("build-engine", help="on the device: a TensorRT engine from the bundle's QDQ/fp16 graph")
    p.add_argument("bundle", help="a bundle folder exported with --targets tensorrt or gpu")
    p.add_argument("--source", help=f"graph to build from (default: {INT8_TENSORRT}, else {FP16})")
    p.add_argument("--max-batch", type=int, default=8, help="largest batch the engine accepts")
    p.add_argument("--workspace-gb", type=float, default=2.0, help="builder workspace")
    p.add_argument("--opt-batch", type=int, default=1, help="batch the engine is tuned for (1..max-batch)")
    p.add_argument("--device", default="gpu", help="gpu, or dla:N on Jetson where the TensorRT version has DLA")
    p.add_argument("--builder", default="auto",
                   help="auto, python or trtexec (default: the TensorRT Python bindings when installed)")
    p.set_defaults(func=_cmd_build_engine)


def _cmd_run(args) -> int:
    from edgetune import pipeline
    from edgetune.report.summary import print_summary

    train_cfg, export_cfg = train_config(args), export_config(args)
    out = args.out or ("runs/demo" if train_cfg.data is None else None)
    if out is None:
        raise ConfigError("--out is required with --data; pass the folder to write the bundle to")
    manifest = pipeline.run(train_cfg, export_cfg, out, overwrite=args.overwrite, resume=args.resume,
                            adapt_cfg=adapt_config(args))
    if manifest is not None:  # None: a torchrun worker other than rank 0, which exports
        print_summary(out, manifest)
    return 0


def _cmd_train(args) -> int:
    from edgetune import pipeline

    cfg = train_config(args)
    splits = pipeline.check_inputs(cfg, args.out, args.overwrite, args.resume)  # before PyTorch loads
    from edgetune.train import train
    from edgetune.train.distributed import from_env

    out = pipeline.prepare_out(args.out, args.overwrite, args.resume)
    pipeline.write_config(out, cfg)
    result = train(cfg, out, resume=args.resume, command="train", splits=splits)
    if from_env().is_main:
        print(f"best val top-1 {result.best_top1:.2%}; next: edgetune export {result.best} --out {out}")
    return 0


def _cmd_export(args) -> int:
    from edgetune import pipeline
    from edgetune.report.summary import print_summary

    cfg = export_config(args)
    manifest = pipeline.export(args.checkpoint, args.out, cfg, data=args.data)
    if manifest is not None:  # None: a torchrun worker other than rank 0, which exports
        print_summary(args.out, manifest)
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
