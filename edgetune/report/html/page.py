"""The report page: one self-contained HTML file (inline CSS, plots as base64 PNG, no script,
no external reference), so it opens offline and survives being mailed to a colleague."""

from __future__ import annotations

import html

from edgetune.report import figures
from edgetune.report.html import plots, sections

CSS = """
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 color:#1d2330;background:#f4f5f7;margin:0}
main{max-width:1100px;margin:0 auto;padding:20px 24px 40px}
header h1{font-size:24px;margin:8px 0 2px} header p{margin:0;color:#5b6474}
section{background:#fff;border:1px solid #e2e5ea;border-radius:10px;padding:14px 20px 18px;margin:18px 0}
h2{font-size:18px;margin:2px 0 8px} h3{font-size:15px;margin:14px 0 6px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(210px,1fr));gap:12px;margin-top:16px}
.card{background:#fff;border:1px solid #e2e5ea;border-radius:10px;padding:10px 14px}
.card .k{color:#5b6474;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:600;margin:2px 0} .card .s{color:#5b6474;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0}
th{text-align:left;font-weight:600;border-bottom:2px solid #d9dde3;padding:4px 8px;white-space:nowrap}
td{border-bottom:1px solid #eef0f3;padding:4px 8px;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.chosen td{background:#eaf6ec;font-weight:600}
img.plot{max-width:100%;height:auto;display:block;margin:8px auto}
.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start;justify-content:space-around}
.row img.plot{margin:0;max-width:49%}
.muted{color:#5b6474} .why{background:#f6f8fa;border-left:4px solid #2ca02c;padding:6px 12px;margin:8px 0}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f6f8fa;border:1px solid #e2e5ea;border-radius:6px;padding:8px 12px;overflow-x:auto;
 white-space:pre-wrap;word-break:break-all}
footer{color:#5b6474;font-size:12px;text-align:center;margin-top:24px}
"""


def render(manifest: dict, data: dict) -> str:
    m = manifest["model"]
    title = f"edgetune report: {m.get('arch', 'model')} on {len(m['classes'])} classes"
    body = [
        _header(title, manifest, data),
        _training(data.get("history") or []),
        _validation(manifest, data.get("evaluation")),
        _artifacts(manifest),
        _quantization(manifest),
        _domains(manifest),
        _search(data.get("trials")),
        _reproduce(manifest, data),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
            + "".join(b for b in body if b)
            + f"<footer>written by edgetune {esc(data.get('edgetune', ''))} · {esc(data.get('made_at', ''))}"
            "</footer></main></body></html>\n")


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def img(fig, alt: str) -> str:
    if fig is None:
        return ""
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{plots.b64(fig)}">'


def table(head: list[str] | None, rows: list[list], numeric: set[int] = frozenset(),
          chosen: set[int] = frozenset()) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head or [])
    trs = []
    for k, r in enumerate(rows):
        tds = "".join(f'<td class="n">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
                      for i, c in enumerate(r))
        trs.append(f'<tr class="chosen">{tds}</tr>' if k in chosen else f"<tr>{tds}</tr>")
    thead = f"<thead><tr>{th}</tr></thead>" if th else ""
    return f"<table>{thead}<tbody>{''.join(trs)}</tbody></table>"


def section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{"".join(p for p in parts if p)}</section>'


def _header(title: str, manifest: dict, data: dict) -> str:
    cards = "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div>'
        f'<div class="s">{esc(s)}</div></div>' for k, v, s in sections.glance(manifest, data))
    m = manifest["model"]
    sub = (f"{m.get('arch')} {figures.origin(m)}; input {sections.input_text(manifest['input'])}; "
           f"created {manifest.get('created', '')}")
    return f"<header><h1>{esc(title)}</h1><p>{esc(sub)}</p></header><div class=\"cards\">{cards}</div>"


