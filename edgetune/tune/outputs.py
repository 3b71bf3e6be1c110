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
from edgetune.files import BEST_YAML, IMPORTANCES, PARETO_CSV, PARETO_PNG, TRIALS_CSV
from edgetune.tune.study import RUN_OWN

LATENCY = "latency_ms"  # the user attr holding a trial's p50 (edgetune.tune.study.LATENCY)
# fANOVA's importances from a handful of trials are noise: a 5-trial study printed "unfreeze
# 0.00" for the flag that decided every result. Below this many finished trials, none.
MIN_IMPORTANCE_TRIALS = 10


def trial_rows(study) -> list[dict]:
    trials = study.get_trials(deepcopy=False)
    params = sorted({p for t in trials for p in trial_values(t)})
    retries = {_retry_of(t): t.number for t in trials if _retry_of(t) is not None}
    rows = []
    for t in trials:
        seconds = ((t.datetime_complete - t.datetime_start).total_seconds()
                   if t.datetime_complete and t.datetime_start else None)
        retry = _retry_of(t)
        note = t.user_attrs.get("note", "")
        if t.state.name == "FAIL" and not note and t.number in retries:
            note = f"its process stopped (no heartbeat); retried as trial {retries[t.number]}"
        value = value_of(t)
        rows.append({
            "number": t.number, "state": t.state.name,
            "value": "" if value is None else round(value, 4),
            **({"latency_ms": t.user_attrs.get(LATENCY, "")} if any(LATENCY in x.user_attrs for x in trials)
               else {}),
            "epochs": t.user_attrs.get("epochs", ""),
            "seconds": "" if seconds is None else round(seconds, 1),
            **{f"params_{p}": trial_values(t).get(p, "") for p in params},
            "retry_of": "" if retry is None else retry,
            "note": note,
        })
    return rows


def trial_values(trial) -> dict:
    """The searched flags' values a trial ran with: Optuna's params, and on a first trial the
    flags it left to the run (space.first_trial), as the run resolved them ("" until it has)."""
    resolved = trial.user_attrs.get("config", {})
    return {**trial.params, **{name: resolved.get(name, "") for name in trial.user_attrs.get(RUN_OWN, [])}}


def value_of(trial) -> float | None:
    """A trial's top-1: its value, or its first value in a study of two objectives."""
    return None if trial.values is None else trial.values[0]


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


def write_best(out: Path, study, settings: dict, export_settings: dict, objective: str,
               budget: float | None = None) -> Path | None:
    """best.yaml: every flag of the best trial (the most accurate within `budget` ms), for
    `edgetune run --config OUT/best.yaml`."""
    import yaml

    best = best_trial(study, budget)
    if best is None:
        return None
    what = "val top-1" if objective == "top1" else "val top-1 of its CPU INT8 artifact"
    latency = best.user_attrs.get(LATENCY)
    within = "" if latency is None else f", p50 {latency:g} ms" + (
        "" if budget is None else f" (budget {budget:g} ms)")
    header = (f"# edgetune tune: the best of {len(study.trials)} trials, trial {best.number}, {what} "
              f"{value_of(best):.2%}{within}.\n# Retrain and ship it: edgetune run --config {out / BEST_YAML} "
              "--out DIR\n")
    # The trial's own values last: a searched export flag (--qat) is the trial's, not the command's.
    body = yaml.safe_dump({**settings, **export_settings, **best.user_attrs["config"]}, sort_keys=False)
    write_text(out / BEST_YAML, header + body)
    return out / BEST_YAML


def best_trial(study, budget: float | None = None):
    """The complete trial with the highest top-1 (the earliest of equals) whose latency is
    within `budget` ms, or None."""
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if budget is None or t.user_attrs.get(LATENCY, float("inf")) <= budget]
    return max(complete, key=value_of) if complete else None


def fastest_trial(study):
    """The complete trial with the lowest latency, or None."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if LATENCY in t.user_attrs]
    return min(done, key=lambda t: t.user_attrs[LATENCY]) if done else None


def pareto_front(study) -> list:
    """The complete trials no other complete trial beats on both top-1 and latency (at least
    as good on both, better on one), fastest first."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if LATENCY in t.user_attrs]

    def beats(a, b) -> bool:
        ta, tb, la, lb = value_of(a), value_of(b), a.user_attrs[LATENCY], b.user_attrs[LATENCY]
        return ta >= tb and la <= lb and (ta > tb or la < lb)

    front = [t for t in done if not any(beats(o, t) for o in done if o is not t)]
    return sorted(front, key=lambda t: (t.user_attrs[LATENCY], -value_of(t)))


def write_pareto(out: Path, study, budget: float | None) -> list:
    """pareto.csv: the front, one row per trial with its top-1, latency, budget and values."""
    front = pareto_front(study)
    params = sorted({p for t in front for p in t.params})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["number", "top1", LATENCY, "latency_from", "budget_ms", "within_budget",
                     *(f"params_{p}" for p in params)])
    for t in front:
        latency = t.user_attrs[LATENCY]
        writer.writerow([t.number, round(value_of(t), 4), latency, t.user_attrs.get("latency_from", ""),
                         "" if budget is None else budget, "" if budget is None else latency <= budget,
                         *(t.params.get(p, "") for p in params)])
    write_text(out / PARETO_CSV, buf.getvalue())
    return front


def write_pareto_plot(out: Path, study, budget: float | None) -> Path | None:
    """pareto.png: every complete trial's top-1 against its latency, the front joined, the
    budget a vertical line; the HTML report shows it beside the trials."""
    from optuna.trial import TrialState

    from edgetune.atomic import atomic_path
    from edgetune.report.html.plots import pareto, png

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if LATENCY in t.user_attrs]
    if not done:
        return None
    points = [(t.user_attrs[LATENCY], value_of(t)) for t in done]
    front = [(t.user_attrs[LATENCY], value_of(t)) for t in pareto_front(study)]
    with atomic_path(out / PARETO_PNG) as tmp:
        tmp.write_bytes(png(pareto(points, front, budget)))
    return out / PARETO_PNG


def write_importances(out: Path, study) -> dict | None:
    """Parameter importances (Optuna's default evaluator) when there is enough to judge."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return None
    try:
        values = optuna.importance.get_param_importances(study, target=value_of)
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
    complete = sum(r["state"] == "COMPLETE" for r in rows)
    if importances:
        lines.append(f"importances (fANOVA, from {complete} complete trials): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in importances.items()))
    elif complete:
        lines.append(f"importances: not computed from {complete} complete trial(s); fANOVA needs at least "
                     f"{MIN_IMPORTANCE_TRIALS} to tell a deciding flag from noise")
    return lines


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
