"""Quantization-aware fine-tuning: the trained network fake-quantized as one target's recipe
quantizes it, a few epochs of the layers training left trainable, and its QDQ graph.

The fake-quantization is PyTorch's own (torch.ao.quantization: FakeQuantize and its
observers, placed by FX's `prepare_qat_fx` under a backend config), chosen by measurement
on this machine against NVIDIA ModelOpt 0.47.0, NNCF 3.4.0 and torchao 0.18.0 (BENCHMARKS.md,
"Quantization-aware fine-tuning"): it needs nothing beyond torch, it can make both recipes
(u8 asymmetric activations for ONNX Runtime's CPU kernels, s8 symmetric for TensorRT), and
its exported graphs load in ONNX Runtime and OpenVINO and pass our TensorRT lint. ModelOpt
makes only the symmetric recipe and imported requests and huggingface_hub it does not
declare; NNCF compiled a C++ extension at first use (300 s here) and exported OpenVINO's
own FakeQuantize op, which ONNX Runtime cannot load; torchao's QAT swaps Linear layers
only, and its PT2E QAT failed to annotate a ResNet-18.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgetune.config import TrainConfig
from edgetune.host import loader_processes
from edgetune.preprocess import Preprocess
from edgetune.train.freeze import train_unfrozen
from edgetune.train.qat_prefix import PrefixFeatures, prefix_features

RECIPES = ("cpu", "tensorrt", "openvino")  # openvino: the cpu target's graph for OpenVINO, zero-points 0
EPOCH_SHARE = 0.1  # ModelOpt's rule of thumb: about 10% of the original schedule...
LR_SHARE = 0.01  # ...starting at 1% of the initial learning rate
# ...which on a few hundred images is a handful of steps that cannot change what int8 rounds
# to. AdamW moves a weight by about its lr each step, a cosine schedule by half that on average:
# the default schedule takes at least MIN_STEPS steps and moves a weight by about one int8 step
# (the median over the trainable weights' channels, max |w| / 127). Measured on MobileNetV3-Large's
# TensorRT recipe (BENCHMARKS.md, "The default schedule"): 4 and 20 steps at 1% of the
# training's lr recovered nothing; 20 steps moving about one int8 step recovered it all.
MIN_STEPS = 20
INT8_STEPS_MOVED = 1.0
LIBRARY = f"torch.ao.quantization (FX QAT), torch {torch.__version__.split('+')[0]}"


def drops_last(images: int, batch_size: int) -> bool:
    """Whether QAT's loader drops the last partial batch: only where there is more than one."""
    return images > batch_size


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Optimizer steps in one QAT epoch (its loader: `drops_last`)."""
    return images // batch_size if drops_last(images, batch_size) else 1


def share_epochs(train_epochs: int) -> int:
    """ModelOpt's share of the training's epochs, at least one."""
    return max(1, round(EPOCH_SHARE * train_epochs))


def default_epochs(train_epochs: int, steps: int) -> int:
    """10% of training's epochs, and enough for MIN_STEPS steps of `steps` an epoch."""
    return max(share_epochs(train_epochs), math.ceil(MIN_STEPS / steps))


def default_lr(train_lr: float, weights: list[torch.Tensor], steps: int) -> float:
    """1% of training's lr, or enough for `steps` cosine-scheduled AdamW steps to move a weight
    by about one int8 step of its channel, whichever is larger."""
    if not weights:  # nothing with a per-channel int8 step trains: ModelOpt's rule alone
        return LR_SHARE * train_lr
    channel_steps = torch.cat([w.detach().flatten(1).abs().amax(1) / 127 for w in weights])
    moves = 2 * INT8_STEPS_MOVED * float(channel_steps.median()) / steps
    return max(LR_SHARE * train_lr, moves)


