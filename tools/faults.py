#!/usr/bin/env python
"""Fault injection: break things the way users and machines do, run the real CLI, check the answer.

    python tools/faults.py                          # the whole matrix, a few minutes on 2 cores
    python tools/faults.py -k resume -k nan         # only cases whose name holds a word
    python tools/faults.py --markdown faults.md     # also write the table as Markdown

Every case runs `python -m edgetune.cli` in a subprocess in its own temp folder ($W in the
table), on 3 classes of the embedded digits (24 PNGs each) with a from-scratch resnet18 at
32 px. A case passes
when the exit code is the expected one and the first stderr line says the expected thing;
refusals must be exactly one `edgetune: error:` line, successes may print only
`edgetune: warning:` lines, and nothing may print a traceback. Exit status: 1 if any case fails.
The cases live in tools/fault_cases.py; this file runs and judges them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fault_cases import CASES, FAST, Case, Ctx, cli  # tools/fault_cases.py, beside this file
from rich.console import Console
from rich.table import Table


@dataclass
class Result:
    case: Case
    rc: int
    first: str
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


# ---- running and judging ------------------------------------------------------------------

def judge(c: Case, proc: subprocess.CompletedProcess, extra: list[str], seconds: float,
          root: Path) -> Result:
    lines = proc.stderr.replace(str(root), "$W").strip().splitlines()
    first = lines[0] if lines else ""
    problems = list(extra)
    if proc.returncode != c.rc:
        problems.append(f"exit {proc.returncode}, expected {c.rc}")
    if "Traceback" in proc.stderr:
        problems.append("traceback")
    if c.rc == 2 and (len(lines) != 1 or not first.startswith("edgetune: error: ")):
        problems.append(f"{len(lines)} stderr lines, expected one 'edgetune: error:' line")
    if c.rc == 0 and not all(ln.startswith("edgetune: warning: ") for ln in lines):
        problems.append("stderr holds more than edgetune warnings")
    if c.says and c.says not in first:
        problems.append(f"first line lacks {c.says!r}")
    if not c.says and lines:
        problems.append("expected a silent stderr")
    return Result(c, proc.returncode, first, problems, seconds)


def make_data(root: Path) -> Path:
    from edgetune.data.demo import ensure_digits

    digits = ensure_digits(root / "digits")
    data = root / "small"
    for c in ("0", "1", "7"):
        (data / c).mkdir(parents=True)
        for p in sorted((digits / "train" / c).glob("*.png"))[:24]:
            shutil.copy(p, data / c / p.name)
    return data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-k", action="append", default=[], help="run only cases whose name holds this word")
    p.add_argument("--markdown", type=Path, help="also write the table to this Markdown file")
    p.add_argument("--keep", type=Path, help="work here and keep the files (default: a temp folder)")
    args = p.parse_args(argv)
    # Piped to a log, rich would fold the table at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    cases = [c for c in CASES if not args.k or any(k.lower() in c.name.lower() for k in args.k)]
    root = args.keep or Path(tempfile.mkdtemp(prefix="edgetune-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        ctx = Ctx(make_data(root))
        if any(c.needs_bundle for c in cases):
            console.print("building one real bundle (edgetune run) for the bundle cases …")
            ctx.bundle = root / "bundle"
            start = time.perf_counter()
            ctx.bundle_proc = cli("run", "--data", ctx.data, "--out", ctx.bundle, *FAST,
                                  "--calib-samples", "32", "--bench-runs", "5")
            ctx.bundle_seconds = time.perf_counter() - start
        results = []
        for i, c in enumerate(cases):
            w = root / f"case{i:02d}"
            w.mkdir()
            start = time.perf_counter()
            proc, extra = c.make(ctx, w)
            seconds = ctx.bundle_seconds if c.name.startswith("clean run") else time.perf_counter() - start
            results.append(judge(c, proc, extra, seconds, root))
            r = results[-1]
            console.print(f"[{'green' if r.ok else 'red'}]{'pass' if r.ok else 'FAIL'}[/] {c.name} "
                          f"({r.seconds:.1f} s)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - t0
    console.print(table(results, total))
    if args.markdown:
        args.markdown.write_text(markdown(results, total))
    return 0 if all(r.ok for r in results) else 1




def _expected(c: Case) -> str:
    return f"{c.rc}: {c.says}" if c.says else f"{c.rc}: silent stderr"


def _got(r: Result, width: int = 150) -> str:
    text = f"{r.rc}: {r.first}" if r.first else f"{r.rc}: (no stderr)"
    text = text.replace("edgetune: ", "", 1)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(results: list[Result], total: float) -> Table:
    t = Table(title=f"fault injection: {sum(r.ok for r in results)}/{len(results)} pass in {total:.0f} s",
              title_justify="left", show_lines=False)
    for col in ("case", "expected (exit: first line holds)", "got (exit: first stderr line)", "", "s"):
        t.add_column(col, overflow="fold")
    for r in results:
        t.add_row(r.case.name, _expected(r.case), _got(r) + "".join(f" [{p}]" for p in r.problems),
                  "[green]pass[/]" if r.ok else "[red]FAIL[/]", f"{r.seconds:.1f}")
    return t


def markdown(results: list[Result], total: float) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    rows = ["| case | expected (exit: first line holds) | got (exit: first stderr line) | result | s |",
            "|---|---|---|---|---:|"]
    for r in results:
        got = _got(r, width=200) + "".join(f" [{p}]" for p in r.problems)
        rows.append(f"| {cell(r.case.name)} | {cell(_expected(r.case))} | {cell(got)} | "
                    f"{'pass' if r.ok else '**FAIL**'} | {r.seconds:.1f} |")
    summary = f"{sum(r.ok for r in results)}/{len(results)} pass, {total:.0f} s in all."
    return "\n".join(rows) + "\n\n" + summary + "\n"


if __name__ == "__main__":
    sys.exit(main())
