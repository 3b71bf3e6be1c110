"""`edgetune` command line: parses arguments and calls library functions, nothing more.

User errors print one line, `edgetune: error: …`, and exit 2; `--debug` shows the traceback.
Each command lives in its own module (`run`, `adapt`, `tune`, `device`, `deploy`, `serve`, `tools`), which adds
its parser here; the flags they share are public in `edgetune.cli.flags`.
"""

from __future__ import annotations

import gc
import sys
import warnings
from pathlib import Path

from edgetune import __version__
from edgetune.cli import adapt, choose, deploy, device, run, serve, tools, tune
from edgetune.cli.flags import Parser, no_abbrev
from edgetune.errors import EdgetuneError, EdgetuneWarning


def build_parser() -> Parser:
    parser = Parser(prog="edgetune", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"edgetune {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = no_abbrev(sub.add_parser)
    run.add_parsers(sub)
    choose.add_parser(sub)
    tune.add_parser(sub)
    adapt.add_parser(sub)
    device.add_parsers(sub)
    deploy.add_parser(sub)
    serve.add_parser(sub)
    tools.add_parsers(sub)
    tools.add_config_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            parser = build_parser()
            tools.apply_config_file(parser, argv)
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


def console() -> int:
    """The `edgetune` program (the installed script, `python -m edgetune`, `python -m
    edgetune.cli`): `main()`, then a quicker exit.

    At exit CPython's finalizer runs the cyclic garbage collector over every object still
    alive, and with torch, torchvision and timm imported that is about a second of CPU on
    every command (import and exit alone: 4.65 -> 3.56 CPU-s on a 2-core EPYC, six runs each;
    BENCHMARKS.md, "A command's exit"). Frozen objects are skipped; nothing of ours waits on
    that collection: files are written and closed inside the commands, atexit handlers still
    run, and the operating system takes back the memory."""
    code = main()
    gc.freeze()
    return code


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # Ours read like our errors, one line; a dependency's keep Python's format and location.
    if issubclass(category, EdgetuneWarning) or Path(filename).resolve().is_relative_to(_PACKAGE):
        # `run` scans the data twice (training, then export): say each thing once.
        if str(message) not in _shown:
            _shown.add(str(message))
            print(f"edgetune: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_PACKAGE = Path(__file__).resolve().parents[1]  # edgetune/: warnings raised by our own code
_shown: set[str] = set()
_python_show_warning = warnings.showwarning