def _qconfig_mapping(recipe: str):
    """Fake-quantization as `calib.quantize`'s recipe for `recipe` quantizes: per-channel
    symmetric int8 weights everywhere; activations u8 asymmetric for ONNX Runtime's CPU
    kernels (`quantize_cpu`), s8 symmetric with zero-point 0 for TensorRT (`quantize_tensorrt`).
    OpenVINO's starts as the CPU's; once calibrated its signed activations turn s8 symmetric
    (`zero_points_zero`). Activation ranges are min/max (the default --calib-method) over the
    calibration sample, then frozen; weight ranges follow the weights as they train."""
    from torch.ao.quantization import (
        FakeQuantize,
        MinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        QConfig,
        QConfigMapping,
    )

    # -128..127: the ONNX exporter accepts no narrower int8 range.
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128,
                                    quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    if recipe == "tensorrt":
        act = FakeQuantize.with_args(observer=MinMaxObserver, quant_min=-128, quant_max=127,
                                     dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    else:
        act = FakeQuantize.with_args(observer=MinMaxObserver, quant_min=0, quant_max=255,
                                     dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    return QConfigMapping().set_global(QConfig(activation=act, weight=weight))


def fake_quantize(model: nn.Module, recipe: str, example: torch.Tensor) -> torch.fx.GraphModule:
    """`model` with BatchNorm folded into its convs (its statistics frozen where training left
    them, as the exported graph will hold them) and FakeQuantize where `recipe` puts Q/DQ.
    TensorRT's backend config quantizes the inputs of its compute ops with s8; the native one
    is ONNX Runtime's u8."""
    from torch.ao.quantization.backend_config import get_native_backend_config, get_tensorrt_backend_config
    from torch.ao.quantization.quantize_fx import prepare_qat_fx
    from torch.fx.experimental.optimization import fuse as fold_batchnorm

    folded = _without_identities(fold_batchnorm(model.eval()))
    folded.train()
    config = get_tensorrt_backend_config() if recipe == "tensorrt" else _with_conv_relu6(get_native_backend_config())
    # torch warns, once per op, that fixed-range ops (Hardsigmoid, Sigmoid) stay in float, and
    # that torch.ao is deprecated: both known (the module docstring), neither the user's to act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_qat_fx(folded, _qconfig_mapping(recipe), (example,), backend_config=config)


def _without_identities(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The graph without its nn.Identity calls (timm's empty dropout, attention and
    squeeze-excite slots): each is a node FX would give a FakeQuantize sharing its input's range,
    a Q/DQ pair in the graph that changes nothing, and one between a conv and its activation
    hides the pattern below."""
    for node in list(graph.graph.nodes):
        if node.op == "call_module" and isinstance(graph.get_submodule(node.target), nn.Identity):
            node.replace_all_uses_with(node.args[0])
            graph.graph.erase_node(node)
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph


def _with_conv_relu6(config):
    """The native backend config, plus conv then ReLU6 observed as one op: the activation after
    the ReLU6 only, as ONNX Runtime's PTQ quantizes it (the Clip dropped, its range within
    [0, 6]). Without this, ReLU6 shares the conv's observer: a range holding the conv's negative
    outputs, so [0, 6] got a fraction of the 256 levels, and the exported graph kept a Clip in
    float between two Q/DQ pairs, which ONNX Runtime cannot fuse into QLinearConv (EfficientNet-
    Lite0: 205 QuantizeLinear against the PTQ graph's 69)."""
    import torch.ao.nn.qat as nnqat
    import torch.nn.functional as F
    from torch.ao.quantization.backend_config import BackendPatternConfig, ObservationType

    dtypes = next(c for c in config.configs if c.pattern is nn.Conv2d).dtype_configs
    for conv in (nn.Conv2d, nnqat.Conv2d):
        for relu6 in (nn.ReLU6, F.relu6, F.hardtanh):
            config.set_backend_pattern_config(
                BackendPatternConfig((conv, relu6))
                .set_observation_type(ObservationType.OUTPUT_USE_DIFFERENT_OBSERVER_AS_INPUT)
                .set_dtype_configs(dtypes))
    return config


def static_same_padding(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """`model` with timm's Conv2dSame (TensorFlow's SAME padding, as the EfficientNet-Lite
    weights need) made FX-traceable: it computes its padding from the input's size at run time,
    a branch FX cannot trace; at the graph's fixed input size that padding is a constant, so each
    becomes ZeroPad2d then a plain Conv2d with the same weights (the same function)."""
    try:
        from timm.layers import Conv2dSame
        from timm.layers.padding import pad_same_arg
    except ImportError:  # no timm: no such layer
        return model
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, Conv2dSame)]
    if not found:
        return model
    sizes: dict[str, list[int]] = {}
    hooks = [m.register_forward_pre_hook(lambda _, args, n=n: sizes.__setitem__(n, list(args[0].shape[-2:])))
             for n, m in found]
    was_training = model.training
    with torch.no_grad():
        model.eval()(example)
    model.train(was_training)
    for h in hooks:
        h.remove()
    for name, m in found:
        conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, 0, m.dilation, m.groups,
                         m.bias is not None)
        conv.load_state_dict(m.state_dict())
        pad = nn.ZeroPad2d(pad_same_arg(sizes[name], list(m.kernel_size), list(m.stride), list(m.dilation)))
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, nn.Sequential(pad, conv))
    return model


