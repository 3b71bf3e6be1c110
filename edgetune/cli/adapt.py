"""`edgetune adapt`: an existing bundle adapted to unlabelled target images and re-exported.
Parsing only; the work is in `edgetune.pipeline.adapt_bundle`."""

from __future__ import annotations

from edgetune.cli.flags import adapt_config, adapt_flags, export_config, export_flags, out_flags
from edgetune.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("adapt", help="adapt a bundle's model to unlabelled target images and re-export")
    p.add_argument("bundle", help="a bundle folder written by `edgetune run` or `edgetune export`")
    p.add_argument("--data", help="the source data, optional: INT8 is then judged on its val split")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle in --out")
    adapt_flags(p)
    export_flags(p)
    out_flags(p, training=False)
    p.set_defaults(func=_cmd_adapt)


def _cmd_adapt(args) -> int:
    from edgetune.pipeline import adapt_bundle
    from edgetune.report.summary import print_summary

    cfg = adapt_config(args)
    if cfg.target_data is None:
        raise ConfigError("edgetune adapt needs unlabelled images from the deployment domain: add --target-data DIR")
    manifest = adapt_bundle(args.bundle, args.out, cfg, export_config(args), data=args.data,
                            device=args.device, overwrite=args.overwrite)
    print_summary(args.out, manifest)
    return 0
