"""What the export chose and why, as a table on the terminal. Torch-free."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from edgetune.bundle import Manifest
from edgetune.report import figures

NUMERIC = ("p50 ms (b=1)", "size MB")


def show_choice(manifest: Manifest, log=print) -> None:
    """The artifacts and the CPU candidates with their figures, latency, size and verdict."""
    if log is not print:  # tests and library callers pass their own log: no terminal output
        return
    import sys

    raw = manifest.to_dict()
    # Piped to a file, rich would wrap at 80 columns; a log reads better unwrapped.
    console = Console() if sys.stdout.isatty() else Console(width=140)
    console.print(artifact_table(raw))
    for target in raw["candidates"]:
        console.print(candidate_table(raw, target))
    for target, choice in manifest.recommended.items():
        if choice:
            console.print(f"recommended for {target}: [bold]{choice['file']}[/bold] ({choice['why']})")


def artifact_table(raw: dict) -> Table:
    """Every artifact; beside `top1`, the source val and target val top-1 where measured."""
    table = Table(title="edgetune: artifacts", title_justify="left", caption=figures.agreement_note(raw),
                  caption_justify="left")
    keys = ["top1"] + [k for k in ("top1_source", "top1_target")
                       if any(a.get(k) is not None for a in raw["artifacts"])]
    for col in ("artifact", "target", "precision", *(figures.name(k, raw) for k in keys), *NUMERIC, "note"):
        table.add_column(col, justify="left" if col in ("artifact", "target", "precision", "note") else "right")
    for a in raw["artifacts"]:
        p50 = f"{a['latency_ms']['p50']:.2f}" if a["latency_ms"] else "on device"
        table.add_row(a["file"], a["target"], a["precision"], *(figures.pct(a.get(k)) or "-" for k in keys),
                      p50, f"{a['size_bytes'] / 1e6:.1f}", (a["calibration"] or {}).get("candidate", ""))
    return table


def candidate_table(raw: dict, target: str = "cpu") -> Table:
    """A target's candidates, judged by the same figure as the artifacts: the CPU's timed side
    by side on this machine; TensorRT's PTQ against QAT, timed only on the device. A QAT row
    says what it trained."""
    title = ("cpu candidates (timed side by side on this machine)" if target == "cpu"
             else f"{target} candidates (PTQ against QAT; timed on the device)")
    cand = Table(title=title, title_justify="left")
    for col in ("candidate", figures.name("top1", raw), "p50 ms", "size MB", "float nodes", "verdict"):
        cand.add_column(col)
    for r in raw["candidates"][target]:
        qat = r.get("qat")
        verdict = r["verdict"] + (f" (QAT: {qat['epochs']} epoch(s) at lr {qat['lr']:g}, {qat['trained']}; "
                                  f"PTQ {qat['ptq_top1']:.2%})" if qat else "")
        cand.add_row(r["candidate"], f"{r['top1']:.2%}", "-" if r["p50_ms"] is None else f"{r['p50_ms']:.2f}",
                     f"{(r['size_bytes'] or 0) / 1e6:.1f}", str(r["float_nodes"]), verdict)
    return cand
