"""CPU pre-flight of a graph meant for TensorRT: what the device would refuse, found in CI.

Four checks per TensorRT version family (8.6, 10, 11):
- every op is in the ONNX parser's documented support list (trt_onnx_ops.json, which names
  its source: onnx-tensorrt docs/operators.md at the release tag);
- the opset is in the documented range (below it the parser refuses; above it, it only
  warns and tries, so that is a warning here too);
- only the batch dimension of an input is dynamic: the engine has one optimisation profile
  over batch, and H, W come from the bundle's preprocessing;
- a graph with Q/DQ nodes passes the explicit-quantization lint (calib.lint).
Needs `onnx`, not TensorRT and not a GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import onnx

from edgetune.calib.lint import LintIssue, lint_tensorrt_qdq
from edgetune.config import TENSORRT_FAMILIES

FAMILIES = TENSORRT_FAMILIES  # one list, which the export config checks --tensorrt-version against
_DATA = Path(__file__).with_name("trt_onnx_ops.json")


@lru_cache(maxsize=1)
def support_table() -> dict:
    return json.loads(_DATA.read_text())["families"]


@dataclass
class Preflight:
    family: str
    errors: list[LintIssue] = field(default_factory=list)
    warnings: list[LintIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self, limit: int = 3) -> str:
        """One line: 'passed', or the first problems."""
        if self.ok:
            return "passed" + (f" ({'; '.join(map(str, self.warnings))})" if self.warnings else "")
        more = f" (+{len(self.errors) - limit} more)" if len(self.errors) > limit else ""
        return "; ".join(map(str, self.errors[:limit])) + more


def preflight(model: str | Path | onnx.ModelProto, family: str) -> Preflight:
    """Everything TensorRT `family` would refuse in this graph, found without TensorRT."""
    if family not in FAMILIES:
        raise ValueError(f"unknown TensorRT family {family!r}; known: {', '.join(FAMILIES)}")
    m = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    support = support_table()[family]
    result = Preflight(family)
    _check_opset(m, family, support["opset"], result)
    allowed = set(support["ops"])
    for n in m.graph.node:
        domain_ok = n.domain in ("", "ai.onnx")
        if not domain_ok or n.op_type not in allowed:
            op = n.op_type if domain_ok else f"{n.domain}::{n.op_type}"
            result.errors.append(LintIssue(
                n.name or op, f"op {op} is not in the TensorRT {family} ONNX parser's support list"))
    _check_dynamic_dims(m, result)
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node):
        result.errors += lint_tensorrt_qdq(m)
    return result


def preflight_all(model: str | Path | onnx.ModelProto) -> dict[str, Preflight]:
    m = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    return {f: preflight(m, f) for f in FAMILIES}


def _check_opset(m: onnx.ModelProto, family: str, span: dict, result: Preflight) -> None:
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        result.errors.append(LintIssue("<graph>", "no ai.onnx opset import"))
    elif opset < span["min"]:
        result.errors.append(LintIssue(
            "<graph>", f"opset {opset} is below {span['min']}, the oldest TensorRT {family} parses"))
    elif opset > span["max"]:
        result.warnings.append(LintIssue(
            "<graph>", f"opset {opset} is above {span['max']}, the newest TensorRT {family} documents; "
                       "its parser tries it with a warning"))


def _check_dynamic_dims(m: onnx.ModelProto, result: Preflight) -> None:
    weights = {i.name for i in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in weights:
            continue
        dims = inp.type.tensor_type.shape.dim
        for axis, d in enumerate(dims):
            if axis == 0 or (d.HasField("dim_value") and d.dim_value > 0):
                continue
            what = d.dim_param or "unknown"
            result.errors.append(LintIssue(
                inp.name, f"dimension {axis} is dynamic ({what}); only the batch dimension (0) may be: "
                          "re-export with a fixed image size"))
