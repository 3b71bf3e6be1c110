"""Stage configs: frozen dataclasses, every user choice validated before any work starts.

One home for every stage's settings: training, export, domain adaptation and the search.
CLI flags map one-to-one to fields; `--config run.yaml` sets defaults and flags override
it; the resolved config is written into the run folder (`config.yaml`), so `--resume`
continues the way the run was configured.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from typing import Literal, get_args

from edgetune import defaults
from edgetune.errors import ConfigError, did_you_mean
from edgetune.unfreeze_schedule import parse_schedule

Optimizer = Literal["adamw", "sgd"]
Augment = Literal["none", "light", "standard"]
Balance = Literal["none", "loss", "sampler"]
Device = Literal["auto", "cpu", "cuda"]
CalibMethod = Literal["minmax", "entropy", "percentile"]
Target = Literal["cpu", "tensorrt", "gpu", "openvino"]
CpuEngine = Literal["auto", "onnxruntime", "openvino"]
CacheMode = Literal["auto", "off"]
CacheDtype = Literal["float16", "float32"]
AdaptMethod = Literal["bn", "tent", "pseudo"]
Sampler = Literal["tpe", "random", "grid"]
Objective = Literal["top1", "int8"]
Pruner = Literal["median", "none"]
Qat = Literal["auto", "off", "always"]
HeadInit = Literal["imprint", "random"]
QAT_TARGETS = ("cpu", "openvino", "tensorrt")  # the targets with an INT8 recipe QAT can follow
RankBy = Literal["logme", "probe"]
TENSORRT_FAMILIES = ("8.6", "10", "11")  # the version families of calib/trt_onnx_ops.json


DEFAULT_UNFREEZE = "auto"  # with pretrained weights: the data and a head-only probe decide


@dataclass(frozen=True)
class TrainConfig:
    data: str | tuple[str, ...] | None = None  # None: the embedded demo data set; several: multi-source
    model: str = "resnet18"
    weights: str = "DEFAULT"  # DEFAULT | none | a torchvision weights name | PATH
    image_size: int | None = None  # required with --weights none
    unfreeze: str | None = None  # K (top K blocks + head) | head | all | auto; None: `resolved_unfreeze`
    unfreeze_schedule: str | None = None  # gradual unfreezing, e.g. "head:2,1:2,2"
    epochs: int | None = None  # None: `epochs_for` the trained depth and data
    batch_size: int | None = None  # per process; None: `batch_for` the training set
    lr: float | None = None  # the head's rate; None: `lr_for` the trained depth
    backbone_lr_scale: float | None = None  # None: 0.1 for pretrained weights, 1.0 from scratch
    optimizer: Optimizer = "adamw"
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    dropout: float = 0.0
    head_init: HeadInit | None = None  # None: `resolved_head_init`
    warmup_epochs: float = 1.0
    patience: int | None = None  # early stopping on val top-1
    augment: Augment = "standard"
    balance: Balance = "none"
    val_fraction: float = 0.2
    device: Device = "auto"
    seed: int = 0
    workers: int | None = None
    checkpoint_every: int | None = None  # also checkpoint every N steps
    verify_images: bool = False  # decode every image before training (finds truncated files)
    skip_bad_images: bool = False  # leave unreadable images out instead of stopping
    bn_adapt_batches: int = 50  # re-estimate slow (momentum < 0.1) BatchNorm stats per epoch; 0: off
    cache: CacheMode = "auto"  # the frozen prefix's features, computed once (where it pays)
    cache_views: int | None = None  # augmented views cached per image; None: from the epochs
    cache_memory: str | None = None  # memory budget, e.g. 4GB; None: 40% of available memory
    cache_dir: str | None = None  # None: OUT/cache
    cache_dtype: CacheDtype = "float16"
    cache_seed: int | None = None  # seed of the cached views; None: --seed (a search's trials share one)
    memory_limit: str | None = None  # what a run may use, e.g. 8GB; None: what the machine has available
    compile: bool = False  # torch.compile the trainable part

    def __post_init__(self):
        _check_choices(self)
        for name in ("epochs", "batch_size", "lr"):
            if getattr(self, name) is not None:
                _positive(self, name)
        if isinstance(self.data, (list, tuple)):  # --data A B, or a YAML list
            dirs = tuple(str(d) for d in self.data)
            object.__setattr__(self, "data", dirs[0] if len(dirs) == 1 else dirs)
        for name in ("verify_images", "skip_bad_images", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{_flag(name)}: {getattr(self, name)!r} is not allowed; use true or false")
        if self.unfreeze is not None and not re.fullmatch(r"\d+|head|all|auto", self.unfreeze):
            raise ConfigError(
                f"--unfreeze {self.unfreeze!r} is not allowed; use a number of top blocks "
                "(e.g. 2), 'head', 'all' or 'auto'"
            )
        if self.unfreeze_schedule is not None:
            parse_schedule(self.unfreeze_schedule, self.epochs or defaults.DEFAULT_EPOCHS)
        if self.cache_views is not None:
            if self.cache_views < 1:
                raise ConfigError(f"--cache-views {self.cache_views} must be at least 1 (views "
                                  "cached per image); omit it to choose from the epochs")
            if self.augment == "none" and self.cache_views > 1:
                raise ConfigError(f"--cache-views {self.cache_views} with --augment none would cache "
                                  "identical views; drop --cache-views or use --augment light|standard")
        if self.cache_memory is not None:
            from edgetune.sizes import parse_size

            parse_size(self.cache_memory, "--cache-memory")
        if self.memory_limit is not None:
            from edgetune.sizes import parse_size

            parse_size(self.memory_limit, "--memory-limit")
        if self.image_size is not None and not 16 <= self.image_size <= 1024:
            raise ConfigError(f"--image-size {self.image_size} is out of range; use 16..1024")
        if self.weights.lower() == "none" and self.image_size is None:
            raise ConfigError(
                "--weights none has no preprocessing of its own; add --image-size (e.g. 64 or 224)"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction {self.val_fraction} must be between 0 and 1")
        for name in ("label_smoothing", "dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"--{_flag(name)} {getattr(self, name)} must be in [0, 1)")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ConfigError("--weight-decay and --warmup-epochs must not be negative")
        if self.bn_adapt_batches < 0:
            raise ConfigError(f"--bn-adapt-batches {self.bn_adapt_batches} must be 0 (off) or more")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"--patience {self.patience} must be at least 1")

    @property
    def from_scratch(self) -> bool:
        return self.weights.lower() == "none"

    @property
    def resolved_unfreeze(self) -> str:
        if self.unfreeze is not None:
            return self.unfreeze
        # A random block is not a feature extractor: from scratch, every block must learn.
        return "all" if self.from_scratch else DEFAULT_UNFREEZE

    @property
    def resolved_head_init(self) -> str:
        """--head-init, or imprint where the weights are pretrained (random features have no
        class means worth starting from)."""
        return self.head_init or ("random" if self.from_scratch else "imprint")

    @property
    def resolved_cache_seed(self) -> int:
        """The seed of the cached augmented views: --cache-seed, else --seed."""
        return self.seed if self.cache_seed is None else self.cache_seed

    def lr_for(self, head_only: bool, tiny_data: bool = False) -> float:
        """--lr, or `defaults.lr` for what trains and how the head starts."""
        if self.lr is not None:
            return self.lr
        return defaults.lr(head_only and not self.from_scratch, self.resolved_head_init, tiny_data)

    def epochs_for(self, head_only_on_tiny_data: bool) -> int:
        """--epochs, or `defaults.epochs`."""
        if self.epochs is not None:
            return self.epochs
        return defaults.epochs(head_only_on_tiny_data and not self.from_scratch)

    def batch_for(self, train_images: int, processes: int = 1) -> int:
        """--batch-size, or `defaults.batch` for each process's share of `train_images`."""
        if self.batch_size is not None:
            return self.batch_size
        return defaults.batch(train_images // max(processes, 1))

    @property
    def resolved_backbone_lr_scale(self) -> float:
        if self.backbone_lr_scale is not None:
            return self.backbone_lr_scale
        # Pretrained features need small steps; random ones need the full rate.
        return 1.0 if self.from_scratch else 0.1


@dataclass(frozen=True)
class ExportConfig:
    calib_samples: int = 300
    calib_method: CalibMethod = "minmax"
    targets: tuple[str, ...] = ("cpu",)
    # The engines the cpu target weighs: auto is ONNX Runtime, and OpenVINO where it imports.
    # `--targets openvino` is the cpu target with OpenVINO required (refused when missing).
    cpu_engines: tuple[str, ...] = ("auto",)
    ship_candidates: int = 4  # CPU artifacts a bundle holds for the device to choose from
    max_drop: float = 1.0  # top-1 points INT8 may lose against fp32
    bench_runs: int = 50
    threads: int | None = None
    parity_images: int = 64
    eval_max: int | None = None  # val images artifacts are judged on; None: auto, 0: all
    fold_preprocessing: str | None = None  # nhwc | nchw: also graphs that take uint8 pixels
    tensorrt_version: str | None = None  # 8.6 | 10 | 11: the TensorRT the device runs (None: any)
    qat: Qat = "auto"  # quantization-aware fine-tuning: auto (where no INT8 candidate is within budget)
    qat_epochs: int | None = None  # None: edgetune.train.qat.default_epochs
    qat_lr: float | None = None  # None: edgetune.train.qat.default_lr

    def __post_init__(self):
        _check_choices(self)
        _positive(self, "calib_samples", "bench_runs", "parity_images")
        if self.qat_epochs is not None and self.qat_epochs < 1:
            raise ConfigError(f"--qat-epochs {self.qat_epochs} must be at least 1; use --qat off to skip "
                              "quantization-aware fine-tuning")
        if self.qat_lr is not None and self.qat_lr <= 0:
            raise ConfigError(f"--qat-lr {self.qat_lr:g} must be positive (or leave it out: the default follows "
                              "the training's lr and weights)")
        if self.fold_preprocessing is not None and str(self.fold_preprocessing).lower() not in ("nhwc", "nchw"):
            raise ConfigError(f"--fold-preprocessing {self.fold_preprocessing!r} is not allowed; choose "
                              "nhwc or nchw, the layout of the uint8 pixels the folded graphs take")
        if self.tensorrt_version is not None:
            # YAML reads 8.6 as a number; the families are names (calib/trt_onnx_ops.json)
            version = str(self.tensorrt_version)
            if version not in TENSORRT_FAMILIES:
                raise ConfigError(f"--tensorrt-version {version!r} is not allowed"
                                  f"{did_you_mean(version, TENSORRT_FAMILIES)}; choose one of: "
                                  f"{', '.join(TENSORRT_FAMILIES)} (8.6 is JetPack 6.0's)")
            object.__setattr__(self, "tensorrt_version", version)
        if self.eval_max is not None and self.eval_max < 0:
            raise ConfigError(f"--eval-max {self.eval_max} must be 0 (every val image) or a number "
                              "of images; omit it for the default (all up to 10000, else a subset)")
        allowed = get_args(Target)
        for t in self.targets:
            if t not in allowed:
                raise ConfigError(
                    f"--targets {t!r} is not a target{did_you_mean(t, allowed)}; allowed: "
                    + ", ".join(allowed)
                )
        if self.max_drop < 0:
            raise ConfigError(f"--max-drop {self.max_drop} must not be negative")
        self._check_cpu_engines()
        if self.ship_candidates < 2:
            raise ConfigError(f"--ship-candidates {self.ship_candidates} must be at least 2: the recommendation "
                              "and the fp32 graph every bundle holds")
        if self.qat == "always" and not set(self.targets) & set(QAT_TARGETS):
            raise ConfigError(f"--qat always: --targets {','.join(self.targets)} has no INT8 recipe to "
                              f"fine-tune for; add one of {', '.join(QAT_TARGETS)} to --targets, or drop --qat")

    def _check_cpu_engines(self) -> None:
        allowed = get_args(CpuEngine)
        engines = self.cpu_engines
        for e in engines:
            if e not in allowed:
                raise ConfigError(f"--cpu-engines {e!r} is not an engine{did_you_mean(e, allowed)}; allowed: "
                                  + ", ".join(allowed))
        if "auto" in engines and len(engines) > 1:
            raise ConfigError(f"--cpu-engines {','.join(engines)}: auto means every installed engine; "
                              "give auto alone or a list of engines")
        if "auto" not in engines and "onnxruntime" not in engines:
            raise ConfigError(f"--cpu-engines {','.join(engines)} must include onnxruntime: it calibrates the "
                              "INT8 graphs and runs the fp32 graph everywhere; use onnxruntime,openvino")
        if "openvino" in self.targets and "auto" not in engines and "openvino" not in engines:
            raise ConfigError(f"--targets openvino asks for OpenVINO but --cpu-engines {','.join(engines)} leaves "
                              "it out; drop one of the two")


@dataclass(frozen=True)
class AdaptConfig:
    """Domain adaptation: the camera the device will see."""

    target_data: str | None = None  # unlabelled deployment-domain images, any layout
    adapt: str | None = None  # bn | tent | pseudo; None: bn when target_data is given
    target_val: str | None = None  # labelled target images: measured only, never selects
    target_labels: str | None = None  # a few labelled target images: trained on beside the source
    adapt_images: int = 2000  # target images adaptation and calibration draw from
    min_shift: float = 0.1  # below this input-statistics shift, keep the source statistics
    tent_lr: float = 1e-3
    pseudo_threshold: float = 0.9
    pseudo_epochs: int = 3

    def __post_init__(self):
        _check_choices(self)
        if self.adapt is not None and self.target_data is None:
            raise ConfigError(f"--adapt {self.adapt} needs unlabelled images from the deployment domain: "
                              "add --target-data DIR")
        if self.adapt_images < 1 or self.pseudo_epochs < 1 or self.tent_lr <= 0:
            raise ConfigError("--adapt-images, --pseudo-epochs and --tent-lr must be positive")
        if not 0.0 < self.pseudo_threshold < 1.0:
            raise ConfigError(f"--pseudo-threshold {self.pseudo_threshold} must be between 0 and 1")
        if self.min_shift < 0:
            raise ConfigError(f"--min-shift {self.min_shift} must not be negative (0: always adapt)")

    @property
    def method(self) -> str | None:
        """The adaptation to run: None without target images."""
        if self.target_data is None:
            return None
        return self.adapt or "bn"


@dataclass(frozen=True)
class TuneConfig:
    """`edgetune tune`: the search's own settings (the trials' are a TrainConfig)."""

    trials: int = 20
    sampler: Sampler = "tpe"
    space: str | None = None
    objective: Objective = "top1"
    # "top1,latency" or "int8,latency": a 2-objective study, val top-1 up and p50 latency down.
    objectives: str | None = None
    pruner: Pruner | None = None  # None: median for one objective, none for two (Optuna cannot prune those)
    latency_budget: float | None = None  # ms at batch 1: a hard constraint (Optuna's constraints_func)
    latency_from: str | None = None  # bench --json files from the device, comma-separated
    models: str | None = None  # A,B: `model` searched over these
    image_sizes: str | None = None  # 32,64: `image_size` searched over these
    timeout: float | None = None
    storage: str | None = None
    study_name: str | None = None
    cache_max: str | None = None  # the feature cache's cap after each trial, e.g. 20GB; None: from the disk

    def __post_init__(self):
        _check_choices(self)
        if self.cache_max is not None:
            from edgetune.sizes import parse_size

            parse_size(self.cache_max, "--cache-max")
        if self.trials < 1:
            raise ConfigError(f"--trials {self.trials} must be at least 1 (the number of finished trials "
                              "the study should hold)")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout {self.timeout:g} must be positive (seconds)")
        check_budget(self.latency_budget)
        if self.objectives is not None:
            parts = tuple(str(self.objectives).split(","))
            if len(parts) != 2 or parts[0] not in get_args(Objective) or parts[1] != "latency":
                raise ConfigError(f"--objectives {self.objectives!r} is not allowed; use top1,latency (val top-1 "
                                  "and the p50 latency) or int8,latency (the CPU INT8 artifact's top-1)")
            object.__setattr__(self, "objective", parts[0])
        if (self.latency_budget is not None or self.latency_from) and self.objectives is None:
            raise ConfigError("--latency-budget and --latency-from weigh latency: add --objectives top1,latency")

    @property
    def multi(self) -> bool:
        """Two objectives: top-1 and latency (one, under the budget, when pruning is asked for)."""
        return self.objectives is not None


@dataclass(frozen=True)
class ChooseConfig:
    """`edgetune choose`: which backbones to weigh, at which sizes, against which latency."""

    data: str
    models: str | None = None  # A,B@none,C@PATH; None: the edge families whose weights are at hand
    weights: str = "DEFAULT"  # the weights of every model named without its own
    image_sizes: str | None = None  # 160,192,224; None: each model's own
    latency_budget: float | None = None  # ms at batch 1
    latency_from: str | None = None  # bench --json files from the device, comma-separated
    rank_by: RankBy = "logme"
    batch_size: int = 32
    val_fraction: float = 0.2
    seed: int = 0
    cache_dir: str | None = None

    def __post_init__(self):
        _check_choices(self)
        _positive(self, "batch_size")
        check_budget(self.latency_budget)


def check_budget(budget: float | None) -> None:
    if budget is not None and budget <= 0:
        raise ConfigError(f"--latency-budget {budget:g} must be positive: milliseconds per image at batch 1 "
                          "on the target (e.g. --latency-budget 15)")


def _flag(name: str) -> str:
    return name.replace("_", "-")


# Fields whose values come from a fixed set (the Literal aliases above).
_CHOICES = {
    "optimizer": Optimizer,
    "augment": Augment,
    "balance": Balance,
    "device": Device,
    "calib_method": CalibMethod,
    "cache": CacheMode,
    "cache_dtype": CacheDtype,
    "adapt": AdaptMethod,
    "sampler": Sampler,
    "objective": Objective,
    "pruner": Pruner,
    "qat": Qat,
    "rank_by": RankBy,
    "head_init": HeadInit,
}


def _check_choices(cfg) -> None:
    # A field whose default is None ("decided later": --adapt, --pruner, --head-init) may stay None.
    unset_allowed = {f.name for f in fields(cfg) if f.default is None}
    for name, alias in _CHOICES.items():
        if not hasattr(cfg, name):
            continue
        value, allowed = getattr(cfg, name), get_args(alias)
        if value not in allowed and not (value is None and name in unset_allowed):
            raise ConfigError(
                f"--{_flag(name)} {value!r} is not allowed{did_you_mean(str(value), allowed)}; "
                f"choose one of: {', '.join(allowed)}"
            )


def _positive(cfg, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"--{_flag(name)} {getattr(cfg, name)} must be positive")


def field_names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


def build(cls, *layers: dict):
    """`cls` from layers of settings, later ones winning; None means 'not set'."""
    merged: dict = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    known = {k: v for k, v in merged.items() if k in field_names(cls)}
    for name in ("targets", "cpu_engines"):  # comma lists on the command line, lists in YAML
        if name in known and isinstance(known[name], (list, str)):
            t = known[name]
            known[name] = tuple(t.split(",") if isinstance(t, str) else t)
    try:
        return cls(**known)
    except TypeError as exc:
        raise ConfigError(f"bad configuration: {exc}") from None


def to_dict(*cfgs) -> dict:
    out: dict = {}
    for cfg in cfgs:
        d = dataclasses.asdict(cfg)
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in d.items()})
    return out
