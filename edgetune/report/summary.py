"""The end of `edgetune run` / `export`: what was made, then commands ready to paste. Torch-free."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from edgetune.bundle import Manifest
from edgetune.files import REPORT_HTML


def summary_lines(out: str | Path, manifest: Manifest) -> tuple[list[str], list[str]]:
    """(summary lines, next-step lines), plain text."""
    from edgetune.report.html.collect import load_cache

    out = Path(out)
    data = load_cache(out)
    classes = manifest.classes
    inp = manifest.input
    lines = [f"model     {manifest.model.get('arch')}, {len(classes)} classes, "
             f"input 3×{inp['size'][0]}×{inp['size'][1]}"]
    history = data.get("history") or []
    if history:
        best = max(history, key=lambda r: r.get("top1", -1))
        lines[0] += (f"; {len(history)} epochs, best val top-1 {best.get('top1', 0):.2%} "
                     f"at epoch {best.get('epoch')}")
    fp32 = next((a for a in manifest.artifacts if a.precision == "fp32"), None)
    for target, rec in manifest.recommended.items():
        if rec:
            lines.append(f"{target:<9} {_artifact_text(manifest.artifact(rec['file']), fp32)}")
    report = out / REPORT_HTML
    if report.is_file():
        lines.append(f"report    {report}  (open it in a browser)")
    lines.append(f"bundle    {out}  (edgetune info {_q(out)})")

    ev = data.get("evaluation") or {}
    image = ev.get("example_image") or "IMAGE"
    steps = [f"edgetune predict {_q(out)} {_q(image)}",
             f"edgetune bench {_q(out)} --batch 1,8",
             "in Python (no PyTorch needed):",
             *("    " + line for line in python_snippet(out, image))]
    return lines, steps


def python_snippet(out, image) -> list[str]:
    """Three lines that load the bundle and classify one image."""
    return ["from edgetune import runtime",
            f"model = runtime.load({str(out)!r})",
            f"print(model.predict({str(image)!r}, topk=3))"]


def _artifact_text(a, fp32) -> str:
    top1 = f"top-1 {a.top1:.2%}" if a.top1 is not None else "top-1 ?"
    if not a.latency_ms:
        return f"{a.file}  {a.precision}  {top1}  (time it on the device: edgetune bench)"
    text = f"{a.file}  {a.precision}  {top1}  {a.latency_ms['p50']:.2f} ms p50"
    if fp32 is not None and fp32 is not a and fp32.latency_ms:
        text += (f"  ({fp32.latency_ms['p50'] / a.latency_ms['p50']:.2f}x the speed of fp32, "
                 f"{fp32.size_bytes / max(a.size_bytes, 1):.1f}x smaller)")
    return text


def _q(x) -> str:
    return shlex.quote(str(x))


def print_summary(out: str | Path, manifest: Manifest) -> None:
    lines, steps = summary_lines(out, manifest)
    console = Console() if sys.stdout.isatty() else Console(width=200, no_color=True, highlight=False)
    console.print("\n[bold]summary[/bold]", highlight=False)
    for line in lines:
        console.print("  " + escape(line), highlight=False, soft_wrap=True)
    console.print("[bold]next[/bold]", highlight=False)
    for line in steps:
        console.print("  " + escape(line), highlight=False, soft_wrap=True)
