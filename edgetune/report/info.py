"""`edgetune info BUNDLE`: what a bundle holds, at a glance. Torch-free: runs where it deploys."""

from __future__ import annotations

from pathlib import Path

from edgetune.bundle import read_manifest
from edgetune.files import REPORT_HTML
from edgetune.report import figures
from edgetune.runtime import devices


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
            "size_bytes": a.size_bytes, "graph": a.graph, "top1": a.top1, "extra": a.extra,
            "p50_ms": (a.latency_ms or {}).get("p50"), "measured_on": (a.latency_ms or {}).get("device"),
            "recommended_for": for_file.get(a.file, []),
        } for a in m.artifacts],
        "top1_is": figures.name("top1", m.to_dict()),  # agreement with fp32 in an adapted run
        "recommended": recommended,
        "devices": devices.list_choices(bundle, m),  # `edgetune bench --choose` on each device
        # graphs taking pixels, not float tensors (--fold-preprocessing): not run by `load`
        "folded": {f: {k: r.get(k) for k in ("source", "layout", "pixels")} for f, r in m.folded.items()},
        "versions": m.versions,
        "report": REPORT_HTML if (bundle / REPORT_HTML).is_file() else None,
    }


def render(info: dict):
    """Rich tables for the terminal."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

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
    for col in ("artifact", "target", "engine", "precision", "size MB", judged, "p50 ms (b=1)", "recommended for"):
        arts.add_column(col, justify="right" if col in ("size MB", judged, "p50 ms (b=1)") else "left")
    for a in info["artifacts"]:
        size = f"= {a['graph']}" if a.get("graph") else f"{a['size_bytes'] / 1e6:.1f}"  # one file, two records
        arts.add_row(a["file"], a["target"], a["backend"], a["precision"], size,
                     f"{a['top1']:.2%}" if a["top1"] is not None else "-",
                     f"{a['p50_ms']:.2f}" if a["p50_ms"] is not None else "on device",
                     ", ".join(a["recommended_for"]))
    recs = Table.grid(padding=(0, 2))
    recs.add_column(style="bold")
    recs.add_column()
    for target, r in info["recommended"].items():
        recs.add_row(f"recommended for {target}", Text(f"{r['file']}: {r.get('why', '')}"))
    for d in info.get("devices") or []:
        here = " (this host)" if d["this_host"] else ""
        recs.add_row(f"chosen on {d['file']}{here}", Text(
            d["refused"] if "refused" in d else
            f"{d['chosen']} on {d['cpu']}, {d['cpus']} cores, "
            + ", ".join(f"{k} {v}" for k, v in (d["engines"] or {}).items()) + f" ({d['created']}): {d['why']}"))
    for file, r in info.get("folded", {}).items():
        recs.add_row("preprocessing folded in",
                     Text(f"{file}: {r['source']} taking {r['pixels']} {r['layout']} pixels"))
    versions = Text("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    return Group(head, arts, recs, versions)


def device_table(record: dict):
    """A device's timings (`edgetune bench --choose`), as `runtime.devices` records them."""
    from rich.table import Table
    from rich.text import Text

    host = record["host"]
    table = Table(title=f"CPU artifacts timed on this device: {host['cpu']}, {host['cpus']} cores",
                  title_justify="left")
    measure = record["settings"].get("measure", "top-1")
    for col in ("artifact", "engine", "precision", f"{measure} (export)", "p50 ms", "size MB", "verdict"):
        table.add_column(col, justify="right" if col in ("p50 ms", "size MB") or col.endswith("(export)")
                         else "left")
    for t in record["timings"]:
        table.add_row(t["file"], t["backend"], t["precision"], figures.pct(t["top1"]),
                      f"{t['latency']['p50']:.2f}", f"{t['size_bytes'] / 1e6:.1f}", Text(t["verdict"]))
    engines = ", ".join(f"{k} {v}" for k, v in host["engines"].items())
    skipped = [f"skipped {s['file']}: {s['why']}" for s in record["settings"].get("skipped", [])]
    table.caption = Text("\n".join([f"engines: {engines}; {record['settings']['rounds']} rounds of "
                                    f"{record['settings']['runs_per_round']} runs, batch 1", *skipped]))
    table.caption_justify = "left"
    return table


def _floats(xs) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in xs or []) + "]"
