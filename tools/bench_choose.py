"""Does `edgetune choose`'s ranking predict fine-tuned top-1, what does it cost, and does
`tune --objectives top1,latency` beat the best fixed recipe under the same latency budget?

On the shipped photographs (5 classes; k labelled photographs a class, the val split the same
57 for every k, as tools/bench_transfer.py splits them), with pretrained candidates whose
weights are at hand offline: EfficientNet-Lite0/1/2 (the lite extra) at each --sizes size, and
a randomly initialised control (mobilenet_v3_small@none), so the ranking has something to
separate. One run:

1. `choose` ranks every candidate (LogME, linear probe; fp32 graphs exported and timed here);
   its wall time and where it went (export, features, scores, timing) are measured in process.
2. Each candidate is fine-tuned with edgetune's defaults (`edgetune train`, --image-size the
   candidate's): Spearman's rank correlation (ties averaged) of each score with fine-tuned
   val top-1; choose's wall time as a share of fine-tuning every candidate.
3. `tune --objectives top1,latency` over the pretrained models and sizes, --latency-budget
   the median of their p50s, against the best fixed recipe within that budget (the defaults
   on the most accurate candidate whose p50 is within it). The study reads choose's p50s (a
   `bench --json` file written from them), so both sides are judged on the same latencies.

    python tools/bench_choose.py                       # k = 10, 160 and 224 px, 6 trials
    python tools/bench_choose.py --shots 0 --trials 4  # every training photograph
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import spearmanr

from edgetune import host
from edgetune.bench import FORMAT, VERSION
from edgetune.choose import features as featmod
from edgetune.choose import scores as scoremod
from edgetune.choose import timing as timingmod
from edgetune.choose.candidates import graph_name
from edgetune.choose.choose import choose
from edgetune.config import ChooseConfig, TrainConfig
from edgetune.data.photos import ensure_k_shot, ensure_photos
from edgetune.train.loop import train

PRETRAINED = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CONTROL = "mobilenet_v3_small@none"


class Stopwatch:
    """Seconds spent inside each wrapped function, by name."""

    def __init__(self):
        self.spent: dict[str, float] = {}

    def wrap(self, module, attr: str, name: str) -> None:
        fn = getattr(module, attr)

        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - t

        setattr(module, attr, timed)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=10, help="training photographs a class; 0: all of them")
    ap.add_argument("--sizes", default="160,224", help="input sizes of the pretrained candidates")
    ap.add_argument("--trials", type=int, default=6, help="trials of the two-objective study")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-choose-"))
    data = ensure_k_shot(args.shots, seed=args.seed) if args.shots else ensure_photos(seed=args.seed)
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()

    # 1. choose, with the seconds of each part.
    watch = Stopwatch()
    watch.wrap(featmod, "_export_feature_graph", "graphs (a network traced once, parity checked)")
    watch.wrap(featmod, "_resized", "graphs at other sizes (resized, parity checked)")
    watch.wrap(featmod, "_through_graph", "features (ONNX Runtime, decoding included)")
    watch.wrap(featmod, "create_model", "model creation (weights loaded)")
    for name in ("logme", "linear_probe"):
        watch.wrap(scoremod, name, f"score: {name}")
    watch.wrap(timingmod, "measure_here", "timing (fp32 graphs in turns)")
    models = ",".join([*PRETRAINED, CONTROL])
    t0 = time.perf_counter()
    rows = choose(ChooseConfig(data=str(data), models=models, image_sizes=",".join(map(str, sizes)),
                               seed=args.seed), work / "choose", log=lambda *_: None)
    choose_s = time.perf_counter() - t0
    choose_rows = rows

    # 2. every candidate fine-tuned with defaults.
    finetuned, finetune_s = {}, 0.0
    for r in choose_rows:
        cfg = TrainConfig(data=str(data), model=r.arch, weights=r.weights, image_size=r.size, seed=args.seed)
        t1 = time.perf_counter()
        result = train(cfg, work / f"ft-{r.arch}-{r.weights}-{r.size}", log=lambda *_: None)
        spent = time.perf_counter() - t1
        finetune_s += spent
        finetuned[(r.arch, r.weights, r.size)] = (result.best_top1, spent)
        print(f"fine-tuned {r.candidate} {r.size} px: {result.best_top1:.2%} in {spent:.0f} s", flush=True)

    # 3. the two-objective study against the best fixed recipe within the same budget.
    pretrained = [r for r in choose_rows if r.weights == "DEFAULT"]
    budget = round(statistics.median(r.p50_ms for r in pretrained), 3)
    within = [r for r in pretrained if r.p50_ms <= budget]
    fixed = max(within, key=lambda r: finetuned[(r.arch, r.weights, r.size)][0])
    fixed_top1 = finetuned[(fixed.arch, fixed.weights, fixed.size)][0]
    device = work / "choose-times.json"
    device.write_text(json.dumps({"format": FORMAT, "version": VERSION, "rows": [
        {"artifact": graph_name(r.arch, r.size), "precision": "fp32", "batch": 1, "p50": r.p50_ms,
         "backend": "onnxruntime"} for r in pretrained]}))
    study = work / "tune"
    t2 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgetune", "tune", "--data", str(data), "--models",
                           ",".join(PRETRAINED), "--image-sizes", args.sizes, "--objectives", "top1,latency",
                           "--latency-budget", str(budget), "--latency-from", str(device), "--trials",
                           str(args.trials), "--seed", str(args.seed), "--out", str(study), "--overwrite"],
                          capture_output=True, text=True)
    tune_s = time.perf_counter() - t2
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        return 1
    with open(study / "trials.csv", newline="") as f:
        trials = [t for t in csv.DictReader(f) if t["state"] == "COMPLETE"]
    best = yaml.safe_load((study / "best.yaml").read_text()) if (study / "best.yaml").is_file() else None
    in_budget = [t for t in trials if float(t["latency_ms"]) <= budget]
    tune_top1 = max((float(t["value"]) for t in in_budget), default=float("nan"))

    # The tables.
    print(f"\nedgetune choose on the shipped photographs, {'k = ' + str(args.shots) if args.shots else 'all'} "
          f"training photographs a class, 57 val; seed {args.seed}; {host.short()}")
    print(f"{'candidate':<28}{'size':>5}{'LogME':>8}{'probe':>8}{'fine-tuned':>12}{'p50 ms':>8}{'ft s':>7}")
    for r in choose_rows:
        top1, spent = finetuned[(r.arch, r.weights, r.size)]
        print(f"{r.candidate:<28}{r.size:>5}{r.logme:>8.3f}{r.probe:>8.1%}{top1:>12.2%}{r.p50_ms:>8.2f}{spent:>7.0f}")
    top1s = [finetuned[(r.arch, r.weights, r.size)][0] for r in choose_rows]
    for label, subset in (("all", choose_rows), ("pretrained only", pretrained)):
        t = [finetuned[(r.arch, r.weights, r.size)][0] for r in subset]
        rho = {name: spearmanr([getattr(r, name) for r in subset], t)[0] for name in ("logme", "probe")}
        print(f"Spearman with fine-tuned top-1 ({label}, {len(subset)}): LogME {rho['logme']:.2f}, "
              f"probe {rho['probe']:.2f}")
    print(f"choose: {choose_s:.0f} s for {len(rows)} candidate-sizes; fine-tuning the {len(top1s)} candidates: "
          f"{finetune_s:.0f} s; choose is {choose_s / finetune_s:.0%} of that")
    accounted = sum(watch.spent.values())
    for name, s in sorted(watch.spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<44}{s:>6.1f} s {s / choose_s:>5.0%}")
    print(f"  {'the rest (data scan, ranking, files)':<44}{choose_s - accounted:>6.1f} s "
          f"{(choose_s - accounted) / choose_s:>5.0%}")
    print(f"latency budget {budget:g} ms (median p50 of the pretrained candidates): best fixed recipe "
          f"{fixed.candidate} {fixed.size} px (defaults) {fixed_top1:.2%}; tune --objectives top1,latency, "
          f"{len(trials)} trials ({len(in_budget)} within budget, {tune_s:.0f} s): {tune_top1:.2%}"
          + (f" ({best.get('model')} {best.get('image_size')} px)" if best else " (no best.yaml)"))
    print(f"whole bench: {time.perf_counter() - started:.0f} s; "
          f"command: python tools/bench_choose.py {' '.join(sys.argv[1:])}")
    np.set_printoptions(precision=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