def plain_batchnorm(model: nn.Module) -> nn.Module:
    """`model` with timm's BatchNormAct2d (BatchNorm, dropout and activation in one module) made
    a plain BatchNorm2d followed by the same dropout and activation, so that folding finds it
    after its conv. FX traces through timm's module into a functional batch_norm that no fold
    matches: QAT then quantized the unfolded conv weights, which the PTQ graphs (BatchNorm
    folded before quantization) never hold. The same function, in eval mode as in training."""
    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # no timm: no such layer
        return model
    found = [(n, m) for n, m in model.named_modules() if type(m) is BatchNormAct2d]
    for name, m in found:
        bn = nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        bn.load_state_dict(m.state_dict())
        bn.train(m.training)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, nn.Sequential(bn, m.drop, m.act))
    return model


def unfolded_batchnorms(model: torch.fx.GraphModule) -> int:
    """BatchNorm left in a fake-quantized graph: one that follows no conv (or one folding missed)."""
    norms = nn.modules.batchnorm._BatchNorm
    return sum(1 for n in model.graph.nodes
               if (n.op == "call_function" and "batch_norm" in getattr(n.target, "__name__", ""))
               or (n.op == "call_module" and isinstance(model.get_submodule(n.target), norms)))


def _module_of(name: str) -> str:
    return name.rsplit(".", 1)[0]


def trainable_modules(model: nn.Module, ckpt: dict):
    """The modules whose weights training left trainable (the depth it ended at), and its
    edgetune.train.freeze.FreezePlan."""
    from edgetune.train.freeze import FreezePlan

    tcfg = TrainConfig(**ckpt["config"])
    unfreeze = (ckpt.get("schedule") or [[tcfg.resolved_unfreeze]])[-1][0]
    plan = FreezePlan.build(tcfg.model, model, unfreeze)
    return {_module_of(n) for n in plan.trainable}, plan


@dataclass(frozen=True)
class QatResult:
    model: torch.fx.GraphModule  # fake-quantized, fine-tuned, in eval mode: export it with export.onnx.export_qdq
    record: dict  # the manifest's: epochs, lr, what trained, images, seconds, library


