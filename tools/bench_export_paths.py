"""The two fp32 export paths side by side: torch.export (`export_onnx`, the bundle's graph) and
the TorchScript trace `choose` and `tune` time (`export_traced`). Per network: each export's
seconds (one thread, as the exporters run), the nodes only one graph holds, the largest
difference of the logits on the same images, and both graphs' p50 at batch 1 timed in turns in
ONNX Runtime (12 rounds of 20 calls, 2 threads), with the median of the round-by-round ratios.

    python tools/bench_export_paths.py
    python tools/bench_export_paths.py --models efficientnet_lite2:DEFAULT:260,resnet18:none:224
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch

from edgetune import host
from edgetune.export.onnx import export_onnx, export_traced
from edgetune.latency import measure_interleaved
from edgetune.runtime.ort_backend import OrtSession
from edgetune.train.model import create_model

DEFAULT = "efficientnet_lite0:DEFAULT:224,mobilenet_v3_small:none:224,resnet18:none:224,efficientnet_lite2:DEFAULT:260"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT, help="ARCH:WEIGHTS:SIZE, comma-separated")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    rows = []
    for spec in args.models.split(","):
        arch, weights, size = spec.split(":")
        size = int(size)
        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = create_model(arch, weights, 5, log=lambda *_: None).eval()
        paths, seconds = {}, {}
        for name, export in (("traced", export_traced), ("torch.export", export_onnx)):
            paths[name] = work / f"{arch}-{name}.onnx"
            t = time.perf_counter()
            export(model, (size, size), paths[name])
            seconds[name] = time.perf_counter() - t
        ops = {k: Counter(n.op_type for n in onnx.load(str(p)).graph.node) for k, p in paths.items()}
        x = np.random.default_rng(0).standard_normal((4, 3, size, size)).astype(np.float32)
        torch.set_num_threads(2)
        sessions = {k: OrtSession(p, device="cpu", threads=2) for k, p in paths.items()}
        diff = float(np.abs(sessions["traced"].run(x) - sessions["torch.export"].run(x)).max())
        timed = measure_interleaved(sessions, (3, size, size), rounds=12, runs=20, per_round=True)
        ratios = [a / b for a, b in zip(timed["traced"]["rounds_p50"], timed["torch.export"]["rounds_p50"])]
        rows.append((f"{arch} ({weights})", size, seconds["traced"], seconds["torch.export"],
                     _only(ops["traced"], ops["torch.export"]), _only(ops["torch.export"], ops["traced"]), diff,
                     timed["traced"]["p50"], timed["torch.export"]["p50"], statistics.median(ratios)))
        del sessions
    print(f"\nfp32 export paths; {host.short()}")
    print(f"{'model':<32}{'size':>5}{'traced s':>10}{'t.export s':>11}  {'only traced':<24}{'only t.export':<20}"
          f"{'max |Δ|':>9}{'p50 traced':>11}{'p50 t.exp':>10}{'ratio':>7}")
    for r in rows:
        print(f"{r[0]:<32}{r[1]:>5}{r[2]:>10.2f}{r[3]:>11.2f}  {r[4]:<24}{r[5]:<20}{r[6]:>9.1e}{r[7]:>11.3f}"
              f"{r[8]:>10.3f}{r[9]:>7.3f}")
    print(f"command: python tools/bench_export_paths.py {' '.join(sys.argv[1:])}")
    return 0


def _only(a: Counter, b: Counter) -> str:
    return ", ".join(f"{op} {n}" for op, n in (a - b).items()) or "-"


if __name__ == "__main__":
    sys.exit(main())
