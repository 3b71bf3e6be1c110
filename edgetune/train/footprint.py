"""How much memory and disk a run needs, from the model's shapes alone, checked before any
training (edgetune.limits holds the checks and the messages).

The model is built on torch's meta device: shapes propagate through a full forward pass at
the run's image size without allocating or computing anything, so even a ResNet-152 at
1024 px is measured in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgetune import limits
from edgetune.defaults import DEFAULT_BATCH
from edgetune.sizes import parse_size


@dataclass(frozen=True)
class Footprint:
    params: int  # parameters
    activations: int  # float elements every layer of the exported graph outputs, per image
    largest: int  # the largest single layer output, per image


def measure(arch: str, num_classes: int, size: tuple[int, int]) -> Footprint:
    from edgetune.train.model import source_of

    source = source_of(arch)
    source.check(arch)  # an unknown name gets its one-line error with a did-you-mean
    with torch.device("meta"):
        model = source.build(arch, num_classes, 0.0).eval()
        total, largest = [0], [0]

        def count(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                n = output[0].numel()
                total[0] += n
                largest[0] = max(largest[0], n)

        # BatchNorm folds into the convolution on export and dropout vanishes in eval mode:
        # their outputs are no tensors of the graph ONNX Runtime calibrates.
        gone = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout, torch.nn.Identity)
        for m in model.modules():
            if not any(True for _ in m.children()) and not isinstance(m, gone):
                m.register_forward_hook(count)
        with torch.no_grad():
            model(torch.empty(1, 3, *size))
    return Footprint(sum(p.numel() for p in model.parameters()), total[0], largest[0])


def check_run(train_cfg, export_cfg, out, pre, num_classes: int = 2) -> Footprint:
    """Refuse, in one line, a run whose training batch, calibration or files cannot fit."""
    fp = measure(train_cfg.model, num_classes, pre.size)
    limit = parse_size(train_cfg.memory_limit, "--memory-limit") if train_cfg.memory_limit else None
    image = 3 * pre.size[0] * pre.size[1] * 4
    batch = train_cfg.batch_size or DEFAULT_BATCH  # the default batch only ever shrinks
    # At least: the weights, and one batch of images beside its largest layer output (more
    # when layers train: their outputs are kept for the backward pass).
    train_need = fp.params * 4 + batch * (image + fp.largest * 4)
    limits.require_memory(
        "training", train_need,
        f"{batch} images of {pre.size[0]} px and {train_cfg.model}'s largest layer output per batch",
        "lower --batch-size or --image-size", limit)
    if (export_cfg is not None and export_cfg.calib_method != "minmax"
            and ("cpu" in export_cfg.targets or "tensorrt" in export_cfg.targets)):
        # ONNX Runtime's histogram calibrators (entropy, percentile) keep every layer's output
        # for every calibration image before binning them; minmax reduces each batch to two
        # numbers per tensor in the graph itself.
        calib_need = export_cfg.calib_samples * fp.activations * 4
        limits.require_memory(
            "INT8 calibration", calib_need,
            f"{export_cfg.calib_samples} images × {limits.human(fp.activations * 4)} of layer outputs each",
            "lower --calib-samples or use --calib-method minmax", limit)
    # Checkpoints (best, and last with the optimizer's two moments), the fp32 graph, its
    # prepared copy, and the INT8/fp16 graphs beside them.
    disk = fp.params * 4 * (1 + 3 + 2 + 2)
    limits.require_disk("the run's checkpoints and graphs", disk, out,
                        f"{train_cfg.model}: {fp.params / 1e6:.1f}M parameters",
                        "free disk space or pass another --out")
    return fp