@dataclass(frozen=True)
class QatJob:
    """What QAT needs from a finished training: the checkpoint, its train split (never val:
    val judges the artifacts), the calibration sample that set the PTQ ranges, and the schedule.
    With `state_dir`, each finished epoch is saved there (`qat-RECIPE.pt`), so a stage that was
    interrupted continues from its last epoch when the same job runs again (`--resume`, or the
    same export again); the file goes once the stage is done."""

    ckpt: dict
    train: list  # edgetune.data.scan.Sample
    calibration: list  # the same images that calibrated PTQ
    epochs: int | None = None  # None: default_epochs
    lr: float | None = None  # None: default_lr, from the weights the stage trains
    state_dir: Path | None = None
    cache_dir: Path | None = None  # where the frozen prefix's outputs may be memory-mapped (training's cache)

    @property
    def size(self) -> tuple[int, int]:
        return Preprocess.from_dict(self.ckpt["preprocess"]).size

    def run(self, recipe: str, log=print) -> QatResult:
        from edgetune.train.model import build_from_checkpoint

        tcfg = TrainConfig(**self.ckpt["config"])
        torch.manual_seed(tcfg.seed)
        t0 = time.perf_counter()
        pre = Preprocess.from_dict(self.ckpt["preprocess"])
        example = torch.zeros(2, 3, *pre.size)
        model = plain_batchnorm(static_same_padding(build_from_checkpoint(self.ckpt), example))
        modules, plan = trainable_modules(model, self.ckpt)
        described = plan.describe()
        qat = fake_quantize(model, recipe, example)
        _observe(qat, self.calibration, pre)
        if recipe == "openvino":
            zero_points_zero(qat)
        params = [p for n, p in qat.named_parameters() if _module_of(n) in modules]
        for p in qat.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        epochs, lr = self._schedule([p for p in params if p.dim() >= 2], log)
        log(f"qat: {recipe} recipe, {epochs} epoch(s) at lr {lr:g} on {len(self.train)} train "
            f"images; {described} ({sum(p.numel() for p in params):,} parameters)")
        state = None
        if self.state_dir is not None:
            state = EpochState(self.state_dir / f"qat-{recipe}.pt", self._key(recipe, model, epochs, lr), t0)
        workers = loader_processes(tcfg.workers)  # as training decodes
        cached = prefix_features(qat, modules, plan.trainable_groups == 0, recipe, self.train, pre, tcfg, epochs,
                                 workers, self.cache_dir, log)
        if cached is not None:
            log(f"qat: {cached.why}")
        losses = _finetune(qat, params, self.train, pre, epochs, lr, tcfg, workers, log, state, cached)
        seconds = time.perf_counter() - t0 + (state.seconds_before if state else 0.0)
        return QatResult(qat, {"epochs": epochs, "lr": lr, "trained": described,
                                "parameters": sum(p.numel() for p in params), "images": len(self.train),
                                "loss": [round(x, 4) for x in losses], "seconds": round(seconds, 1),
                                "library": LIBRARY, "batchnorm": _batchnorm_record(qat),
                                "inputs": cached.why if cached else "the whole graph every step"})


    def _schedule(self, weights: list[torch.Tensor], log) -> tuple[int, float]:
        """(epochs, lr): the job's where given, else the defaults for the images, the batch and
        the weights the stage trains; a default above ModelOpt's rule says why."""
        trained = self.ckpt["config"]
        steps = steps_per_epoch(len(self.train), trained["batch_size"])
        epochs = self.epochs or default_epochs(trained["epochs"], steps)
        if self.epochs is None and epochs > share_epochs(trained["epochs"]):
            log(f"qat: {epochs} epochs, not 10% of the training's {trained['epochs']}: {steps} step(s) an epoch, "
                f"and QAT takes at least {MIN_STEPS} (--qat-epochs sets it)")
        if self.lr is not None:
            return epochs, self.lr
        lr = default_lr(trained["lr"], weights, epochs * steps)
        if lr > LR_SHARE * trained["lr"]:
            log(f"qat: lr {lr:.2g}, not 1% of the training's {trained['lr']:g}: {epochs * steps} steps at it "
                "move a weight about one int8 step (--qat-lr sets it)")
        return epochs, lr

    def _key(self, recipe: str, model: nn.Module, epochs: int, lr: float) -> str:
        """What makes two QAT stages the same: the starting weights, the recipe, the schedule
        and the images it trains and calibrates on."""
        h = hashlib.sha256(json.dumps([recipe, epochs, lr, self.ckpt["config"],
                                       [str(getattr(s, "path", s)) for s in self.train],
                                       [str(getattr(s, "path", s)) for s in self.calibration]]).encode())
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()



def _batchnorm_record(qat: torch.fx.GraphModule) -> str:
    left = unfolded_batchnorms(qat)
    if not left:
        return "folded into the convs, frozen"
    return f"folded into the convs where one precedes it, frozen; {left} left as BatchNormalization, frozen"


class EpochState:
    """One QAT stage's progress on disk: the fake-quant model, optimizer and schedule after
    its last finished epoch, written atomically (edgetune.train.checkpoint.save), and kept
    only while the stage is unfinished."""

    def __init__(self, path: Path, key: str, t0: float):
        self.path, self.key, self.t0, self.seconds_before = path, key, t0, 0.0

    def restore(self, qat, optimizer, scheduler, log) -> tuple[int, list[float]]:
        """(the epochs already done, their losses): 0 and none without a saved stage of this job."""
        from edgetune.train import checkpoint

        if not self.path.is_file():
            return 0, []
        saved = checkpoint.load(self.path)
        if saved.get("key") != self.key:
            log(f"qat: {self.path.name} is another job's (other weights, images or schedule); starting over")
            return 0, []
        qat.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        checkpoint.set_rng_state(saved["rng"])
        self.seconds_before = float(saved["seconds"])
        log(f"qat: continuing from epoch {saved['epoch']} of the interrupted stage ({self.path.name})")
        return int(saved["epoch"]), [float(x) for x in saved["losses"]]

    def save(self, epoch: int, qat, optimizer, scheduler, losses: list[float]) -> None:
        from edgetune.train import checkpoint

        self.path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.save(self.path, {"key": self.key, "epoch": epoch, "model": qat.state_dict(),
                                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                    "rng": checkpoint.rng_state(), "losses": losses,
                                    "seconds": self.seconds_before + time.perf_counter() - self.t0})

    def done(self) -> None:
        self.path.unlink(missing_ok=True)


