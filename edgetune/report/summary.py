"""The end of `edgetune run` / `export`: what was made, then commands ready to paste. Torch-free."""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from edgetune.bundle import Manifest
from edgetune.files import REPORT_HTML
from edgetune.report import figures


def summary_lines(out: str | Path, manifest: Manifest) -> tuple[list[str], list[str]]:
    """(summary lines, next-step lines), plain text."""
    from edgetune.report.html.collect import load_cache

    out = Path(out)
    data = load_cache(out)
    classes = manifest.classes
    inp = manifest.input
    lines = [f"model     {manifest.model.get('arch')} {figures.origin(manifest.model)}, {len(classes)} classes, "
             f"input 3×{inp['size'][0]}×{inp['size'][1]}"]
    raw = manifest.to_dict()
    history = data.get("history") or []
    if history:
        best = max(history, key=lambda r: r.get("top1", -1))
        lines[0] += (f"; {len(history)} epochs, best val top-1 {best.get('top1', 0):.2%} "
                     f"at epoch {best.get('epoch')}" + (" (before adaptation)" if figures.adapted(raw) else ""))
    lines += judged_lines(raw)
    fp32 = next((a for a in manifest.artifacts if a.precision == "fp32"), None)
    for target, rec in manifest.recommended.items():
        if rec:
            lines.append(f"{target:<9} {_artifact_text(manifest.artifact(rec['file']), fp32, raw)}")
    lines += shipped_lines(out, manifest)
    report = out / REPORT_HTML
    if report.is_file():
        lines.append(f"report    {report}  (open it in a browser)")
    lines.append(f"bundle    {out}  (edgetune info {_q(out)})")

    image = example_image(data, raw)
    steps = [f"edgetune predict {_q(out)} {_q(image)}",
             f"edgetune bench {_q(out)} --batch 1,8",
             "in Python (no PyTorch needed):",
             *("    " + line for line in python_snippet(out, image))]
    return lines, steps


def shipped_lines(out: Path, manifest: Manifest) -> list[str]:
    """The CPU artifacts the bundle holds for the device to choose from, with what they cost."""
    cpu = [a for a in manifest.artifacts if a.target == "cpu"]
    if len(cpu) < 2:
        return []
    total = sum(a.size_bytes for a in cpu if not a.graph) / 1e6  # a shared file counts once

    def held(a) -> str:
        return f"the same file as {a.graph}" if a.graph else f"{a.size_bytes / 1e6:.1f} MB"

    return [f"shipped   {len(cpu)} CPU artifacts, {total:.1f} MB, for the device to choose from "
            f"(edgetune bench {_q(out)} --choose, on it): "
            + ", ".join(f"{a.file} ({a.backend} {a.precision}, {held(a)})" for a in cpu)]


def judged_lines(raw: dict) -> list[str]:
    """In a run judged by agreement, what that figure is and the accuracy fp32 has where
    labelled images were at hand; nothing otherwise (`top1` is then the val top-1)."""
    if not figures.by_agreement(raw):
        return []
    lines = [f"judged    by {figures.agreement_note(raw)}"]
    fp32 = figures.fp32_artifact(raw) or {}
    for key in ("top1_source", "top1_target"):
        if fp32.get(key) is not None:
            lines.append(f"{'source' if key == 'top1_source' else 'target':<9} fp32 {figures.name(key, raw)} "
                         f"{figures.pct(fp32[key])} on {figures.measured_on(key, raw)}")
    if figures.accuracy_key(raw) is None:
        lines.append("accuracy  not measured: no labelled images (--data gives the source val split, "
                     "--target-val labelled target images)")
    return lines


def example_image(data: dict, raw: dict) -> str:
    """An image to try `edgetune predict` on: a validation image the report saw classified
    right, else one INT8 was calibrated on (a target image in an adapted run)."""
    ev = data.get("evaluation") or {}
    if ev.get("example_image"):
        return ev["example_image"]
    cal = raw.get("calibration") or {}
    images = cal.get("images") or []
    if not images:
        return "IMAGE"
    return str(Path(cal["root"]) / images[0]) if cal.get("root") else str(images[0])


def python_snippet(out, image) -> list[str]:
    """Three lines that load the bundle and classify one image."""
    return ["from edgetune import runtime",
            f"model = runtime.load({str(out)!r})",
            f"print(model.predict({str(image)!r}, topk=3))"]


def _artifact_text(a, fp32, raw: dict) -> str:
    top1 = figures.describe(asdict(a), raw)
    if not a.latency_ms:
        return f"{a.file}  {a.precision}  {top1}  (time it on the device: edgetune bench)"
    text = f"{a.file}  {a.precision} on {a.backend}  {top1}  {a.latency_ms['p50']:.2f} ms p50"
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