def _training(history: list[dict]) -> str:
    if not history:
        return section("training", "Training",
                       '<p class="muted">No training history: the checkpoint this bundle was exported '
                       "from records none (or was not at hand).</p>")
    labels = [plots.stage_label(r) if "stage" in r or "unfreeze" in r else "" for r in history]
    note = ("Shaded bands and dashed lines mark the unfreezing stages (what trained besides the head)."
            if len(set(labels)) > 1 else "One stage: the same layers trained throughout.")
    rows = [[r.get("epoch"), sections.fmt(r.get("train_loss"), 4), sections.fmt(r.get("val_loss"), 4),
             sections.pct(r.get("top1")), sections.pct(r.get("top5")), label,
             "yes" if r.get("cached") else "", sections.fmt(r.get("seconds"), 1)]
            for r, label in zip(history, labels)]
    best = max(range(len(history)), key=lambda i: history[i].get("top1", -1))
    return section("training", "Training",
                   img(plots.training_curves(history), "loss and top-1 per epoch"),
                   f'<p class="muted">{note} The best epoch (green star) is the checkpoint exported.</p>',
                   "<details><summary>per-epoch numbers</summary>"
                   + table(["epoch", "train loss", "val loss", "val top-1", "val top-5", "trained",
                            "feature cache", "seconds"], rows, numeric={0, 1, 2, 3, 4, 7}, chosen={best})
                   + "</details>")


def _validation(manifest: dict, ev: dict | None) -> str:
    agreement = figures.by_agreement(manifest)
    if not ev and agreement:
        return section("validation", "Validation", f'<p class="muted">{esc(sections.no_labels(manifest))}</p>')
    if not ev:
        return section("validation", "Validation",
                       '<p class="muted">No per-image validation results: the validation images '
                       "were not found (re-run <code>edgetune export</code> with <code>--data</code>).</p>")
    classes = manifest["model"]["classes"]
    # In an adapted run the artifacts were judged on target images; these are the labelled source ones.
    images = "source val images (the target images carry no labels)" if agreement else "validation images"
    intro = (f'<p>{ev["images"]} {images}, classified by <code>{esc(ev["artifact"])}</code> '
             f'(the artifact recommended for the CPU): top-1 {sections.pct(ev["top1"])}.</p>')
    grid = ('<div class="row">' + img(plots.confusion_matrix(ev["confusion"], classes), "confusion matrix")
            + img(plots.per_class_accuracy(ev["confusion"], classes), "per-class accuracy") + "</div>")
    worst = ev.get("worst") or []
    wrong = sum(w["pred"] != w["label"] for w in worst)
    caption = (f"The {len(worst)} hardest validation images: {wrong} misclassified (red), most confidently "
               "wrong first, then the correct ones the model was least sure of."
               if worst else "")
    return section("validation", "Validation", intro, grid,
                   "<h3>Worst-classified images</h3>" if worst else "",
                   f'<p class="muted">{esc(caption)}</p>' if caption else "",
                   img(plots.worst_images(worst, classes), "worst-classified validation images"))


