"""`edgetune deploy triton|deepstream`: serving configurations written from a bundle. Parsing only;
the work is in `edgetune.deploy`. Torch-free."""

from __future__ import annotations

import argparse

from edgetune.cli.device import int_flag
from edgetune.errors import ConfigError

TARGETS = ("triton", "deepstream")
# Flags that only one target reads: given to the other, they are refused rather than ignored.
_ONLY = {"triton": ("name", "instances", "raw_images"),
         "deepstream": ("source", "threshold", "tensorrt_version", "gie_id", "operate_on_gie_id")}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "deploy", help="write a Triton model repository or a DeepStream classifier config from a bundle",
        description="triton: a model repository, every config.pbtxt written in full (batch axis, names, "
                    "dtypes, dims, dynamic batching, instances, labels, the measured ONNX Runtime threads). "
                    "deepstream: an nvinfer secondary-classifier config and a graph with the normalisation "
                    "folded in (needs onnx).")
    p.add_argument("target", metavar="triton|deepstream", help="what to write")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder (with manifest.json)")
    p.add_argument("--out", required=True, help="triton: the model repository (created, or added to); "
                                                "deepstream: the folder for the config and its files")
    p.add_argument("--overwrite", action="store_true", help="replace this bundle's models or config in --out")
    p.add_argument("--max-batch", metavar="N", help="largest batch: Triton's max_batch_size (default 32), "
                                                    "nvinfer's batch-size (default 16)")
    g = p.add_argument_group("triton")
    g.add_argument("--name", help="model name prefix (default: the bundle folder's name)")
    g.add_argument("--instances", metavar="N", help="model instances per model (default 1)")
    g.add_argument("--raw-images", action="store_true", default=None,
                   help="also a Python-backend model decoding image bytes with the bundle's preprocessing, "
                        "and an ensemble NAME chaining it to the CPU model")
    g = p.add_argument_group("deepstream")
    g.add_argument("--source", help="graph to deploy (default: model.int8.tensorrt.onnx, else model.fp16.onnx, "
                                    "else model.onnx)")
    g.add_argument("--threshold", metavar="P", help="classifier-threshold: the probability a label needs (default 0.5)")
    g.add_argument("--tensorrt-version", metavar="8.6|10|11",
                   help="the TensorRT DeepStream builds with; 8.6 (JetPack 6.0, the default) gets opset 17")
    g.add_argument("--gie-id", metavar="ID", help="this classifier's gie-unique-id (default 2)")
    g.add_argument("--operate-on-gie-id", metavar="ID", help="the detector it classifies objects of (default 1)")
    p.set_defaults(func=run_deploy)


def run_deploy(args: argparse.Namespace) -> int:
    if args.target not in TARGETS:
        from edgetune.errors import did_you_mean

        raise ConfigError(f"deploy {args.target!r} is not one of {', '.join(TARGETS)}"
                          + did_you_mean(args.target, TARGETS))
    other = next(t for t in TARGETS if t != args.target)
    given = [k for k in _ONLY[other] if getattr(args, k) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(f"{flag} applies to `edgetune deploy {other}`, not {args.target}; drop it")
    return _triton(args) if args.target == "triton" else _deepstream(args)


def _triton(args) -> int:
    from edgetune.deploy.triton import write_repository

    models = write_repository(
        args.bundle, args.out, name=args.name,
        max_batch=int_flag(args.max_batch or "32", "--max-batch", minimum=1),
        instances=int_flag(args.instances or "1", "--instances", minimum=1),
        raw_images=bool(args.raw_images), overwrite=args.overwrite)
    for m in models:
        print(f"{args.out}/{m.name}: {m.kind}, {m.source}, max_batch_size {m.max_batch}")
    print(f"next: tritonserver --model-repository {args.out}  (the onnxruntime backend serves the ONNX models"
          + ("; pip install edgetune in the Python backend's environment for the image model" if args.raw_images
             else "") + ")")
    return 0


def _deepstream(args) -> int:
    from edgetune.config import TENSORRT_FAMILIES
    from edgetune.deploy.deepstream import write_deepstream

    version = args.tensorrt_version or "8.6"
    if version not in TENSORRT_FAMILIES:
        raise ConfigError(f"--tensorrt-version {version!r} is not one of {', '.join(TENSORRT_FAMILIES)}")
    try:
        threshold = float(args.threshold) if args.threshold is not None else 0.5
    except ValueError:
        raise ConfigError(f"--threshold {args.threshold!r} is not a number between 0 and 1") from None
    done = write_deepstream(
        args.bundle, args.out, source=args.source,
        batch=int_flag(args.max_batch or "16", "--max-batch", minimum=1), threshold=threshold,
        tensorrt=version, gie_id=int_flag(args.gie_id or "2", "--gie-id", minimum=1),
        operate_on=int_flag(args.operate_on_gie_id or "1", "--operate-on-gie-id", minimum=1),
        overwrite=args.overwrite)
    print(f"{done.folder}/config_infer_secondary.txt: nvinfer secondary classifier, {done.graph} "
          f"({done.precision}, opset {done.opset}, from {done.source}, normalisation folded in)")
    print(f"next: see {done.folder}/README.md for where it goes in a pipeline")
    return 0
