#!/usr/bin/env python
"""Proof of transfer: pretrained EfficientNet-Lite0 against the same network from scratch and
against MediaPipe Model Maker's recipe, on the shipped photographs with k labelled images a class.

    python tools/bench_transfer.py                      # k = 5, 10, 20; seed 0
    python tools/bench_transfer.py --shots 5 --seed 1

Rows per k (the val split is the same 57 photographs for every k; `ensure_k_shot`):
- `edgetune, pretrained`: `edgetune train --model efficientnet_lite0` with every default
  (ImageNet weights from the lite extra; --unfreeze, --cache, --lr and --epochs as they decide:
  a head alone starts imprinted from the class means and trains at lr 3e-4, 20 epochs under 10
  images a class, else 10);
- `edgetune, from scratch`: the same with `--weights none --image-size 224`;
- `edgetune, pretrained, --unfreeze auto` (with `--rows auto`): the probe decides what trains;
- `Model Maker recipe`: MediaPipe Model Maker's image_classifier defaults written in PyTorch on
  the same pretrained weights (hyperparameters.py, train_image_classifier_lib.py,
  image_classifier.py, core/utils/image_preprocessing.py): the backbone frozen with BatchNorm in
  inference mode, dropout 0.2 then a linear head with L2 1e-4, label smoothing 0.1,
  RMSprop (rho 0.9, momentum 0.9, eps 1e-3) at 0.005 x batch/256, batch 32, 2 epochs of linear
  warm-up then cosine decay over max(all steps, 10000 x 256 / batch), 10 epochs; training
  augmentation: Inception crop (area 0.08-1, aspect 3/4-4/3) and a horizontal flip, bicubic to
  224; evaluation: the centre 224/256, bicubic; mean = std = 0.5. Where the training set holds
  fewer than 32 images (k = 5: 25) Model Maker refuses; here the batch is then the whole set.

Top-1 is the last epoch's on the val split for every row (edgetune keeps its best epoch's
checkpoint; that figure is printed beside it). Wall time: model creation to the last epoch's
evaluation, each row alone in this process.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from rich.console import Console
from rich.table import Table
from torch import nn
from torchvision import transforms as T

from edgetune import host
from edgetune.config import TrainConfig
from edgetune.data.photos import SHOTS, ensure_k_shot
from edgetune.data.scan import scan
from edgetune.train import train
from edgetune.train.model import create_model

ARCH = "efficientnet_lite0"


def edgetune_row(data: Path, seed: int, scratch: bool, unfreeze: str | None = None) -> tuple[float, float, float]:
    extra = {"weights": "none", "image_size": 224} if scratch else {}
    if unfreeze:
        extra["unfreeze"] = unfreeze
    cfg = TrainConfig(data=str(data), model=ARCH, seed=seed, workers=0, **extra)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = train(cfg, out, log=lambda *_: None)
    return result.history[-1]["top1"], result.best_top1, time.perf_counter() - start


class Images(torch.utils.data.Dataset):
    def __init__(self, samples, transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        return self.transform(Image.open(s.path).convert("RGB")), s.label


def model_maker_row(data: Path, seed: int, epochs: int = 10, batch: int = 32) -> tuple[float, float]:
    """Model Maker's defaults (see the module's docstring); (last-epoch val top-1, wall s)."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    splits = scan(data)
    norm = T.Normalize((0.5,) * 3, (0.5,) * 3)
    bicubic = T.InterpolationMode.BICUBIC
    train_tf = T.Compose([T.RandomResizedCrop(224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation=bicubic),
                          T.RandomHorizontalFlip(), T.ToTensor(), norm])
    val_tf = T.Compose([T.Resize(256, interpolation=bicubic), T.CenterCrop(224), T.ToTensor(), norm])
    batch = min(batch, len(splits.train))
    train_dl = torch.utils.data.DataLoader(Images(splits.train, train_tf), batch_size=batch, shuffle=True,
                                           drop_last=True)
    val_dl = torch.utils.data.DataLoader(Images(splits.val, val_tf), batch_size=64)
    model = create_model(ARCH, "DEFAULT", len(splits.classes), dropout=0.2)
    head = model.get_classifier()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    lr = 0.005 * batch / 256
    opt = torch.optim.RMSprop(head.parameters(), lr=lr, alpha=0.9, momentum=0.9, eps=1e-3)
    steps = len(train_dl)
    warmup, decay = 2 * steps, max(steps * epochs, 10000 * 256 // batch)

    def rate(step: int) -> float:  # model_util.WarmUp over keras CosineDecay(alpha=0)
        if step < warmup:
            return step / warmup
        return 0.5 * (1 + math.cos(math.pi * min(step, decay) / decay))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    top1 = 0.0
    for _ in range(epochs):
        model.train()
        for m in model.modules():  # hub.KerasLayer(trainable=False): BatchNorm in inference mode
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        for x, y in train_dl:
            loss = loss_fn(model(x), y) + 1e-4 * head.weight.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            right = sum(int((model(x).argmax(1) == y).sum()) for x, y in val_dl)
        top1 = right / len(splits.val)
    return top1, time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--shots", default=",".join(map(str, SHOTS)), help="labelled images per class, e.g. 5,10,20")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", default="pretrained,scratch,modelmaker",
                    help="which rows: pretrained, scratch, auto (pretrained with --unfreeze auto), modelmaker")
    args = ap.parse_args(argv)
    console = Console(width=130)
    table = Table(title=f"{ARCH} on the shipped photographs, seed {args.seed}, {host.short()}")
    for col in ("k", "recipe", "top-1 (last epoch)", "best epoch's top-1", "wall s"):
        table.add_column(col)
    rows = set(args.rows.split(","))
    for k in (int(s) for s in args.shots.split(",")):
        data = ensure_k_shot(k, seed=args.seed)
        for name, scratch in (("edgetune, pretrained", False), ("edgetune, from scratch", True)):
            if ("scratch" if scratch else "pretrained") not in rows:
                continue
            last, best, wall = edgetune_row(data, args.seed, scratch)
            table.add_row(str(k), name, f"{last:.2%}", f"{best:.2%}", f"{wall:.1f}")
            console.print(f"k={k} {name}: {last:.2%} (best {best:.2%}) in {wall:.1f} s")
        if "auto" in rows:
            last, best, wall = edgetune_row(data, args.seed, False, "auto")
            table.add_row(str(k), "edgetune, pretrained, --unfreeze auto", f"{last:.2%}", f"{best:.2%}", f"{wall:.1f}")
            console.print(f"k={k} edgetune, pretrained, --unfreeze auto: {last:.2%} (best {best:.2%}) in {wall:.1f} s")
        if "modelmaker" in rows:
            top1, wall = model_maker_row(data, args.seed)
            table.add_row(str(k), "Model Maker recipe, pretrained", f"{top1:.2%}", "", f"{wall:.1f}")
            console.print(f"k={k} Model Maker recipe: {top1:.2%} in {wall:.1f} s")
    console.print(table)
    console.print(f"command: python tools/bench_transfer.py {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
