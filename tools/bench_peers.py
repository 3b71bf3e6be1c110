#!/usr/bin/env python
"""edgetune's CPU artifacts beside the peers a user would otherwise pick, in one process.

    flock /work/bench.lock python tools/bench_peers.py                 # five models, 224 px
    python tools/bench_peers.py --models mobilenet_v3_small --size 64 --epochs 1 --rounds 2

Per model: a short training from scratch on the embedded digits (no internet here for
pretrained weights; latency does not depend on the weights, top-1 does, so every row is
judged on a model that learned something), edgetune's own export (candidates, budget,
recommendation, with default targets: every installed CPU engine), then on the same fp32
ONNX graph: PyTorch eager, ONNX Runtime fp32, each edgetune INT8 candidate (the S8S8 one
included), OpenVINO fp32, OpenVINO bf16 (where the CPU runs bf16 natively: OpenVINO's default
there) and OpenVINO INT8 (NNCF post-training quantization with its defaults, on the same
calibration images edgetune used). Every row names the CPU it ran on. Every row is evaluated on
the same val images and timed the same way: batch 1, blocks of runs taken in turns
(latency.measure_interleaved), a pause between engines, ONNX Runtime sessions with
spinning off so an idle one does not steal the cores from the engine being timed;
PyTorch is timed the same way but alone, before the others (its OpenMP threads spin on).
Needs the `train` and `bench` extras (openvino, nncf).
"""

from __future__ import annotations

import argparse
import gc
import json
import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgetune import host


def train_and_export(arch: str, args, console: Console) -> Path:
    from edgetune.config import ExportConfig, TrainConfig
    from edgetune.data.demo import ensure_digits
    from edgetune.pipeline import export_bundle
    from edgetune.train import train

    root = Path(args.out) / arch
    best = root / "checkpoints" / "best.pt"
    data = str(ensure_digits())
    if not best.is_file():
        console.print(f"[bold]{arch}[/bold]: train {args.epochs} epoch(s) at {args.size} px from scratch")
        train(TrainConfig(data=data, model=arch, weights="none", image_size=args.size, unfreeze="all",
                          epochs=args.epochs, lr=2e-3, batch_size=32, augment="light"), root, log=lambda *_: None)
    bundle = root / "bundle"
    if args.reexport or not (bundle / "manifest.json").is_file():
        console.print(f"[bold]{arch}[/bold]: edgetune export (cpu candidates, {args.calib_samples} calibration images)")
        engines = ("auto",) if args.edgetune_openvino else ("onnxruntime",)
        export_bundle(best, bundle, ExportConfig(cpu_engines=engines, calib_samples=args.calib_samples,
                                                 max_drop=args.max_drop, threads=args.threads),
                      data=data, log=lambda *_: None)
    return bundle


def rebuild_candidates(bundle: Path, val, args):
    """edgetune's INT8 candidates again, from the bundle's cached ranges (export keeps only
    the chosen one), so each can be timed beside the peers."""
    from edgetune.calib.quantize import Calibration
    from edgetune.calib.select import int8_candidates
    from edgetune.evaluate import top1
    from edgetune.runtime.ort_backend import OrtSession

    cache = next((bundle / "calib").glob("ranges-*.json"))
    cal = Calibration(bundle / "calib" / "model.prep.onnx", cache, "minmax", args.calib_samples)
    work = bundle.parent / "candidates"

    def evaluate(p):
        return top1(OrtSession(p, device="cpu", threads=args.threads), val, desc=f"evaluate {p.stem}")

    def run(p, x):
        return OrtSession(p, device="cpu").run(x)

    return int8_candidates(cal, work, evaluate, 0.0, val.x[:32], run, log=lambda *_: None, threads=args.threads)


def openvino_int8(fp32: Path, calib, out: Path) -> Path:
    """NNCF PTQ with its defaults (mixed preset off: performance preset, fast bias correction)."""
    import nncf
    import openvino as ov

    xml = out / "model.int8.nncf.xml"
    if not xml.is_file():
        model = ov.Core().read_model(str(fp32))
        dataset = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))])
        quantized = nncf.quantize(model, dataset, subset_size=len(calib))
        out.mkdir(parents=True, exist_ok=True)
        ov.save_model(quantized, str(xml))
    return xml


