"""`edgetune report`, `edgetune config --dump`, and `--config FILE` for every command.

A config file is a YAML mapping of flag names (dashes or underscores) to values. One file
can serve every command: each takes the keys that are its flags and leaves the others;
a key that is no command's flag is an error with a did-you-mean. Flags on the command line
override the file. Torch-free.
"""

from __future__ import annotations

import argparse

from edgetune.cli.flags import export_config, export_flags, out_flags, train_config, train_flags
from edgetune.errors import ConfigError, require

SKIP = {"help", "config", "version", "debug"}


def add_parsers(sub) -> None:
    p = sub.add_parser("report", help="rebuild OUT/report.html from the bundle and the run's logs",
                       description="Rebuild the HTML report, e.g. after build-engine added an engine "
                                   "or a search wrote its trials.")
    p.add_argument("out", metavar="OUT", help="a folder written by `edgetune run` or `edgetune export`")
    p.set_defaults(func=run_report)

    p = sub.add_parser("config", help="print the effective configuration of `edgetune run` as YAML",
                       description="The settings `edgetune run` would use with these flags and "
                                   "--config file, as YAML that --config accepts back.")
    p.add_argument("--dump", action="store_true", help="print the effective configuration as YAML")
    train_flags(p), export_flags(p), out_flags(p, required=False)
    p.set_defaults(func=run_config)


def run_report(args) -> int:
    from pathlib import Path

    from edgetune.report.html import write_report

    out = Path(args.out)
    if not out.is_dir():
        raise ConfigError(f"{out} is not a folder; pass the --out folder of `edgetune run` or `export`")
    print(f"report: {write_report(out)}")
    return 0


def run_config(args) -> int:
    from edgetune.config import to_dict

    if not args.dump:
        raise ConfigError("edgetune config: pass --dump to print the effective configuration "
                          "(e.g. edgetune config --dump --epochs 3 > run.yaml)")
    yaml = require("yaml", "train", "edgetune config --dump")
    settings = to_dict(train_config(args), export_config(args))
    print("# edgetune run: effective configuration; use it with --config FILE")
    print(yaml.safe_dump(settings, sort_keys=False), end="")
    return 0


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` on every subcommand that lacks it."""
    for sub in subparsers(parser).values():
        if not any("--config" in a.option_strings for a in sub._actions):
            sub.add_argument("--config", metavar="FILE",
                             help="YAML file of flag: value defaults; flags override it")


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def all_keys(parser: argparse.ArgumentParser) -> set[str]:
    """Every flag of every command (as field names), and every stage config field."""
    from edgetune.config import ExportConfig, TrainConfig, field_names

    keys = field_names(TrainConfig) | field_names(ExportConfig)
    for sub in subparsers(parser).values():
        keys |= {a.dest for a in sub._actions if a.option_strings and a.dest not in SKIP}
    return keys


def apply_config_file(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Make the --config file's keys the defaults of the command in `argv`, so its flags win."""
    subs = subparsers(parser)
    name = next((a for a in argv if a in subs), None)
    path = _config_path(argv)
    if name is None or path is None:
        return
    require("yaml", "train", "--config")
    from edgetune.config_file import load_yaml

    settings = load_yaml(path, all_keys(parser))
    sub = subs[name]
    defaults = {}
    for action in sub._actions:
        if action.option_strings and action.dest in settings and action.dest not in SKIP:
            value = settings[action.dest]
            if value is not None:
                defaults[action.dest] = _coerce(action, value, path)
    sub.set_defaults(**defaults)


def _config_path(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def _coerce(action: argparse.Action, value, path: str):
    """A YAML value as the flag would have given it."""
    from edgetune.config_file import yaml_word

    flag = action.option_strings[-1]
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigError(f"--config {path}: {flag.lstrip('-')}: {value!r} is not allowed; use true or false")
        return value
    value = yaml_word(value)  # `cache: off` reads as False
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))  # comma-list flags: --targets, --batch, --artifact
    if action.type is None or isinstance(value, str):
        return str(value)  # argparse applies the flag's type to string defaults itself
    try:
        return action.type(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--config {path}: {flag.lstrip('-')}: {value!r} is not allowed for {flag}") from None
