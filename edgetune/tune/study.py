"""The study on Optuna: storage, sampler, pruner, and the worker loop that runs trials.

Storage is an RDB: SQLite under OUT by default, or `--storage URL` shared by workers on
several machines. An RDB rather than Optuna's journal file because only RDB storage keeps
heartbeats: a trial whose process was killed stops beating, is marked failed after the grace
period, and is retried once with the same values (Optuna's retry callback).

Every worker runs the same loop: count the finished trials, start one more while the study
has fewer than --trials, wait while the trials still running would make up the rest (one may
be a killed process's, failed once its heartbeat goes stale). Workers sharing OUT take a file
lock between counting and starting, so together they finish exactly --trials.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from edgetune.errors import ConfigError, require

STUDY_DB = "study.db"
LOCK = ".tune.lock"
HEARTBEAT_S = 5  # a running trial writes its heartbeat this often
GRACE_S = 20  # silent this long: its process is gone, the trial is failed and retried
STARTUP_TRIALS = 3  # the pruner judges nothing before this many trials have finished
WARMUP_EPOCHS = 1  # nor any trial's first epoch: warm-up moves top-1 around
STARTED = "started"  # user attr set once a trial's objective runs (its heartbeat is beating by then)


@dataclass(frozen=True)
class Plan:
    """What to run: the study's fixed settings, checked on every rerun and by every worker."""
    name: str
    trials: int
    sampler: str  # tpe | random | grid
    grid: dict | None
    seed: int
    settings: dict  # the base flags, the space and the objective
    pruner: str = "median"  # median | none
    directions: tuple[str, ...] = ("maximize",)  # ("maximize", "minimize"): top-1 and latency
    budget: float | None = None  # ms: trials slower than this are infeasible (constraints_func)
    first: dict | None = None  # the values a new study's first trial runs (space.first_trial; None on a grid)


def optuna_module():
    optuna = require("optuna", "train", "edgetune tune")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are reported by us, one line each
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(url: str | None, out: Path):
    """The study's storage, heartbeats on; a URL that does not connect is one line."""
    optuna = optuna_module()
    import sqlalchemy

    shown = f"--storage {url}"
    if url is None:
        url, shown = f"sqlite:///{(out / STUDY_DB).resolve()}", f"the study storage {out / STUDY_DB}"
    else:
        with contextlib.suppress(Exception):
            shown = "--storage " + sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    # SQLite locks the whole file per write: wait for the other workers rather than fail.
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
    except (ImportError, ValueError, sqlalchemy.exc.SQLAlchemyError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError(f"{shown}: cannot open the study storage ({why}); pass an RDB URL "
                          "that is reachable, e.g. sqlite:///runs/tune.db or postgresql://user@host/db "
                          "(with its driver installed, e.g. psycopg2-binary)") from None


def pruner(name: str = "median"):
    optuna = optuna_module()
    if name == "none":
        return optuna.pruners.NopPruner()
    # Steps are epochs counted from 1, and steps below n_warmup_steps are never pruned.
    return optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=WARMUP_EPOCHS + 1)


def sampler(plan: Plan, number: int):
    """A sampler seeded per trial number: each trial draws the same values whichever worker
    runs it, and two workers never draw the same random values. The grid is the exception:
    Optuna gives trial N the N-th point of the grid as shuffled by the seed, so every trial must
    shuffle it alike (seeded per trial, 8 trials of an 8-point grid ran 6 distinct points)."""
    optuna = optuna_module()
    if plan.sampler == "grid":
        return optuna.samplers.GridSampler(plan.grid, seed=plan.seed)
    seed = (plan.seed * 1_000_003 + number) % (2**31 - 1)
    # Optuna 5 reads the constraints a trial sets (`Trial.set_constraint`, search.py) and
    # deprecates constraints_func; 4.x needs the function.
    constraints = (None if plan.budget is None or hasattr(optuna.trial.Trial, "set_constraint")
                   else functools.partial(over_budget, plan.budget))
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE models the finished trials after a few random ones; fewer for short searches.
    # With a latency budget, TPE models feasible and infeasible trials apart (the constraints);
    # it handles two objectives too (multi-objective TPE), and beats NSGA-II's generations of
    # dozens of trials at the 10-50 trials a fine-tuning search can afford.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(4, min(10, plan.trials // 4)),
                                      constraints_func=constraints)


LATENCY = "latency_ms"  # the user attr holding a trial's p50 at batch 1
RUN_OWN = "run_own"  # the user attr naming the flags a first trial leaves to the run (space.first_trial)


def over_budget(budget: float, trial) -> list[float]:
    """Optuna's constraints_func: feasible when <= 0, i.e. the trial's p50 within `budget` ms.
    A trial with no latency (it failed before it was timed) counts as infeasible."""
    latency = trial.user_attrs.get(LATENCY)
    return [float("inf") if latency is None else float(latency) - budget]


