#!/usr/bin/env python
"""Where ONNX Runtime's INT8 time goes on this CPU, beside OpenVINO's: a probe for AMX.

    python tools/probe_int8_kernels.py runs/peers/resnet18/bundle --json probe.json
    python tools/probe_int8_kernels.py --gemm-only          # no bundle: the CPU and the GEMM only

What it prints, each named by the CPU it ran on:

1. The CPU: AMX-TILE / AMX-INT8 / AVX-512 VNNI / AVX-VNNI-INT8 flags, and whether Linux
   grants this process AMX's tile data (arch_prctl ARCH_REQ_XCOMP_PERM), asked before any
   engine loads and read again after ONNX Runtime ran a QGEMM: MLAS asks for it only when
   it takes its AMX kernels, so "granted after" with "not before" means ORT took them.
2. The onnxruntime wheel: the AMX instructions in its shared library (tdpbusd, ldtilecfg…).
3. A u8 x s8 MatMulInteger, M=N=K=2048 by default, on 1 thread: GOPS with B constant
   (prepacked) and B an input. AVX-512 VNNI reaches roughly 500-700 GOPS per core; AMX
   several times that.
4. With a bundle (a folder `edgetune run` wrote, with calib/ ranges): the same ranges
   quantized in several forms, each timed in ONNX Runtime (p50, batch 1) and profiled per
   op type: U8S8 with symmetric weights (edgetune's recipe: QLinearConv takes MLAS's
   "ConvSym" kernels, which have AVX2 and AVX-512 VNNI versions and no AMX one), U8S8 with
   asymmetric weights (QLinearConv falls back to im2col + QGEMM, the path with an AMX
   kernel), U8U8 (asymmetric weights: QGEMM too), and S8S8 with and without
   `session.qdqisint8allowed` (x86's default leaves signed QDQ unfused); then OpenVINO on
   edgetune's graph with its per-node profile (the kernel names say whether it used AMX:
   `brgconv_avx512_amx_I8`).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgetune import host

ARCH_GET_XCOMP_PERM, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 0x1022, 0x1023, 18
SYS_ARCH_PRCTL = 158  # x86-64
AMX_INSTRUCTIONS = ("tdpbusd", "tdpbssd", "tdpbuud", "tdpbsud", "tdpbf16ps", "ldtilecfg", "tileloadd")


def cpu_report() -> dict:
    flags = set(host.cpu_flags())
    return {"cpu": host.cpu_model(), "cores": host.usable_cpus(),
            **{f: f in flags for f in ("amx_tile", "amx_int8", "amx_bf16", "avx512_vnni", "avx_vnni",
                                       "avx_vnni_int8", "avx512_bf16")}}


def amx_permission() -> str:
    """'granted', 'not granted' or why it cannot be asked, from Linux's arch_prctl."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return "not x86-64 Linux"
    libc = ctypes.CDLL(None, use_errno=True)
    features = ctypes.c_ulong(0)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_GET_XCOMP_PERM, ctypes.byref(features)) != 0:
        return f"arch_prctl failed (errno {ctypes.get_errno()})"
    return "granted" if features.value & (1 << XFEATURE_XTILEDATA) else "not granted"


def request_amx() -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
    return "0 (granted)" if rc == 0 else f"{rc} (errno {ctypes.get_errno()})"


def wheel_report() -> dict:
    """AMX instructions in the onnxruntime shared library, counted by objdump where it is."""
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    lib = next(capi.glob("libonnxruntime.so*"), None) or next(capi.glob("onnxruntime_pybind11_state*"))
    try:
        asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                             timeout=600).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return {"library": lib.name, "objdump": f"unavailable ({exc})"}
    words = defaultdict(int)
    for line in asm.splitlines():
        parts = line.split("\t")
        if len(parts) > 1:
            words[parts[1].split()[0] if parts[1].split() else ""] += 1
    return {"library": lib.name, "onnxruntime": onnxruntime.__version__,
            **{i: words.get(i, 0) for i in (*AMX_INSTRUCTIONS, "vpdpbusd", "vpdpbssd")}}


def matmul_integer_gops(size: int, constant_b: bool, repeats: int = 5) -> float:
    """GOPS (2·M·N·K per call) of a u8 x s8 MatMulInteger on one thread."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (size, size), dtype=np.uint8)
    b = rng.integers(-128, 128, (size, size), dtype=np.int8)
    inputs = [helper.make_tensor_value_info("A", TensorProto.UINT8, [size, size])]
    inits = []
    if constant_b:
        inits.append(numpy_helper.from_array(b, "B"))
    else:
        inputs.append(helper.make_tensor_value_info("B", TensorProto.INT8, [size, size]))
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "mmi", inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [size, size])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"A": a} if constant_b else {"A": a, "B": b}
    session.run(None, feed)
    best = min(_seconds(lambda: session.run(None, feed)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ort_profile(path: Path, x: np.ndarray, threads: int, config: dict, runs: int = 20) -> tuple[float, dict]:
    """(p50 ms, microseconds per op type summed over one call) in ONNX Runtime."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    for k, v in config.items():
        options.add_session_config_entry(k, v)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    for _ in range(5):
        session.run(None, feed)
    p50 = float(np.median([_seconds(lambda: session.run(None, feed)) for _ in range(runs)])) * 1e3
    with tempfile.TemporaryDirectory() as tmp:
        options.enable_profiling, options.profile_file_prefix = True, os.path.join(tmp, "p")
        prof = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(5 + runs):  # the first calls pack weights and warm caches: dropped below
            prof.run(None, feed)
        events = json.loads(Path(prof.end_profiling()).read_text())
    times, ops = defaultdict(list), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[e["name"]].append(e["dur"])
            ops[e["name"]] = e.get("args", {}).get("op_name", "?")
    by_op = defaultdict(float)
    for name, durations in times.items():  # each node's median over the last `runs` calls
        by_op[ops[name]] += float(np.median(durations[-runs:]))
    return p50, dict(sorted(by_op.items(), key=lambda kv: -kv[1]))


