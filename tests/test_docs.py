"""The documentation agrees with the repository: docs/CLI.md is what the parser says now."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI_REFERENCE = ROOT / "docs" / "CLI.md"


def _cli_reference_tool():
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "tools" / "cli_reference.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_the_flag_reference_is_what_the_parser_says_now():
    from edgetune.cli.main import build_parser

    generated = _cli_reference_tool().render(build_parser())
    assert CLI_REFERENCE.read_text() == generated, (
        "docs/CLI.md is stale: run `python tools/cli_reference.py` and commit docs/CLI.md")


def test_the_flag_reference_holds_every_command_and_flag():
    from edgetune.cli.main import build_parser

    parser = build_parser()
    text = CLI_REFERENCE.read_text()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert all(f"\n## edgetune {name}\n" in text for name in subparsers)
    flags = {o for sub in [parser, *subparsers.values()] for a in sub._actions for o in a.option_strings}
    absent = sorted(f for f in flags - {"-h", "--help"} if f"`{f}" not in text)
    assert absent == []
