"""The names of the files a run, its bundle and a search hold, in one table, and the one helper that
prepares an output folder for them. Torch-free.

A file name is part of the bundle format (deployment code, Triton configs and users' scripts
name these files), so every module takes it from here rather than writing the literal again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from edgetune.errors import ConfigError

MANIFEST = "manifest.json"
CONFIG = "config.yaml"  # the resolved settings of the run (`--resume` reads them back)
CHECKPOINT = "model.pt"  # the trained weights, with classes and preprocessing, in the bundle
CHECKPOINTS = "checkpoints"  # training's own, below
CHECKPOINT_BEST = f"{CHECKPOINTS}/best.pt"  # the best epoch by val top-1: what export starts from
CHECKPOINT_LAST = f"{CHECKPOINTS}/last.pt"  # everything --resume needs (optimizer, RNG, history)
CHECKPOINT_ADAPTED = f"{CHECKPOINTS}/adapted.pt"  # the best checkpoint adapted to the target domain
PSEUDO_STATE = f"{CHECKPOINTS}/pseudo.pt"  # self-training's own state, for its resume
CALIB = "calib"  # calibration ranges and the prepared graph, reused by a re-export
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
CACHE = "cache"  # the feature cache, when --cache-dir does not put it elsewhere

# What a search (`edgetune tune`) writes into its folder.
TRIALS_CSV = "trials.csv"
BEST_YAML = "best.yaml"
IMPORTANCES = "importances.json"
PARETO_CSV = "pareto.csv"  # a multi-objective search's non-dominated trials
PARETO_PNG = "pareto.png"  # and its plot: top-1 against latency, the budget as a line

# What `edgetune choose` writes into its folder (beside graphs/ and the feature cache).
CHOICE_JSON = "ranking.json"
CHOICE_CSV = "ranking.csv"

# The artifacts, by what made them.
FP32 = "model.onnx"
INT8_CPU = "model.int8.cpu.onnx"  # ONNX Runtime's best U8S8 INT8 graph
INT8_S8S8_CPU = "model.int8.s8s8.cpu.onnx"  # signed activations: ONNX Runtime's first choice on ARM
INT8_TENSORRT = "model.int8.tensorrt.onnx"
FP16 = "model.fp16.onnx"
# Run by OpenVINO: the fp32 graph in f32 or in bf16, and OpenVINO's best INT8 graph.
FP32_OPENVINO = "model.fp32.openvino.onnx"
BF16_OPENVINO = "model.bf16.openvino.onnx"
INT8_OPENVINO = "model.int8.openvino.onnx"
ENGINE_SOURCES = (INT8_TENSORRT, FP16)  # the graphs `edgetune build-engine` builds from, preferred first
DEVICES = "devices"  # `edgetune bench --choose`: one device's choice per file, named by its fingerprint


def cache_folder(cache_dir: str | None, out: str | Path) -> Path:
    """Where the feature cache lives: --cache-dir, else OUT/cache."""
    return Path(cache_dir) if cache_dir else Path(out) / CACHE


def openvino_artifact(precision: str) -> str:
    """The bundle's OpenVINO artifact of `precision` (fp32, bf16 or int8)."""
    return {"fp32": FP32_OPENVINO, "bf16": BF16_OPENVINO, "int8": INT8_OPENVINO}[precision]


def device_choice(fingerprint: str) -> str:
    """The record of the choice made on a device whose fingerprint is `fingerprint`, in a bundle."""
    return f"{DEVICES}/{fingerprint}.json"


def folded_name(source: str, layout: str) -> str:
    """The graph `source` with the preprocessing folded in, taking uint8 pixels in `layout`
    (NHWC or NCHW): model.int8.cpu.onnx -> model.int8.cpu.u8-nhwc.onnx."""
    return f"{Path(source).stem}.u8-{layout.lower()}.onnx"


def deepstream_graph(source: str) -> str:
    """The graph `edgetune deploy deepstream` writes from `source`: float pixels in, probabilities out."""
    return f"{Path(source).stem}.deepstream.onnx"


def engine_name(source: str, device: str = "gpu") -> str:
    """The TensorRT engine built from graph `source` for `device` (gpu, or dla:N on Jetson)."""
    stem = Path(source).stem
    return f"{stem}.engine" if device == "gpu" else f"{stem}.{device.replace(':', '')}.engine"


def engine_record(engine: str | Path) -> str:
    """The sidecar JSON that says which TensorRT and GPU built `engine` (its file name)."""
    return Path(engine).name + ".json"


def timing_cache(engine: str | Path) -> str:
    """TensorRT's timing cache beside `engine` (its file name): a rebuild on the same GPU reuses it."""
    return Path(engine).stem + ".timing.cache"


# GPU engines, and DLA engines on a Jetson's two DLA cores.
_ENGINES = [engine_name(s, device) for s in ENGINE_SOURCES for device in ("gpu", "dla:0", "dla:1")]
# Everything a run writes: the only things --overwrite removes from a run folder.
RUN_FILES = (MANIFEST, CONFIG, CHECKPOINT, CHECKPOINTS, CALIB, FP32, INT8_CPU, INT8_S8S8_CPU, INT8_TENSORRT, FP16,
             *_ENGINES, *map(engine_record, _ENGINES), *map(timing_cache, _ENGINES),
             REPORT_HTML, REPORT_JSON, FP32_OPENVINO, BF16_OPENVINO, INT8_OPENVINO, DEVICES,
             *(folded_name(s, layout) for s in (FP32, INT8_CPU, INT8_S8S8_CPU, INT8_TENSORRT, FP16, FP32_OPENVINO,
                                                BF16_OPENVINO, INT8_OPENVINO)
               for layout in ("NHWC", "NCHW")))


def check_out(out: str | Path, *, overwrite: bool, resume: bool = False,
              ignore: Callable[[Path], bool] = lambda _: False, resumable: bool = True) -> Path:
    """Refuse `out` when it is a file, or holds earlier work and the user asked neither to
    overwrite nor to resume; reads only, so a command can check it before any long work.
    `ignore(entry)`: entries that are not earlier work (a search folder inside a run's folder,
    say). `resumable`: the command has --resume, so the refusal offers it."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder path")
    # Under torchrun rank 0 alone checks and cleans OUT: another rank would see rank 0's first
    # files (an atomic write's temporary) as a previous run.
    if int(os.environ.get("RANK", "0")) != 0:
        return out
    earlier = [p for p in out.iterdir() if not ignore(p)] if out.is_dir() else []
    if earlier and not (overwrite or resume):
        resume_hint = " --resume to continue it," if resumable else ""
        raise ConfigError(f"--out {out} is not empty; pass --overwrite to replace its run,{resume_hint} "
                          "or choose another --out")
    return out


def prepare_out(out: str | Path, owned: Iterable[str], *, overwrite: bool, resume: bool = False,
                ignore: Callable[[Path], bool] = lambda _: False, resumable: bool = True) -> Path:
    """`out`, checked (`check_out`) and created; with `overwrite`, the `owned` names of the
    earlier work removed (only those: a user's own files in the folder stay)."""
    out = check_out(out, overwrite=overwrite, resume=resume, ignore=ignore, resumable=resumable)
    if int(os.environ.get("RANK", "0")) != 0:  # rank 0 cleans for everyone
        out.mkdir(parents=True, exist_ok=True)
        return out
    if overwrite and not resume:
        for name in owned:
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out
