"""Random search against TPE with median pruning: `edgetune tune` on the embedded digits.

Each seed runs both searches over edgetune's default space (lr, backbone lr scale, weight
decay, unfreeze depth, label smoothing, dropout, augmentation), the same number of trials,
each study in its own folder with its own (cold) feature cache. Random search trains every
trial to the end, as the source material teaches; TPE with pruning stops trials below the
median from their second epoch. Reported per study: best val top-1, epochs trained, wall time.

There is no internet here for torchvision's weights, so a resnet18 is first pretrained from
scratch on some digits (tools/bench_train.py's transfer setup), and the search fine-tunes
that checkpoint on other images of the same classes.

    python tools/bench_tune.py                          # 20 trials × 3 seeds, 6 epochs, 32 px
    python tools/bench_tune.py --trials 6 --seeds 1     # a quick look
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_train's data and pretraining

from bench_train import pretrain, source_and_target  # noqa: E402

from edgetune.config import (  # noqa: E402
    ExportConfig,
    TrainConfig,
    TuneConfig,  # noqa: E402
)
from edgetune.tune.search import tune  # noqa: E402

METHODS = (("random", "none"), ("tpe", "median"))


def run_study(work: Path, base: TrainConfig, sampler: str, pruner: str, trials: int) -> dict:
    out = work / f"{sampler}-{pruner}-seed{base.seed}"
    t0 = time.perf_counter()
    tune(base, ExportConfig(), TuneConfig(trials=trials, sampler=sampler, pruner=pruner), out,
         fixed=set(), log=lambda *_: None)
    wall = time.perf_counter() - t0
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    values = [float(r["value"]) for r in rows if r["state"] == "COMPLETE"]
    return {"method": f"{sampler} + {pruner} pruning" if pruner != "none" else f"{sampler}, no pruning",
            "seed": base.seed, "best": max(values), "epochs": sum(int(r["epochs"] or 0) for r in rows),
            "pruned": sum(r["state"] == "PRUNED" for r in rows), "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--work", help="keep the studies here (default: a temporary folder)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        source, target = source_and_target(work, pretrain_per_class=60, train_per_class=60, val_per_class=30)
        weights = pretrain(args.model, source, work / "pretrain", args.size, epochs=5)
        rows = []
        for seed in range(args.seeds):
            base = TrainConfig(data=str(target), model=args.model, weights=str(weights), image_size=args.size,
                               epochs=args.epochs, batch_size=32, workers=0, seed=seed)
            for sampler, pruner in METHODS:
                rows.append(run_study(work, base, sampler, pruner, args.trials))
                r = rows[-1]
                print(f"  {r['method']:<24} seed {seed}: best {r['best']:.2%}, {r['epochs']} epochs, "
                      f"{r['pruned']} pruned, {r['wall']:.0f} s", flush=True)
    report(rows, args)


def report(rows: list[dict], args) -> None:
    print(f"\nedgetune tune, {args.model} at {args.size} px, {args.trials} trials × {args.epochs} epochs, "
          f"{args.seeds} seeds; {platform.processor() or platform.machine()}\n")
    print("| method | seed | best val top-1 | epochs trained | pruned trials | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['seed']} | {r['best']:.2%} | {r['epochs']} | {r['pruned']} | {r['wall']:.0f} |")
    by = {m: [r for r in rows if r["method"] == m] for m in dict.fromkeys(r["method"] for r in rows)}
    (a, ra), (b, rb) = by.items()
    saved = 1 - sum(r["epochs"] for r in rb) / sum(r["epochs"] for r in ra)
    gap = statistics.mean(r["best"] for r in ra) - statistics.mean(r["best"] for r in rb)
    print(f"\n{b} against {a}: {saved:.0%} fewer epochs (goal ≥ 40%), mean best top-1 "
          f"{-gap * 100:+.2f} points (goal: within 1 point); wall time "
          f"{sum(r['wall'] for r in rb) / sum(r['wall'] for r in ra):.2f}x")


if __name__ == "__main__":
    main()