def _artifacts(manifest: dict) -> str:
    points, untimed = sections.latency_points(manifest)
    floor = sections.floor(manifest)
    rec_by_file = sections.recommended_targets(manifest)
    rows, chosen = [], set()
    for k, a in enumerate(manifest.get("artifacts", [])):
        lat = a.get("latency_ms") or {}
        if a["file"] in rec_by_file:
            chosen.add(k)
        rows.append([a["file"], a.get("target", ""), a.get("backend", ""), a.get("precision", ""),
                     sections.pct(a.get("top1")), sections.fmt(lat.get("p50"), 2), sections.fmt(lat.get("p99"), 2),
                     sections.fmt((a.get("size_bytes") or 0) / 1e6, 1), ", ".join(rec_by_file.get(a["file"], []))])
    notes = "".join(f"<li><code>{esc(a['file'])}</code>: {esc(a['notes'])}</li>"
                    for a in manifest.get("artifacts", []) if a.get("notes"))
    untimed_p = (f'<p class="muted">Not timed on this machine (made for another device; time them there '
                 f'with <code>edgetune bench</code>): {esc(", ".join(untimed))}.</p>' if untimed else "")
    plot = (img(plots.accuracy_latency(points, floor, **sections.judged_axis(manifest)), "accuracy against latency")
            if points else "")
    devices = sorted({p["device"] for p in points if p.get("device")})
    below = ("disagree with fp32 more than the budget allows. " + figures.agreement_note(manifest) + "."
             if figures.by_agreement(manifest) else "lose more accuracy than the budget allows.")
    return section("artifacts", "Artifacts: accuracy and latency", plot,
                   f'<p class="muted">Latency: median of timed runs at batch 1 on {esc("; ".join(devices))}. '
                   f"Points below the red line {esc(below)}</p>" if plot else "",
                   untimed_p,
                   table(["artifact", "target", "backend", "precision", figures.name("top1", manifest), "p50 ms",
                          "p99 ms", "MB", "recommended for"], rows, numeric={4, 5, 6, 7}, chosen=chosen),
                   f'<ul class="muted">{notes}</ul>' if notes else "")


def _qat_words(qat: dict | None) -> str:
    if not qat:
        return "post-training quantization: nothing trained"
    return f"{qat['epochs']} epoch(s) at lr {qat['lr']:g}: {qat['trained']} ({qat['seconds']:.0f} s)"


def _quantization(manifest: dict) -> str:
    int8 = [a for a in manifest.get("artifacts", []) if a.get("precision") == "int8" and a.get("calibration")]
    cands = (manifest.get("candidates") or {}).get("cpu") or []
    trt = (manifest.get("candidates") or {}).get("tensorrt") or []  # PTQ, QAT, layers in float
    if not int8 and not cands:
        return ""
    parts = []
    for target, rec in (manifest.get("recommended") or {}).items():
        if rec:
            parts.append(f'<div class="why"><b>{esc(target)}</b>: <code>{esc(rec["file"])}</code> '
                         f'&mdash; {esc(rec.get("why", ""))}</div>')
    if cands:
        chosen = {k for k, r in enumerate(cands) if str(r.get("verdict", "")).startswith("chosen")}
        rows = [[r.get("candidate"), r.get("backend", "onnxruntime"), r.get("precision", ""),
                 sections.pct(r.get("top1")), sections.fmt(r.get("p50_ms"), 2),
                 sections.fmt((r.get("size_bytes") or 0) / 1e6, 1), r.get("float_nodes", ""),
                 r.get("file") or "", r.get("verdict", "") + (f" ({_qat_words(r['qat'])})" if r.get("qat") else "")]
                for r in cands]
        parts += ["<h3>CPU candidates in every engine, timed side by side</h3>",
                  table(["candidate", "engine", "precision", figures.name("top1", manifest), "p50 ms", "MB",
                         "layers in float", "ships as", "verdict"],
                        rows, numeric={3, 4, 5, 6}, chosen=chosen)]
    if trt:
        rows = [[r.get("candidate"), sections.pct(r.get("top1")), r.get("float_nodes", ""), _qat_words(r.get("qat")),
                 r.get("verdict", "")] for r in trt]
        chosen = {k for k, r in enumerate(trt) if r.get("verdict", "").startswith("chosen")}
        parts += ["<h3>TensorRT: post-training quantization, quantization-aware fine-tuning, layers in float</h3>",
                  table(["candidate", figures.name("top1", manifest), "layers in float", "what was trained",
                         "verdict"], rows, numeric={1, 2}, chosen=chosen)]
    for a in int8:
        how, floats = sections.calibration(a)
        parts.append(f"<h3><code>{esc(a['file'])}</code></h3><p>{esc(how)}.</p>")
        parts.append(table(["layer kept in float", "op", "logit SNR gain dB", "why"], floats, numeric={2})
                     if floats else '<p class="muted">No layer kept in float.</p>')
    return section("quantization", "Quantization: what was chosen and why", *parts)


