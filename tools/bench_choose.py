"""Does `edgetune choose`'s ranking predict fine-tuned top-1, and what does it cost?

There is no internet here for torchvision's weights, so the candidates' "pretrained" weights
are made first, as tools/bench_tune.py does: backbones trained from scratch for 0 (random
initialisation), 1 or 4 epochs on some digits (the source), then ranked by `choose` on other
images of the same classes (the target) and each fine-tuned there with edgetune's defaults.
Reported: each candidate's LogME, linear-probe top-1 and fine-tuned val top-1; Spearman's rank
correlation of each score with the fine-tuned top-1; and choose's wall time as a share of
fine-tuning every candidate.

    python tools/bench_choose.py                     # 5 candidates, 32 px, 6 fine-tuning epochs
    python tools/bench_choose.py --epochs 3          # a quicker look
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_train's data and pretraining

from bench_train import pretrain, source_and_target  # noqa: E402

from edgetune.choose.choose import choose  # noqa: E402
from edgetune.config import ChooseConfig, TrainConfig  # noqa: E402
from edgetune.train.loop import train  # noqa: E402

# (arch, pretraining epochs on the source; 0: random initialisation)
CANDIDATES = (("resnet18", 0), ("resnet18", 1), ("resnet18", 4), ("mobilenet_v3_small", 0),
              ("mobilenet_v3_small", 4))


def spearman(a, b) -> float:
    ra, rb = (np.argsort(np.argsort(x)).astype(float) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs per candidate")
    ap.add_argument("--pretrain-per-class", type=int, default=60)
    ap.add_argument("--train-per-class", type=int, default=20)
    ap.add_argument("--val-per-class", type=int, default=20)
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-choose-"))
    if (work / "target").is_dir():  # a rerun in --work: the same images
        source, target = work / "source", work / "target"
    else:
        source, target = source_and_target(work, args.pretrain_per_class, args.train_per_class,
                                           args.val_per_class)
    weights = {}
    for arch, epochs in CANDIDATES:
        done = work / f"pre-{arch}-{epochs}" / "checkpoints" / "best.pt"  # a rerun in --work reuses it
        weights[(arch, epochs)] = ("none" if epochs == 0 else str(done) if done.is_file() else
                                   str(pretrain(arch, source, work / f"pre-{arch}-{epochs}", args.size, epochs)))
    models = ",".join(f"{arch}@{weights[(arch, e)]}" for arch, e in CANDIDATES)
    t0 = time.perf_counter()
    rows = choose(ChooseConfig(data=str(target), models=models, image_sizes=str(args.size), batch_size=32),
                  work / "choose", log=lambda *_: None)
    choose_s = time.perf_counter() - t0
    by_candidate = {(r.arch, r.weights): r for r in rows}
    table, tune_s = [], 0.0
    for arch, e in CANDIDATES:
        w = weights[(arch, e)]
        cfg = TrainConfig(data=str(target), model=arch, weights=w, image_size=args.size, epochs=args.epochs,
                          workers=0)
        t1 = time.perf_counter()
        result = train(cfg, work / f"ft-{arch}-{e}", log=lambda *_: None)
        tune_s += time.perf_counter() - t1
        r = by_candidate[(arch, w)]
        table.append((f"{arch} pretrained {e} ep" if e else f"{arch} random init", r.logme, r.probe,
                      result.best_top1, r.p50_ms))
    print(f"edgetune choose on {args.train_per_class + args.val_per_class} digits per class (target), "
          f"candidates pretrained on {args.pretrain_per_class} others per class (source), {args.size} px; "
          f"fine-tuned {args.epochs} epochs with defaults; {platform.processor() or platform.machine()}")
    print(f"{'candidate':<34}{'LogME':>8}{'probe':>8}{'fine-tuned':>12}{'p50 ms':>8}")
    for name, lm, probe, top1, p50 in table:
        print(f"{name:<34}{lm:>8.3f}{probe:>8.1%}{top1:>12.1%}{p50:>8.2f}")
    top1 = [t[3] for t in table]
    print(f"Spearman(LogME, fine-tuned top-1) = {spearman([t[1] for t in table], top1):.2f}; "
          f"Spearman(probe, fine-tuned top-1) = {spearman([t[2] for t in table], top1):.2f}")
    print(f"choose: {choose_s:.0f} s (features, scores, 2 graphs exported and timed); fine-tuning all "
          f"{len(table)}: {tune_s:.0f} s; choose is {choose_s / tune_s:.0%} of that")


if __name__ == "__main__":
    main()
