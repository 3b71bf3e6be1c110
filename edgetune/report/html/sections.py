"""The report's numbers, shaped from the manifest (as JSON) for the page and its plots.

Tolerant by design: a manifest from an older or newer edgetune, with fields missing or
added (an adaptation's `top1_target`, a search's trials), still gives a page.
"""

from __future__ import annotations

import re

_TOP1_DOMAIN = re.compile(r"^top1_(\w+)$")


def fmt(x, digits: int) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def pct(x) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def input_text(inp: dict) -> str:
    size = inp.get("size") or ["?", "?"]
    return f"3×{size[0]}×{size[1]} {inp.get('layout', 'NCHW')} (resize {inp.get('resize', '?')})"


def fp32_artifact(manifest: dict) -> dict | None:
    return next((a for a in manifest.get("artifacts", []) if a.get("precision") == "fp32"), None)


def floor(manifest: dict) -> float | None:
    """The lowest top-1 an artifact may have: fp32's minus the accuracy budget."""
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
    """CPU candidate name -> the artifact file that holds it (fp32, and the INT8 one kept)."""
    files = {}
    for a in manifest.get("artifacts", []):
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
    cards = []
    fp32 = fp32_artifact(manifest)
    if fp32 and fp32.get("top1") is not None:
        ev = manifest.get("evaluation") or {}
        cards.append(("val top-1 (fp32)", pct(fp32["top1"]), f"{ev.get('images', '?')} validation images"))
    rec = ((manifest.get("recommended") or {}).get("cpu") or {}).get("file")
    art = next((a for a in manifest.get("artifacts", []) if a["file"] == rec), None)
    if art:
        lat = art.get("latency_ms") or {}
        cards.append(("recommended for cpu", f"{art.get('precision', '')} · {pct(art.get('top1'))}",
                      f"{rec}, {fmt(lat.get('p50'), 2)} ms p50"))
        base = (fp32 or {}).get("latency_ms") or {}
        if base.get("p50") and lat.get("p50"):
            size = (fp32.get("size_bytes") or 0) / max(art.get("size_bytes") or 1, 1)
            cards.append(("vs fp32", f"{base['p50'] / lat['p50']:.2f}× as fast",
                          f"{size:.1f}× smaller file" if art is not fp32 else "fp32 is the fastest within budget"))
    history = data.get("history") or []
    if history:
        best = max(history, key=lambda r: r.get("top1", -1))
        secs = sum(r.get("seconds") or 0 for r in history)
        cards.append(("training", f"{len(history)} epochs",
                      f"best val top-1 {pct(best.get('top1'))} at epoch {best.get('epoch')}; "
                      + (f"{secs / 60:.1f} min" if secs >= 120 else f"{secs:.0f} s")))
    return cards


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
    return rows, (["top1"] + domains if rows else [])


def domain_label(key: str) -> str:
    if key == "top1":
        return "source (val)"
    return _TOP1_DOMAIN.match(key).group(1).replace("_", " ")


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