def bench_model(arch: str, args, console: Console) -> dict:
    from edgetune.adapt.stage import calibration_pool
    from edgetune.atomic import sha256_file
    from edgetune.bundle import artifact_path, read_manifest
    from edgetune.data.demo import ensure_digits
    from edgetune.data.scan import scan
    from edgetune.evaluate import EvalSet, top1
    from edgetune.latency import measure_interleaved
    from edgetune.runtime.ort_backend import OrtSession
    from edgetune.runtime.ov_backend import OvSession
    from edgetune.train.torch_baseline import TorchSession

    bundle = train_and_export(arch, args, console)
    m = read_manifest(bundle)
    pre = m.preprocess
    splits = scan(ensure_digits())
    val = EvalSet(splits.val, pre)
    sample, _ = calibration_pool(None, splits, args.calib_samples)  # exactly edgetune's calibration images
    calib = EvalSet(sample, pre).x
    console.print(f"[bold]{arch}[/bold]: candidates, NNCF, top-1 of every row")
    candidates = rebuild_candidates(bundle, val, args)
    ov_int8 = openvino_int8(bundle / "model.onnx", calib, bundle.parent / "openvino")
    from edgetune.runtime.ov_backend import bf16_supported

    rec = m.recommended["cpu"]["file"]  # what `load` picks here, both engines installed
    rec_art = m.artifact(rec)
    rec_path = artifact_path(bundle, rec_art)  # its own file, or the one whose bytes it shares
    rec_name = rec_art.candidate or "fp32"
    ort = dict(device="cpu", threads=args.threads, spinning=args.spinning == "on")

    def recommended():
        if rec_art.backend == "openvino":
            return OvSession(rec_path, threads=args.threads, precision=rec_art.precision)
        return OrtSession(rec_path, **ort)

    rows = {  # name -> (engine, precision, session factory)
        "pytorch eager": ("pytorch", "fp32", lambda: TorchSession(bundle)),
        "ort fp32": ("onnxruntime", "fp32", lambda: OrtSession(bundle / "model.onnx", **ort)),
        **{f"edgetune {c.name}": ("onnxruntime", "int8", (lambda p=c.path: OrtSession(p, **ort))) for c in candidates},
        f"edgetune recommended ({rec_name})": (rec_art.backend, rec_art.precision, recommended),
        "openvino fp32": ("openvino", "fp32", lambda: OvSession(bundle / "model.onnx", threads=args.threads)),
        **({"openvino bf16": ("openvino", "bf16", lambda: OvSession(bundle / "model.onnx", threads=args.threads,
                                                                     precision="bf16"))}
           if bf16_supported() else {}),
        "openvino int8 (nncf)": ("openvino", "int8", lambda: OvSession(ov_int8, threads=args.threads)),
    }
    import torch

    torch.set_num_threads(args.threads)
    # PyTorch first and alone: its OpenMP threads spin long after a call (and an idle ORT
    # session beside it cost it ~25 % here), so in turns it would slow whichever row follows.
    sessions = {"pytorch eager": rows["pytorch eager"][2]()}
    tops = {"pytorch eager": top1(sessions["pytorch eager"], val, desc="evaluate pytorch eager")}
    lat = measure_interleaved(sessions, (3, *pre.size), batch=1, rounds=args.rounds, runs=args.runs,
                              warmup=args.warmup, per_round=True)
    del sessions
    gc.collect()
    sessions = {name: make() for name, (_, _, make) in rows.items() if name != "pytorch eager"}
    tops |= {name: top1(s, val, desc=f"evaluate {name}") for name, s in sessions.items()}
    lat |= measure_interleaved(sessions, (3, *pre.size), batch=1, rounds=args.rounds, runs=args.runs,
                               warmup=args.warmup, per_round=True)
    options = sessions["ort fp32"].options
    del sessions
    gc.collect()
    # Where edgetune's choice is OpenVINO running the fp32 graph (in f32 or bf16), it is the
    # "openvino fp32"/"openvino bf16" row itself (same engine, options and bytes): any
    # difference between the two is noise.
    same = (rec_art.backend == "openvino" and rec_art.precision in ("fp32", "bf16")
            and sha256_file(rec_path) == sha256_file(bundle / "model.onnx"))
    return {"model": arch, "cpu": host.cpu_model(), "recommended": rec, "recommended_candidate": rec_name,
            "same_as": f"openvino {rec_art.precision}" if same else None,
            "why": m.recommended["cpu"]["why"], "ort_session": options,
            "rows": [{"row": name, "cpu": host.cpu_model(), "engine": e, "precision": p, "top1": tops[name],
                      "p50": lat[name]["p50"],
                      "p90": lat[name]["p90"], "runs": lat[name]["runs"], "rounds_p50": lat[name]["rounds_p50"]}
                     for name, (e, p, _) in rows.items()]}


GOAL1 = 1.05  # issue 21: the recommendation at most this much slower than the best OpenVINO artifact