def ov_profile(path: Path, x: np.ndarray, threads: int, runs: int = 20) -> tuple[float, dict]:
    """(p50 ms, microseconds per OpenVINO kernel (exec type) summed over one call)."""
    import openvino as ov

    from edgetune.runtime.ov_backend import compile_options

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {**compile_options(threads, "int8"), "PERF_COUNT": True})
    request = compiled.create_infer_request()
    for _ in range(5):
        request.infer({0: x})
    p50 = float(np.median([_seconds(lambda: request.infer({0: x})) for _ in range(runs)])) * 1e3
    by_kernel = defaultdict(float)
    for info in request.profiling_info:
        if info.status == info.Status.EXECUTED:
            by_kernel[f"{info.node_type}:{info.exec_type}"] += info.real_time.total_seconds() * 1e6
    return p50, dict(sorted(by_kernel.items(), key=lambda kv: -kv[1]))


def quantized_forms(bundle: Path, work: Path) -> dict[str, tuple[Path, dict]]:
    """The bundle's calibrated ranges quantized in each form (QDQ, per-channel weights, every
    op), with the session options to time it by."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    cache = next((bundle / "calib").glob("ranges-*.json"))
    prep = bundle / "calib" / "model.prep.onnx"

    def form(name: str, activation, weight, symmetric: bool) -> Path:
        out = work / f"{name}.onnx"
        quantize_static(str(prep), str(out), None, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=activation, weight_type=weight, calibration_cache_path=str(cache),
                        extra_options={"WeightSymmetric": symmetric})
        return out

    s8s8 = form("s8s8", QuantType.QInt8, QuantType.QInt8, True)
    return {
        "u8s8, symmetric weights (edgetune)": (form("u8s8", QuantType.QUInt8, QuantType.QInt8, True), {}),
        "u8s8, asymmetric weights (QGEMM)": (form("u8s8a", QuantType.QUInt8, QuantType.QInt8, False), {}),
        "u8u8, asymmetric weights": (form("u8u8", QuantType.QUInt8, QuantType.QUInt8, False), {}),
        "s8s8": (s8s8, {}),
        "s8s8, session.qdqisint8allowed=1": (s8s8, {"session.qdqisint8allowed": "1"}),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", nargs="?", help="a folder `edgetune run` wrote (needs its calib/ ranges)")
    p.add_argument("--gemm-only", action="store_true", help="the CPU, the wheel and the GEMM; no bundle")
    p.add_argument("--size", type=int, default=2048, help="M = N = K of the MatMulInteger")
    p.add_argument("--threads", type=int, default=2, help="threads for the whole-graph rows")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    if not args.gemm_only and not args.bundle:
        p.error("give a bundle folder, or --gemm-only")
    out: dict = {"cpu": cpu_report(), "amx_permission_before": amx_permission()}
    print(f"cpu: {json.dumps(out['cpu'])}")
    print(f"AMX tile data granted to this process before any engine: {out['amx_permission_before']}")
    out["wheel"] = wheel_report()
    print(f"onnxruntime wheel: {json.dumps(out['wheel'])}")
    out["matmul_integer_gops"] = {f"B {kind}": round(matmul_integer_gops(args.size, kind == "constant"), 1)
                                  for kind in ("constant", "input")}
    print(f"u8 x s8 MatMulInteger {args.size}^3, 1 thread, GOPS: {out['matmul_integer_gops']}")
    out["amx_permission_after_ort"] = amx_permission()
    print(f"AMX tile data granted after ONNX Runtime's QGEMM: {out['amx_permission_after_ort']} "
          "(MLAS asks only when it takes its AMX kernels)")
    if out["cpu"]["amx_tile"]:
        out["amx_request"] = request_amx()
        print(f"arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) from this probe: {out['amx_request']}")
    if args.bundle:
        bundle = Path(args.bundle)
        pre = json.loads((bundle / "manifest.json").read_text())["input"]["size"]
        x = np.random.default_rng(0).standard_normal((1, 3, *pre), dtype=np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            forms = quantized_forms(bundle, Path(tmp))
            out["onnxruntime"] = {}
            for name, (path, config) in forms.items():
                p50, ops = ort_profile(path, x, args.threads, config)
                out["onnxruntime"][name] = {"p50_ms": round(p50, 3), "us_per_op": {k: round(v) for k, v in ops.items()}}
                print(f"onnxruntime {name}: {p50:.2f} ms; " + ", ".join(f"{k} {v:.0f} us" for k, v in
                                                                    list(ops.items())[:6]))
            try:
                p50, kernels = ov_profile(forms["u8s8, symmetric weights (edgetune)"][0], x, args.threads)
            except ImportError:
                print("openvino is not installed: pip install 'edgetune[openvino]' for its per-node profile")
            else:
                out["openvino"] = {"p50_ms": round(p50, 3), "us_per_kernel": {k: round(v) for k, v in kernels.items()}}
                print(f"openvino on edgetune's graph: {p50:.2f} ms; " + ", ".join(
                    f"{k} {v:.0f} us" for k, v in list(kernels.items())[:8]))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"host: {host.short()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
