"""A trial's latency for `tune --objectives top1,latency`: the device's p50 from `--latency-from`
(its fastest precision: INT8 where it won there), or this machine's on the fp32 graph of the
trial's model and input size, exported and timed once per pair and remembered in
OUT/latency.json, since the weights a trial learns do not change how long its graph runs."""

from __future__ import annotations

import json
from pathlib import Path

from edgetune.atomic import write_text
from edgetune.choose import timing
from edgetune.choose.candidates import graph_name

GRAPHS = "graphs"  # <arch>-<size>.onnx: the graphs timed here, the same names `choose` writes
MEMO = "latency.json"


class LatencyBook:
    """p50 ms at batch 1 per (model, input size), from the device's files or measured here once."""

    def __init__(self, out: Path, latency_from: str | None, num_classes: int, log):
        self.out, self.num_classes, self.log = out, num_classes, log
        self.known = timing.read_files(latency_from)  # every file refused in one line, before any trial
        self.from_files = bool(latency_from)
        memo = out / MEMO
        self.memo = json.loads(memo.read_text()) if memo.is_file() else {}

    def of(self, arch: str, size: int) -> tuple[float, str]:
        """(p50 ms, where it was measured: the --latency-from file or "here")."""
        found = timing.shipped(self.known, arch, size)
        if found is not None:
            return found
        key = f"{arch}-{size}"
        if key not in self.memo:
            if self.from_files:
                self.log(f"tune: {arch} at {size} px is not in --latency-from; timing its fp32 graph here")
            self.memo[key] = self._measure(arch, size)
            write_text(self.out / MEMO, json.dumps(self.memo, indent=1) + "\n")
        return self.memo[key], "here"

    def _measure(self, arch: str, size: int) -> float:
        from edgetune.export.onnx import export_for_timing
        from edgetune.train.model import create_model

        graph = self.out / GRAPHS / graph_name(arch, size)
        if not graph.is_file():
            graph.parent.mkdir(parents=True, exist_ok=True)
            how = export_for_timing(create_model(arch, "none", self.num_classes), (size, size), graph)
            if how:
                self.log(f"tune: {arch} at {size} px: {how}")
        return timing.measure_here({(arch, size): graph})[(arch, size)]
