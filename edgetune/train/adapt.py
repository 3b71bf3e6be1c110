"""Domain adaptation after training, on unlabelled images from the deployment camera.

- bn (AdaBN, Li et al. 2016): every BatchNorm layer's statistics re-estimated on target
  images, a cumulative average with no gradients. The exporter folds BatchNorm into the
  convolutions, so the adapted statistics live in the exported conv weights.
- tent (Wang et al. 2021): bn, then one epoch of entropy minimisation over the BatchNorm
  affine parameters. Entropy minimisation can collapse onto a few classes (MNIST→SVHN in
  the paper), so a guard compares the entropy of the mean prediction before and after:
  when the effective number of predicted classes halves, the bn model is kept.
- pseudo: self-training, in `edgetune.train.pseudo`.

Before bn touches anything, the input shift is measured at the first BatchNorm layer (its
input is the first convolution of the image, before any statistics): when target images
look like the reference ones to within `min_shift`, re-estimating would only add
estimator noise, so the source statistics are kept and the log says so.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn

from edgetune.config import AdaptConfig
from edgetune.data.scan import Sample
from edgetune.data.subsets import subset
from edgetune.data.target_domain import TargetData
from edgetune.preprocess import Preprocess
from edgetune.train import checkpoint
from edgetune.train.bn_adapt import adapt_bn, all_batchnorms
from edgetune.train.data import image_loader
from edgetune.train.model import build_from_checkpoint

KEEP = ("arch", "weights", "classes", "preprocess", "config")


def pick_device(choice: str) -> torch.device:
    """Adaptation runs in one process, after training (rank 0 under torchrun)."""
    if choice == "cuda" and not torch.cuda.is_available():
        from edgetune.errors import ConfigError

        raise ConfigError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu or auto")
    return torch.device("cuda" if choice != "cpu" and torch.cuda.is_available() else "cpu")


@torch.no_grad()
def input_statistics(model: nn.Module, loader, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-channel mean and variance of the first BatchNorm layer's input over `loader`."""
    layers = all_batchnorms(model)
    if not layers:
        return None
    total = {}

    def hook(_, inputs):
        x = inputs[0].detach().float().transpose(0, 1).flatten(1)  # channels × values
        total["n"] = total.get("n", 0) + x.shape[1]
        total["s"] = total.get("s", 0) + x.sum(1)
        total["s2"] = total.get("s2", 0) + (x * x).sum(1)

    handle = layers[0].register_forward_pre_hook(hook)
    model.eval()
    try:
        for images, _ in loader:
            model(images.to(device))
    finally:
        handle.remove()
    mean = total["s"] / total["n"]
    return mean.cpu(), (total["s2"] / total["n"] - mean * mean).clamp_min(0).cpu()


def shift_score(ref: tuple, target: tuple, eps: float = 1e-5) -> float:
    """How far the target's input statistics moved, in units of the reference's: the mean
    over channels of |Δmean|/std plus |½ log variance ratio| (0: the same distribution)."""
    (m0, v0), (m1, v1) = ref, target
    moved = (m1 - m0).abs() / (v0 + eps).sqrt() + 0.5 * ((v1 + eps) / (v0 + eps)).log().abs()
    return round(float(moved.mean()), 4)


@torch.no_grad()
def mean_prediction_entropy(model: nn.Module, loader, device) -> float:
    """Entropy of the average softmax over `loader`: log(classes) when predictions spread
    evenly, 0 when every image gets the same class (collapse)."""
    model.eval()
    total, n = None, 0
    for images, _ in loader:
        p = model(images.to(device)).float().softmax(1).sum(0)
        total = p if total is None else total + p
        n += len(images)
    mean = (total / n).clamp_min(1e-12)
    return float(-(mean * mean.log()).sum())


