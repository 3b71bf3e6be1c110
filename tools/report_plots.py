"""Write the report's plots of a run folder as PNG files (the README's figure comes from here).

    python tools/report_plots.py runs/demo docs --prefix demo- --only training

Uses the same data and drawing code as OUT/report.html (edgetune.report.html).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgetune.report.html import collect, plots, sections


def figures(out: Path) -> dict:
    manifest = collect.read_manifest_raw(out)
    data = collect.load_cache(out)
    figs = {}
    if data.get("history"):
        figs["training"] = plots.training_curves(data["history"])
    ev = collect.labelled(manifest, data.get("evaluation"))
    classes = manifest["model"]["classes"]
    if ev:
        figs["confusion"] = plots.confusion_matrix(ev["confusion"], classes)
        figs["per-class"] = plots.per_class_accuracy(ev["confusion"], classes)
        figs["worst"] = plots.worst_images(ev["worst"], classes)
    points, _ = sections.latency_points(manifest)
    if points:
        figs["accuracy-latency"] = plots.accuracy_latency(points, sections.floor(manifest),
                                                          **sections.judged_axis(manifest))
    return {k: v for k, v in figs.items() if v is not None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="a folder written by `edgetune run` or `export` (with report.json)")
    p.add_argument("dest", type=Path, help="folder for the PNG files")
    p.add_argument("--prefix", default="", help="file name prefix, e.g. demo-")
    p.add_argument("--only", help="comma list of plots: training, confusion, per-class, worst, accuracy-latency")
    args = p.parse_args()
    figs = figures(args.out)
    wanted = args.only.split(",") if args.only else list(figs)
    missing = [w for w in wanted if w not in figs]
    if missing:
        p.error(f"no {', '.join(missing)} plot for {args.out}; it has: {', '.join(figs)}")
    args.dest.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        path = args.dest / f"{args.prefix}{name}.png"
        path.write_bytes(plots.png(figs[name]))
        print(path)


if __name__ == "__main__":
    main()
