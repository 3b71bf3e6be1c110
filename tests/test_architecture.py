"""The house rules the import-linter contracts cannot state: private names stay in the module
that defines them, and every module says its job in its first line."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO

ROOT = REPO
# The package's folders as the install maps them (pyproject.toml's package-dir).
PACKAGE = {ROOT / "edgetune": "edgetune", ROOT / "export": "edgetune.export", ROOT / "calib": "edgetune.calib"}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, name in PACKAGE.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((name, *parts))] = path
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def cross_module_private_uses(path: Path) -> list[str]:
    """`from edgetune.x import _y` and `x._y` where `x` is one of our modules, in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    modules, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgetune"):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{path.name}:{node.lineno}: from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("edgetune")}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in modules):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_takes_another_modules_private_names():
    files = [*_modules().values(), *sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "tools").glob("*.py"))]
    offences = [line for path in files for line in cross_module_private_uses(path)]
    assert offences == [], "make the name public in the module that owns it:\n" + "\n".join(offences)


def test_the_checker_sees_a_private_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from edgetune.data.scan import _hidden\nfrom edgetune import cli\ncli._flags\n")
    assert [line.split(": ", 1)[1] for line in cross_module_private_uses(sample)] == [
        "from edgetune.data.scan import _hidden", "cli._flags"]


def test_every_module_opens_with_a_docstring_that_says_its_job():
    missing = [name for name, path in _modules().items()
               if not (ast.get_docstring(ast.parse(path.read_text())) or "").strip()]
    assert missing == []