def tent(model: nn.Module, loader, probe, device, lr: float, log=print) -> dict:
    """One epoch of Tent over `loader` after bn; falls back to bn when the guard fires.
    `probe`: a fixed loader over the target images for the guard's entropy."""
    adapt_bn(model, probe, device)
    before = mean_prediction_entropy(model, probe, device)
    bn_state = copy.deepcopy(model.state_dict())
    layers = all_batchnorms(model)
    params = [p for m in layers for p in (m.weight, m.bias) if p is not None]
    grads = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr)
    model.eval()
    for m in layers:
        m.train()  # normalise with each batch's statistics, as Tent does
    steps = 0
    try:
        for images, _ in loader:
            p = model(images.to(device)).float().softmax(1)
            loss = -(p * p.clamp_min(1e-12).log()).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
    adapt_bn(model, probe, device)  # statistics that fit the new affine parameters
    after = mean_prediction_entropy(model, probe, device)
    record = {"steps": steps, "lr": lr, "mean_prediction_entropy": {"bn": round(before, 4),
                                                                   "tent": round(after, 4)}}
    # exp(entropy) is the effective number of predicted classes: halving it is a collapse.
    if not math.isfinite(after) or after < before - math.log(2):
        model.load_state_dict(bn_state)
        log(f"adapt: tent collapse guard fired (entropy of the mean prediction {before:.3f} → "
            f"{after:.3f}: predictions collapsing onto fewer classes); fell back to bn")
        return {**record, "applied": "bn", "fallback": "collapse guard"}
    return {**record, "applied": "tent"}


def adapt_checkpoint(ckpt_path: str | Path, out_path: str | Path, cfg: AdaptConfig, target: TargetData,
                     reference: list[Sample] | None, device, log=print, work: Path | None = None) -> dict:
    """Adapt the model in `ckpt_path` to `target` per `cfg`, save it to `out_path`, and return
    what was done (the manifest's `adaptation` record). `reference`: source images the input
    shift is measured against (None: the model's own statistics)."""
    ckpt = checkpoint.load(ckpt_path)
    model = build_from_checkpoint(ckpt).to(device)
    pre = Preprocess.from_dict(ckpt["preprocess"])
    images = subset(target.images, cfg.adapt_images)
    record = {"method": cfg.method, "target_data": str(target.root), "target_images": len(images),
              "batchnorm_layers": len(all_batchnorms(model))}
    if cfg.method == "pseudo":
        from edgetune.train.pseudo import self_train

        record.update(self_train(ckpt, model, images, cfg, device, work, log))
    elif not all_batchnorms(model):
        log(f"adapt: {ckpt['arch']} has no BatchNorm layers (it normalises per image); "
            f"--adapt {cfg.method} has nothing to re-estimate: the model is kept as trained")
        record.update(applied="none", note=f"{ckpt['arch']} has no BatchNorm layers")
    else:
        record.update(_bn_family(model, ckpt, pre, images, cfg, reference, device, log))
    checkpoint.save(out_path, {**{k: ckpt[k] for k in KEEP}, "model": model.state_dict(),
                               "adaptation": record, "source_checkpoint": str(ckpt_path)})
    return record


def _bn_family(model, ckpt, pre, images, cfg: AdaptConfig, reference, device, log) -> dict:
    probe = image_loader(images, pre)
    target_stats = input_statistics(model, probe, device)
    if reference:
        ref_stats = input_statistics(model, image_loader(reference, pre), device)
        against = f"{len(reference)} source val images"
    else:
        first = all_batchnorms(model)[0]
        ref_stats = (first.running_mean.cpu(), first.running_var.cpu())
        against = "the model's own statistics"
    shift = shift_score(ref_stats, target_stats)
    record = {"input_shift": shift, "shift_reference": against, "min_shift": cfg.min_shift}
    if shift < cfg.min_shift:
        log(f"adapt: the target images look like the source (input shift {shift:.3f} < --min-shift "
            f"{cfg.min_shift:g}, against {against}): BatchNorm statistics kept as trained")
        return {**record, "applied": "none", "note": "no measurable input shift"}
    if cfg.method == "tent":
        loader = image_loader(images, pre, shuffle_seed=ckpt["config"].get("seed", 0))
        result = tent(model, loader, probe, device, cfg.tent_lr, log)
        log(f"adapt: {result['applied']} on {len(images)} target images (input shift {shift:.3f})")
        return {**record, **result}
    seen = adapt_bn(model, probe, device)
    log(f"adapt: bn: {len(all_batchnorms(model))} BatchNorm layers re-estimated on {seen} target "
        f"images (input shift {shift:.3f} against {against})")
    return {**record, "applied": "bn"}
