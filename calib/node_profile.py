"""A per-node INT8 choice by measured time: ONNX Runtime's own profiler on the fp32 and the
INT8 graph, each compute node kept in INT8 only where it ran faster there.

Names differ between the graphs ONNX Runtime runs and the ones we wrote: the fp32 session
turns convs into NCHWc convs named after their (fused) output tensor, the INT8 one fuses
Q/DQ into QLinearConv and its layout transformer appends `_token_N`. Each profiled node is
mapped back to the compute node of the written graph it came from; an INT8 node's time
includes the QuantizeLinear on its input and the DequantizeLinear on its output, which is
what keeping it in INT8 costs beside float neighbours.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

COMPUTE = ("Conv", "Gemm", "MatMul")
# Float ops ONNX Runtime fuses into the conv before it (FuseConvActivation, Conv+Add+Relu).
_FUSED = ("Relu", "Clip", "HardSigmoid", "Sigmoid", "LeakyRelu", "Tanh", "Add", "Sum")


def profile_nodes(path: Path, x: np.ndarray, runs: int = 20, threads: int | None = None) -> dict[str, float]:
    """Median microseconds per profiled node (ORT's names) over `runs` calls on `x`."""
    import onnxruntime as ort

    from edgetune.runtime.ort_backend import ort_session_options, session_options

    options = ort_session_options(ort, session_options(threads))
    with tempfile.TemporaryDirectory(prefix="edgetune-prof-") as tmp:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "prof")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        for _ in range(3):  # warm-up; its events are dropped below by keeping the last `runs`
            session.run(None, feed)
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    times = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[e["name"][: -len("_kernel_time")]].append(e["dur"])
    return {name: float(np.median(d[-runs:])) for name, d in times.items()}


def fp32_node_times(fp32: Path, profile: dict[str, float]) -> dict[str, float]:
    """Profiled fp32 times per compute node of the written graph `fp32`."""
    g = onnx.load(str(fp32)).graph
    names = {n.name: n for n in g.node if n.name}
    producer = {o: n for n in g.node for o in n.output}
    out: dict[str, float] = defaultdict(float)
    for pname, us in profile.items():
        node = names.get(pname)
        if node is None and pname.endswith("_nchwc"):
            node = producer.get(pname[: -len("_nchwc")])
            while node is not None and node.op_type in _FUSED:  # back to the conv it fused into
                node = next((producer[i] for i in node.input if i in producer
                             and producer[i].op_type in COMPUTE + _FUSED), None)
        if node is not None and node.op_type in COMPUTE:
            out[node.name] += us
    return dict(out)


def int8_node_times(qdq: Path, profile: dict[str, float]) -> dict[str, float]:
    """Profiled INT8 times per quantized compute node of the QDQ graph `qdq`: its QLinear
    kernel plus the quantizer before it and the dequantizers after it that ran."""
    g = onnx.load(str(qdq)).graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    base = defaultdict(float)
    for pname, us in profile.items():
        base[re.sub(r"(_token_\d+|/duplicated)+$", "", pname)] += us
    out = {}
    for n in g.node:
        if n.op_type not in COMPUTE or not n.name or n.name not in base:
            continue
        extra = []
        dq = producer.get(n.input[0])
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in producer:
            extra.append(producer[dq.input[0]].name)  # the QuantizeLinear of its input
        for q in consumers[n.output[0]]:
            if q.op_type == "QuantizeLinear":
                extra += [d.name for d in consumers[q.output[0]] if d.op_type == "DequantizeLinear"]
        out[n.name] = base[n.name] + sum(base.get(e, 0.0) for e in extra)
    return out


@dataclass(frozen=True)
class NodeChoice:
    node: str
    fp32_us: float
    int8_us: float

    def to_dict(self) -> dict:
        return {"node": self.node, "fp32_us": round(self.fp32_us, 1), "int8_us": round(self.int8_us, 1),
                "why": f"profiled {self.int8_us:.0f} us in INT8 against {self.fp32_us:.0f} us in fp32"}


def slower_in_int8(fp32: Path, qdq: Path, x: np.ndarray, runs: int = 20,
                   threads: int | None = None) -> list[NodeChoice]:
    """Compute nodes that the profiler timed slower in INT8 (with their Q/DQ) than in fp32."""
    f = fp32_node_times(fp32, profile_nodes(fp32, x, runs, threads))
    q = int8_node_times(qdq, profile_nodes(qdq, x, runs, threads))
    return [NodeChoice(n, f[n], q[n]) for n in q if n in f and q[n] > f[n]]
