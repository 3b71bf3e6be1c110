"""What the export chose and why, as a table on the terminal. Torch-free."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from edgetune.bundle import Manifest


def show_choice(manifest: Manifest, log=print) -> None:
    """The artifacts and the CPU candidates with top-1, latency, size and verdict."""
    table = Table(title="edgetune: artifacts", title_justify="left")
    # With --target-val, top-1 on the source val split and on the target images side by side.
    target = any(a.top1_target is not None for a in manifest.artifacts)
    source = any(a.top1_source is not None for a in manifest.artifacts)
    judged = "top-1" if manifest.evaluation.get("split", "val") == "val" else "agrees w/ fp32"
    cols = ("artifact", "target", "precision", judged, *(("source top-1",) if source else ()),
            *(("target top-1",) if target else ()), "p50 ms (b=1)", "size MB", "note")
    for col in cols:
        table.add_column(col, justify="right" if col in (judged, "source top-1", "target top-1", "p50 ms (b=1)",
                                                         "size MB") else "left")
    for a in manifest.artifacts:
        p50 = f"{a.latency_ms['p50']:.2f}" if a.latency_ms else "on device"
        top1 = f"{a.top1:.2%}" if a.top1 is not None else "-"
        extra = tuple(f"{v:.2%}" if v is not None else "-" for v, shown in
                      ((a.top1_source, source), (a.top1_target, target)) if shown)
        table.add_row(a.file, a.target, a.precision, top1, *extra, p50, f"{a.size_bytes / 1e6:.1f}",
                      (a.calibration or {}).get("candidate", ""))
    rows = manifest.candidates.get("cpu", [])
    cand = Table(title="cpu candidates (timed side by side on this machine)", title_justify="left")
    for col in ("candidate", "top-1", "p50 ms", "size MB", "float nodes", "verdict"):
        cand.add_column(col)
    for r in rows:
        cand.add_row(r["candidate"], f"{r['top1']:.2%}", f"{r['p50_ms']:.2f}",
                     f"{(r['size_bytes'] or 0) / 1e6:.1f}", str(r["float_nodes"]), r["verdict"])
    if log is not print:  # tests and library callers pass their own log: no terminal output
        return
    import sys

    # Piped to a file, rich would wrap at 80 columns; a log reads better unwrapped.
    console = Console() if sys.stdout.isatty() else Console(width=140)
    console.print(table)
    if rows:
        console.print(cand)
    for target, choice in manifest.recommended.items():
        if choice:
            console.print(f"recommended for {target}: [bold]{choice['file']}[/bold] ({choice['why']})")