def _observe(qat: torch.fx.GraphModule, calibration: list, pre: Preprocess) -> None:
    """Activation ranges from the calibration sample (min/max, as PTQ's default), then frozen."""
    from torch.ao.quantization import FakeQuantize

    from edgetune.train.data import image_loader

    qat.eval()
    with torch.no_grad():
        for x, _ in image_loader(calibration, pre):
            qat(x)
    for name, m in qat.named_modules():
        if isinstance(m, FakeQuantize) and not name.endswith("weight_fake_quant"):
            m.disable_observer()


def zero_points_zero(qat: torch.fx.GraphModule) -> int:
    """OpenVINO's recipe (calib.quantize.quantize_openvino, NNCF's scheme) on calibrated
    activations: zero-point 0 everywhere. A non-negative range (after ReLU) has it already as
    u8 (an observer's range always holds 0, so its minimum is 0); a signed one becomes s8
    symmetric over the same range, as the PTQ recipe's overrides make it. Returns how many
    activations turned signed."""
    from torch.ao.quantization import FakeQuantize, MinMaxObserver

    signed = 0
    for name, fq in qat.named_modules():
        if not isinstance(fq, FakeQuantize) or name.endswith("weight_fake_quant"):
            continue
        observed = fq.activation_post_process
        if float(observed.min_val) >= 0:
            continue
        symmetric = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-128,
                                   quant_max=127)
        symmetric.min_val.copy_(observed.min_val)
        symmetric.max_val.copy_(observed.max_val)
        fq.activation_post_process = symmetric
        fq.dtype, fq.qscheme, fq.quant_min, fq.quant_max = torch.qint8, torch.per_tensor_symmetric, -128, 127
        scale, zero_point = symmetric.calculate_qparams()
        fq.scale.copy_(scale.reshape(fq.scale.shape))
        fq.zero_point.copy_(zero_point.reshape(fq.zero_point.shape))
        signed += 1
    return signed


def _finetune(qat, params, train: list, pre: Preprocess, epochs: int, lr: float, tcfg: TrainConfig, workers: int,
              log, state: EpochState | None = None, cached: PrefixFeatures | None = None) -> list[float]:
    """QAT's epochs: on the cached prefix outputs through `cached.suffix`, or on decoded images
    through the whole graph. Both draw the same batches of the same images in the same order."""
    from edgetune.train.data import ImageDataset, make_loader, train_transform

    ds = ImageDataset(train, train_transform(pre, tcfg.augment), tcfg.skip_bad_images)
    sampler = torch.utils.data.RandomSampler(ds, generator=torch.Generator().manual_seed(tcfg.seed))
    drop = drops_last(len(ds), tcfg.batch_size)
    if cached is None:
        loader = make_loader(ds, tcfg.batch_size, workers, drop_last=drop, sampler=sampler)
    else:
        loader = torch.utils.data.BatchSampler(sampler, tcfg.batch_size, drop_last=drop)
        labels = torch.from_numpy(cached.features.labels)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    total = max(1, epochs * len(loader))
    # Cosine from the small starting rate: the network is already trained, QAT only adjusts it.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    criterion = nn.CrossEntropyLoss(label_smoothing=tcfg.label_smoothing)
    start, losses = state.restore(qat, optimizer, scheduler, log) if state else (0, [])
    for _ in range(start):  # the sampler's generator where the saved epochs left it
        list(sampler)
    for epoch in range(start, epochs):
        train_unfrozen(qat)
        running, n = 0.0, 0
        for batch in loader:
            if cached is None:
                x, y = batch
                logits = qat(x)
            else:
                index = np.asarray(batch)
                logits, y = cached.suffix(cached.batch(index, epoch)), labels[index]
            loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running, n = running + loss.item() * len(y), n + len(y)
        losses.append(running / max(n, 1))
        if state:
            state.save(epoch + 1, qat, optimizer, scheduler, losses)
        log(f"qat: epoch {epoch + 1}/{epochs} loss {losses[-1]:.4f}")
    if state:
        state.done()
    qat.eval()
    return losses
