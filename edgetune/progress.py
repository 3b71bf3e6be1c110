"""Progress for every long stage, from one library (rich). Torch-free.

On a terminal: live bars on stderr (training, caching, calibration, evaluation, timing,
bench), removed when their stage ends so the log above them stays readable. Not on a
terminal (CI, `| tee log`, a file): no bar and no carriage return, one line per stage on
stdout, beside the other log lines, when it ends: `calibrate: 10 batches in 2.1s`.

Bars nest: rich allows one live display at a time, so every bar is a task of one shared
`Progress` that lives while any stage runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_live: Progress | None = None
_depth = 0


def interactive() -> bool:
    """True when bars can be drawn: stderr is a terminal (rich also honours FORCE_COLOR/TTY_*)."""
    return Console(file=sys.stderr).is_terminal


class StageProgress:
    """One stage's progress: `advance()` per unit of work, `note()` for a short status."""

    def __init__(self, desc: str, total: int | None, unit: str, line: bool, file=None):
        self.desc, self.total, self.unit, self.line, self.file = desc, total, unit, line, file
        self.done, self.status = 0, ""
        self._t0 = time.perf_counter()
        self._task = None

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._task is not None and _live is not None:
            _live.advance(self._task, n)

    def note(self, **status) -> None:
        """A status after the bar (`loss=0.41`); kept for the closing line too."""
        self.status = "  ".join(f"{k} {v}" for k, v in status.items())
        if self._task is not None and _live is not None:
            _live.update(self._task, status=self.status)

    set_postfix = note  # the names tqdm users know
    update = advance

    def summary(self) -> str:
        of = f"{self.done}/{self.total}" if self.total and self.done != self.total else str(self.done)
        unit = f" {self.unit}" if self.unit else ""
        tail = f"  {self.status}" if self.status else ""
        return f"{self.desc}: {of}{unit} in {time.perf_counter() - self._t0:.1f}s{tail}"


@contextmanager
def stage(desc: str, total: int | None = None, unit: str = "", line: bool = True,
          file=None) -> Iterator[StageProgress]:
    """A stage of `total` units. `line=False`: no closing line off a terminal, for stages
    whose caller already logs one (the training loop's epoch line). `file`: where that line
    goes (default: stdout at the time, like the other log lines)."""
    global _live, _depth
    s = StageProgress(desc, total, unit, line, file)
    if interactive():
        if _live is None:
            _live = _new_progress()
            _live.start()
        _depth += 1
        s._task = _live.add_task(desc, total=total, status="")
    try:
        yield s
    finally:
        if s._task is not None:
            _depth -= 1
            _live.remove_task(s._task)
            if _depth == 0:
                _live.stop()
                _live = None
        elif line:
            print(s.summary(), file=file or sys.stdout, flush=True)


class Track:
    """An iterable with a bar: `for x in track(items, "evaluate"): ...`."""

    def __init__(self, items: Iterable, desc: str, total: int | None, unit: str, line: bool, file=None):
        self.items, self.desc, self.unit, self.line, self.file = items, desc, unit, line, file
        self.total = total if total is not None else _len(items)
        self._stage: StageProgress | None = None
        self._status: dict = {}

    def __len__(self) -> int:
        return self.total or 0

    def __iter__(self):
        with stage(self.desc, self.total, self.unit, self.line, self.file) as s:
            self._stage = s
            if self._status:
                s.note(**self._status)
            for item in self.items:
                yield item
                s.advance()

    def set_postfix(self, **status) -> None:
        self._status = status
        if self._stage is not None:
            self._stage.note(**status)


def track(items: Iterable, desc: str, total: int | None = None, unit: str = "",
          line: bool = True, file=None) -> Track:
    return Track(items, desc, total, unit, line, file)


def _len(items) -> int | None:
    try:
        return len(items)
    except TypeError:
        return None


def _new_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
        console=Console(file=sys.stderr), transient=True,
    )
