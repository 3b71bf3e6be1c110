"""edgetune's trainer against the loop fine-tuning tutorials teach, side by side in one process.

The tutorial loop: the whole model in train mode, a full forward and backward pass every step,
the frozen parameters only left out of the optimizer, the images decoded and augmented every
epoch. edgetune: the frozen prefix cached once per image and view, the suffix trained on it.
Both use the same data, model, starting weights, optimizer, schedule and augmentation.

There is no internet here for torchvision's weights, so each model is first pretrained from
scratch on 60 digits per class at the fine-tuning size, and that checkpoint is fine-tuned on
other images of the same classes: transfer, as users do it. (Pretrained at 64 px and
fine-tuned at 224, the features do not transfer and both loops score near chance.)

    python tools/bench_train.py                       # resnet18 and mobilenet_v3_large at 224 px
    python tools/bench_train.py --whole-run           # 8 epochs vs 1 of `edgetune train --unfreeze head`
"""

from __future__ import annotations

import argparse
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from edgetune.config import TrainConfig
from edgetune.data.demo import ensure_digits
from edgetune.data.scan import scan
from edgetune.train import train
from edgetune.train.data import ImageDataset, eval_transform, make_loader, train_transform
from edgetune.train.freeze import FreezePlan
from edgetune.train.loop import evaluate
from edgetune.train.model import create_model, preprocess_for
from edgetune.train.optim import make_optimizer, make_scheduler


def make_data(root: Path, counts: dict[str, int], seed: int = 0, skip: int = 0) -> Path:
    """An ImageFolder (train/ and val/) of the digits: `counts` {"train": n, "val": m} images
    per class, after skipping the first `skip` of each class's seeded shuffle."""
    digits = ensure_digits()
    for c in map(str, range(10)):
        files = sorted((digits / "train" / c).glob("*.png")) + sorted((digits / "val" / c).glob("*.png"))
        random.Random(seed).shuffle(files)
        files = files[skip:]
        for split, n in counts.items():
            chosen, files = files[:n], files[n:]
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                shutil.copy(f, root / split / c / f.name)
    return root


def source_and_target(work: Path, pretrain_per_class: int, train_per_class: int, val_per_class: int):
    """Disjoint images of the same ten classes: pretrain on one set, fine-tune on the other."""
    source = make_data(work / "source", {"train": pretrain_per_class, "val": 10})
    target = make_data(work / "target", {"train": train_per_class, "val": val_per_class},
                       skip=pretrain_per_class + 10)
    return source, target


def pretrain(arch: str, data: Path, out: Path, size: int, epochs: int) -> Path:
    cfg = TrainConfig(data=str(data), model=arch, weights="none", image_size=size, unfreeze="all",
                      epochs=epochs, lr=3e-3, batch_size=32, augment="light", workers=0)
    return train(cfg, out, log=lambda *_: None).best


