#!/usr/bin/env python
"""Which timm definition should carry the EfficientNet-Lite weights: TF-exact or plain.

    python tools/bench_lite.py --photos DIR                   # Lite0, every image under DIR
    python tools/bench_lite.py --photos DIR --arch efficientnet_lite2 --rounds 10

`tf_efficientnet_lite*` pads like TensorFlow ("SAME") and keeps TF's BatchNorm epsilon;
plain `efficientnet_lite*` pads symmetrically. Both get the installed package's weights
(edgetune[lite]) through edgetune's own mapping. Printed: how often the plain model's
ImageNet top-1 agrees with the TF-exact one on the photographs (DIR's images and
scikit-learn's two), each graph's ONNX node count, and CPU latency at batch 1, timed in turns.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import onnx
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from edgetune import host
from edgetune.export.onnx import export_onnx
from edgetune.latency import measure_interleaved
from edgetune.runtime.ort_backend import OrtSession
from edgetune.train.lite import weights_path
from edgetune.train.model import preprocess_for
from edgetune.train.weights_file import load_weights_file

SUFFIXES = (".jpg", ".jpeg", ".png")


def photographs(folder: Path | None) -> list[Image.Image]:
    from sklearn.datasets import load_sample_images

    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES) if folder else []
    return [Image.open(p).convert("RGB") for p in found] + [Image.fromarray(a) for a in load_sample_images().images]


def lite(definition: str, arch: str) -> torch.nn.Module:
    import timm

    model = timm.create_model(definition)
    load_weights_file(model, str(weights_path(arch)), arch, ("classifier.weight", "classifier.bias"), lambda *_: None)
    return model.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--photos", type=Path, help="a folder of photographs (searched recursively)")
    ap.add_argument("--arch", default="efficientnet_lite0", choices=["efficientnet_lite0", "efficientnet_lite1",
                                                                     "efficientnet_lite2"])
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds (each times every graph)")
    args = ap.parse_args(argv)
    console = Console(width=120)
    pre = preprocess_for(args.arch, "DEFAULT", None)
    images = photographs(args.photos)
    x = torch.from_numpy(pre.batch(images))
    models = {name: lite(name, args.arch) for name in (f"tf_{args.arch}", args.arch)}
    with torch.no_grad():
        top1 = {name: torch.cat([m(b) for b in x.split(32)]).argmax(1) for name, m in models.items()}
    reference = top1[f"tf_{args.arch}"]
    sessions, nodes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            path = export_onnx(model, pre.size, Path(tmp) / f"{name}.onnx")
            graph = onnx.load(str(path)).graph
            nodes[name] = collections.Counter(n.op_type for n in graph.node)
            sessions[name] = OrtSession(path, device="cpu")
        latency = measure_interleaved(sessions, (3, *pre.size), rounds=args.rounds, runs=20)
    table = Table(title=f"{args.arch} with the package's ImageNet weights, {len(images)} photographs, "
                        f"{host.short()}")
    for col in ("definition", "top-1 agreement with TF-exact", "ONNX nodes", "Pad nodes", "p50 ms (b=1)"):
        table.add_column(col)
    for name in models:
        agree = float((top1[name] == reference).float().mean())
        table.add_row(name, f"{agree:.1%}", str(sum(nodes[name].values())), str(nodes[name]["Pad"]),
                      f"{latency[name]['p50']:.2f}")
    console.print(table)
    console.print(f"command: python tools/bench_lite.py {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