def _domains(manifest: dict) -> str:
    rows, domains = sections.domain_rows(manifest)
    extra = sections.adaptation_fields(manifest)
    if not rows and not extra:
        return ""
    head = ["artifact"] + [sections.domain_label(d, manifest) for d in domains]
    table_rows = [[r["label"]] + [sections.pct(r.get(d)) for d in domains] for r in rows]
    charted = sections.chart_domains(manifest, domains)
    effect = sections.adaptation_effect(manifest)
    note = figures.agreement_note(manifest) if "top1" in domains else None
    return section("domains", "Source and target domains",
                   img(_domain_plot(manifest, rows, charted), "source vs target accuracy") if rows and charted else "",
                   f"<p>{esc(effect)}</p>" if effect else "",
                   table(head, table_rows, numeric=set(range(1, len(head)))) if rows else "",
                   f'<p class="muted">{esc(note)}.</p>' if rows and note else "",
                   table(["setting", "value"], extra) if extra else "")


def _domain_plot(manifest: dict, rows: list[dict], domains: list[str]):
    names = [sections.domain_label(d, manifest) for d in domains]
    relabelled = [{"label": r["label"], **{n: r.get(d) for n, d in zip(names, domains)}} for r in rows]
    return plots.domain_accuracy(relabelled, names)


def _pareto_plot(trials: dict):
    """Every complete trial and the front of `pareto.csv`, with its budget line."""
    points = [(float(r["latency_ms"]), float(r["value"])) for r in trials["rows"]
              if r.get("state") == "COMPLETE" and r.get("latency_ms") and r.get("value")]
    front = [(float(r["latency_ms"]), float(r["top1"])) for r in trials["pareto"]]
    budget = trials["pareto"][0].get("budget_ms")
    return plots.pareto(points, front, float(budget) if budget else None)


def _search(trials: dict | None) -> str:
    if not trials or not trials.get("rows"):
        return ""
    rows, values, params = sections.trial_table(trials["rows"])
    parts = [f'<p class="muted">{len(trials["rows"])} trials from <code>{esc(trials["file"])}</code>.</p>']
    if any(v is not None for v in values):
        parts.append('<div class="row">' + img(plots.trial_history(values), "optimisation history")
                     + (img(plots.importances(trials["importances"]), "parameter importances")
                        if trials.get("importances") else "") + "</div>")
        if params:
            parts.append(img(plots.param_slices(trials["rows"], params, values), "objective per parameter"))
    if trials.get("pareto"):
        parts.append(img(_pareto_plot(trials), "accuracy against latency"))
    if rows:
        parts += ["<h3>Best trials</h3>", table(rows[0], rows[1:], numeric={0, 1})]
    return section("search", "Search", *parts)


def _reproduce(manifest: dict, data: dict) -> str:
    host = data.get("host") or {}
    host_rows = [[k, v] for k, v in host.items() if v not in (None, "")]
    versions = [[k, v] for k, v in (manifest.get("versions") or {}).items()]
    made = f"<h3>Made by</h3><pre>{esc(data.get('made_by', ''))}</pre>"
    if data.get("rebuilt_by"):
        made += (f"<p class=\"muted\">Page rebuilt at {esc(data.get('rebuilt_at'))} by</p>"
                 f"<pre>{esc(data['rebuilt_by'])}</pre>")
    return section("reproduce", "Host, versions and command", made,
                   '<div class="row"><div style="flex:1;min-width:300px"><h3>Host</h3>'
                   + table(None, host_rows) + '</div><div style="flex:1;min-width:300px"><h3>Versions</h3>'
                   + table(["library", "version"], versions) + "</div></div>")
