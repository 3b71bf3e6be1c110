"""What a search leaves: trials.csv after every trial, best.yaml, importances.json, a summary.

trials.csv has one row per trial (number, state, value, epochs, seconds, params_<flag>...),
rewritten atomically from the storage, so it is whole whichever worker wrote it last. The
HTML report reads it and importances.json (edgetune.report.html).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from edgetune.atomic import write_text
from edgetune.files import BEST_YAML, IMPORTANCES, TRIALS_CSV


def trial_rows(study) -> list[dict]:
    trials = study.get_trials(deepcopy=False)
    params = sorted({p for t in trials for p in t.params})
    retries = {_retry_of(t): t.number for t in trials if _retry_of(t) is not None}
    rows = []
    for t in trials:
        seconds = ((t.datetime_complete - t.datetime_start).total_seconds()
                   if t.datetime_complete and t.datetime_start else None)
        retry = _retry_of(t)
        note = t.user_attrs.get("note", "")
        if t.state.name == "FAIL" and not note and t.number in retries:
            note = f"its process stopped (no heartbeat); retried as trial {retries[t.number]}"
        rows.append({
            "number": t.number, "state": t.state.name,
            "value": "" if t.value is None else round(t.value, 4),
            "epochs": t.user_attrs.get("epochs", ""),
            "seconds": "" if seconds is None else round(seconds, 1),
            **{f"params_{p}": t.params.get(p, "") for p in params},
            "retry_of": "" if retry is None else retry,
            "note": note,
        })
    return rows


def _retry_of(trial) -> int | None:
    """The trial this one retries: after a heartbeat went stale (Optuna's retry callback) or
    a Ctrl-C (ours)."""
    return trial.system_attrs.get("failed_trial", trial.user_attrs.get("retry_of"))


def write_trials_csv(out: Path, study) -> Path:
    rows = trial_rows(study)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text(out / TRIALS_CSV, buf.getvalue())
    return out / TRIALS_CSV


def write_best(out: Path, study, settings: dict, export_settings: dict, objective: str) -> Path | None:
    """best.yaml: every flag of the best trial, for `edgetune run --config OUT/best.yaml`."""
    import yaml

    best = best_trial(study)
    if best is None:
        return None
    what = "val top-1" if objective == "top1" else "val top-1 of its CPU INT8 artifact"
    header = (f"# edgetune tune: the best of {len(study.trials)} trials, trial {best.number}, {what} "
              f"{best.value:.2%}.\n# Retrain and ship it: edgetune run --config {out / BEST_YAML} --out DIR\n")
    body = yaml.safe_dump({**settings, **best.user_attrs["config"], **export_settings}, sort_keys=False)
    write_text(out / BEST_YAML, header + body)
    return out / BEST_YAML


def best_trial(study):
    """The complete trial with the highest value (the earliest of equals), or None."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value) if complete else None


def write_importances(out: Path, study) -> dict | None:
    """Parameter importances (Optuna's default evaluator) when there is enough to judge."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 4:
        return None
    try:
        values = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError):
        return None  # e.g. a parameter that never varied
    values = {k: round(float(v), 4) for k, v in values.items()}
    write_text(out / IMPORTANCES, json.dumps(values, indent=1) + "\n")
    return values


def summary(study, importances: dict | None, top: int = 5) -> list[str]:
    """The lines printed at the end: the best trials, the counts, the importances."""
    rows = trial_rows(study)
    done = sorted((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: -r["value"])[:top]
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    epochs = sum(int(r["epochs"] or 0) for r in rows)
    lines = ["tune: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
             + f"; {epochs} epochs trained in all"]
    if done:
        params = [k for k in done[0] if k.startswith("params_")]
        head = ["trial", "value", "epochs", "s"] + [p.removeprefix("params_") for p in params]
        table = [head] + [[str(r["number"]), f"{r['value']:.2%}", str(r["epochs"]), str(r["seconds"])]
                          + [_short(r[p]) for p in params] for r in done]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in table]
    if importances:
        lines.append("importances: " + ", ".join(f"{k} {v:.2f}" for k, v in importances.items()))
    return lines


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
