"""The report's numbers, shaped from the manifest (as JSON) for the page and its plots.

Tolerant by design: a manifest from an older or newer edgetune, with fields missing or
added (an adaptation's `top1_target`, a search's trials), still gives a page.
"""

from __future__ import annotations

import re

from edgetune.report import figures
from edgetune.report.figures import fp32_artifact, pct

_TOP1_DOMAIN = re.compile(r"^top1_(\w+)$")


def fmt(x, digits: int) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def input_text(inp: dict) -> str:
    size = inp.get("size") or ["?", "?"]
    return f"3×{size[0]}×{size[1]} {inp.get('layout', 'NCHW')} (resize {inp.get('resize', '?')})"


def floor(manifest: dict) -> float | None:
    """The lowest `top1` an artifact may have: fp32's minus the accuracy budget (in a run
    judged by agreement, 100% minus the budget)."""
    fp32 = fp32_artifact(manifest)
    drop = (manifest.get("evaluation") or {}).get("max_drop")
    if fp32 is None or fp32.get("top1") is None or drop is None:
        return None
    return fp32["top1"] - drop / 100.0


def recommended_targets(manifest: dict) -> dict[str, list[str]]:
    """file -> the targets it is recommended for."""
    out: dict[str, list[str]] = {}
    for target, rec in (manifest.get("recommended") or {}).items():
        if rec and rec.get("file"):
            out.setdefault(rec["file"], []).append(target)
    return out


def _candidate_files(manifest: dict) -> dict[str, str]:
    """CPU candidate name -> the artifact file that ships it (a version 1 bundle: fp32, and
    the INT8 one kept, named by its calibration)."""
    files = {}
    for a in manifest.get("artifacts", []):
        if a.get("candidate"):
            files[a["candidate"]] = a["file"]
            continue
        if a.get("target") != "cpu":
            continue
        if a.get("precision") == "fp32":
            files["fp32"] = a["file"]
        name = (a.get("calibration") or {}).get("candidate")
        if name:
            files[name] = a["file"]
    return files


def latency_points(manifest: dict) -> tuple[list[dict], list[str]]:
    """Points for the accuracy/latency plot (every CPU candidate, every other timed artifact)
    and the artifacts that carry no latency here."""
    rec = {t: (r or {}).get("file") for t, r in (manifest.get("recommended") or {}).items()}
    files = _candidate_files(manifest)
    points, covered = [], set()
    for r in (manifest.get("candidates") or {}).get("cpu") or []:
        if r.get("top1") is None or r.get("p50_ms") is None:
            continue
        file = files.get(r["candidate"])
        covered.add(file)
        device = next((a.get("latency_ms", {}) or {} for a in manifest["artifacts"] if a["file"] == file), {})
        points.append({"label": r["candidate"] + (f" ({file})" if file else ""), "top1": r["top1"],
                       "p50": r["p50_ms"], "group": "cpu candidates", "device": device.get("device"),
                       "recommended": file is not None and file == rec.get("cpu")})
    untimed = []
    for a in manifest.get("artifacts", []):
        if a["file"] in covered:
            continue
        lat = a.get("latency_ms") or {}
        if lat.get("p50") is None or a.get("top1") is None:
            untimed.append(a["file"])
            continue
        points.append({"label": a["file"], "top1": a["top1"], "p50": lat["p50"],
                       "group": f"{a.get('target')} ({a.get('backend')})", "device": lat.get("device"),
                       "recommended": rec.get(a.get("target")) == a["file"]})
    return points, untimed


def glance(manifest: dict, data: dict) -> list[tuple[str, str, str]]:
    """The cards at the top: (title, value, small print)."""
    cards = accuracy_cards(manifest)
    fp32 = fp32_artifact(manifest)
    rec = ((manifest.get("recommended") or {}).get("cpu") or {}).get("file")
    art = next((a for a in manifest.get("artifacts", []) if a["file"] == rec), None)
    if art:
        lat = art.get("latency_ms") or {}
        cards.append(recommended_card(manifest, art))
        base = (fp32 or {}).get("latency_ms") or {}
        if base.get("p50") and lat.get("p50"):
            size = (fp32.get("size_bytes") or 0) / max(art.get("size_bytes") or 1, 1)
            cards.append(("vs fp32", f"{base['p50'] / lat['p50']:.2f}× as fast",
                          f"{size:.1f}× smaller file" if art is not fp32 else "fp32 is the fastest within budget"))
    history = data.get("history") or []
    if history:
        best = max(history, key=lambda r: r.get("top1", -1))
        secs = sum(r.get("seconds") or 0 for r in history)
        before = " (before adaptation)" if figures.adapted(manifest) else ""
        cards.append(("training", f"{len(history)} epochs",
                      f"best val top-1 {pct(best.get('top1'))} at epoch {best.get('epoch')}{before}; "
                      + (f"{secs / 60:.1f} min" if secs >= 120 else f"{secs:.0f} s")))
    return cards


def accuracy_cards(manifest: dict) -> list[tuple[str, str, str]]:
    """The headline figure of fp32 and, in an adapted run measured on both domains, the target's too."""
    head = figures.headline(manifest)
    if head is None:
        return []
    cards = [head]
    fp32 = fp32_artifact(manifest)
    if figures.accuracy_key(manifest) == "top1_source" and fp32.get("top1_target") is not None:
        cards.append((f"{figures.name('top1_target', manifest)} (fp32)", pct(fp32["top1_target"]),
                      figures.measured_on("top1_target", manifest)))
    return cards