def load(plan: Plan, storage, number: int = 0):
    """The study (created on first use), its settings checked against this command's."""
    optuna = optuna_module()
    study = optuna.create_study(study_name=plan.name, storage=storage, directions=list(plan.directions),
                                sampler=sampler(plan, number), pruner=pruner(plan.pruner), load_if_exists=True)
    saved = study.user_attrs.get("edgetune")
    if saved is None:
        study.set_user_attr("edgetune", plan.settings)
        if plan.first:
            study.enqueue_trial({k: v for k, v in plan.first.items() if v is not None},
                                user_attrs={RUN_OWN: [k for k, v in plan.first.items() if v is None]})
    elif saved != plan.settings:
        path, was, now = first_difference(saved, plan.settings)
        # A flag the run now resolves itself (its default None) that the study started with a
        # value for: an older edgetune wrote the value; the flag given again continues the study.
        hint = (f"pass --{path[-1].replace('_', '-')} {was} to continue it"
                if now is None and path[0] == "train" and len(path) == 2 else "rerun the same command to continue it")
        raise ConfigError(f"study {plan.name!r} was started with other settings ({'.'.join(path)}: {was!r}, now "
                          f"{now!r}); {hint}, or pass another --out (or --study-name) to start a new study")
    return study


def first_difference(a: dict, b: dict, path: tuple = ()) -> tuple[tuple, object, object]:
    """(the path to the first setting that differs, its value in `a`, in `b`), nested dicts
    followed down to the flag, keys in sorted order."""
    key = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
    if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
        return first_difference(a[key], b[key], (*path, key))
    return (*path, key), a.get(key), b.get(key)


class FileLock:
    """An advisory lock on a file under OUT, held between counting trials and starting one."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def acquire(self) -> None:
        self.fd = open(self.path, "a")
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.fd.close()
            self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def work(plan: Plan, storage, out: Path, objective, after_trial, timeout: float | None, log) -> None:
    """Run trials until the study has `plan.trials` finished (complete or pruned) ones.
    `objective(trial, started)` must call `started()` once its trial exists."""
    optuna = optuna_module()
    from optuna.trial import TrialState

    finished_states = (TrialState.COMPLETE, TrialState.PRUNED)
    lock = FileLock(out / LOCK)
    start, waited = time.monotonic(), False
    while True:
        lock.acquire()
        try:
            study = load(plan, storage)
            optuna.storages.fail_stale_trials(study)  # a killed worker's trial: failed, retried once
            fail_orphans(study, storage)  # killed before its heartbeat began: the same, by age
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state in finished_states for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            limit = grid_size(plan)
            if finished >= plan.trials or (limit is not None and finished >= limit):
                return
            if timeout is not None and time.monotonic() - start > timeout:
                log(f"tune: --timeout {timeout:g} s reached; {finished} of {plan.trials} trials finished. "
                    "Rerun the same command to continue.")
                return
            if finished + running >= min(plan.trials, limit or plan.trials):
                if not waited:
                    log(f"tune: waiting for {running} running trial(s): another worker's, or a killed "
                        f"process's (failed and retried after {GRACE_S} s without a heartbeat)")
                    waited = True
                lock.release()
                time.sleep(HEARTBEAT_S)
                continue
            study = load(plan, storage, number=len(trials))
            try:
                study.optimize(lambda trial: objective(trial, lambda: _started(trial, lock)), n_trials=1,
                               catch=objective.catch)
            finally:
                after_trial(study)
        finally:
            lock.release()


def _started(trial, lock: FileLock) -> None:
    trial.set_user_attr(STARTED, True)
    lock.release()  # the trial exists: other workers may count it and start theirs


def fail_orphans(study, storage, grace: float = GRACE_S) -> list[int]:
    """Fail (and retry once, as for a stale heartbeat) the trials whose process died inside
    Optuna's `ask()`, after the trial was created RUNNING but before its heartbeat began: Optuna
    only fails trials that have a heartbeat, so without this a rerun would wait for them forever.
    A trial is an orphan when it is RUNNING, its objective never started, and it began more than
    `grace` seconds ago (ask() takes milliseconds to seconds). Returns the failed trial numbers."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    now = dt.datetime.now()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if STARTED in t.user_attrs or t.datetime_start is None or (now - t.datetime_start).total_seconds() <= grace:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial_id)
        except UpdateFinishedTrialError:  # another worker failed it first
            continue
    retry = storage.get_heartbeat_stale_trial_callback()
    for trial_id in failed:
        if retry is not None:
            retry(study, storage.get_trial(trial_id))
    return [storage.get_trial(trial_id).number for trial_id in failed]


def grid_size(plan: Plan) -> int | None:
    if plan.grid is None:
        return None
    n = 1
    for values in plan.grid.values():
        n *= len(values)
    return n
