"""Command-line flags for domain adaptation, and `edgetune adapt`: parsing only; the work is
in `edgetune.adapt_stage`."""

from __future__ import annotations

import argparse


def add_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("domain adaptation (the camera the device will see)")
    g.add_argument("--target-data", help="unlabelled images from the deployment domain, any folder layout")
    g.add_argument("--adapt", help="bn (default with --target-data) | tent | pseudo")
    g.add_argument("--target-val", help="labelled target images, DIR/<class>/*: measured only, never used to choose")
    g.add_argument("--target-labels", help="a few labelled target images, DIR/<class>/*, trained on beside the source")
    g.add_argument("--adapt-images", type=int, help="target images adaptation draws from (default 2000)")
    g.add_argument("--min-shift", type=float,
                   help="input-statistics shift below which BatchNorm statistics are kept (default 0.1; 0: always adapt)")
    g.add_argument("--tent-lr", type=float, help="tent's learning rate (default 1e-3)")
    g.add_argument("--pseudo-threshold", type=float, help="confidence a pseudo-label needs (default 0.9)")
    g.add_argument("--pseudo-epochs", type=int, help="self-training epochs (default 3)")


def add_parsers(sub, export_flags, out_flags) -> None:
    p = sub.add_parser("adapt", help="adapt a bundle's model to unlabelled target images and re-export")
    p.add_argument("bundle", help="a bundle folder written by `edgetune run` or `edgetune export`")
    p.add_argument("--data", help="the source data, optional: INT8 is then judged on its val split")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle in --out")
    add_flags(p)
    export_flags(p)
    out_flags(p, training=False)
    p.set_defaults(func=_cmd_adapt)


def adapt_config(args):
    from edgetune.adapt_config import AdaptConfig
    from edgetune.cli import _settings
    from edgetune.config import build

    yaml, flags = _settings(args, AdaptConfig)
    return build(AdaptConfig, yaml, flags)


def _cmd_adapt(args) -> int:
    from edgetune.adapt_stage import adapt_bundle
    from edgetune.cli import _export_config, _next_steps
    from edgetune.errors import ConfigError

    cfg = adapt_config(args)
    if cfg.target_data is None:
        raise ConfigError("edgetune adapt needs unlabelled images from the deployment domain: add --target-data DIR")
    manifest = adapt_bundle(args.bundle, args.out, cfg, _export_config(args), data=args.data,
                            device=args.device, overwrite=args.overwrite)
    _next_steps(args.out, manifest)
    return 0