def recommended_card(manifest: dict, art: dict) -> tuple[str, str, str]:
    """The CPU's artifact by the headline's figure; in a run judged by agreement, that figure
    named and the agreement beside it."""
    lat = art.get("latency_ms") or {}
    where = f"{art['file']}, {fmt(lat.get('p50'), 2)} ms p50"
    value = f"{art.get('precision', '')} · {pct(art.get('top1'))}"
    if not figures.by_agreement(manifest):
        return "recommended for cpu", value, where
    key = figures.accuracy_key(manifest)
    if key is None or art.get(key) is None:
        return ("recommended for cpu", value,
                f"{figures.AGREEMENT} on {figures.measured_on('top1', manifest)}; {where}")
    return ("recommended for cpu", f"{art.get('precision', '')} · {pct(art[key])}",
            f"{figures.name(key, manifest)}; {figures.AGREEMENT} {pct(art.get('top1'))}; {where}")


def calibration(artifact: dict) -> tuple[str, list[list]]:
    """How an INT8 artifact was calibrated (one sentence) and its layers kept in float."""
    c = artifact.get("calibration") or {}
    ops = c.get("op_types")
    scope = ("every quantizable op in INT8" if ops in (None, "all") else
             f"only {', '.join(ops)} in INT8, other ops in float" if isinstance(ops, list) else str(ops))
    parts = [f"{c.get('method', '?')} calibration on {c.get('samples', '?')} images",
             f"recipe {c.get('recipe', '?')}"]
    if c.get("candidate"):
        parts.append(f"candidate {c['candidate']}: {scope}")
    if c.get("lint"):
        parts.append(f"TensorRT QDQ lint {c['lint']}")
    rows = [[n.get("node", ""), n.get("op_type", ""), fmt(n.get("gain_db"), 2), n.get("why", "")]
            for n in c.get("float_nodes") or [] if isinstance(n, dict)]
    return "; ".join(parts), rows


def domain_rows(manifest: dict) -> tuple[list[dict], list[str]]:
    """Artifacts that carry accuracy on other domains (`top1_<domain>` fields beside `top1`)."""
    domains: list[str] = []
    rows = []
    for a in manifest.get("artifacts", []):
        extra = {k: v for k, v in a.items() if _TOP1_DOMAIN.match(k) and isinstance(v, (int, float))}
        if not extra:
            continue
        for k in extra:
            if k not in domains:
                domains.append(k)
        rows.append({"label": a["file"], "top1": a.get("top1"), **extra})
    domains.sort(key=lambda k: k != "top1_source")  # source before target, whatever the manifest's order
    return rows, (["top1"] + domains if rows else [])


def domain_label(key: str, manifest: dict) -> str:
    """A domain column's name: `top1` is the source val top-1, unless it is agreement with fp32."""
    if key == "top1" and not figures.by_agreement(manifest):
        return figures.NAMES["top1_source"]
    return figures.name(key, manifest)


def chart_domains(manifest: dict, domains: list[str]) -> list[str]:
    """The domains the accuracy chart draws: agreement with fp32 is no accuracy, and a bar
    beside the accuracies would read as one (fp32's is 100% by construction)."""
    return [d for d in domains if not (d == "top1" and figures.by_agreement(manifest))]


def adaptation_effect(manifest: dict) -> str | None:
    """Source val top-1 before adaptation and after it (fp32), where both are known."""
    before = ((manifest.get("evaluation") or {}).get("source_val") or {}).get("top1_before_adaptation")
    after = (fp32_artifact(manifest) or {}).get("top1_source")
    if before is None or after is None:
        return None
    return (f"Source val top-1: {pct(before)} before adaptation (training's best epoch), "
            f"{pct(after)} after it (fp32).")


def judged_axis(manifest: dict) -> dict:
    """The accuracy/latency plot's names for its axis, floor line and title, where `top1` is agreement."""
    if not figures.by_agreement(manifest):
        return {}
    return {"measure": figures.AGREEMENT, "floor_name": "agreement floor",
            "title": f"{figures.AGREEMENT} against latency"}


def no_labels(manifest: dict) -> str:
    """Why a run judged by agreement draws no confusion matrix, and what it would need."""
    return ("No confusion matrix or worst-classified images: this run judged its artifacts by "
            f"{figures.agreement_note(manifest)}. Target images carry no labels: fp32's own "
            "predictions would be the truth, and every fp32 answer right. Both need labelled images, "
            "the source data's val split: pass --data DIR to edgetune adapt (edgetune report finds it "
            "through the run's config.yaml).")


def adaptation_fields(manifest: dict) -> list[list]:
    """Manifest entries about adaptation or domains (whatever their shape), flattened."""
    rows = []
    for key, value in manifest.items():
        if not re.search(r"adapt|domain", key):
            continue
        if isinstance(value, dict):
            rows += [[f"{key}.{k}", _text(v)] for k, v in value.items()]
        else:
            rows.append([key, _text(value)])
    return rows


def _text(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(_text, v))
    return str(v)


def trial_table(rows: list[dict]) -> tuple[list[list], list[float | None], list[str]]:
    """From Optuna's trials_dataframe() CSV: the best trials as a table (header first),
    every trial's objective, and the searched parameters."""
    def value(r):
        try:
            return float(r.get("value", ""))
        except ValueError:
            return None

    values = [value(r) if r.get("state", "COMPLETE") == "COMPLETE" else None for r in rows]
    params = [k for k in (rows[0] if rows else {}) if k.startswith("params_")]
    ranked = sorted((i for i, v in enumerate(values) if v is not None), key=lambda i: -values[i])[:5]
    head = ["trial", "objective"] + [p.removeprefix("params_") for p in params]
    table = [head] + [[rows[i].get("number", i), f"{values[i]:.4g}"] + [rows[i].get(p, "") for p in params]
                      for i in ranked]
    return (table if ranked else []), values, params