def tutorial_loop(cfg: TrainConfig) -> tuple[list[float], float]:
    """Seconds per epoch and final val top-1 of the textbook loop, same settings as `cfg`."""
    torch.manual_seed(cfg.seed)
    splits = scan(cfg.data, cfg.val_fraction, cfg.seed)
    pre = preprocess_for(cfg.model, cfg.weights, cfg.image_size)
    model = create_model(cfg.model, cfg.weights, len(splits.classes))
    plan = FreezePlan.build(cfg.model, model, cfg.resolved_unfreeze)
    plan.apply(model)
    optimizer = make_optimizer(model, plan, cfg)  # only the trainable parameters
    for p in model.parameters():  # ...but, as in the tutorials, autograd runs through everything
        p.requires_grad_(True)
    train_loader = torch.utils.data.DataLoader(
        ImageDataset(splits.train, train_transform(pre, cfg.augment)), batch_size=cfg.batch_size,
        shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(cfg.seed))
    val_loader = make_loader(ImageDataset(splits.val, eval_transform(pre)), cfg.batch_size, 0)
    scheduler = make_scheduler(optimizer, cfg, len(train_loader))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    seconds, top1 = [], 0.0
    for _ in range(cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        for images, labels in train_loader:
            loss = criterion(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        top1 = evaluate(model, val_loader, torch.device("cpu"))["top1"]
        seconds.append(time.perf_counter() - t0)
    return seconds, top1


def edgetune_loop(cfg: TrainConfig, out: Path) -> tuple[list[float], float, float]:
    """Seconds per epoch (wall time between epoch ends, checkpoints included), final top-1,
    and the whole call's wall time (cache fill included)."""
    stamps = []

    def log(line: str) -> None:
        if line.startswith(("edgetune: cache on", "edgetune: cache off", "epoch ")):
            stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    result = train(cfg, out, log=log)
    total = time.perf_counter() - t0
    return [b - a for a, b in zip(stamps, stamps[1:])], result.history[-1]["top1"], total


def compare(args) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    source, target = source_and_target(work, args.pretrain_per_class, args.train_per_class, 30)
    rows = []
    for arch in args.models:
        weights = pretrain(arch, source, work / f"pre-{arch}", args.pretrain_size, args.pretrain_epochs)
        for unfreeze in args.unfreeze:
            cfg = TrainConfig(data=str(target), model=arch, weights=str(weights), image_size=args.size,
                              unfreeze=unfreeze, epochs=args.epochs, batch_size=32, augment="light",
                              workers=0, lr=1e-3)
            tut_s, tut_top1 = tutorial_loop(cfg)
            time.sleep(args.pause)
            et_s, et_top1, et_total = edgetune_loop(cfg, work / f"et-{arch}-{unfreeze}")
            time.sleep(args.pause)
            tut_after, et_after = _mean(tut_s[1:]), _mean(et_s[1:])
            rows.append({"model": arch, "unfreeze": unfreeze, "tutorial_s": tut_after, "edgetune_s": et_after,
                         "speedup": tut_after / et_after, "tutorial_top1": tut_top1, "edgetune_top1": et_top1,
                         "tutorial_total": sum(tut_s), "edgetune_total": et_total})
            _print_row(rows[-1])
    shutil.rmtree(work, ignore_errors=True)
    return rows


def whole_run(args) -> None:
    """8 epochs vs 1 of `edgetune train --unfreeze head`, default flags otherwise, at 160 px."""
    work = Path(tempfile.mkdtemp(prefix="bench-whole-"))
    source, target = source_and_target(work, args.pretrain_per_class, 30, 10)
    weights = pretrain("resnet18", source, work / "pre", args.pretrain_size, args.pretrain_epochs)
    times = {}
    for epochs in (1, 8):
        cmd = [sys.executable, "-m", "edgetune", "train", "--data", str(target), "--weights", str(weights),
               "--image-size", "160", "--unfreeze", "head", "--epochs", str(epochs),
               "--out", str(work / f"e{epochs}")]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times[epochs] = time.perf_counter() - t0
        time.sleep(args.pause)
    print(f"edgetune train --unfreeze head, resnet18 at 160 px, 300 train / 100 val images: "
          f"1 epoch {times[1]:.1f} s, 8 epochs {times[8]:.1f} s, ratio {times[8] / times[1]:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


def _mean(xs: list[float]) -> float:
    return sum(xs) / max(len(xs), 1)


def _print_row(r: dict) -> None:
    print(f"| {r['model']} | {r['unfreeze']} | {r['tutorial_s']:.2f} | {r['edgetune_s']:.3f} | "
          f"{r['speedup']:.1f}x | {r['tutorial_top1']:.2%} | {r['edgetune_top1']:.2%} | "
          f"{r['tutorial_total']:.0f} / {r['edgetune_total']:.0f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v3_large"])
    p.add_argument("--unfreeze", nargs="+", default=["head", "1"])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-per-class", type=int, default=30)
    p.add_argument("--pretrain-size", type=int, help="default: --size (features must match the scale)")
    p.add_argument("--pretrain-epochs", type=int, default=5)
    p.add_argument("--pretrain-per-class", type=int, default=60)
    p.add_argument("--pause", type=float, default=2.0, help="seconds between loops")
    p.add_argument("--whole-run", action="store_true")
    args = p.parse_args()
    args.pretrain_size = args.pretrain_size or args.size
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; {args.epochs} epochs at {args.size} px")
    if args.whole_run:
        whole_run(args)
        return
    print("| model | unfreeze | tutorial s/epoch | edgetune s/epoch | speedup | tutorial top-1 | "
          "edgetune top-1 | total s (tutorial / edgetune) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    compare(args)


if __name__ == "__main__":
    main()
