"""`edgetune tune`: resumes after SIGKILL, shares one study between workers, prunes hopeless
trials, scores what ships, and refuses bad input in one line.

Trials fine-tune a resnet18 pretrained here (the session's `trained_run` on all ten digits)
on three digit classes at 32 px: head-level trials use the feature cache and cost seconds.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.support.cli import FAST, assert_user_error, edgetune, edgetune_command

FINISHED = ("COMPLETE", "PRUNED")


@pytest.fixture(scope="module")
def three_digits(digits_dir, tmp_path_factory) -> Path:
    """Digits 0, 1 and 7: 30 train and 15 val images each, in the train/ val/ layout."""
    root = tmp_path_factory.mktemp("three") / "data"
    for split, n in (("train", 30), ("val", 15)):
        for c in ("0", "1", "7"):
            (root / split / c).mkdir(parents=True)
            for p in sorted((digits_dir / split / c).glob("*.png"))[:n]:
                shutil.copy(p, root / split / c / p.name)
    return root


@pytest.fixture(scope="module")
def base_args(trained_run, three_digits, tmp_path_factory) -> list[str]:
    space = tmp_path_factory.mktemp("space") / "space.yaml"
    space.write_text("lr: {low: 0.001, high: 0.03, log: true}\n")
    return ["tune", "--data", three_digits, "--weights", trained_run[0] / "model.pt", "--image-size", "32",
            "--unfreeze", "head", "--epochs", "2", "--workers", "0", "--batch-size", "16", "--space", space]


def read_trials(out: Path) -> list[dict]:
    with open(out / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def finished(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["state"] in FINISHED]


def popen(args, **kw) -> subprocess.Popen:
    return subprocess.Popen(edgetune_command(*args), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_sigkill_then_rerun_finishes_the_study(base_args, tmp_path):
    out = tmp_path / "study"
    args = [*base_args, "--trials", "3", "--out", out]
    proc = popen(args, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "trials.csv").is_file() and len(finished(read_trials(out))) >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]
    os.killpg(proc.pid, signal.SIGKILL)  # no cleanup at all: a power cut, the OOM killer
    proc.wait()

    again = edgetune(*args, timeout=400)
    assert again.returncode == 0, again.stderr
    rows = read_trials(out)
    assert len(finished(rows)) == 3
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(failed) <= 1 and not [r for r in rows if r["state"] == "RUNNING"]
    for f in failed:  # the killed trial is retried once, with the values it had drawn
        retry = next(r for r in rows if r["retry_of"] == f["number"])
        assert retry["state"] in FINISHED
        assert retry["params_lr"] == f["params_lr"] or not f["params_lr"]
    assert "edgetune run --config" in (out / "best.yaml").read_text()


def test_two_workers_share_one_study(base_args, tmp_path):
    out = tmp_path / "study"
    args = [*base_args, "--trials", "3", "--out", out]
    procs = [popen(args) for _ in range(2)]
    logs = [p.communicate(timeout=400) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in logs]
    rows = read_trials(out)
    assert len(finished(rows)) == 3 and len(rows) == 3
    ran = [{int(m[1]) for m in re.finditer(r"^trial +(\d+) ", stdout, re.M)} for stdout, _ in logs]
    assert not ran[0] & ran[1]  # no trial run by both
    assert ran[0] | ran[1] == {int(r["number"]) for r in rows}
    assert len({r["params_lr"] for r in rows}) == 3  # nor the same values twice


def test_median_pruner_stops_a_hopeless_trial(base_args, tmp_path):
    optuna = pytest.importorskip("optuna")
    out = tmp_path / "study"
    out.mkdir()
    space = tmp_path / "space.yaml"
    space.write_text("lr: [0.01, 1.0e-7]\n")
    # Known values first, as a user seeds a study: three that learn, then one that cannot.
    study = optuna.create_study(study_name=out.name, storage=f"sqlite:///{out}/study.db", direction="maximize")
    for lr in (0.01, 0.01, 0.01, 1e-7):
        study.enqueue_trial({"lr": lr})
    args = [a if a != base_args[-1] else space for a in base_args]
    # A random head: an imprinted one at lr 1e-7 is already about as good as the others.
    proc = edgetune(*args, "--head-init", "random", "--epochs", "4", "--trials", "4", "--out", out, timeout=400)
    assert proc.returncode == 0, proc.stderr
    rows = read_trials(out)
    hopeless = rows[3]
    assert float(hopeless["params_lr"]) == 1e-7
    assert hopeless["state"] == "PRUNED" and int(hopeless["epochs"]) == 2, rows
    assert all(r["state"] == "COMPLETE" and int(r["epochs"]) == 4 for r in rows[:3])
    assert "trial   3  PRUNED   pruned at epoch 2" in proc.stdout


def test_int8_objective_is_the_artifacts_measured_top1(base_args, three_digits, tmp_path):
    from edgetune import runtime

    out = tmp_path / "study"
    # One trial proves it: its value is its artifact's top-1, measured again here. QAT is in
    # the space: the trial's export runs it (always), beside the PTQ candidates.
    proc = edgetune(*base_args, "--space", _space(tmp_path, "lr: [0.01, 0.003]\nqat: [always]\n"),
                    "--trials", "1", "--objective", "int8", "--calib-samples", "30", "--out", out,
                    timeout=400)
    assert proc.returncode == 0, proc.stderr
    rows = read_trials(out)
    assert [r["params_qat"] for r in rows] == ["always"]
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["qat"] == "always"  # the trial's, not the command's default
    for row in rows:
        candidates = json.loads((out / "trials" / f"{int(row['number']):04d}" / "bundle" / "manifest.json"
                                 ).read_text())["candidates"]["cpu"]
        assert "int8-qat" in {c["candidate"] for c in candidates}
        bundle = out / "trials" / f"{int(row['number']):04d}" / "bundle"
        model = runtime.load(bundle, artifact="model.int8.cpu.onnx")
        images = sorted((three_digits / "val").glob("*/*.png"))
        labels = np.array([p.parent.name for p in images])
        predicted = np.array([label for [(label, _)] in model.predict(images, topk=1)])
        assert float(row["value"]) == pytest.approx(float((predicted == labels).mean()), abs=1e-4)
    assert "val top-1 of its CPU INT8 artifact" in (out / "best.yaml").read_text()


def test_the_shared_cache_stays_under_cache_max(three_digits, tmp_path):
    """From-scratch weights differ per trial (each has its own seed), so every trial caches
    its own features: train and val of the layer4 input, 271 KB. A 300 KB cap holds one trial's."""
    out = tmp_path / "study"
    proc = edgetune("tune", "--data", three_digits, *FAST, "--unfreeze", "1", "--augment", "none",
                    "--batch-size", "16", "--space", _space(tmp_path, "lr: {low: 0.001, high: 0.01}\n"),
                    "--sampler", "random", "--trials", "2", "--cache-max", "300KB", "--out", out)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("feature cache" in ln and "kept under 300.0 KB" in ln for ln in lines), proc.stdout
    pruned = [i for i, ln in enumerate(lines) if ln.startswith("tune: cache pruned")]
    trials = [i for i, ln in enumerate(lines) if re.match(r"trial +\d+ +COMPLETE", ln)]
    assert len(trials) == 2 and len(pruned) == 1, proc.stdout  # nothing said after trial 0: under the cap
    assert trials[0] < trials[1] < pruned[0], proc.stdout
    assert "removed 2 least recently used entries" in lines[pruned[0]]  # trial 0's train and val
    kept = [p for p in (out / "cache").rglob("*") if p.is_file()]
    assert len([p for p in kept if p.name == "features.npy"]) == 2  # trial 1's train and val
    assert 0 < sum(p.stat().st_size for p in kept) <= 300 << 10


