"""What the export chose and why, as a table on the terminal. Torch-free.

One table of every CPU candidate in every engine, one verdict each, one "chosen": the
recommendation is the fastest within the budget whatever its engine."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

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
    console = Console() if sys.stdout.isatty() else Console(width=170)
    console.print(artifact_table(raw))
    for target in raw["candidates"]:
        console.print(candidate_table(raw, target))
    for target, choice in manifest.recommended.items():
        if choice:
            engine, why = manifest.artifact(choice["file"]).backend, choice["why"]
            # the cpu target's reason already ends with its engine: name it once
            said = why if why.endswith(f"{engine})") else f"{engine}: {why}"
            console.print(f"recommended for {target}: [bold]{escape(choice['file'])}[/bold] ({escape(said)})")


def artifact_table(raw: dict) -> Table:
    """Every artifact; beside `top1`, the source val and target val top-1 where measured."""
    table = Table(title="edgetune: artifacts", title_justify="left", caption=figures.agreement_note(raw),
                  caption_justify="left")
    keys = ["top1"] + [k for k in ("top1_source", "top1_target")
                       if any(a.get(k) is not None for a in raw["artifacts"])]
    left = ("artifact", "target", "engine", "precision", "candidate")  # the candidate each ships
    for col in (*left[:4], *(figures.name(k, raw) for k in keys), *NUMERIC, left[4]):
        table.add_column(col, justify="left" if col in left else "right")
    for a in raw["artifacts"]:
        p50 = f"{a['latency_ms']['p50']:.2f}" if a["latency_ms"] else "on device"
        table.add_row(a["file"], a["target"], a["backend"], a["precision"],
                      *(figures.pct(a.get(k)) or "-" for k in keys), p50, f"{a['size_bytes'] / 1e6:.1f}",
                      a.get("candidate") or (a["calibration"] or {}).get("candidate", ""))
    return table


def candidate_table(raw: dict, target: str = "cpu") -> Table:
    """A target's candidates, judged by the same figure as the artifacts: the CPU's in every
    engine, timed side by side on this machine; TensorRT's PTQ, QAT and layers-in-float graphs,
    timed only on the device. A QAT row says what it trained."""
    title = ("cpu candidates, every engine (timed side by side on this machine)" if target == "cpu"
             else f"{target} candidates (PTQ, QAT, layers in float; timed on the device)")
    cand = Table(title=title, title_justify="left")
    for col in ("candidate", "engine", "precision", figures.name("top1", raw), "p50 ms", "size MB", "float nodes",
                "ships as", "verdict"):
        cand.add_column(col)
    for r in raw["candidates"][target]:
        qat = r.get("qat")
        verdict = r["verdict"] + (f" (QAT: {qat['epochs']} epoch(s) at lr {qat['lr']:g}, {qat['trained']}; "
                                  f"PTQ {qat['ptq_top1']:.2%})" if qat else "")
        cand.add_row(r["candidate"], r.get("backend", "onnxruntime"), r.get("precision", ""), f"{r['top1']:.2%}",
                     f"{r['p50_ms']:.2f}" if r["p50_ms"] is not None else "-", f"{(r['size_bytes'] or 0) / 1e6:.1f}",
                     str(r["float_nodes"]), r.get("file") or "", Text(verdict))
    return cand
