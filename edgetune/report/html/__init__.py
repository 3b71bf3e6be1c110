"""OUT/report.html: how training went, which classes get confused, what each artifact costs
in accuracy and milliseconds, and why edgetune chose what it chose.

`write_report(out, val=..., history=...)` at the end of an export; `write_report(out)`
rebuilds the page from OUT/report.json and the bundle as it is now (`edgetune report OUT`).
Needs matplotlib (the `train` extra); the rest is torch-free.
"""

from __future__ import annotations

from pathlib import Path

from edgetune.atomic import write_text
from edgetune.files import REPORT_HTML

REPORT = REPORT_HTML


def write_report(out: str | Path, val=None, history: list[dict] | None = None,
                 command: str | None = None) -> Path:
    from edgetune.errors import require

    require("matplotlib", "train", "the HTML report")
    from edgetune.report.html import collect, page

    out = Path(out)
    data = collect.gather(out, val=val, history=history, command=command)
    path = out / REPORT
    write_text(path, page.render(collect.read_manifest_raw(out), data))
    return path