def _space(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("space, extra, needles", [
    (None, ["--trials", "0"], ["--trials 0 must be at least 1"]),
    (None, ["--sampler", "grid"], ["--sampler grid needs a grid", "--space FILE"]),
    ("lr: {low: 0.01, high: 0.001}\n", [], ["lr: low 0.01 must be below high 0.001"]),
    ("lr: {low: 0.001, high: 0.01}\n", ["--sampler", "grid"], ["gives lr as a range"]),
    ("lrr: [0.1, 0.2]\n", [], ["lrr is not a train flag", "did you mean 'lr'"]),
    ("dropout: [0.1, 1.5]\n", [], ["dropout: 1.5 is not allowed", "[0, 1)"]),
    ("seed: [1, 2]\n", [], ["seed is not something a search varies"]),
    ("lr: [0.1]\n", ["--lr", "0.01"], ["also given as --lr"]),
    (None, ["--storage", "sqlite:////nonexistent-edgetune/x/study.db"], ["cannot open the study storage"]),
    (None, ["--cache-max", "lots"], ["--cache-max 'lots' is not a size", "4GB"]),
    (None, ["--objectives", "top1,size"], ["--objectives 'top1,size' is not allowed", "top1,latency"]),
    (None, ["--latency-budget", "5"], ["add --objectives top1,latency"]),
    ("qat: [off, always]\n", [], ["searches qat, an export flag", "--objective int8"]),
    ("qat: [off, sometimes]\n", ["--objective", "int8"], ["qat: 'sometimes' is not allowed", "auto, off, always"]),
    ("qat: [off, always]\n", ["--objective", "int8", "--qat", "off"], ["also given as --qat"]),
])
def test_bad_input_is_one_line(space, extra, needles, three_digits, tmp_path):
    args = ["tune", "--data", three_digits, "--out", tmp_path / "s", *extra]
    if space:
        args += ["--space", _space(tmp_path, space)]
    assert_user_error(edgetune(*args), *needles)


def test_a_rerun_with_other_settings_is_refused(base_args, tmp_path):
    out = tmp_path / "study"
    first = edgetune(*base_args, "--trials", "1", "--out", out)
    assert first.returncode == 0, first.stderr
    proc = edgetune(*base_args, "--epochs", "3", "--trials", "2", "--out", out)
    assert_user_error(proc, "was started with other settings", "epochs", "another --out")
    assert len(read_trials(out)) == 1


def test_a_study_started_with_a_value_the_run_now_resolves_names_the_flag_to_pass(tmp_path):
    """A study an older edgetune started with `lr: 0.001` (today's default is None: the run
    resolves it) is refused with the flag that continues it, not two whole dicts."""
    from edgetune.errors import ConfigError
    from edgetune.tune import study as studymod

    storage = studymod.open_storage(None, tmp_path)

    def plan(lr):
        return studymod.Plan("old", trials=1, sampler="random", grid=None, seed=0,
                             settings={"train": {"epochs": 3, "lr": lr}, "objective": "top1"})

    studymod.load(plan(0.001), storage)
    with pytest.raises(ConfigError) as refused:
        studymod.load(plan(None), storage)
    assert "(train.lr: 0.001, now None); pass --lr 0.001 to continue it" in str(refused.value)
    studymod.load(plan(0.001), storage)  # the flag given again continues it


def test_a_run_may_hold_its_search_in_a_subfolder(tmp_path):
    """`tune --out runs/a/search`, then `run --out runs/a`: the bundle's report shows the search."""
    from edgetune.errors import ConfigError
    from edgetune.pipeline import prepare_out

    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "trials.csv").write_text("number,state,value\n0,COMPLETE,0.9\n")
    assert prepare_out(tmp_path, overwrite=False, resume=False) == tmp_path
    (tmp_path / "notes").mkdir()
    with pytest.raises(ConfigError, match="is not empty"):
        prepare_out(tmp_path, overwrite=False, resume=False)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # ask() without optimize(), on purpose
