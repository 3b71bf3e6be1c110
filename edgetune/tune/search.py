"""`edgetune tune`: a hyperparameter search over fine-tuning flags, on Optuna.

TPE (default), random or grid sampling; a median pruner on per-epoch val top-1; the study
stored under OUT (or a shared `--storage`) so a rerun continues it and several workers share
it. Trials share one feature cache, so head-level trials cost seconds; it is pruned to
`--cache-max` after every trial, least recently used first. `--objective int8`
scores each finished trial on its CPU INT8 artifact: what ships.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgetune import files
from edgetune.config import ExportConfig, TrainConfig, TuneConfig, to_dict
from edgetune.errors import ConfigError, EdgetuneError
from edgetune.limits import human
from edgetune.tune import outputs
from edgetune.tune import space as spacemod
from edgetune.tune import study as studymod
from edgetune.tune.trial import run_trial, trial_config, trial_export_config

TRIALS = "trials"
# What --overwrite removes: the study and its outputs, never the feature cache (reusable).
OWNED = (studymod.STUDY_DB, studymod.LOCK, TRIALS, files.TRIALS_CSV, files.BEST_YAML,
         files.IMPORTANCES)
# Flags that may differ between a study's workers and reruns: where things are on each machine.
LOCAL = ("data", "device", "workers", "cache_dir", "cache_memory")


class TuneInterrupted(EdgetuneError):
    """Ctrl-C during a search: the study is kept, the stopped trial is retried on rerun."""


def tune(base: TrainConfig, export_cfg: ExportConfig, cfg: TuneConfig, out: str | Path,
         fixed: set[str], overwrite: bool = False, log=print) -> Path | None:
    """Run (or continue) the study in `out` until it holds `cfg.trials` finished trials.
    `fixed`: the train flags the user set, left out of the default space. Returns best.yaml."""
    params = (spacemod.load_space(cfg.space, base, fixed) if cfg.space
              else spacemod.default_space(fixed, base.from_scratch))
    params += tuple(spacemod.choices_of(name, text, base, fixed)
                    for name, text in (("model", cfg.models), ("image_size", cfg.image_sizes)) if text)
    if len({p.name for p in params}) != len(params):
        raise ConfigError("--space and --models/--image-sizes both search the same flag; search it in one place")
    searched_export = [p.name for p in params if p.name in spacemod.EXPORT_FLAGS]
    if searched_export and cfg.objective != "int8":
        raise ConfigError(f"--space searches {searched_export[0]}, an export flag, but --objective "
                          f"{cfg.objective} trials export nothing; pass --objective int8 or drop it from the space")
    if not params:
        raise ConfigError("nothing to search: the command line fixes every flag of the default space; "
                          "drop some flags or pass --space FILE")
    grid = spacemod.grid(params, cfg.space) if cfg.sampler == "grid" else None
    out = _prepare_out(Path(out), overwrite)
    # Trials share one cache folder, so each frozen prefix is computed once for the search.
    base = dataclasses.replace(base, cache_dir=str(files.cache_folder(base.cache_dir, out)))
    # Optuna cannot prune a study of two objectives: with pruning asked for, top-1 alone is
    # maximised, latency a constraint on it.
    pruner = cfg.pruner or ("none" if cfg.multi else "median")
    directions = ("maximize", "minimize") if cfg.multi and pruner == "none" else ("maximize",)
    settings = {"train": {k: v for k, v in to_dict(base).items() if k not in LOCAL},
                "space": {p.name: p.describe() for p in params},
                "objective": cfg.objective, "sampler": cfg.sampler}
    if cfg.multi:
        settings.update(objectives=list(directions), latency_budget=cfg.latency_budget)
    first = spacemod.first_trial(params, base, export_cfg) if grid is None else None
    plan = studymod.Plan(cfg.study_name or out.resolve().name, cfg.trials, cfg.sampler, grid, base.seed,
                         settings, pruner, directions, cfg.latency_budget, first)
    book = _latency_book(base, cfg, out, log) if cfg.multi else None
    with studymod.FileLock(out / studymod.LOCK):  # workers starting together create the tables once
        storage = studymod.open_storage(cfg.storage, out)
        studymod.load(plan, storage)
    objective = TrialObjective(base, params, out, cfg.objective, trial_export_config(export_cfg), book,
                               len(directions) > 1, cfg.latency_budget)
    pruning = (f"median pruning after {studymod.STARTUP_TRIALS} trials" if pruner == "median"
               else "no pruning")
    where = "--storage" if cfg.storage else str(out / studymod.STUDY_DB)
    log(f"tune: {cfg.trials} trials, {cfg.sampler} sampler, {pruning}, scored on "
        f"{_objective_text(cfg.objective)}; study {plan.name!r} in {where}")
    if cfg.multi:
        log(_objectives_text(cfg, directions))
    log("tune: searching " + ", ".join(f"{p.name} {p.describe()}" for p in params))
    if first:
        log("tune: a new study's first trial runs this command's own values: "
            + ", ".join(_first_value(k, v) for k, v in first.items())
            + (" (the rest drawn)" if len(first) < len(params) else ""))
    if grid is not None and studymod.grid_size(plan) < cfg.trials:
        log(f"tune: the grid has {studymod.grid_size(plan)} points: the search ends after them")
    cap = _cache_cap(base, cfg, log)

    def after_trial(study) -> None:
        outputs.write_trials_csv(out, study)
        if objective.last is not None:
            log(_trial_line(study, objective.last))
            objective.last = None
        if cap is not None:
            _prune_cache(Path(base.cache_dir), cap, log)

    studymod.work(plan, storage, out, objective, after_trial, cfg.timeout, log)
    study = studymod.load(plan, storage)
    outputs.write_trials_csv(out, study)
    importances = outputs.write_importances(out, study)
    if cfg.multi:
        front = outputs.write_pareto(out, study, cfg.latency_budget)
        outputs.write_pareto_plot(out, study, cfg.latency_budget)
    best = outputs.write_best(out, study, to_dict(base), to_dict(export_cfg), cfg.objective, cfg.latency_budget)
    for line in outputs.summary(study, importances):
        log(line)
    if cfg.multi:
        log(f"tune: Pareto front of top-1 and latency: {len(front)} trial(s) in {out / files.PARETO_CSV}")
    if best is None and cfg.latency_budget is not None and outputs.best_trial(study) is not None:
        fastest = outputs.fastest_trial(study)
        log(f"tune: no complete trial is within --latency-budget {cfg.latency_budget:g} ms, so there is no "
            f"best.yaml; the fastest, trial {fastest.number}, runs {fastest.user_attrs[studymod.LATENCY]:g} ms "
            f"({fastest.params.get('model', base.model)}): raise the budget or search smaller models or sizes")
    elif best is None:
        log("tune: no trial completed, so there is no best.yaml; see the note column of "
            f"{out / files.TRIALS_CSV}")
    else:
        log(f"tune: {out / files.TRIALS_CSV}, {best}; next: edgetune run --config {best} --out DIR")
    return best


class TrialObjective:
    """Optuna's objective: one trial's values → its own config, trained, scored."""

    def __init__(self, base: TrainConfig, params, out: Path, objective: str, export_cfg: ExportConfig,
                 book=None, two_objectives: bool = False, budget: float | None = None):
        from edgetune.train.loop import DivergedError

        self.base, self.params, self.out = base, params, out
        self.objective, self.export_cfg = objective, export_cfg
        self.book, self.two = book, two_objectives  # book: a LatencyBook when latency counts
        self.budget = budget
        self.last = None
        # A diverged trial or an impossible combination of values fails alone; the search goes on.
        self.catch = (DivergedError, ConfigError)

    def __call__(self, trial, started) -> float:
        import optuna

        from edgetune.train.interrupt import Interrupted

        started()  # marks the trial started and lets other workers count it and start theirs
        self.last = trial.number
        folder = self.out / TRIALS / f"{trial.number:04d}"

        def report(record: dict) -> None:
            trial.set_user_attr("epochs", record["epoch"])
            if self.two:  # Optuna neither records nor prunes per-epoch values of two objectives
                return
            trial.report(record["top1"], record["epoch"])
            if trial.should_prune():
                trial.set_user_attr("note", f"pruned at epoch {record['epoch']}: val top-1 "
                                            f"{record['top1']:.2%} below the median of finished trials")
                raise optuna.TrialPruned()

        try:
            # The first trial leaves the flags the run resolves (space.first_trial) to the run.
            own = trial.user_attrs.get(studymod.RUN_OWN, [])
            values = {p.name: p.suggest(trial) for p in self.params if p.name not in own}
            exported = {k: values.pop(k) for k in spacemod.EXPORT_FLAGS if k in values}  # --qat: the export's
            cfg = trial_config(self.base, values, trial.number)
            export_cfg = dataclasses.replace(self.export_cfg, **exported)
            trial.set_user_attr("config", {**values, **exported, "seed": cfg.seed, "cache_seed": cfg.cache_seed})
            # The artifact a trial ships is known after its export (--objective int8, timed here);
            # otherwise the latency is its model's and size's, known before training, so a
            # pruned trial has its latency too. Optuna takes a trial's constraint once.
            after = self.book is not None and self.objective == "int8" and not self.book.from_files
            if self.book is not None:
                self._set_latency(trial, *self.book.of(cfg.model, _input_size(cfg)), None if after else self.budget)
            outcome = run_trial(cfg, folder, self.objective, export_cfg, report,
                                log=_file_log(folder / "train.log"))
            if own:  # as they ran: trials.csv shows them and best.yaml repeats them
                trial.set_user_attr("config", {**trial.user_attrs["config"],
                                               **{n: getattr(outcome.config, n) for n in own}})
            if after:
                shipped = (outcome.shipped_p50, "here (the shipped CPU artifact)") if outcome.shipped_p50 else (
                    trial.user_attrs[studymod.LATENCY], trial.user_attrs["latency_from"])
                self._set_latency(trial, *shipped, self.budget)
        except self.catch as exc:
            trial.set_user_attr("note", str(exc)[:300])
            raise
        except (Interrupted, KeyboardInterrupt):
            trial.set_user_attr("note", "interrupted (Ctrl-C); retried when the command is rerun")
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number,
                                                                studymod.RUN_OWN: own})
            raise TuneInterrupted(f"interrupted: trial {trial.number} stopped and will be retried; the study "
                                  f"is kept in {self.out}: rerun the same command to continue it") from None
        trial.set_user_attr("epochs", outcome.epochs)
        if self.two:
            return outcome.value, trial.user_attrs[studymod.LATENCY]
        return outcome.value

    @staticmethod
    def _set_latency(trial, p50: float, where: str, budget: float | None) -> None:
        trial.set_user_attr(studymod.LATENCY, round(float(p50), 3))
        trial.set_user_attr("latency_from", where)
        if budget is not None and hasattr(trial, "set_constraint"):  # Optuna 5; 4.x: constraints_func
            trial.set_constraint("latency", studymod.over_budget(budget, trial)[0])


def _first_value(name: str, value) -> str:
    if value is None:
        return f"{name} (the run's own default)"
    return f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"


def _input_size(cfg: TrainConfig) -> int:
    from edgetune.train.model import preprocess_for

    return cfg.image_size or preprocess_for(cfg.model, cfg.weights, None).size[0]


def _latency_book(base: TrainConfig, cfg: TuneConfig, out: Path, log):
    """Where trials' latencies come from; the classes are counted once for the graphs' heads."""
    from edgetune.data.scan import scan
    from edgetune.tune.latency import LatencyBook

    data = base.data if isinstance(base.data, str) or base.data is None else base.data[0]
    if data is None:
        from edgetune.data.demo import ensure_digits

        data = ensure_digits()
    classes = scan(data, base.val_fraction, base.seed).classes
    return LatencyBook(out, cfg.latency_from, len(classes), log)


def _objectives_text(cfg: TuneConfig, directions) -> str:
    budget = "" if cfg.latency_budget is None else f", trials over {cfg.latency_budget:g} ms infeasible"
    source = f"the device's times in {cfg.latency_from}" if cfg.latency_from else "p50 of the fp32 graph here"
    if cfg.objective == "int8" and not cfg.latency_from:
        source = "p50 of the CPU artifact each trial would ship, here"
    if len(directions) == 1:
        return (f"tune: --pruner {cfg.pruner}: Optuna cannot prune a study of two objectives, so this search "
                f"maximises top-1 alone, latency ({source}) a constraint{budget}")
    return f"tune: two objectives, top-1 up and latency down ({source}){budget}"


def _cache_cap(base: TrainConfig, cfg: TuneConfig, log) -> int | None:
    """The bytes the shared feature cache may keep between trials (None: --cache off), said
    once; the default is fixed here, from the disk as this worker starts."""
    if base.cache == "off":
        return None
    from edgetune.train.cache_folder import CAP, DISK_SHARE, disk_cap

    cap = disk_cap(cfg.cache_max, Path(base.cache_dir))
    why = ("--cache-max" if cfg.cache_max is not None else
           f"default: the lesser of {human(CAP)} and {DISK_SHARE:.0%} of the disk it may use; set --cache-max")
    log(f"tune: feature cache {base.cache_dir} kept under {human(cap)} after every trial, least recently "
        f"used first ({why})")
    return cap


def _prune_cache(folder: Path, cap: int, log) -> None:
    """Prune the shared cache to `cap`; one line when anything went, none otherwise."""
    from edgetune.train.cache_folder import prune

    pruned = prune(folder, cap)
    if not pruned.removed:
        return
    stale = sum(not e.complete for e in pruned.removed)
    lru = len(pruned.removed) - stale
    parts = ([f"{lru} least recently used entr{'ies' if lru > 1 else 'y'}"] if lru else []) + (
        [f"{stale} abandoned fill{'s' if stale > 1 else ''}"] if stale else [])
    over = "; the rest is in use or being filled" if pruned.size > cap else ""
    log(f"tune: cache pruned to {human(pruned.size)} (cap {human(cap)}): removed {' and '.join(parts)} "
        f"({human(pruned.freed)}) from {folder}{over}")


def _prepare_out(out: Path, overwrite: bool) -> Path:
    """A study folder: a rerun continues the study in it, --overwrite starts a new one (the
    cache is kept); never a user's bundle."""
    if (out / files.MANIFEST).is_file():  # trials never write into a user's bundle
        raise ConfigError(f"--out {out} holds a bundle; a search writes its own folder: choose another --out")
    return files.prepare_out(out, OWNED, overwrite=overwrite, resume=not overwrite)


def _file_log(path: Path):
    def log(*parts) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            print(*parts, file=f)
    return log


def _objective_text(objective: str) -> str:
    return "val top-1" if objective == "top1" else "the val top-1 of each trial's CPU INT8 artifact"


def _trial_line(study, number: int) -> str:
    t = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    values = "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in outputs.trial_values(t).items())
    top1 = outputs.value_of(t)
    value = "" if top1 is None else f"{top1:.2%}"
    if studymod.LATENCY in t.user_attrs:
        value += f", p50 {t.user_attrs[studymod.LATENCY]:g} ms"
    epochs = t.user_attrs.get("epochs", 0)
    note = t.user_attrs.get("note", "")
    state = t.state.name
    text = {"COMPLETE": f"{value} after {epochs} epochs", "PRUNED": note or f"pruned at epoch {epochs}"}
    return f"trial {number:>3}  {state:<8} {text.get(state, note)}  | {values}"
