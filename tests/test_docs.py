"""The documentation agrees with the repository: every file and module docs/ARCHITECTURE.md
names exists, every module of the package is on its map with the right counts, its copy of
the layers contract is the one in pyproject.toml, docs/CLI.md is what the parser says now, the
edgetune commands the README and the guide show are ones the parser accepts, and the links
between the documents land on a file and heading that exist."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from tests.support import REPO

ROOT = REPO
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
CLI_REFERENCE = ROOT / "docs" / "CLI.md"
# The install's package-dir mapping (pyproject.toml): these packages live in top-level folders.
PACKAGE_DIRS = {"edgetune.export": "export", "edgetune.calib": "calib"}
PACKAGE_FOLDERS = ("edgetune", *PACKAGE_DIRS.values())
# A word in backticks is taken for a repository path when it starts with one of these folders
# (`OUT/…` and `runs/…` are a run's folders, not the repository's) or names a source file.
SOURCE_FOLDERS = {*PACKAGE_FOLDERS, "tests", "tools", "docs"}
SOURCE_SUFFIXES = (".py", ".md", ".toml", ".txt")


def backticked_words(text: str) -> list[str]:
    """Every whitespace-separated word inside `code spans`, stripped of prose punctuation."""
    return [word.strip(",;:()") for span in re.findall(r"`([^`\n]+)`", text) for word in span.split()]


def is_repo_path(word: str) -> bool:
    return word.split("/")[0] in SOURCE_FOLDERS and "/" in word or word.split("::")[0].endswith(SOURCE_SUFFIXES)


def is_module_name(word: str) -> bool:
    return re.fullmatch(r"edgetune(\.\w+)+", word) is not None


def module_file(name: str) -> Path | None:
    """The file of module `name`, through the package-dir mapping; None when there is none."""
    parts = name.split(".")
    base, rest = ROOT / "edgetune", parts[1:]
    for package, folder in PACKAGE_DIRS.items():
        if name == package or name.startswith(package + "."):
            base, rest = ROOT / folder, parts[2:]
    path = base.joinpath(*rest)
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def top_level_names(path: Path) -> set[str]:
    """What a module defines or imports at its top level, read without importing it (the
    training modules would load torch)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def missing_path(word: str) -> str | None:
    """Why `word` (a path, optionally `file::name`) does not resolve, or None when it does."""
    file, _, name = word.partition("::")
    if not (ROOT / file).exists():
        return f"{word}: no such file or folder"
    if name and name not in top_level_names(ROOT / file):
        return f"{word}: {file} defines no {name}"
    return None


def missing_module(word: str) -> str | None:
    """Why `word` (a module, or a module's top-level name) does not resolve, or None."""
    if module_file(word) is not None:
        return None
    parent, _, name = word.rpartition(".")
    path = module_file(parent)
    if path is not None and name in top_level_names(path):
        return None
    return f"{word}: no such module, nor a name defined in {parent}"


def test_every_file_and_module_the_architecture_names_exists():
    words = backticked_words(ARCHITECTURE.read_text())
    paths = [w for w in words if is_repo_path(w)]
    modules = [w for w in words if is_module_name(w)]
    assert len(paths) > 100 and len(modules) > 30  # the extraction still finds the page's names
    problems = [p for p in map(missing_path, paths) if p] + [m for m in map(missing_module, modules) if m]
    assert problems == [], "docs/ARCHITECTURE.md names what the repository does not hold:\n" + "\n".join(problems)


def test_every_module_of_the_package_is_on_the_map():
    named = set(backticked_words(ARCHITECTURE.read_text()))
    modules = [p.relative_to(ROOT).as_posix() for folder in PACKAGE_FOLDERS
               for p in sorted((ROOT / folder).rglob("*.py")) if p.name != "__init__.py"]
    absent = [m for m in modules if m not in named]
    assert absent == [], "add these modules to docs/ARCHITECTURE.md, one line each:\n" + "\n".join(absent)


def test_module_counts_match_the_folders():
    counts = re.findall(r"`([\w/]+/)`[^\n(]*\((\d+) modules?\)", ARCHITECTURE.read_text())
    assert len(counts) >= 10
    wrong = [f"{folder}: says {n}, holds {actual}" for folder, n in counts
             if (actual := len([p for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py"])) != int(n)]
    assert wrong == [], "docs/ARCHITECTURE.md's module counts are stale:\n" + "\n".join(wrong)


def test_the_layers_are_the_contracts_layers():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    section = ARCHITECTURE.read_text().split("\n## Layers\n", 1)[1]
    documented = section.split("```\n", 2)[1].strip().splitlines()
    assert documented == layers, "copy the layers contract of pyproject.toml into docs/ARCHITECTURE.md"


@pytest.mark.parametrize("word, expected", [
    ("edgetune/files.py", True), ("tests/test_runtime.py::test_torch_free_load_predict_and_bench", True),
    ("OUT/calib/", False), ("runs/demo", False), ("model.onnx", False), ("Makefile", False),
])
def test_what_counts_as_a_repository_path(word, expected):
    assert is_repo_path(word) is expected


def test_names_resolve_through_the_package_dir_mapping():
    assert module_file("edgetune.export.onnx") == ROOT / "export" / "onnx.py"
    assert module_file("edgetune.calib") == ROOT / "calib" / "__init__.py"
    assert missing_module("edgetune.runtime.load") is None  # a name the package imports at its top
    assert missing_module("edgetune.train.stages") is not None
    assert missing_path("edgetune/train/stages.py") is not None
    assert missing_path("tests/test_runtime.py::no_such_test") is not None


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


def shown_commands(text: str) -> list[list[str]]:
    """The `edgetune …` command lines of the ```bash blocks in `text`, as argument lists after
    `edgetune` (torchrun's `-m edgetune` included; comments and line continuations handled)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for i, word in enumerate(words):
                if word.endswith("edgetune") and (i == 0 or words[i - 1] == "-m"):
                    commands.append(words[i + 1:])
                    break
    return commands


@pytest.mark.parametrize("doc", ["README.md", "docs/GUIDE.md"])
def test_the_commands_the_docs_show_parse(doc):
    from edgetune.cli.main import build_parser
    from edgetune.errors import ConfigError

    commands = shown_commands((ROOT / doc).read_text())
    assert len(commands) >= 5
    refused = []
    for argv in commands:
        try:
            build_parser().parse_args(argv)
        except ConfigError as exc:
            refused.append(f"edgetune {shlex.join(argv)}: {exc}")
    assert refused == [], f"{doc} shows commands the parser refuses:\n" + "\n".join(refused)


def test_shown_commands_reads_torchrun_and_continuations():
    text = "```bash\ntorchrun --nnodes 2 \\\n    -m edgetune run --out a   # note\nmake demo\n```\n"
    assert shown_commands(text) == [["run", "--out", "a"]]


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings (fenced code left out)."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    headings = re.findall(r"^#+ (.+)$", prose, re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", ["README.md", "BENCHMARKS.md", "docs/ARCHITECTURE.md", "docs/GUIDE.md",
                                 "docs/CLI.md"])
def test_links_between_the_docs_resolve(doc):
    path = ROOT / doc
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in heading_anchors(linked.read_text()):
            broken.append(f"{target}: no such heading")
    assert broken == [], f"{doc} links to what is not there:\n" + "\n".join(broken)
