"""The ranking `choose` prints and writes: candidates sorted by transferability, the Pareto set
of score against latency, the best within a latency budget, and the command that trains it.
Pure Python: no torch."""

from __future__ import annotations

import csv
import io
import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

from edgetune.atomic import write_text

COLUMNS = ("rank", "candidate", "arch", "weights", "size", "logme", "probe", "p50_ms", "latency_from",
           "pareto", "within_budget", "seconds")


@dataclass
class Row:
    candidate: str  # Candidate.name
    arch: str
    weights: str
    size: int
    logme: float
    probe: float | None
    p50_ms: float | None = None
    latency_from: str = ""  # "here" or the --latency-from file
    pareto: bool = False
    within_budget: bool | None = None  # None: no budget given
    seconds: float = 0.0  # extracting and scoring its features
    rank: int = 0

    def score(self, by: str) -> float:
        return self.logme if by == "logme" else (self.probe if self.probe is not None else float("-inf"))


def rank(rows: list[Row], by: str, budget: float | None) -> list[Row]:
    """`rows` sorted by score (best first), the Pareto set and the budget marked."""
    rows = sorted(rows, key=lambda r: (-r.score(by), r.p50_ms if r.p50_ms is not None else float("inf")))
    for i, r in enumerate(rows, 1):
        r.rank = i
        r.pareto = r.p50_ms is not None and not any(_dominates(o, r, by) for o in rows if o is not r)
        r.within_budget = None if budget is None or r.p50_ms is None else r.p50_ms <= budget
    return rows


def _dominates(a: Row, b: Row, by: str) -> bool:
    """`a` scores at least as well and runs at least as fast as `b`, and better in one."""
    if a.p50_ms is None:
        return False
    sa, sb = a.score(by), b.score(by)
    return sa >= sb and a.p50_ms <= b.p50_ms and (sa > sb or a.p50_ms < b.p50_ms)


def best_within(rows: list[Row], budget: float | None) -> Row | None:
    """The first row (best score) within the budget; the best row when there is no budget."""
    return next((r for r in rows if budget is None or r.within_budget), None)


def table(rows: list[Row], by: str, budget: float | None) -> list[str]:
    """The ranking as text lines: `*` marks the Pareto set (no other candidate both scores
    higher and runs faster), `over` a candidate slower than --latency-budget."""
    head = ["#", "candidate", "size", "LogME", "probe top-1", "p50 ms", "timed", "pareto"]
    if budget is not None:
        head.append(f"<= {budget:g} ms")
    body = []
    for r in rows:
        line = [str(r.rank), r.candidate, str(r.size), f"{r.logme:.3f}",
                "" if r.probe is None else f"{r.probe:.1%}",
                "" if r.p50_ms is None else f"{r.p50_ms:.2f}", r.latency_from, "*" if r.pareto else ""]
        if budget is not None:
            line.append({True: "yes", False: "over", None: ""}[r.within_budget])
        body.append(line)
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    sorted_by = {"logme": "LogME", "probe": "probe top-1"}[by]
    return [f"choose: {len(rows)} candidates, sorted by {sorted_by}; * = Pareto set of score and latency",
            *("  ".join(c.ljust(w) if i in (1, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(x, widths)))
              for x in [head, *body])]


def run_command(row: Row, data: str, out: str | None = None) -> str:
    """The `edgetune run` that fine-tunes `row` and ships it."""
    args = ["edgetune", "run", "--data", data, "--model", row.arch]
    if row.weights != "DEFAULT":
        args += ["--weights", row.weights]
    args += ["--image-size", str(row.size), "--out", out or f"runs/{row.arch}-{row.size}"]
    return shlex.join(args)


def write(out: Path, rows: list[Row], settings: dict, json_name: str, csv_name: str) -> None:
    """The ranking as JSON (with the settings that made it) and CSV, each written atomically."""
    records = [{k: asdict(r)[k] for k in COLUMNS} for r in rows]
    write_text(out / json_name, json.dumps({"settings": settings, "ranking": records}, indent=1) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_text(out / csv_name, buf.getvalue())


def read(path: Path) -> list[dict]:
    """A ranking written by `write` (JSON), best first: `tune --models top:K` reads it."""
    return json.loads(Path(path).read_text())["ranking"]