def goals(result: dict, max_drop: float) -> dict:
    """Goal 1: the recommendation is no more than GOAL1 times slower than the best OpenVINO
    row within the budget (or is that row: the same engine running the same graph); "within
    noise" where the rounds disagree (the recommendation faster in some rounds, slower in
    others: the per-round p50 ratios straddle 1).
    Goal 2: INT8 chosen and >= 1.3x faster than ONNX Runtime fp32 within the budget."""
    rows = {r["row"]: r for r in result["rows"]}
    fp32_top1 = rows["ort fp32"]["top1"]
    rec = next(r for r in result["rows"] if r["row"].startswith("edgetune recommended"))
    floor = fp32_top1 - max_drop / 100 - 1e-9
    ovs = [r for r in result["rows"] if r["row"].startswith("openvino") and r["top1"] >= floor]
    best_ov = min(ovs, key=lambda r: r["p50"]) if ovs else None
    speedup = rows["ort fp32"]["p50"] / rec["p50"]
    per_round = ([a / b for a, b in zip(rec["rounds_p50"], best_ov["rounds_p50"])]
                 if best_ov and rec.get("rounds_p50") and best_ov.get("rounds_p50") else [])
    identical = bool(best_ov) and result.get("same_as") == best_ov["row"]
    holds = bool(best_ov) and (rec["p50"] <= GOAL1 * best_ov["p50"] or identical)
    noise = not holds and bool(per_round) and min(per_round) <= 1.0
    return {"rec_vs_best_ov": rec["p50"] / best_ov["p50"] if best_ov else None,
            "best_ov": best_ov["row"] if best_ov else None,
            "rounds_ratio": (min(per_round), max(per_round)) if per_round else None,
            "goal1": holds,
            "goal1_verdict": ("holds (the same engine and graph)" if identical else "holds" if holds
                              else "within noise" if noise else "NOT met"),
            "speedup_vs_fp32": speedup,
            "goal2": rec["precision"] == "int8" and speedup >= 1.3 and rec["top1"] >= fp32_top1 - max_drop / 100 - 1e-9}


def render(results: list[dict], args) -> list[Table]:
    tables = []
    for res in results:
        fp32 = next(r for r in res["rows"] if r["row"] == "ort fp32")
        g = goals(res, args.max_drop)
        t = Table(title=f"{res['model']} at {args.size} px, batch 1, {args.threads} threads, on "
                        f"{res.get('cpu', '?')}", title_justify="left")
        for col in ("row", "engine", "precision", "top-1", "p50 ms", "p90 ms", "vs ORT fp32"):
            t.add_column(col, justify="left" if col in ("row", "engine", "precision") else "right")
        for r in res["rows"]:
            t.add_row(r["row"], r["engine"], r["precision"], f"{r['top1']:.2%}", f"{r['p50']:.2f}",
                      f"{r['p90']:.2f}", f"{fp32['p50'] / r['p50']:.2f}x")
        ratio = f"{g['rec_vs_best_ov']:.2f}x the p50 of {g['best_ov']}" if g["best_ov"] else "no OpenVINO row in budget"
        if g["rounds_ratio"]:
            ratio += f" (rounds {g['rounds_ratio'][0]:.2f}-{g['rounds_ratio'][1]:.2f}x)"
        t.caption = (f"recommended {res['recommended']} ({res['recommended_candidate']}): {ratio} -> goal 1 "
                     f"{g['goal1_verdict']}; {g['speedup_vs_fp32']:.2f}x ORT fp32 -> goal 2 "
                     f"{'holds' if g['goal2'] else 'not met'}")
        t.caption_justify = "left"
        tables.append(t)
    return tables


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="resnet18,resnet50,mobilenet_v3_small,mobilenet_v3_large,efficientnet_b0")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib-samples", type=int, default=128)
    p.add_argument("--max-drop", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=8, help="timing rounds; each times every row --runs times")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--reexport", action="store_true", help="export again from the checkpoint (new recipe)")
    p.add_argument("--no-edgetune-openvino", dest="edgetune_openvino", action="store_false",
                   help="export with --cpu-engines onnxruntime (no OpenVINO candidates in edgetune's own choice)")
    p.add_argument("--spinning", choices=("on", "off"), default="off",
                   help="ONNX Runtime sessions' spinning while timed in turns (default off)")
    p.add_argument("--out", default="runs/peers")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    console = Console(width=150)
    results = []
    for arch in args.models.split(","):
        results.append(bench_model(arch, args, console))
        for t in render(results[-1:], args):
            console.print(t)
        if args.json:  # after every model: a long run that fails late keeps what it measured
            Path(args.json).write_text(json.dumps({"args": vars(args), "host": host.short(), "results": results},
                                                  indent=1))
    console.print(f"command: python tools/{Path(__file__).name} {shlex.join(sys.argv[1:])}")
    console.print(f"host: {host.short()}; onnxruntime session: "
                  + ", ".join(f"{k} {v}" for k, v in results[0]["ort_session"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
