"""How to build an engine on a given TensorRT version: a pure decision, tested on the CPU.

TensorRT changed how precision reaches the builder three times, and users run all three:

- 8.6 (JetPack 6.0): no strongly typed flag. The QDQ graph is explicit quantization; the
  builder needs BuilderFlag.INT8 (and FP16 for an fp16 graph) to use those kernels, and no
  calibrator (the scales are in the graph).
- 10.x (JetPack 6.1+ on Orin stays here): NetworkDefinitionCreationFlag.STRONGLY_TYPED;
  the graph's tensor types decide every layer's precision, so no precision flags.
  DLA builds keep the documented flag path (INT8/FP16 + GPU fallback).
- 11.x: the INT8/FP16 builder flags and calibrators were removed; every network is strongly
  typed and STRONGLY_TYPED is deprecated and ignored, so we pass no creation flag at all.

DLA: 8.6 and 10.0-10.7 have it; 10.8+ and 11.0-11.4.0 do not on Linux; 11.4.1 brings it back
for Jetson AGX Orin on JetPack 7.2.2+ (TensorRT docs, "Working with DLA", 11.4.1). Whether a
given board has DLA cores is asked of the builder at build time; this only rules out versions.
Nothing here imports tensorrt: the Python builder and the trtexec fallback share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgetune.errors import ConfigError

PRECISIONS = ("int8", "fp16")


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0

    @property
    def family(self) -> str:
        """The key of the operator list in calib/trt_onnx_ops.json: '8.6', '10' or '11'."""
        return "8.6" if self.major == 8 else str(self.major)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse_version(text: str) -> TrtVersion:
    """'10.3.0.30' -> TrtVersion(10, 3, 0). Versions before 8.6 are refused: no explicit-Q/DQ
    build from an ONNX graph we can rely on."""
    m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not m:
        raise ConfigError(f"TensorRT version {text!r} is not of the form MAJOR.MINOR[.PATCH]")
    v = TrtVersion(int(m[1]), int(m[2]), int(m[3] or 0))
    if v < TrtVersion(8, 6) or v.major == 9 or v.major > 11:
        raise ConfigError(
            f"TensorRT {v} is not supported; edgetune builds engines with TensorRT 8.6 "
            "(JetPack 6.0), 10.x or 11.x: upgrade JetPack or pip install 'tensorrt>=10'"
        )
    return v


def supports_dla(v: TrtVersion) -> bool:
    if v.major == 8:
        return True
    if v.major == 10:
        return v.minor <= 7
    return v >= TrtVersion(11, 4, 1)


@dataclass(frozen=True)
class BuildMode:
    """What the builder is told, named by the TensorRT API members it uses."""

    version: TrtVersion
    precision: str  # of the graph: int8 (QDQ) or fp16
    strongly_typed_flag: bool  # pass NetworkDefinitionCreationFlag.STRONGLY_TYPED
    builder_flags: tuple[str, ...]  # BuilderFlag member names, e.g. ("INT8",)
    dla_core: int | None = None
    calibrator: None = None  # never: the scales live in the graph

    @property
    def typing(self) -> str:
        """How precision is decided, for the manifest: 'strongly typed' or 'flags'."""
        return "flags" if {"INT8", "FP16"} & set(self.builder_flags) else "strongly typed"


def build_mode(version: str | TrtVersion, precision: str, device: str = "gpu") -> BuildMode:
    """The one decision: creation flag and builder flags for this version, graph and device."""
    v = version if isinstance(version, TrtVersion) else parse_version(version)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}: "
                          "engines are built from the int8 QDQ graph or the fp16 graph")
    dla = parse_device(device)
    if dla is not None and not supports_dla(v):
        raise ConfigError(
            f"--device {device}: TensorRT {v} has no DLA support (8.6, 10.0-10.7 and 11.4.1+ on "
            "Jetson AGX Orin do); use --device gpu or a TensorRT with DLA"
        )
    flag = {"int8": ("INT8",), "fp16": ("FP16",)}[precision]
    if v.major == 8:
        if dla is not None and precision == "int8":
            raise ConfigError(
                f"--device {device}: TensorRT 8.6 DLA does not take explicitly quantized (Q/DQ) "
                "graphs; build from model.fp16.onnx (--source) or use --device gpu")
        flags = flag + (("GPU_FALLBACK",) if dla is not None else ())
        return BuildMode(v, precision, False, flags, dla)
    if v.major == 10:
        if dla is not None:  # the documented DLA path on 10.x: precision flags + GPU fallback
            return BuildMode(v, precision, False, flag + ("GPU_FALLBACK",), dla)
        return BuildMode(v, precision, True, (), None)
    # 11.x: always strongly typed; the flag is deprecated and ignored, the precision flags gone.
    return BuildMode(v, precision, False, ("GPU_FALLBACK",) if dla is not None else (), dla)


def parse_device(device: str) -> int | None:
    """'gpu' -> None, 'dla:1' -> 1; anything else is refused with the allowed forms."""
    if device == "gpu":
        return None
    m = re.fullmatch(r"dla:(\d)", str(device))
    if not m:
        raise ConfigError(f"--device {device!r} is not 'gpu' or 'dla:N' (N a DLA core: dla:0, dla:1)")
    return int(m[1])


@dataclass(frozen=True)
class Profile:
    """One optimisation profile over the batch dimension; H, W fixed by the bundle."""

    input: str
    size: tuple[int, int]
    opt_batch: int = 1
    max_batch: int = 8

    def __post_init__(self):
        if self.max_batch < 1 or not 1 <= self.opt_batch <= self.max_batch:
            raise ConfigError(f"--opt-batch {self.opt_batch} / --max-batch {self.max_batch}: need "
                              "1 <= opt-batch <= max-batch")

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        h, w = self.size
        return (1, 3, h, w), (self.opt_batch, 3, h, w), (self.max_batch, 3, h, w)

    def to_dict(self) -> dict:
        lo, opt, hi = self.shapes()
        return {"input": self.input, "min": list(lo), "opt": list(opt), "max": list(hi)}


def trtexec_argv(trtexec: str, mode: BuildMode, onnx: str, engine: str, profile: Profile,
                 workspace_mb: int, timing_cache: str) -> list[str]:
    """The trtexec command line for the same build the Python API does (same per-version flags)."""
    dims = ["x".join(map(str, s)) for s in profile.shapes()]
    argv = [trtexec, f"--onnx={onnx}", f"--saveEngine={engine}",
            *(f"--{k}Shapes={profile.input}:{d}" for k, d in zip(("min", "opt", "max"), dims)),
            f"--memPoolSize=workspace:{workspace_mb}",  # MiB, on 8.6 and 10.x alike
            f"--timingCacheFile={timing_cache}",
            "--skipInference"]
    if mode.strongly_typed_flag:
        argv.append("--stronglyTyped")
    argv += [_TRTEXEC_FLAG[f] for f in mode.builder_flags]
    if mode.dla_core is not None:
        argv.append(f"--useDLACore={mode.dla_core}")
    return argv


_TRTEXEC_FLAG = {"INT8": "--int8", "FP16": "--fp16", "GPU_FALLBACK": "--allowGPUFallback"}
