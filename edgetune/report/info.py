"""`edgetune info BUNDLE`: what a bundle holds, at a glance. Torch-free: runs where it deploys."""

from __future__ import annotations

from pathlib import Path

from edgetune.bundle import read_manifest
from edgetune.files import REPORT_HTML
from edgetune.report import figures


def describe(bundle: str | Path) -> dict:
    """The bundle's classes, input, artifacts (precision, size, top-1, p50), recommendations
    and versions, as plain data (what `--json` prints)."""
    bundle = Path(bundle)
    m = read_manifest(bundle)
    recommended = {t: r for t, r in m.recommended.items() if r}
    for_file: dict[str, list[str]] = {}
    for target, r in recommended.items():
        for_file.setdefault(r["file"], []).append(target)
    return {
        "bundle": str(bundle),
        "format": f"{m.format} v{m.version}",
        "created": m.created,
        "model": {"arch": m.model.get("arch"), "weights": m.model.get("weights")},
        "classes": m.classes,
        "input": m.input,
        "artifacts": [{
            "file": a.file, "target": a.target, "backend": a.backend, "precision": a.precision,
            "size_bytes": a.size_bytes, "top1": a.top1,
            "p50_ms": (a.latency_ms or {}).get("p50"), "measured_on": (a.latency_ms or {}).get("device"),
            "recommended_for": for_file.get(a.file, []),
        } for a in m.artifacts],
        "top1_is": figures.name("top1", m.to_dict()),  # agreement with fp32 in an adapted run
        "recommended": recommended,
        # graphs taking pixels, not float tensors (--fold-preprocessing): not run by `load`
        "folded": {f: {k: r.get(k) for k in ("source", "layout", "pixels")} for f, r in m.folded.items()},
        "versions": m.versions,
        "report": REPORT_HTML if (bundle / REPORT_HTML).is_file() else None,
    }


def render(info: dict):
    """Rich tables for the terminal."""
    from rich.console import Group
    from rich.table import Table

    inp = info["input"]
    classes = info["classes"]
    shown = ", ".join(classes[:12]) + (f", … ({len(classes)} in all)" if len(classes) > 12 else "")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("bundle", f"{info['bundle']} ({info['format']}, created {info['created']})")
    head.add_row("model", f"{info['model']['arch']} {figures.origin(info['model'])}")
    head.add_row("classes", f"{len(classes)}: {shown}")
    head.add_row("input", f"{inp.get('name', 'input')}: float32 {inp.get('layout', 'NCHW')} 3×{inp['size'][0]}×"
                          f"{inp['size'][1]}, resize {inp.get('resize')} ({inp.get('interpolation', 'bilinear')}), "
                          f"mean {_floats(inp.get('mean'))}, std {_floats(inp.get('std'))}")
    if info.get("report"):
        head.add_row("report", str(Path(info["bundle"]) / info["report"]))

    arts = Table(title="artifacts", title_justify="left")
    judged = info.get("top1_is", "top-1")
    for col in ("artifact", "target", "precision", "size MB", judged, "p50 ms (b=1)", "recommended for"):
        arts.add_column(col, justify="right" if col in ("size MB", judged, "p50 ms (b=1)") else "left")
    for a in info["artifacts"]:
        arts.add_row(a["file"], a["target"], a["precision"], f"{a['size_bytes'] / 1e6:.1f}",
                     f"{a['top1']:.2%}" if a["top1"] is not None else "-",
                     f"{a['p50_ms']:.2f}" if a["p50_ms"] is not None else "on device",
                     ", ".join(a["recommended_for"]))
    recs = Table.grid(padding=(0, 2))
    recs.add_column(style="bold")
    recs.add_column()
    for target, r in info["recommended"].items():
        recs.add_row(f"recommended for {target}", f"{r['file']}: {r.get('why', '')}")
    for file, r in info.get("folded", {}).items():
        recs.add_row("preprocessing folded in", f"{file}: {r['source']} taking {r['pixels']} {r['layout']} pixels")
    versions = "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return Group(head, arts, recs, versions)


def _floats(xs) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in xs or []) + "]"