def test_a_trial_killed_before_its_heartbeat_began_is_failed_and_retried(tmp_path):
    # A process killed inside Optuna's ask() leaves a RUNNING trial with no heartbeat, which
    # Optuna never calls stale: a rerun waited on it forever (seen under load in the SIGKILL test).
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from edgetune.tune import study as studymod

    plan = studymod.Plan("orphans", trials=2, sampler="random", grid=None, seed=0, settings={})
    storage = studymod.open_storage(None, tmp_path)
    study = studymod.load(plan, storage)
    orphan = study.ask({"lr": FloatDistribution(1e-3, 1e-1, log=True)})
    started = study.ask()
    started.set_user_attr(studymod.STARTED, True)  # its objective runs: its heartbeat decides
    assert studymod.fail_orphans(study, storage) == []  # younger than the grace period
    assert studymod.fail_orphans(study, storage, grace=0) == [orphan.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[orphan.number] == TrialState.FAIL and states[started.number] == TrialState.RUNNING
    retried = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert len(retried) == 1 and retried[0].params == orphan.params  # retried once, same values


def test_a_grid_search_visits_every_point_once(tmp_path):
    # Each trial loads the study with its own sampler (tune/study.py); a grid shuffled by a
    # per-trial seed gave 8 trials of an 8-point grid only 6 distinct points.
    from edgetune.tune import study as studymod

    grid = {"lr": [1e-3, 3e-3, 1e-2, 3e-2], "batch_size": [8, 16]}
    plan = studymod.Plan("grid", trials=8, sampler="grid", grid=grid, seed=0, settings={})
    storage = studymod.open_storage(None, tmp_path)
    points = []
    for number in range(8):
        study = studymod.load(plan, storage, number)
        trial = study.ask()
        points.append((trial.suggest_categorical("lr", grid["lr"]),
                       trial.suggest_categorical("batch_size", grid["batch_size"])))
        if number < 7:  # the last tell would stop the study, which only optimize() may
            study.tell(trial, 0.5)
    assert sorted(points) == sorted((lr, bs) for lr in grid["lr"] for bs in grid["batch_size"])


@pytest.fixture(scope="module")
def device_bench(trained_run, tmp_path_factory):
    """A real `bench --json` of the session's resnet18 bundle at 32 px (the trials' model and size),
    as a device writes it, and its report."""
    from edgetune.bench import benchmark

    device = tmp_path_factory.mktemp("device") / "device.json"
    report = benchmark(trained_run[0], artifacts=["model.onnx", "model.int8.cpu.onnx"], batches=(1,), warmup=1,
                       runs=3)
    device.write_text(json.dumps(report.to_dict()))
    return device, report


def test_two_objectives_write_the_pareto_front_and_the_best_within_budget(base_args, device_bench, tmp_path):
    """A 2-trial study of top-1 and latency, the latency a device's `bench --json`: pareto.csv
    holds only non-dominated trials, best.yaml the most accurate within the budget. (Timing here
    exports a graph, 7-17 s a model; `edgetune choose` and this search share that code,
    edgetune/choose/timing.py.)"""
    device, report = device_bench
    out = tmp_path / "mo"
    proc = edgetune(*base_args, "--epochs", "1", "--trials", "2", "--objectives", "top1,latency",
                    "--latency-budget", "10000", "--latency-from", device, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert f"two objectives, top-1 up and latency down (the device's times in {device})" in proc.stdout
    assert "tune: a new study's first trial runs this command's own values: lr (the run's own default)" in proc.stdout
    rows = [r for r in read_trials(out) if r["state"] == "COMPLETE"]
    assert float(rows[0]["params_lr"]) == 1e-3  # the run's own default for an imprinted head alone on trained weights
    fastest = min(r.p50 for r in report.rows)
    assert len(rows) == 2 and all(float(r["latency_ms"]) == pytest.approx(fastest, abs=1e-3) for r in rows)
    assert not (out / "graphs").exists()  # nothing timed here
    with open(out / "pareto.csv", newline="") as f:
        front = list(csv.DictReader(f))
    points = {r["number"]: (float(r["value"]), float(r["latency_ms"])) for r in rows}
    assert front
    for r in front:
        top1, lat = points[r["number"]]
        assert not any(t >= top1 and lt <= lat and (t > top1 or lt < lat) for t, lt in points.values())
        assert r["within_budget"] == "True"
    best = yaml.safe_load((out / "best.yaml").read_text())
    best_number = max(points, key=lambda n: (points[n][0], -int(n)))
    assert best["lr"] == pytest.approx(float(rows[[r["number"] for r in rows].index(best_number)]["params_lr"]))
    assert (out / "pareto.png").read_bytes().startswith(b"\x89PNG")


def test_two_objectives_with_pruning_asked_maximise_top1_under_the_budget(trained_run, three_digits,
                                                                         device_bench, tmp_path):
    """`--pruner median` on a 2-objective study: Optuna cannot prune two objectives, so top-1 alone is
    maximised with latency a constraint, and the log says so; a budget the model misses leaves no
    best.yaml and names the fastest trial. One trial, in process."""
    import optuna

    from edgetune.config import ExportConfig, TrainConfig, TuneConfig
    from edgetune.tune.search import tune

    device, report = device_bench
    base = TrainConfig(data=str(three_digits), weights=str(trained_run[0] / "model.pt"), image_size=32,
                       unfreeze="head", epochs=1, workers=0, batch_size=16)
    fixed = {"data", "weights", "image_size", "unfreeze", "epochs", "workers", "batch_size"}
    lines: list[str] = []
    fastest = min(r.p50 for r in report.rows)
    cfg = TuneConfig(trials=1, objectives="top1,latency", pruner="median", latency_budget=fastest / 2,
                     latency_from=str(device))
    assert tune(base, ExportConfig(), cfg, tmp_path, fixed, log=lines.append) is None
    assert any("Optuna cannot prune a study of two objectives, so this search maximises top-1 alone" in ln
               for ln in lines)
    study = optuna.load_study(study_name=tmp_path.name, storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.directions) == 1 and study.trials[0].state.name == "COMPLETE"
    assert not (tmp_path / "best.yaml").exists()
    assert any("no complete trial is within --latency-budget" in ln and "the fastest, trial 0" in ln for ln in lines)


def test_the_default_space_follows_the_weights():
    from edgetune.tune.space import default_space

    assert "unfreeze" in {p.name for p in default_space(set())}
    assert "unfreeze" not in {p.name for p in default_space(set(), from_scratch=True)}


def test_a_new_study_starts_from_the_commands_own_values():
    """The first trial is `edgetune run` with the same flags on the first listed model and size;
    a value outside the space (lr 0.5 here) is drawn instead, and one the run resolves as it
    trains (the default lr, from the depth it trains at) is left to the run (None)."""
    from edgetune.config import TrainConfig
    from edgetune.tune.space import Param, default_space, first_trial

    params = (*default_space(set()), Param("model", choices=("efficientnet_lite0", "efficientnet_lite1")),
              Param("image_size", choices=(160, 224)))
    assert first_trial(params, TrainConfig()) == {
        "lr": None, "backbone_lr_scale": 0.1, "weight_decay": 0.05, "unfreeze": "auto", "label_smoothing": 0.1,
        "dropout": 0.0, "augment": "standard", "model": "efficientnet_lite0", "image_size": 160}
    assert "lr" not in first_trial(params, TrainConfig(lr=0.5))
    assert first_trial(params, TrainConfig(lr=3e-3))["lr"] == 3e-3
