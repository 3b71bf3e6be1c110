"""Write docs/CLI.md, the flag reference, from the parser itself (`edgetune.cli.main.build_parser`),
so it cannot drift from the flags: every command, its description, every flag with its help,
grouped as the parser groups them. tests/test_docs.py fails when docs/CLI.md is stale.

    python tools/cli_reference.py            # rewrite docs/CLI.md
    python tools/cli_reference.py --check    # exit 1 when docs/CLI.md is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgetune.atomic import write_text
from edgetune.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "CLI.md"
COMMAND = "python tools/cli_reference.py"


def render(parser: argparse.ArgumentParser) -> str:
    prog = parser.prog
    subcommands = _subcommands(parser)
    lines = [
        f"# {prog} command-line reference",
        "",
        f"Generated from the parser by `{COMMAND}`; do not edit by hand (`tests/test_docs.py`",
        "checks that it is current). Every command takes `-h`/`--help`. A `--config FILE` (YAML of",
        "`flag: value`) sets any command's flags; flags typed on the command line override it.",
        "",
        f"{parser.description}",
        "",
        f"Flags before the command (`{prog} [flags] COMMAND ...`):",
        "",
        *_flag_lines(parser, [a for a in parser._actions if a.option_strings]),
        "",
        "## Commands",
        "",
        *(f"- [`{prog} {name}`](#{_anchor(prog, name)}): {help_}" for name, (help_, _) in subcommands.items()),
    ]
    # The flag groups several commands share (train, export, adaptation) are listed once, at
    # the first command that has them; later commands link there.
    shown: dict[tuple, str] = {}
    for name, (help_, sub) in subcommands.items():
        lines += ["", f"## {prog} {name}", "", _sentence(help_)]
        if sub.description:
            lines += ["", sub.description]
        for group in sub._action_groups:
            flags = _flag_lines(sub, group._group_actions)
            if not flags:
                continue
            first = shown.setdefault((group.title, *flags), name)
            if first == name:
                lines += ["", f"**{group.title}**", "", *flags]
            else:
                lines += ["", f"**{group.title}**: the same flags as [`{prog} {first}`](#{_anchor(prog, first)})."]
    return "\n".join(lines) + "\n"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """name -> (one-line help, parser), in the order the commands were added."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    return {name: (helps[name], sub) for name, sub in action.choices.items()}


def _flag_lines(parser: argparse.ArgumentParser, actions: list[argparse.Action]) -> list[str]:
    formatter = parser._get_formatter()
    lines = []
    for action in actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            invocation = formatter._format_action_invocation(action)
        else:  # as the usage line writes it: IMAGE [IMAGE ...]
            invocation = formatter._format_args(action, formatter._get_default_metavar_for_positional(action))
        # argparse expands %(default)s and %% in help text; show what --help shows.
        help_ = formatter._expand_help(action) if action.help else ""
        default = action.default
        if (default not in (None, False, argparse.SUPPRESS) and action.option_strings
                and "default" not in help_):
            help_ = f"{help_} (default {default})" if help_ else f"default {default}"
        if action.required and action.option_strings:
            help_ = f"{help_} (required)" if help_ else "required"
        lines.append(f"- `{invocation}`" + (f": {help_}" if help_ else ""))
    return lines


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _anchor(prog: str, name: str) -> str:
    """GitHub's anchor for the heading `## prog name`."""
    return f"{prog}-{name}".lower()


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--check", action="store_true", help="exit 1 when docs/CLI.md is stale, write nothing")
    check = args.parse_args(argv).check
    text = render(build_parser())
    if check:
        current = REFERENCE.read_text() if REFERENCE.is_file() else ""
        if current != text:
            print(f"{REFERENCE.relative_to(ROOT)} is stale; run: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    write_text(REFERENCE, text)
    print(f"wrote {REFERENCE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
